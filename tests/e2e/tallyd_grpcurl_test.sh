#!/usr/bin/env bash
# An operator's first contact: tallyd lists its services through reflection, answers a health
# check, and stops cleanly (exit 0) on SIGTERM.
#   tallyd_grpcurl_test.sh TALLYD
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tallyd="$1"

write_config "$E2E_DIR/tallyd.textproto" "e2e-grpcurl-$$"
start_tallyd a "$tallyd" "$E2E_DIR/tallyd.textproto"

services="$("$GRPCURL" -plaintext "$ADDR_a" list)"
echo "$services"
grep -qx 'grpc.health.v1.Health' <<<"$services" || fail "grpc.health.v1.Health not listed"
grep -qx 'grpc.reflection.v1alpha.ServerReflection' <<<"$services" || fail "reflection not listed"

health="$("$GRPCURL" -plaintext "$ADDR_a" grpc.health.v1.Health/Check)"
echo "$health"
grep -q '"status": "SERVING"' <<<"$health" || fail "health check is not SERVING: $health"

# A bad method is a clear error, not a hang.
if "$GRPCURL" -plaintext "$ADDR_a" grpc.health.v1.Health/NoSuchMethod 2>"$E2E_DIR/err"; then
  fail "an unknown method succeeded"
fi

# Reflection follows server.disable_reflection.
sed 's/^server { listen_address: "127.0.0.1:0"/& disable_reflection: true/' \
  "$E2E_DIR/tallyd.textproto" > "$E2E_DIR/noreflect.textproto"
start_tallyd b "$tallyd" "$E2E_DIR/noreflect.textproto"
if "$GRPCURL" -plaintext "$ADDR_b" list >"$E2E_DIR/noreflect.out" 2>&1; then
  fail "reflection answered with server.disable_reflection: $(cat "$E2E_DIR/noreflect.out")"
fi
grep -qi "reflection" "$E2E_DIR/noreflect.out" || fail "unexpected error without reflection: $(cat "$E2E_DIR/noreflect.out")"

kill -TERM "$PID_a"
rc=0
for _ in $(seq 100); do kill -0 "$PID_a" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID_a" 2>/dev/null && fail "tallyd still runs 10 s after SIGTERM"
wait "$PID_a" || rc=$?
[[ $rc == 0 ]] || { cat "$E2E_DIR/a.log" >&2; fail "tallyd exited $rc after SIGTERM"; }
grep -q 'msg="tallyd stopped"' "$E2E_DIR/a.log" || fail "no clean-stop log line"
echo "PASS"
