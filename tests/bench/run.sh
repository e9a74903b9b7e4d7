#!/usr/bin/env bash
# Runs Tally's benchmarks against a real Kafka broker started for the run (and stopped after it),
# and writes the figures to tests/bench/results/<name>.md and plots to tests/bench/results/*.png.
# Benchmarks print figures; they do not fail on a slow machine. Installs what it needs and is
# missing: what deploy/install-deps.sh installs, ghz (pinned, go install, into the same tool
# cache as grpcurl) and gnuplot (Debian).
#
#   tests/bench/run.sh [RESTORE_OBJECTS=1000000] [RUNS=3]
#
# TALLY_BENCH selects the benchmarks, comma-separated (default all):
#   ingest    ReportStates and ReportBatch → applied, 1 and 3 nodes, and report-to-visible
#             latency at half load (INGEST_REPORTS a phase, default 1000000)
#   read      GetState through the router, at the owner, and ShardService.Get, with the C++ load
#             generator and ghz (READ_OBJECTS 100000, READ_RATE 20000, READ_SECONDS 8)
#   list      ListState paging through LIST_OBJECTS (1000000) objects; the node's memory
#   failover  SIGKILL of an owner → first fresh read and first max_lag read (FAILOVER_RUNS 3)
#   restore   changelog → shard, RESTORE_OBJECTS objects, median of RUNS runs
#   watch     WatchState fan-out: WATCHERS (10000) each following every object, then each one
#             of 50 objects; WATCH_EVENTS (100), WATCH_PACE_MS (200)
#   memory    memory.md (node and router memory), put together from list.md and watch.md; also
#             rewritten after list or watch
# TALLY_BUILD_DIR: the build directory (default build/ under the repository).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/deploy/install-deps.sh"
GHZ_VERSION=v0.120.0
if [[ ! -x "$TALLY_TOOLS_BIN/ghz" || "$(cat "$TALLY_TOOLS_BIN/.ghz-version" 2>/dev/null)" != "$GHZ_VERSION" ]]; then
  echo "bench: go install ghz@$GHZ_VERSION" >&2
  GOBIN="$TALLY_TOOLS_BIN" GOFLAGS=-mod=mod go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION" >&2
  echo "$GHZ_VERSION" > "$TALLY_TOOLS_BIN/.ghz-version"
fi
if ! command -v gnuplot >/dev/null; then
  echo "bench: installing gnuplot-nox" >&2
  _sudo=""; [[ $(id -u) == 0 ]] || _sudo="sudo"
  $_sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -q --no-install-recommends gnuplot-nox >&2
fi

build="${TALLY_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target tallyd restore_bench watch_bench ingest_bench read_bench \
  list_bench failover_bench
work="$(mktemp -d -t tally-bench.XXXXXX)"
trap '"$root/deploy/kafka/kafka.sh" stop --dir "$work/kafka" || true; rm -rf "$work"' EXIT
bootstrap="$("$root/deploy/kafka/kafka.sh" start --dir "$work/kafka")"
results="$root/tests/bench/results"
mkdir -p "$results"
which=",${TALLY_BENCH:-all},"
selected() { [[ "$which" == *",$1,"* || "$which" == *",all,"* ]]; }

header() {
  echo "# $1 ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the broker runs on the same machine)."
  echo
}

# One benchmark: header, then its output; the table goes to results/NAME.md, its log to $work.
bench() {
  local name="$1" title="$2"; shift 2
  echo "bench: $name" >&2
  { header "$title"; "$@" 2> "$work/$name.log"; } > "$work/$name.md" || {
    echo "bench: $name failed; its log:" >&2; tail -50 "$work/$name.log" >&2; return 0; }
  cp "$work/$name.md" "$results/$name.md"
  cat "$results/$name.md"
}

# Bar chart of the numeric column COLUMN of the first markdown table in FILE, one bar a row.
plot_table() {
  local file="$1" column="$2" ylabel="$3" png="$4" dat="$work/$(basename "$4").dat"
  awk -F'|' -v c="$((column + 1))" '/^\|/ { seen = 1 } seen && !/^\|/ { exit }
    /^\| / && $2 !~ /^ *figure/ {
      v = $c; gsub(/[ ,]/, "", v); if (v ~ /^[0-9.]+$/) {
        l = $2; gsub(/^ +| +$/, "", l); gsub(/"/, "", l); if (length(l) > 60) l = substr(l, 1, 57) "...";
        printf "\"%s\" %s\n", l, v } }' "$file" > "$dat"
  [[ -s "$dat" ]] || return 0
  gnuplot <<EOF
set terminal png size 1100,650 font ",9"
set output "$png"
set style fill solid 0.6
set boxwidth 0.6
set ylabel "$ylabel"
set yrange [0:*]
set xtics rotate by -25 left
set bmargin 12
set rmargin 12
set grid ytics
set offsets 0, 0, graph 0.08, 0
unset key
set title "$(head -1 "$file" | sed 's/^# //; s/"//g')"
set format y "%.6g"
plot "$dat" using 0:2:xtic(1) with boxes, \
     "" using 0:2:(\$2 >= 100 ? sprintf("%.0f", \$2) : sprintf("%.2f", \$2)) with labels offset 0,0.8
EOF
}

if selected ingest; then
  bench ingest "Ingest: ReportStates and ReportBatch through the router to applied state" \
    "$build/tests/bench/ingest_bench" "$bootstrap" "$work" "${INGEST_REPORTS:-1000000}"
  plot_table "$results/ingest.md" 2 "reports/s" "$results/ingest.png"
  if [[ -s "$work/ingest_latency_1.dat" ]]; then
    gnuplot <<EOF
set terminal png size 900,500 font ",9"
set output "$results/ingest_latency.png"
set title "Report-to-visible latency at half the 1-node maximum"
set xlabel "percentile"; set ylabel "ms"; set grid; set key left top
plot "$work/ingest_latency_1.dat" using 1:2 with lines lw 2 title "1 node", \
     "$work/ingest_latency_3.dat" using 1:2 with lines lw 2 title "3 nodes"
EOF
  fi
fi
if selected read; then
  (cd "$root" && bench read "Point reads: GetState" "$build/tests/bench/read_bench" "$bootstrap" \
    "$TALLY_TOOLS_BIN/ghz" "${READ_OBJECTS:-100000}" "${READ_RATE:-20000}" "${READ_SECONDS:-8}")
  plot_table "$results/read.md" 2 "calls/s (closed loop)" "$results/read.png"
  plot_table "$results/read.md" 5 "p99 µs at ${READ_RATE:-20000}/s" "$results/read_p99.png"
fi
if selected list; then
  bench list "Listing: ListState paging through every object" \
    "$build/tests/bench/list_bench" "$bootstrap" "${LIST_OBJECTS:-1000000}"
  plot_table "$results/list.md" 3 "objects/s" "$results/list.png"
fi
if selected failover; then
  bench failover "Fail-over: SIGKILL of an owner to reads served again" \
    "$build/tests/bench/failover_bench" "$bootstrap" "${FAILOVER_RUNS:-3}"
  plot_table "$results/failover.md" 2 "seconds after SIGKILL" "$results/failover.png"
fi
if selected restore; then
  bench restore "Restore" "$build/tests/bench/restore_bench" "$bootstrap" "${1:-1000000}" "${2:-3}"
  plot_table "$results/restore.md" 2 "records/s" "$results/restore.png"
fi
if selected watch; then
  bench watch "WatchState fan-out" "$build/tests/bench/watch_bench" "$bootstrap" \
    "${WATCHERS:-10000}" "${WATCH_EVENTS:-100}" "${WATCH_PACE_MS:-200}"
fi
if selected list || selected watch || selected memory; then
  # "From list.md (date, cores, CPU): load average ..." for a result file's header.
  source_line() { echo "From $(basename "$1") $(sed -n '1s/^# [^(]*//p' "$1"): $(sed -n '3s/\.$//p' "$1" | sed 's/^L/l/')."; }
  { echo "# Memory (from list.md and watch.md of their latest runs)"
    echo
    if [[ -f "$results/list.md" ]]; then
      source_line "$results/list.md"; echo; grep -A4 '^| node memory' "$results/list.md"; echo
    fi
    if [[ -f "$results/watch.md" ]]; then
      source_line "$results/watch.md"; echo; grep -m1 -o 'Router memory.*' "$results/watch.md"
    fi
  } > "$results/memory.md"
  cat "$results/memory.md"
fi
