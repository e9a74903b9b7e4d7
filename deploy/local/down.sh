#!/usr/bin/env bash
# Stops everything deploy/local/quickstart.sh started (tallyd processes, then the broker).
# Data and logs stay in the quickstart dir until the next quickstart run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${TALLY_QUICKSTART_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/tally/quickstart}"
[[ -d "$dir" ]] || { echo "down: nothing to stop ($dir does not exist)"; exit 0; }

stop_pid() {  # PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
shopt -s nullglob
for pidfile in "$dir"/agent-*.pid "$dir"/tallyd-*.pid; do stop_pid "$pidfile"; done
"$root/deploy/kafka/kafka.sh" stop --dir "$dir/kafka"
echo "down: stopped (data and logs kept in $dir)"
