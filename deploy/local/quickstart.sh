#!/usr/bin/env bash
# Starts a local Tally demo you can query at once: a real Kafka 3.9 broker, three tallyd
# processes (node-1..node-3, each running the node and the router role) and five tally-agent
# sidecars (agent-1..agent-5) voting on object site-42 of scenario site-under-attack (majority
# reducer). Each agent's file check reads AGENTDIR/agent-N/state; edit those files to change
# the votes.
#   deploy/local/quickstart.sh     # installs what is missing, builds, starts, prints commands
#   deploy/local/down.sh           # stops everything it started
# Public gRPC endpoints: 127.0.0.1:${TALLY_PORT:-7070}, +1 and +2 (node-1..node-3); broker:
# 127.0.0.1:${TALLY_KAFKA_PORT:-9092}. Returns once the majority state of site-42 is served. A
# second run stops the previous cluster and starts afresh.
# State and logs: ${TALLY_QUICKSTART_DIR:-$HOME/.local/state/tally/quickstart}.
# Build dir: ${TALLY_BUILD_DIR:-<repo>/build}; TALLY_QUICKSTART_BUILD=0 skips the build and uses
# the binaries already there (tests do this).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
port="${TALLY_PORT:-7070}"
kafka_port="${TALLY_KAFKA_PORT:-9092}"
dir="${TALLY_QUICKSTART_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/tally/quickstart}"
build="${TALLY_BUILD_DIR:-$root/build}"
down="$root/deploy/local/down.sh"
[[ -z "${TALLY_QUICKSTART_DIR:-}" ]] || down="TALLY_QUICKSTART_DIR=$dir $down"
export TALLY_QUICKSTART_DIR="$dir"   # for down.sh

scenario="site-under-attack"
object="site-42"
partitions=6
nodes=(1 2 3)
agents=(1 2 3 4 5)
node_ports=("$port" "$((port + 1))" "$((port + 2))")
routers="127.0.0.1:${node_ports[0]},127.0.0.1:${node_ports[1]},127.0.0.1:${node_ports[2]}"

say() { echo "quickstart: $*" >&2; }

source "$root/deploy/install-deps.sh"
if [[ "${TALLY_QUICKSTART_BUILD:-1}" != 0 ]]; then
  if [[ -f "$build/CMakeCache.txt" ]]; then
    cmake -S "$root" -B "$build" >/dev/null   # keep the tree's generator and build type
  else
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build" --target tallyd tally-agent tallyctl
fi
tallyd="$build/server/tallyd/tallyd"
agent="$build/agent/tally-agent"
tallyctl="$build/client/tallyctl/tallyctl"
grpcurl="$TALLY_TOOLS_BIN/grpcurl"
for bin in "$tallyd" "$agent" "$tallyctl" "$grpcurl"; do
  [[ -x "$bin" ]] || { say "$bin is missing (build dir $build)"; exit 1; }
done

"$root/deploy/local/down.sh" >/dev/null 2>&1 || true
# The dir is wiped (shard dirs of an older schema would not open); refuse a dir that is neither
# empty nor a quickstart dir, so a mistyped TALLY_QUICKSTART_DIR cannot remove anything else.
if [[ -d "$dir" && -n "$(ls -A "$dir")" && ! -e "$dir/.tally-quickstart" &&
      ! -e "$dir/tallyd.textproto" ]]; then
  say "$dir is not empty and not a quickstart dir; set TALLY_QUICKSTART_DIR"; exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/logs"
touch "$dir/.tally-quickstart"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free "$kafka_port" || { say "port $kafka_port is in use (set TALLY_KAFKA_PORT)"; exit 1; }
for p in "${node_ports[@]}"; do
  port_free "$p" || { say "port $p is in use (set TALLY_PORT; the nodes use it, +1 and +2)"; exit 1; }
done

# From here on a failure stops what was started (data and logs stay for a look).
started=0
on_exit() {
  local rc=$?
  if ((rc != 0 && started)); then
    say "failed; logs are in $dir/logs; stopping what was started"
    "$root/deploy/local/down.sh" >/dev/null 2>&1 || true
  fi
}
trap on_exit EXIT

# alive: every process started so far still runs; else shows the end of its log and fails.
alive() {
  local pidfile name
  for pidfile in "$dir"/tallyd-*.pid "$dir"/agent-*.pid; do
    [[ -f "$pidfile" ]] || continue
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      name="$(basename "$pidfile" .pid)"
      tail -n 20 "$dir/logs/$name.log" >&2
      say "$name exited (log: $dir/logs/$name.log)"
      return 1
    fi
  done
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, while every process lives.
wait_until() {
  local seconds="$1" what="$2" deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    alive || exit 1
    ((SECONDS < deadline)) || { say "$what: not reached within $seconds s"; exit 1; }
    sleep 0.2
  done
}

started=1
bootstrap="$("$root/deploy/kafka/kafka.sh" start --dir "$dir/kafka" --port "$kafka_port")"
say "Kafka broker at $bootstrap"

# One config for the three nodes; node id, listen address and data dir come from flags.
cat > "$dir/tallyd.textproto" <<CFG
# Quickstart cluster config (tally.config.v1.Config, textproto).
app_id: "quickstart"
kafka { bootstrap_servers: "$bootstrap" replication_factor: 1 }
scenarios {
  name: "$scenario"
  partitions: $partitions
  # A strict majority of the live votes wins; fewer than 3 live votes: no winner (the state
  # stays what it was).
  reducer { majority { min_votes: 3 } }
  default_ttl { seconds: 60 }
  # Every partition keeps a warm copy on one other node: reads with max_lag are answered
  # from it while the owner is down, and it takes over replaying only its lag.
  standby_replicas: 1
}
node { enabled: true }
router { enabled: true }
CFG

for n in "${nodes[@]}"; do
  rm -f "$dir/tallyd-$n.ready"
  setsid "$tallyd" --config="$dir/tallyd.textproto" --node_id="node-$n" \
    --listen="127.0.0.1:${node_ports[n - 1]}" --data_dir="$dir/data/node-$n" \
    --ready_file="$dir/tallyd-$n.ready" > "$dir/logs/tallyd-$n.log" 2>&1 < /dev/null &
  echo $! > "$dir/tallyd-$n.pid"
done
all_listening() {
  local n
  for n in "${nodes[@]}"; do [[ -s "$dir/tallyd-$n.ready" ]] || return 1; done
}
wait_until 60 "tallyd node-1..node-3 listening" all_listening
say "tallyd node-1..node-3 listening on ${routers//,/ }"

# The cluster is up when DescribeCluster shows the three nodes alive and every partition of the
# scenario ACTIVE on one of them.
cluster_ready() {
  "$tallyctl" --routers="$routers" --timeout=3s -o json describe 2>/dev/null |
    python3 -c 'import json, sys
d = json.loads(sys.stdin.read() or "{}")
alive = {n["id"] for n in d.get("nodes", []) if n.get("alive")}
parts = [p for p in d.get("partitions", []) if p.get("scenario") == sys.argv[1]]
sys.exit(0 if len(alive) == 3 and len(parts) == int(sys.argv[2]) and
         all(p.get("status") == "ACTIVE" and p.get("activeNode") in alive for p in parts) else 1)' \
      "$scenario" "$partitions"
}
wait_until 90 "all $partitions partitions ACTIVE on live nodes" cluster_ready
say "cluster ready: 3 nodes, $partitions partitions ACTIVE"

# Five agents, each with a file check. agent-5 alone sees an attack: the majority says calm.
# Two more agents saying attack make it 3 of 5, and the state flips.
for a in "${agents[@]}"; do
  adir="$dir/agents/agent-$a"
  mkdir -p "$adir/spool"
  if ((a == 5)); then echo attack > "$adir/state"; else echo calm > "$adir/state"; fi
  # Each agent starts at a different router; all three are in its list for fail-over.
  first=$(((a - 1) % 3))
  list=""
  for i in 0 1 2; do
    list+="${list:+, }\"127.0.0.1:${node_ports[(first + i) % 3]}\""
  done
  cat > "$adir/agent.textproto" <<CFG
# tally-agent config (tally.agent.v1.AgentConfig, textproto).
agent_id: "agent-$a"
routers: [$list]
spool { dir: "$adir/spool" }
interval { seconds: 1 }   # checks every second, so a changed file is reported within ~1 s
ttl { seconds: 30 }       # a stopped agent's vote lapses after 30 s
watches {
  scenario: "$scenario"
  object_key: "$object"
  check { file { path: "$adir/state" } }
}
CFG
  setsid "$agent" --config="$adir/agent.textproto" > "$dir/logs/agent-$a.log" 2>&1 < /dev/null &
  echo $! > "$dir/agent-$a.pid"
done

# state_is STATE VOTES: site-42's state is STATE, computed from VOTES live votes.
state_is() {
  "$tallyctl" --routers="$routers" --timeout=3s -o json get "$scenario" "$object" 2>/dev/null |
    python3 -c 'import json, sys
d = json.loads(sys.stdin.read() or "{}").get("state", {})
sys.exit(0 if d.get("state") == sys.argv[1] and
         sum(d.get("tally", {}).values()) == int(sys.argv[2]) else 1)' "$1" "$2"
}
wait_until 60 "state of $object computed from 5 votes" state_is calm 5
trap - EXIT

ctl="$tallyctl --routers=$routers"
a="$dir/agents"
cat <<MSG

Tally is running: 3 tallyd nodes (node and router roles), 5 agents, a Kafka broker.
  gRPC endpoints  $routers  (node-1..node-3)
  Kafka broker    $bootstrap
  logs            $dir/logs
  agent files     $a/agent-{1..5}/state

Agents agent-1..agent-4 report "calm" and agent-5 reports "attack", each read from its state
file every second. Scenario $scenario uses a majority reducer, so $object is "calm":

$("$tallyctl" --routers="$routers" get "$scenario" "$object" 2>&1 | sed 's/^/  /')

Watch $object change (in a second terminal):
  $ctl watch $scenario $object

Flip the majority: two more agents see an attack (3 of 5), and the state becomes "attack":
  echo attack > $a/agent-1/state; echo attack > $a/agent-2/state
and back:
  echo calm > $a/agent-1/state; echo calm > $a/agent-2/state

Look around:
  $ctl get $scenario $object
  $ctl list $scenario
  $ctl describe
  $ctl -o json get $scenario $object

With grpcurl (server reflection, no .proto files needed):
  $grpcurl -plaintext 127.0.0.1:$port list
  $grpcurl -plaintext -d '{"scenario":"$scenario","object_key":"$object"}' 127.0.0.1:$port tally.v1.StateService/GetState
  $grpcurl -plaintext 127.0.0.1:$((port + 1)) tally.v1.AdminService/DescribeCluster

Stop everything:
  $down
MSG
