#!/usr/bin/env bash
# The newcomer's path through deploy/local/quickstart.sh and down.sh, in a temp dir on free
# ports (never ~/.local/state, 7070 or 9092): the quickstart starts its own broker, three tallyd
# nodes and five agents; the majority state of site-42 is served when it returns and the
# commands it prints work as pasted; a second run replaces the first cluster; changing two
# agents' files flips the state, and a `tallyctl watch` started before shows the change; down.sh
# stops every process.
#   quickstart_test.sh BUILD_DIR    (a built tree: the test does not build)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-}"
[[ -n "$build" && -x "$build/client/tallyctl/tallyctl" ]] ||
  fail "usage: $0 BUILD_DIR (a tree with tallyd, tally-agent and tallyctl built)"
build="$(cd "$build" && pwd)"
tallyctl="$build/client/tallyctl/tallyctl"

qs="$E2E_DIR/quickstart"
step() { echo; echo "== $*"; }
ok() { echo "   ok: $*"; }

# On any exit: stop what the quickstart started (a failed test must not leave a cluster), show
# the end of its logs on failure, then lib.sh's clean-up removes the temp dir.
trap 'rc=$?; TALLY_QUICKSTART_DIR="$qs" "$root/deploy/local/down.sh" >/dev/null 2>&1 || true
  if ((rc)); then for f in "$E2E_DIR"/*.out "$qs"/logs/*.log; do [[ -f "$f" ]] || continue;
  echo "--- tail of $f" >&2; tail -n 25 "$f" >&2; done; fi; e2e_cleanup' EXIT

# free_ports: a base port P with P, P+1, P+2 free, and one more free port for the broker.
free_ports() {
  python3 - <<'PY'
import socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
    if base + 3 < 65536 and all(free(base + i) for i in range(4)):
        print(base, base + 3); break
PY
}
read -r port kafka_port < <(free_ports)
routers="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
export TALLY_QUICKSTART_DIR="$qs" TALLY_PORT="$port" TALLY_KAFKA_PORT="$kafka_port"
export TALLY_BUILD_DIR="$build" TALLY_QUICKSTART_BUILD=0
export XDG_STATE_HOME="$E2E_DIR/xdg-state"   # were the dir ignored, nothing lands in ~/.local

# quickstart N: runs deploy/local/quickstart.sh; its stdout goes to $E2E_DIR/quickstart-N.out.
quickstart() {
  local started=$SECONDS rc=0
  "$root/deploy/local/quickstart.sh" > "$E2E_DIR/quickstart-$1.out" 2> "$E2E_DIR/quickstart-$1.err" ||
    rc=$?
  ((rc == 0)) || { cat "$E2E_DIR/quickstart-$1.err" >&2; fail "quickstart.sh exited $rc"; }
  ok "quickstart.sh returned after $((SECONDS - started)) s (ports $port-$((port + 2)), broker $kafka_port)"
}

# get_json: site-42 as tallyctl -o json prints it.
get_json() { "$tallyctl" --routers="$routers" --timeout=5s -o json get site-under-attack site-42; }

# state_is STATE TALLY: site-42's state is STATE and its tally is TALLY (JSON, e.g. {"calm": 4}).
state_is() {
  get_json 2>/dev/null | python3 -c 'import json, sys
s = json.loads(sys.stdin.read() or "{}").get("state", {})
sys.exit(0 if s.get("state") == sys.argv[1] and s.get("tally") == json.loads(sys.argv[2]) else 1)' \
    "$1" "$2"
}

pids() { cat "$qs"/tallyd-*.pid "$qs"/agent-*.pid 2>/dev/null || true; }

step "quickstart.sh: broker, 3 tallyd nodes, 5 agents"
quickstart 1
for f in "$qs"/tallyd-{1,2,3}.pid "$qs"/agent-{1,2,3,4,5}.pid "$qs"/kafka/kafka.pid; do
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null || fail "$f: no running process"
done
ok "tallyd-1..3, agent-1..5 and the broker run"
[[ ! -e "$XDG_STATE_HOME" ]] || fail "quickstart wrote to \$XDG_STATE_HOME despite TALLY_QUICKSTART_DIR"
state_is calm '{"calm": 4, "attack": 1}' || fail "site-42 is not calm 4:1 when quickstart returns: $(get_json 2>&1)"
ok "site-42 is calm by majority (calm=4 attack=1) at once"

step "a second run stops the first cluster and starts afresh"
first_pids="$(pids)"
quickstart 2
for pid in $first_pids; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid of the first run still runs"
done
ok "every process of the first run is gone"
state_is calm '{"calm": 4, "attack": 1}' || fail "site-42 after the second run: $(get_json 2>&1)"
version="$(get_json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["version"])')"
[[ "$version" == 1 ]] || fail "site-42 has version $version after a fresh start, expected 1"
ok "site-42 is calm again, version 1 (fresh data)"

step "the printed commands work as pasted"
out="$E2E_DIR/quickstart-2.out"
grep -q "down.sh" "$out" || fail "no down.sh command printed"
ran=0
while IFS= read -r line; do
  cmd="${line#"${line%%[![:space:]]*}"}"   # strip leading blanks
  case "$cmd" in
    "$tallyctl "*" get "*|"$tallyctl "*" describe"|"$tallyctl "*" list "*|*"/grpcurl "*) ;;
    *) continue ;;
  esac
  echo "   \$ $cmd"
  eval "$cmd" > "$E2E_DIR/pasted.out" 2>&1 || fail "printed command failed: $cmd: $(cat "$E2E_DIR/pasted.out")"
  case "$cmd" in
    *" get "*|*GetState) grep -q attack "$E2E_DIR/pasted.out" && grep -q calm "$E2E_DIR/pasted.out" ||
      fail "$cmd: no votes in: $(cat "$E2E_DIR/pasted.out")" ;;
    *" list") grep -q "tally.v1.StateService" "$E2E_DIR/pasted.out" || fail "$cmd: no StateService" ;;
    *DescribeCluster|*" describe") grep -q "node-3" "$E2E_DIR/pasted.out" || fail "$cmd: no node-3" ;;
  esac
  ran=$((ran + 1))
done < "$out"
((ran >= 7)) || fail "expected at least 7 tallyctl/grpcurl commands in the output, ran $ran"
ok "$ran printed tallyctl and grpcurl commands"

step "flip: two agents' files say attack; a watch started before sees the change"
# Watch through node-2's router only, so its DescribeCluster shows when the stream is open.
"$tallyctl" --routers="127.0.0.1:$((port + 1))" -o json watch site-under-attack site-42 \
  --count 1 --for 60s > "$E2E_DIR/watch.out" 2> "$E2E_DIR/watch.err" &
watch_pid=$!
E2E_PIDS+=("$watch_pid")
watching() {
  "$GRPCURL" -plaintext -max-time 5 "127.0.0.1:$((port + 1))" tally.v1.AdminService/DescribeCluster |
    python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("watch", {}).get("watchers", 0) >= 1 else 1)'
}
wait_for 20 "the watch stream to be open on node-2" watching
ok "watch open"
flip_started=$SECONDS
echo attack > "$qs/agents/agent-1/state"
echo attack > "$qs/agents/agent-2/state"
wait_for 30 "site-42 to become attack (3 of 5)" state_is attack '{"calm": 2, "attack": 3}'
ok "site-42 is attack (attack=3 calm=2) $((SECONDS - flip_started)) s after the files changed"
deadline=$((SECONDS + 30))
while kill -0 "$watch_pid" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "tallyctl watch --count 1 did not end within 30 s of the flip"
  sleep 0.1
done
rc=0; wait "$watch_pid" || rc=$?
((rc == 0)) || fail "tallyctl watch exited $rc: $(cat "$E2E_DIR/watch.err")"
python3 -c 'import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
changes = [l["change"] for l in lines if "change" in l]
sys.exit(0 if len(changes) == 1 and changes[0].get("oldState") == "calm" and
         changes[0].get("newState") == "attack" and changes[0].get("objectKey") == "site-42" else 1)' \
  "$E2E_DIR/watch.out" || fail "watch output is not one change calm -> attack: $(cat "$E2E_DIR/watch.out")"
ok "tallyctl watch printed the change calm -> attack and exited 0"

step "and back: the files say calm again"
echo calm > "$qs/agents/agent-1/state"
echo calm > "$qs/agents/agent-2/state"
wait_for 30 "site-42 to become calm again" state_is calm '{"calm": 4, "attack": 1}'
ok "site-42 is calm again"

step "down.sh stops everything"
last_pids="$(pids)"
[[ -n "$last_pids" ]] || fail "no pid files"
broker_pid="$(cat "$qs/kafka/kafka.pid")"
"$root/deploy/local/down.sh" > "$E2E_DIR/down.out" 2>&1 || fail "down.sh failed: $(cat "$E2E_DIR/down.out")"
for pid in $last_pids $broker_pid; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs after down.sh"
done
left="$(ls "$qs"/*.pid "$qs"/kafka/kafka.pid 2>/dev/null || true)"
[[ -z "$left" ]] || fail "pid files left: $left"
for p in "$port" "$((port + 1))" "$((port + 2))" "$kafka_port"; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || fail "port $p still accepts connections"
done
ok "no tallyd, tally-agent or broker process left; ports closed"
echo; echo "PASS"
