#!/usr/bin/env bash
# Builds the libFuzzer targets with clang, AddressSanitizer and UBSan, and runs each for a
# bounded time over its corpus (tests/fuzz/corpus/<target>, copied: new inputs stay out of the
# repository). Exits non-zero on the first crash, leak or sanitizer report.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET=20]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/deploy/install-deps.sh"
seconds="${1:-20}"
build="${TALLY_FUZZ_BUILD_DIR:-$root/build-fuzz}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DTALLY_ASAN=ON -DTALLY_FUZZ=ON >/dev/null
cmake --build "$build" --target fuzzers
work="$(mktemp -d -t tally-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT
for target in report_record_fuzz object_record_fuzz tokens_fuzz config_fuzz member_record_fuzz \
    change_event_fuzz; do
  mkdir -p "$work/$target"
  cp "$root/tests/fuzz/corpus/$target/"* "$work/$target/"
  echo "fuzz: $target for ${seconds}s" >&2
  if ! "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/$target-" "$work/$target" > "$work/$target.log" 2>&1; then
    tail -40 "$work/$target.log" >&2
    echo "fuzz: $target FAILED (the input is above; artifacts in $work are removed on exit)" >&2
    exit 1
  fi
  grep -E "^Done|#[0-9]+.*DONE" "$work/$target.log" | tail -1 >&2 || true
done
echo "fuzz: every target ran ${seconds}s without a finding" >&2
