#!/usr/bin/env bash
# An operator's session with grpcurl (reflection only, no .proto files) against a real 3-node
# cluster in separate processes: every tallyd runs the node and the router role, scenario "demo"
# has 6 partitions and a majority reducer. Checks DescribeCluster, write tokens and
# read-your-writes, majority states, routing to the partition owner from any node, ListState
# paging and prefixes, SetState pin/unpin, PurgeState, the errors an operator sees, the
# ReportStates stream, and ReportBatch.
#   router_grpcurl_test.sh TALLYD
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tallyd="$1"
[[ -x "$tallyd" ]] || fail "usage: $0 TALLYD (not executable: $tallyd)"

# On failure, show the end of every tallyd log before lib.sh removes them.
trap 'rc=$?; if ((rc)); then for f in "$E2E_DIR"/*.log; do [[ -f "$f" ]] || continue;
  echo "--- tail of $f" >&2; tail -n 25 "$f" >&2; done; fi; e2e_cleanup' EXIT

NODES=(n1 n2 n3)
PARTITIONS=6
app="e2e-router-$$-$(date +%s)"

step() { echo; echo "== $*"; }
ok() { echo "   ok: $*"; }

# --- grpcurl as an operator types it ---------------------------------------------------------

# rpc ADDR SERVICE/METHOD JSON: prints the answer (JSON); any error fails the test.
rpc() {
  local addr="$1" method="$2" body="$3" rc=0
  echo "   \$ grpcurl -plaintext -d '$body' $addr tally.v1.$method" >&2
  "$GRPCURL" -plaintext -max-time 20 -d "$body" "$addr" "tally.v1.$method" \
    > "$E2E_DIR/rpc.out" 2> "$E2E_DIR/rpc.err" || rc=$?
  ((rc == 0)) || fail "tally.v1.$method $body via $addr: exit $rc: $(cat "$E2E_DIR/rpc.err")"
  cat "$E2E_DIR/rpc.out"
}

# rpc_error ADDR SERVICE/METHOD JSON CODE TEXT: the call must fail with gRPC code CODE (grpcurl's
# name, e.g. NotFound), grpcurl must exit with 64 + the code's number, and the message must
# contain TEXT.
rpc_error() {
  local addr="$1" method="$2" body="$3" code="$4" text="$5" rc=0 number
  case "$code" in
    InvalidArgument) number=3 ;;
    NotFound) number=5 ;;
    FailedPrecondition) number=9 ;;
    *) fail "rpc_error: unknown code $code" ;;
  esac
  echo "   \$ grpcurl -plaintext -d '$body' $addr tally.v1.$method   # expect $code" >&2
  "$GRPCURL" -plaintext -max-time 20 -d "$body" "$addr" "tally.v1.$method" \
    > "$E2E_DIR/rpc.out" 2> "$E2E_DIR/rpc.err" || rc=$?
  local err; err="$(cat "$E2E_DIR/rpc.err")"
  ((rc != 0)) || fail "tally.v1.$method $body succeeded, expected $code: $(cat "$E2E_DIR/rpc.out")"
  grep -qx "  Code: $code" <<<"$err" || fail "tally.v1.$method $body: expected Code: $code, got: $err"
  ((rc == 64 + number)) || fail "tally.v1.$method $body: grpcurl exit $rc, expected $((64 + number))"
  grep -q "^  Message: .*$text" <<<"$err" || fail "tally.v1.$method $body: message does not name '$text': $err"
  ok "$code naming \"$text\": $(grep '^  Message: ' <<<"$err" | sed 's/^  Message: //')"
}

# --- JSON assertions (python3 is in deploy/install-deps.sh's packages) ------------------------

# jget JSON EXPR: prints EXPR, a Python expression over the answer `d` (strings bare, else JSON).
jget() {
  python3 -c 'import json, sys
d = json.loads(sys.argv[1]); v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))' "$1" "$2" ||
    fail "cannot evaluate $2 on: $1"
}

# check DESCRIPTION JSON EXPR: fails unless EXPR (Python, the answer is `d`) is true.
check() {
  local rc=0
  python3 -c 'import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)' "$2" "$3" 2> "$E2E_DIR/check.err" || rc=$?
  ((rc == 0)) || fail "$1: not true: $3 $(cat "$E2E_DIR/check.err")
answer: $2"
  ok "$1"
}

# partition_of KEY: murmur2(key) % partitions, the Java client's default partitioner, computed
# independently of tallyd (which uses librdkafka's).
partition_of() {
  python3 -c 'import sys
def murmur2(data):
    m, h = 0x5bd1e995, 0x9747b28c ^ len(data)
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xffffffff; k ^= k >> 24; k = (k * m) & 0xffffffff
        h = ((h * m) & 0xffffffff) ^ k
    rest = data[4 * n4:]
    if len(rest) >= 3: h ^= rest[2] << 16
    if len(rest) >= 2: h ^= rest[1] << 8
    if len(rest) >= 1: h ^= rest[0]; h = (h * m) & 0xffffffff
    h ^= h >> 13; h = (h * m) & 0xffffffff; h ^= h >> 15
    return h
print((murmur2(sys.argv[1].encode()) & 0x7fffffff) % int(sys.argv[2]))' "$1" "$PARTITIONS"
}

addr_of() { local v="ADDR_$1"; printf '%s' "${!v}"; }

report() {  # ADDR KEY AGENT STATE: reports, prints the token
  local out token
  out="$(rpc "$1" StateService/ReportState \
    "{\"scenario\":\"demo\",\"object_key\":\"$2\",\"agent_id\":\"$3\",\"state\":\"$4\"}")"
  token="$(jget "$out" 'd.get("token", "")')"
  [[ -n "$token" ]] || fail "ReportState $2/$3 via $1 returned no token: $out"
  printf '%s' "$token"
}

get_state() {  # ADDR KEY TOKEN: GetState waiting for TOKEN, prints the answer
  rpc "$1" StateService/GetState "{\"scenario\":\"demo\",\"object_key\":\"$2\",\"min_token\":\"$3\"}"
}

# --- the cluster ------------------------------------------------------------------------------

step "start 3 tallyd processes (node + router), app_id $app, scenario demo with $PARTITIONS partitions"
config="$E2E_DIR/cluster.textproto"
write_config "$config" "$app" 'node { enabled: true }'
sed -i "s/partitions: 3 reducer { majority {} }/partitions: $PARTITIONS reducer { majority {} }/" "$config"
grep -q "partitions: $PARTITIONS reducer { majority {} }" "$config" || fail "could not set the partition count in $config"
started=$SECONDS
for n in "${NODES[@]}"; do
  start_tallyd "$n" "$tallyd" "$config" --node_id="$n" --data_dir="$E2E_DIR/data-$n"
  echo "   $n serves on $(addr_of "$n")"
done

step "DescribeCluster: 3 alive nodes, all $PARTITIONS partitions ACTIVE, each node owns some"
# cluster_settled: true once every node's router sees the three nodes alive, every partition
# ACTIVE on one of them, each node owning at least one, and all three views agree.
cluster_settled() {
  local n view views=()
  for n in "${NODES[@]}"; do
    "$GRPCURL" -plaintext -max-time 5 "$(addr_of "$n")" tally.v1.AdminService/DescribeCluster \
      > "$E2E_DIR/describe-$n.json" 2>&1 || return 1
    view="$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); want = set(sys.argv[2].split()); n = int(sys.argv[3])
alive = {x["id"] for x in d.get("nodes", []) if x.get("alive")}
parts = [p for p in d.get("partitions", []) if p.get("scenario") == "demo"]
owners = {p.get("active_node") for p in parts}
assert alive == want and len(parts) == n and owners == want
assert all(p.get("status") == "ACTIVE" for p in parts)
assert sorted(p.get("partition", 0) for p in parts) == list(range(n))
print(sorted((p.get("partition", 0), p["active_node"]) for p in parts))' \
      "$E2E_DIR/describe-$n.json" "${NODES[*]}" "$PARTITIONS")" || return 1
    views+=("$view")
  done
  [[ "${views[0]}" == "${views[1]}" && "${views[0]}" == "${views[2]}" ]]
}
( wait_for 60 "a settled 3-node cluster in DescribeCluster" cluster_settled ) || {
  for n in "${NODES[@]}"; do echo "--- DescribeCluster via $n:" >&2; cat "$E2E_DIR/describe-$n.json" >&2; done
  fail "the cluster did not settle: 3 alive nodes, $PARTITIONS ACTIVE partitions owned by all three"
}
describe="$(rpc "$ADDR_n1" AdminService/DescribeCluster '{}')"
echo "$describe" | head -n 60
check "3 nodes, all alive" "$describe" \
  'sorted((x["id"], x.get("alive", False)) for x in d["nodes"]) == [("n1", True), ("n2", True), ("n3", True)]'
for n in "${NODES[@]}"; do
  check "$n advertises the address it serves on ($(addr_of "$n"))" "$describe" \
    "[x['endpoint'] for x in d['nodes'] if x['id'] == '$n'] == ['$(addr_of "$n")']"
  check "$n owns at least one partition" "$describe" \
    "any(p.get('active_node') == '$n' for p in d['partitions'])"
done
check "all $PARTITIONS partitions of demo ACTIVE" "$describe" \
  "sorted(p.get('partition', 0) for p in d['partitions'] if p['scenario'] == 'demo' and p.get('status') == 'ACTIVE') == list(range($PARTITIONS))"
echo "   settled $((SECONDS - started)) s after the first start"
owner_of() {  # KEY: the node DescribeCluster names as active for the key's partition
  jget "$describe" "[p['active_node'] for p in d['partitions'] if p['scenario'] == 'demo' and p.get('partition', 0) == $(partition_of "$1")][0]"
}

# --- majority from several agents -------------------------------------------------------------

step "ReportState from several agents through different nodes, GetState with min_token"
# vote-a, vote-b, vote-c land on partitions 5, 0 and 2.
for key in vote-a vote-b vote-c; do echo "   $key is in partition $(partition_of "$key"), owned by $(owner_of "$key")"; done
t="$(report "$ADDR_n1" vote-a a1 attack)"; ok "token $t"
t="$(report "$ADDR_n2" vote-a a2 attack)"; ok "token $t"
t="$(report "$ADDR_n3" vote-a a3 calm)"; ok "token $t"
ans="$(get_state "$ADDR_n1" vote-a "$t")"; echo "$ans"
check "vote-a: majority state attack" "$ans" 'd["state"]["state"] == "attack"'
check "vote-a: tally attack 2, calm 1" "$ans" 'd["state"]["tally"] == {"attack": 2, "calm": 1}'
check "vote-a: votes of a1, a2, a3 with their states" "$ans" \
  'sorted((v["agent_id"], v["state"]) for v in d["state"]["votes"]) == [("a1", "attack"), ("a2", "attack"), ("a3", "calm")]'
check "vote-a: scenario, key, version >= 1, not pinned" "$ans" \
  'd["state"]["scenario"] == "demo" and d["state"]["object_key"] == "vote-a" and int(d["state"]["version"]) >= 1 and not d["state"].get("pinned", False)'
check "vote-a: served by the owner of its partition ($(owner_of vote-a))" "$ans" "d['served_by'] == '$(owner_of vote-a)'"

report "$ADDR_n2" vote-b a1 calm >/dev/null
report "$ADDR_n3" vote-b a2 calm >/dev/null
t="$(report "$ADDR_n1" vote-b a3 attack)"
ans="$(get_state "$ADDR_n2" vote-b "$t")"
check "vote-b: majority calm, tally calm 2 attack 1" "$ans" \
  'd["state"]["state"] == "calm" and d["state"]["tally"] == {"calm": 2, "attack": 1}'

report "$ADDR_n3" vote-c a1 down >/dev/null
report "$ADDR_n1" vote-c a2 down >/dev/null
report "$ADDR_n2" vote-c a3 down >/dev/null
t="$(report "$ADDR_n3" vote-c a3 up)"
ans="$(get_state "$ADDR_n3" vote-c "$t")"
check "vote-c: an agent's new report replaces its old one (3 votes: down 2, up 1; state down)" "$ans" \
  'd["state"]["state"] == "down" and d["state"]["tally"] == {"down": 2, "up": 1} and len(d["state"]["votes"]) == 3'

# --- routing to the owner ---------------------------------------------------------------------

step "GetState through a node other than the one written to: routed to the partition's owner"
# Seven keys under site- that cover all six partitions (so every node owns some of them).
SITE_KEYS=(site-01 site-02 site-07 site-09 site-11 site-19 site-20)
declare -A site_token
covered=""
for i in "${!SITE_KEYS[@]}"; do
  key="${SITE_KEYS[$i]}"
  writer="${NODES[$((i % 3))]}"
  site_token[$key]="$(report "$(addr_of "$writer")" "$key" probe-1 up)"
  covered+=" $(partition_of "$key")"
done
[[ "$(tr ' ' '\n' <<<"$covered" | sort -u | grep -c .)" == "$PARTITIONS" ]] ||
  fail "the site- keys do not cover all partitions:$covered"
served_by_all=""
for i in "${!SITE_KEYS[@]}"; do
  key="${SITE_KEYS[$i]}"
  writer="${NODES[$((i % 3))]}"
  owner="$(owner_of "$key")"
  reader=""
  for n in "${NODES[@]}"; do   # a node that is neither the writer nor (if possible) the owner
    [[ "$n" != "$writer" && "$n" != "$owner" ]] && { reader="$n"; break; }
  done
  [[ -n "$reader" ]] || for n in "${NODES[@]}"; do [[ "$n" != "$writer" ]] && { reader="$n"; break; }; done
  echo "   $key: partition $(partition_of "$key"), written via $writer, read via $reader, owner $owner"
  ans="$(get_state "$(addr_of "$reader")" "$key" "${site_token[$key]}")"
  check "$key served by $owner, state up" "$ans" \
    "d['served_by'] == '$owner' and d['state']['state'] == 'up' and d['state']['object_key'] == '$key'"
  served_by_all+=" $owner"
done
for n in "${NODES[@]}"; do
  grep -qw "$n" <<<"$served_by_all" || fail "no read was served by $n:$served_by_all"
done
ok "reads were served by all three nodes:$served_by_all"

# --- ListState --------------------------------------------------------------------------------

step "ListState: page_size 2 through the ${#SITE_KEYS[@]} site- keys, a page from each node in turn"
t1="$(report "$ADDR_n1" other-1 probe-1 down)"
t2="$(report "$ADDR_n2" other-2 probe-1 down)"
get_state "$ADDR_n3" other-1 "$t1" >/dev/null
get_state "$ADDR_n3" other-2 "$t2" >/dev/null
listed=()
page_token=""
pages=0
while :; do
  node="${NODES[$((pages % 3))]}"
  body="{\"scenario\":\"demo\",\"prefix\":\"site-\",\"page_size\":2"
  [[ -z "$page_token" ]] || body+=",\"page_token\":\"$page_token\""
  ans="$(rpc "$(addr_of "$node")" StateService/ListState "$body}")"
  pages=$((pages + 1))
  ((pages <= ${#SITE_KEYS[@]} + 1)) || fail "ListState does not end: $pages pages"
  keys="$(jget "$ans" '" ".join(s["object_key"] for s in d.get("states", []))')"
  check "page $pages via $node: at most 2 states, all site- and up: [$keys]" "$ans" \
    'len(d.get("states", [])) <= 2 and all(s["object_key"].startswith("site-") and s["state"] == "up" for s in d.get("states", []))'
  [[ -z "$keys" ]] || read -ra page_keys <<<"$keys"
  [[ -z "$keys" ]] || listed+=("${page_keys[@]}")
  page_token="$(jget "$ans" 'd.get("next_page_token", "")')"
  [[ -n "$page_token" ]] || break
done
[[ "${listed[*]}" == "${SITE_KEYS[*]}" ]] ||
  fail "ListState pages gave [${listed[*]}], expected [${SITE_KEYS[*]}] (each once, in key order)"
ok "$pages pages listed every site- key exactly once, in order; next_page_token empty at the end"
((pages == 4)) || fail "7 keys at page_size 2 took $pages pages, expected 4"
ok "7 keys in 4 pages"

ans="$(rpc "$ADDR_n2" StateService/ListState '{"scenario":"demo","prefix":"other-"}')"
check "prefix other- lists exactly other-1, other-2 (state down)" "$ans" \
  '[(s["object_key"], s["state"]) for s in d["states"]] == [("other-1", "down"), ("other-2", "down")] and not d.get("next_page_token")'
ans="$(rpc "$ADDR_n3" StateService/ListState '{"scenario":"demo","prefix":"site-0"}')"
check "prefix site-0 lists exactly site-01, site-02, site-07, site-09" "$ans" \
  '[s["object_key"] for s in d["states"]] == ["site-01", "site-02", "site-07", "site-09"]'
ans="$(rpc "$ADDR_n1" StateService/ListState '{"scenario":"demo"}')"
check "no prefix: every object of the scenario, in key order" "$ans" \
  '[s["object_key"] for s in d["states"]] == sorted(["other-1", "other-2", "vote-a", "vote-b", "vote-c"] + [k for k in "'"${SITE_KEYS[*]}"'".split()])'

# --- SetState pin / unpin, PurgeState ---------------------------------------------------------

step "SetState pin=true overrides the majority and holds while agents report; pin=false returns to it"
echo "   pin-1 is in partition $(partition_of pin-1), owned by $(owner_of pin-1)"
report "$ADDR_n1" pin-1 a1 calm >/dev/null
report "$ADDR_n2" pin-1 a2 calm >/dev/null
t="$(report "$ADDR_n3" pin-1 a3 calm)"
ans="$(get_state "$ADDR_n1" pin-1 "$t")"
check "pin-1: majority calm before the pin" "$ans" 'd["state"]["state"] == "calm" and not d["state"].get("pinned", False)'
ans="$(rpc "$ADDR_n2" AdminService/SetState '{"scenario":"demo","object_key":"pin-1","state":"attack","pin":true,"reason":"e2e: operator override"}')"
t="$(jget "$ans" 'd.get("token", "")')"; [[ -n "$t" ]] || fail "SetState returned no token: $ans"
ok "SetState token $t"
ans="$(get_state "$ADDR_n3" pin-1 "$t")"; echo "$ans"
check "pin-1: pinned attack" "$ans" 'd["state"]["state"] == "attack" and d["state"]["pinned"] is True'
for agent in a1 a2 a3 a4; do t="$(report "$(addr_of "${NODES[$((RANDOM % 3))]}")" pin-1 "$agent" calm)"; done
ans="$(get_state "$ADDR_n1" pin-1 "$t")"; echo "$ans"
check "pin-1: still pinned attack after 4 more calm reports" "$ans" \
  'd["state"]["state"] == "attack" and d["state"]["pinned"] is True'
check "pin-1: the agents' votes are still counted under the pin (calm 4)" "$ans" \
  'd["state"]["tally"] == {"calm": 4} and len(d["state"]["votes"]) == 4'
ans="$(rpc "$ADDR_n3" AdminService/SetState '{"scenario":"demo","object_key":"pin-1","pin":false,"reason":"e2e: unpin"}')"
t="$(jget "$ans" 'd.get("token", "")')"; [[ -n "$t" ]] || fail "SetState (unpin) returned no token: $ans"
ans="$(get_state "$ADDR_n2" pin-1 "$t")"; echo "$ans"
check "pin-1: unpinned, back to the majority calm" "$ans" \
  'd["state"]["state"] == "calm" and not d["state"].get("pinned", False) and d["state"]["tally"] == {"calm": 4}'

step "PurgeState removes the object"
ans="$(rpc "$ADDR_n1" AdminService/PurgeState '{"scenario":"demo","object_key":"pin-1","reason":"e2e: purge"}')"
t="$(jget "$ans" 'd.get("token", "")')"; [[ -n "$t" ]] || fail "PurgeState returned no token: $ans"
ok "PurgeState token $t"
rpc_error "$ADDR_n2" StateService/GetState "{\"scenario\":\"demo\",\"object_key\":\"pin-1\",\"min_token\":\"$t\"}" \
  NotFound "pin-1"
ans="$(rpc "$ADDR_n3" StateService/ListState '{"scenario":"demo","prefix":"pin-"}')"
check "ListState prefix pin- is empty after the purge" "$ans" 'not d.get("states")'

# --- errors -----------------------------------------------------------------------------------

step "errors an operator sees"
rpc_error "$ADDR_n1" StateService/GetState '{"scenario":"no-such","object_key":"vote-a"}' NotFound scenario
rpc_error "$ADDR_n2" StateService/ReportState '{"scenario":"no-such","object_key":"k","agent_id":"a1","state":"up"}' NotFound scenario
rpc_error "$ADDR_n3" StateService/ListState '{"scenario":"no-such"}' NotFound scenario
rpc_error "$ADDR_n1" StateService/ReportState '{"scenario":"demo","object_key":"","agent_id":"a1","state":"up"}' InvalidArgument object_key
rpc_error "$ADDR_n2" StateService/GetState '{"scenario":"demo","object_key":""}' InvalidArgument object_key
rpc_error "$ADDR_n3" AdminService/SetState '{"scenario":"demo","object_key":"","state":"x","pin":true}' InvalidArgument object_key
rpc_error "$ADDR_n1" StateService/ListState '{"scenario":"demo","page_size":5000}' InvalidArgument page_size
rpc_error "$ADDR_n2" StateService/GetState '{"scenario":"demo","object_key":"vote-a","min_token":"not-a-token"}' InvalidArgument min_token
# A real token of a write to another partition is refused too (vote-b is in partition 0, vote-a in 5).
t="$(report "$ADDR_n3" vote-b a4 calm)"
rpc_error "$ADDR_n3" StateService/GetState "{\"scenario\":\"demo\",\"object_key\":\"vote-a\",\"min_token\":\"$t\"}" InvalidArgument min_token
rpc_error "$ADDR_n1" StateService/GetState '{"scenario":"demo","object_key":"never-written"}' NotFound never-written

# --- ReportStates -----------------------------------------------------------------------------

step "ReportStates: several JSON messages on stdin, one token per request, in order"
stream_keys=(stream-1 stream-2 stream-3 stream-1 stream-1)
stream_agents=(s1 s1 s1 s2 s3)
stream_states=(ok ok ok ok warn)
for i in "${!stream_keys[@]}"; do
  printf '{"scenario":"demo","object_key":"%s","agent_id":"%s","state":"%s"}\n' \
    "${stream_keys[$i]}" "${stream_agents[$i]}" "${stream_states[$i]}"
done > "$E2E_DIR/stream.in"
cat "$E2E_DIR/stream.in" | sed 's/^/     /'
echo "   \$ grpcurl -plaintext -d @ $ADDR_n2 tally.v1.StateService/ReportStates < stream.in"
rc=0
"$GRPCURL" -plaintext -max-time 20 -d @ "$ADDR_n2" tally.v1.StateService/ReportStates \
  < "$E2E_DIR/stream.in" > "$E2E_DIR/stream.out" 2> "$E2E_DIR/stream.err" || rc=$?
((rc == 0)) || fail "ReportStates: exit $rc: $(cat "$E2E_DIR/stream.err")"
tokens="$(python3 -c 'import json, sys
text, pos, dec = open(sys.argv[1]).read(), 0, json.JSONDecoder()
while True:
    while pos < len(text) and text[pos].isspace(): pos += 1
    if pos == len(text): break
    obj, pos = dec.raw_decode(text, pos)
    print(obj.get("token", ""))' "$E2E_DIR/stream.out")" || fail "ReportStates: unreadable answer: $(cat "$E2E_DIR/stream.out")"
mapfile -t stream_tokens <<<"$tokens"
((${#stream_tokens[@]} == ${#stream_keys[@]})) ||
  fail "ReportStates: ${#stream_tokens[@]} answers for ${#stream_keys[@]} requests: $(cat "$E2E_DIR/stream.out")"
for t in "${stream_tokens[@]}"; do [[ -n "$t" ]] || fail "ReportStates: an empty token: $(cat "$E2E_DIR/stream.out")"; done
[[ "$(printf '%s\n' "${stream_tokens[@]}" | sort -u | wc -l)" == "${#stream_keys[@]}" ]] ||
  fail "ReportStates: tokens repeat: ${stream_tokens[*]}"
ok "${#stream_tokens[@]} requests, ${#stream_tokens[@]} distinct tokens"
# Each token belongs to its request: GetState of that request's key accepts it as min_token.
for i in "${!stream_keys[@]}"; do
  ans="$(get_state "$ADDR_n1" "${stream_keys[$i]}" "${stream_tokens[$i]}")"
  check "token $i (${stream_tokens[$i]}) is a write to ${stream_keys[$i]}" "$ans" \
    "d['state']['object_key'] == '${stream_keys[$i]}'"
done
check "stream-1: majority ok of 3 votes (ok 2, warn 1)" "$ans" \
  'd["state"]["state"] == "ok" and d["state"]["tally"] == {"ok": 2, "warn": 1}'
ans="$(get_state "$ADDR_n3" stream-3 "${stream_tokens[2]}")"
check "stream-3: state ok from s1" "$ans" 'd["state"]["state"] == "ok" and d["state"]["tally"] == {"ok": 1}'

# A bad request in a stream ends it with that request's error, after the answers before it.
printf '%s\n' '{"scenario":"demo","object_key":"stream-4","agent_id":"s1","state":"ok"}' \
  '{"scenario":"demo","object_key":"","agent_id":"s1","state":"ok"}' > "$E2E_DIR/bad-stream.in"
rc=0
"$GRPCURL" -plaintext -max-time 20 -d @ "$ADDR_n3" tally.v1.StateService/ReportStates \
  < "$E2E_DIR/bad-stream.in" > "$E2E_DIR/stream.out" 2> "$E2E_DIR/stream.err" || rc=$?
((rc == 64 + 3)) || fail "ReportStates with a bad 2nd request: exit $rc, expected 67: $(cat "$E2E_DIR/stream.err")"
grep -qx '  Code: InvalidArgument' "$E2E_DIR/stream.err" && grep -q '^  Message: request 1: object_key' "$E2E_DIR/stream.err" ||
  fail "ReportStates with a bad 2nd request: expected InvalidArgument 'request 1: object_key': $(cat "$E2E_DIR/stream.err")"
[[ "$(grep -c '"token"' "$E2E_DIR/stream.out")" == 1 ]] ||
  fail "ReportStates with a bad 2nd request: expected the 1st request's token: $(cat "$E2E_DIR/stream.out")"
ok "a bad 2nd request: the 1st gets its token, then InvalidArgument 'request 1: object_key'"

# --- ReportBatch ------------------------------------------------------------------------------

step "ReportBatch: one call, one token a report, in order"
body='{"reports":[
  {"scenario":"demo","object_key":"batch-1","agent_id":"b1","state":"up"},
  {"scenario":"demo","object_key":"batch-2","agent_id":"b1","state":"down"},
  {"scenario":"demo","object_key":"batch-1","agent_id":"b2","state":"up"},
  {"scenario":"demo","object_key":"batch-1","agent_id":"b3","state":"down"}]}'
ans="$(rpc "$ADDR_n3" StateService/ReportBatch "$body")"; echo "$ans"
check "4 distinct tokens, each naming its report's partition" "$ans" \
  "len(set(d['tokens'])) == 4 and [t.split('.')[1] for t in d['tokens']] == ['$(partition_of batch-1)', '$(partition_of batch-2)', '$(partition_of batch-1)', '$(partition_of batch-1)']"
ans="$(get_state "$ADDR_n1" batch-1 "$(jget "$ans" 'd["tokens"][3]')")"
check "batch-1: majority up of 3 votes (up 2, down 1)" "$ans" \
  'd["state"]["state"] == "up" and d["state"]["tally"] == {"up": 2, "down": 1}'
rpc_error "$ADDR_n2" StateService/ReportBatch \
  '{"reports":[{"scenario":"demo","object_key":"batch-3","agent_id":"b1","state":"up"},{"scenario":"demo","object_key":"batch-3","agent_id":"b2","state":""}]}' \
  InvalidArgument 'reports\[1\].state'
rpc_error "$ADDR_n2" StateService/ReportBatch '{}' InvalidArgument 'reports: must not be empty'
# Reports of one partition apply in order: once a later report of batch-3 is visible, its first
# report would be too, had the refused batch written it.
ans="$(get_state "$ADDR_n3" batch-3 "$(report "$ADDR_n3" batch-3 b9 late)")"
check "the refused batch wrote nothing: batch-3 has b9's vote only" "$ans" \
  'd["state"]["tally"] == {"late": 1} and len(d["state"]["votes"]) == 1'

echo
echo "PASS ($((SECONDS - started)) s)"
