#!/usr/bin/env bash
# Runs Tally's benchmarks against a real Kafka broker started for the run, and writes the
# figures to tests/bench/results/<name>.md. Benchmarks print figures; they do not fail on a slow
# machine. Arguments: RESTORE_OBJECTS (default 1000000), RUNS (default 3; each figure is the
# median of its runs). TALLY_BENCH=restore|watch|all (default all); the watch benchmark takes
# WATCHERS (default 10000), WATCH_EVENTS (100) and WATCH_PACE_MS (200) from the environment.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/deploy/install-deps.sh"
build="${TALLY_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target restore_bench watch_bench
work="$(mktemp -d -t tally-bench.XXXXXX)"
trap '"$root/deploy/kafka/kafka.sh" stop --dir "$work/kafka" || true; rm -rf "$work"' EXIT
bootstrap="$("$root/deploy/kafka/kafka.sh" start --dir "$work/kafka")"
mkdir -p "$root/tests/bench/results"
which="${TALLY_BENCH:-all}"
header() {
  echo "# $1 ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the broker runs on the same machine)."
  echo
}
if [[ "$which" == watch || "$which" == all ]]; then
  { header "WatchState fan-out"
    "$build/tests/bench/watch_bench" "$bootstrap" "${WATCHERS:-10000}" "${WATCH_EVENTS:-100}" \
      "${WATCH_PACE_MS:-200}" 2> "$work/watch_bench.log"
  } | tee "$root/tests/bench/results/watch.md"
fi
[[ "$which" == restore || "$which" == all ]] || exit 0
out="$root/tests/bench/results/restore.md"
{
  echo "# Restore ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the broker runs on the same machine)."
  echo
  "$build/tests/bench/restore_bench" "$bootstrap" "${1:-1000000}" "${2:-3}"
} | tee "$out"
