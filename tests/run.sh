#!/usr/bin/env bash
# Runs every Tally test against a real Kafka broker, from any working directory:
#   1. installs what is missing (deploy/install-deps.sh: Debian packages, Kafka jars, grpcurl),
#   2. configures and builds (build dir: $TALLY_BUILD_DIR, default <repo>/build),
#   3. starts one Kafka 3.9 broker (KRaft, 127.0.0.1, a free port, a temp dir),
#   4. runs every test through ctest, with TALLY_KAFKA_BOOTSTRAP pointing at the broker,
#   5. runs every libFuzzer target for TALLY_FUZZ_SECONDS (default 20) each (tests/fuzz/run.sh;
#      skipped only when ctest arguments select a subset, or with TALLY_FUZZ_SECONDS=0),
#   6. stops the broker and removes its temp dir, also on failure or Ctrl-C.
# Exits non-zero if anything fails. Extra arguments go to ctest (e.g. -R shard -V).
# TALLY_SANITIZE=asan|tsan builds with the sanitizer (in build-asan / build-tsan).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS

source "$root/deploy/install-deps.sh"

cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
build="${TALLY_BUILD_DIR:-$root/build}"
case "${TALLY_SANITIZE:-}" in
  "") ;;
  asan) cmake_args+=(-DTALLY_ASAN=ON); build="${TALLY_BUILD_DIR:-$root/build-asan}" ;;
  tsan) cmake_args+=(-DTALLY_TSAN=ON); build="${TALLY_BUILD_DIR:-$root/build-tsan}" ;;
  *) echo "run.sh: TALLY_SANITIZE must be asan or tsan" >&2; exit 2 ;;
esac
echo "run.sh: building in $build" >&2
cmake -S "$root" -B "$build" "${cmake_args[@]}" >/dev/null
cmake --build "$build"
echo "run.sh: build done after $((SECONDS - start)) s" >&2

work="$(mktemp -d -t tally-tests.XXXXXX)"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$root/deploy/kafka/kafka.sh" stop --dir "$work/kafka" || true
  if ((rc != 0)) && [[ -f "$work/kafka/broker.log" ]]; then
    mkdir -p "$build/test-logs" && cp "$work/kafka/broker.log" "$build/test-logs/" || true
    echo "run.sh: broker log kept in $build/test-logs/broker.log" >&2
  fi
  rm -rf "$work"
  echo "run.sh: finished in $((SECONDS - start)) s, exit $rc" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TALLY_KAFKA_BOOTSTRAP="$("$root/deploy/kafka/kafka.sh" start --dir "$work/kafka")"
export TALLY_KAFKA_BOOTSTRAP TALLY_KAFKA_DIR="$work/kafka" TALLY_ROOT="$root" TALLY_BUILD_DIR="$build"
echo "run.sh: Kafka broker at $TALLY_KAFKA_BOOTSTRAP" >&2

cd "$build"
ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@"
if (($# == 0)) && [[ "${TALLY_FUZZ_SECONDS:-20}" != 0 ]]; then
  "$root/tests/fuzz/run.sh" "${TALLY_FUZZ_SECONDS:-20}"
fi
