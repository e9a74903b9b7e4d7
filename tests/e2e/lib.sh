# Shared by the e2e tests (sourced). Starts tallyd processes in a temp dir, waits for readiness
# with deadlines, and stops everything on exit. Needs TALLY_KAFKA_BOOTSTRAP (a test that needs
# Kafka and cannot get it fails) and grpcurl on PATH or in $TALLY_TOOLS_BIN.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
[[ -n "${TALLY_KAFKA_BOOTSTRAP:-}" ]] || fail "TALLY_KAFKA_BOOTSTRAP is not set: run through tests/run.sh"
GRPCURL="$(command -v grpcurl || true)"
[[ -n "$GRPCURL" ]] || GRPCURL="${TALLY_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/tally/bin}/grpcurl"
[[ -x "$GRPCURL" ]] || fail "grpcurl not found (deploy/install-deps.sh installs it)"

E2E_DIR="$(mktemp -d -t tally-e2e.XXXXXX)"
E2E_PIDS=()
e2e_cleanup() {
  local pid
  for pid in "${E2E_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${E2E_PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$E2E_DIR"
}
trap e2e_cleanup EXIT

# wait_for DEADLINE_SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds="$1" deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after $seconds s waiting for $what"
    sleep 0.1
  done
}

# write_config FILE APP_ID [EXTRA TEXTPROTO]: a config for the shared broker.
write_config() {
  cat > "$1" <<CFG
app_id: "$2"
kafka { bootstrap_servers: "$TALLY_KAFKA_BOOTSTRAP" }
scenarios { name: "demo" partitions: 3 reducer { majority {} } }
server { listen_address: "127.0.0.1:0" }
router { enabled: true }
${3:-}
CFG
}

# start_tallyd NAME TALLYD CONFIG [ARGS...]: starts tallyd, waits until it serves, and sets
# ADDR_<NAME> and PID_<NAME>. Its log is $E2E_DIR/NAME.log.
start_tallyd() {
  local name="$1" bin="$2" config="$3"; shift 3
  local ready="$E2E_DIR/$name.ready"
  rm -f "$ready"
  "$bin" --config="$config" --ready_file="$ready" "$@" > "$E2E_DIR/$name.log" 2>&1 &
  local pid=$!
  E2E_PIDS+=("$pid")
  local deadline=$((SECONDS + 60))
  until [[ -s "$ready" ]]; do
    kill -0 "$pid" 2>/dev/null || { cat "$E2E_DIR/$name.log" >&2; fail "tallyd $name exited during start-up"; }
    ((SECONDS < deadline)) || { cat "$E2E_DIR/$name.log" >&2; fail "tallyd $name not ready in 60 s"; }
    sleep 0.1
  done
  printf -v "ADDR_$name" '%s' "$(cat "$ready")"
  printf -v "PID_$name" '%s' "$pid"
}
