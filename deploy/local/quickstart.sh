#!/usr/bin/env bash
# Starts a local Tally you can query at once: a real Kafka 3.9 broker and tallyd.
#   deploy/local/quickstart.sh     # installs what is missing, builds, starts, prints commands
#   deploy/local/down.sh           # stops everything it started
# Public gRPC endpoint: 127.0.0.1:${TALLY_PORT:-7070}; broker: 127.0.0.1:${TALLY_KAFKA_PORT:-9092}.
# Returns once everything is ready. A second run stops the previous cluster and starts afresh.
# State and logs: ${TALLY_QUICKSTART_DIR:-$HOME/.local/state/tally/quickstart}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
port="${TALLY_PORT:-7070}"
kafka_port="${TALLY_KAFKA_PORT:-9092}"
dir="${TALLY_QUICKSTART_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/tally/quickstart}"
build="${TALLY_BUILD_DIR:-$root/build}"

source "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target tallyd

"$root/deploy/local/down.sh" >/dev/null 2>&1 || true
rm -rf "$dir"
mkdir -p "$dir/logs"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free "$kafka_port" || { echo "quickstart: port $kafka_port is in use (set TALLY_KAFKA_PORT)" >&2; exit 1; }
port_free "$port" || { echo "quickstart: port $port is in use (set TALLY_PORT)" >&2; exit 1; }

bootstrap="$("$root/deploy/kafka/kafka.sh" start --dir "$dir/kafka" --port "$kafka_port")"
echo "quickstart: Kafka broker at $bootstrap" >&2

cat > "$dir/tallyd.textproto" <<CFG
# Quickstart cluster config (tally.config.v1.Config, textproto).
app_id: "quickstart"
kafka { bootstrap_servers: "$bootstrap" }
scenarios {
  name: "site-under-attack"
  partitions: 6
  reducer { majority { min_votes: 1 } }
  default_ttl { seconds: 60 }
}
node { enabled: true data_dir: "$dir/data" node_id: "node-1" }
router { enabled: true }
server { listen_address: "127.0.0.1:$port" }
CFG

rm -f "$dir/tallyd-1.ready"
setsid "$build/server/tallyd/tallyd" --config="$dir/tallyd.textproto" \
  --ready_file="$dir/tallyd-1.ready" > "$dir/logs/tallyd-1.log" 2>&1 < /dev/null &
echo $! > "$dir/tallyd-1.pid"
deadline=$((SECONDS + 60))
until [[ -s "$dir/tallyd-1.ready" ]]; do
  kill -0 "$(cat "$dir/tallyd-1.pid")" 2>/dev/null || {
    tail -n 20 "$dir/logs/tallyd-1.log" >&2; echo "quickstart: tallyd exited" >&2; exit 1; }
  ((SECONDS < deadline)) || { echo "quickstart: tallyd not ready in 60 s" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG

Tally is running.
  gRPC endpoint  127.0.0.1:$port     (logs: $dir/logs)
  Kafka broker   $bootstrap

Try:
  $TALLY_TOOLS_BIN/grpcurl -plaintext 127.0.0.1:$port list
  $TALLY_TOOLS_BIN/grpcurl -plaintext 127.0.0.1:$port grpc.health.v1.Health/Check

Stop everything:
  $root/deploy/local/down.sh
MSG
