#!/usr/bin/env bash
# tallyd refuses a bad config with exit code 2 and a message naming the field, and --help tells
# how to run it.
#   tallyd_config_test.sh TALLYD
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tallyd="$1"

"$tallyd" --help > "$E2E_DIR/help" 2>&1 || true
grep -q -- '--config' "$E2E_DIR/help" || fail "--help does not mention --config"
grep -q -- '--node_id' "$E2E_DIR/help" || fail "--help does not mention --node_id"

expect_refused() {  # CONFIG_TEXT EXPECTED_MESSAGE
  printf '%s\n' "$1" > "$E2E_DIR/bad.textproto"
  local rc=0
  "$tallyd" --config="$E2E_DIR/bad.textproto" > "$E2E_DIR/bad.log" 2>&1 || rc=$?
  [[ $rc == 2 ]] || fail "expected exit 2 for bad config, got $rc: $(cat "$E2E_DIR/bad.log")"
  grep -qF -- "$2" "$E2E_DIR/bad.log" || fail "expected '$2' in: $(cat "$E2E_DIR/bad.log")"
}
write_config "$E2E_DIR/good.textproto" "e2e-config-$$"
good="$(cat "$E2E_DIR/good.textproto")"
expect_refused "${good/partitions: 3/partitions: 0}" "scenarios[0].partitions: must be in [1, 10000], got 0"
expect_refused "${good/app_id: \"e2e-config-$$\"/app_id: \"Bad App\"}" "app_id: must be"
expect_refused "$good
bogus_field: 1" "bogus_field"
rc=0; "$tallyd" > "$E2E_DIR/none.log" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "no --config: expected exit 2, got $rc"
grep -q -- '--config is required' "$E2E_DIR/none.log" || fail "no --config: no clear message"
# A scenario whose topics exist with another partition count is a clear start-up error.
app="e2e-mismatch-$$"
write_config "$E2E_DIR/three.textproto" "$app" \
  "node { enabled: true data_dir: \"$E2E_DIR/data\" node_id: \"n1\" }"
start_tallyd first "$tallyd" "$E2E_DIR/three.textproto"   # creates the topics, 3 partitions
kill -TERM "$PID_first"; wait "$PID_first" || fail "first tallyd did not stop cleanly"
sed 's/partitions: 3/partitions: 6/' "$E2E_DIR/three.textproto" > "$E2E_DIR/six.textproto"
rc=0
"$tallyd" --config="$E2E_DIR/six.textproto" > "$E2E_DIR/six.log" 2>&1 || rc=$?
[[ $rc == 1 ]] || fail "partition mismatch: expected exit 1, got $rc: $(cat "$E2E_DIR/six.log")"
grep -qF "$app.demo.reports\\\" has 3 partitions, the config says 6" "$E2E_DIR/six.log" ||
  fail "partition mismatch not named: $(cat "$E2E_DIR/six.log")"
echo "PASS"
