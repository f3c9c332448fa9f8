#!/usr/bin/env bash
# The OpenAPI document tells the truth: schemathesis generates requests from it (valid and
# invalid ones, with a fixed seed) against a fresh `junction serve` on loopback, and fails
# on any server error, any answer the document does not describe, any schema-valid request
# refused and any schema-violating request accepted. Two passes: a tenant administrator's
# (every tenant endpoint except revoking its own token), then an operator's (the catalog
# and the tenants' policies).
#
# Usage: run.sh JUNCTION_BIN CONNECTORS   (CONNECTORS: `:`-separated .wasm files; the probe
# among them, so invocations answer without a network). ST names the schemathesis command.
set -euo pipefail
BIN=$1
CONNECTORS=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ST=${ST:-st}
# The runs happen in a directory of their own: a path to the command is made absolute.
if [[ "$ST" == */* ]]; then ST="$(cd "$(dirname "$ST")" && pwd)/$(basename "$ST")"; fi
SPID=
WORK=$(mktemp -d)
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
DATA=$WORK/data
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(v)' "$@"; }

"$BIN" admin create-tenant acme --admin ada --data-dir "$DATA" > "$WORK/tenant.json"
"$BIN" admin create-operator ops --data-dir "$DATA" > "$WORK/operator.json"
TT=$(json token token < "$WORK/tenant.json")
OT=$(json token < "$WORK/operator.json")
env -u JUNCTION_EGRESS_ALLOW "$BIN" --log-json serve --listen 127.0.0.1:0 --data-dir "$DATA" \
    --connectors "$CONNECTORS" --health-check-interval 0 2> "$WORK/serve.log" &
SPID=$!
for _ in $(seq 1 600); do grep -q '"message":"listening"' "$WORK/serve.log" && break; sleep 0.1; done
URL=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("message")=="listening": print(e["url"]); break' "$WORK/serve.log")
[ -n "$URL" ] || { echo "junction serve did not start:"; cat "$WORK/serve.log"; exit 1; }
echo "schemathesis against $URL"

api() { curl -sf -X "$1" -H "Authorization: Bearer $TT" -H 'content-type: application/json' ${3:+--data "$3"} "$URL$2"; }
# Data for the generated requests to find: connections (an OAuth one among them), an
# invocation, a folder, a member. The connection the invocations are pinned to is in the
# member's personal folder, where the administrator's generated DELETEs never reach.
BOB=$(api POST /v1/principals '{"name":"bob","role":"member"}' | json token token)
PROBE=$(TT=$BOB api POST /v1/connections '{"connector":"probe","auth":"bearer","name":"probe","fields":{"token":"t"}}' | json id)
TT=$BOB api POST "/v1/connections/$PROBE/invocations" '{"action":"echo","input":{"value":1}}' > /dev/null
OWN=$(api POST /v1/connections '{"connector":"probe","auth":"bearer","name":"probe","fields":{"token":"t"}}' | json id)
api POST "/v1/connections/$OWN/invocations" '{"action":"echo","input":{"value":1}}' > /dev/null
api POST /v1/connections '{"connector":"http","auth":"none","name":"web","fields":{"base_url":"https://api.example.com/v1"}}' > /dev/null
api POST /v1/connections '{"connector":"probe","auth":"oauth","name":"oauth","fields":{"issuer":"https://auth.example.com","client_id":"cid","client_secret":"cs"}}' > /dev/null
api POST /v1/folders '{"name":"shared"}' > /dev/null

# From an empty directory: schemathesis keeps no state between runs there.
cd "$WORK"
rc=0
export JUNCTION_ST_MEMBER_TOKEN=$BOB JUNCTION_ST_PROBE_CONNECTION=$PROBE
JUNCTION_ST_TOKEN=$TT "$ST" --config-file "$HERE/schemathesis.toml" run "$URL/v1/openapi.json" \
    --url "$URL" --checks all --exclude-path-regex '^/v1/(catalog|tenants)' \
    --exclude-operation-id revokeToken --no-color ${ST_ARGS:-} || rc=1
JUNCTION_ST_TOKEN=$OT "$ST" --config-file "$HERE/schemathesis.toml" run "$URL/v1/openapi.json" \
    --url "$URL" --checks all --include-path-regex '^/v1/(catalog|tenants)' \
    --no-color ${ST_ARGS:-} || rc=1
if ! kill -0 "$SPID" 2>/dev/null; then echo "junction serve died:"; tail -50 "$WORK/serve.log"; rc=1; fi
exit $rc
