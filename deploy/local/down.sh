#!/usr/bin/env bash
# Stops everything deploy/local/quickstart.sh started: the agents, then the tallyd processes,
# then the broker. Data and logs stay in the quickstart dir until the next quickstart run.
# The dir: ${TALLY_QUICKSTART_DIR:-$HOME/.local/state/tally/quickstart}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${TALLY_QUICKSTART_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/tally/quickstart}"
[[ -d "$dir" ]] || { echo "down: nothing to stop ($dir does not exist)"; exit 0; }

stop_pids() {  # PIDFILE...: SIGTERM to all, wait up to 15 s for all, then SIGKILL what is left
  local pidfile pid pids=()
  for pidfile in "$@"; do
    pid="$(cat "$pidfile" 2>/dev/null)" || continue
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for _ in $(seq 150); do
    local left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$@"
}
shopt -s nullglob
stop_pids "$dir"/agent-*.pid
stop_pids "$dir"/tallyd-*.pid
[[ ! -d "$dir/kafka" ]] || "$root/deploy/kafka/kafka.sh" stop --dir "$dir/kafka"
echo "down: stopped (data and logs kept in $dir)"
