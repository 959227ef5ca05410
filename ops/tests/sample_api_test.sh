#!/usr/bin/env bash
# The README's metering snippet as a user's server runs it: Examples/SampleAPI (its own
# package, depending on Tally by path, using only the Metering and MeteringHummingbird
# products) is built and started against the running stack; requests for a new tenant
# are metered by the middleware (api_calls, estimates on a 201) and by track()
# (documents), and GET /v1/usage then counts them. Run by `./ops/local.sh test` after `up`
# (needs .local/env).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=$((28091 + ${TALLY_PORT_OFFSET:-0}))  # beside the demo's sample API (28090)
fail() { printf 'sample API test: %s\n' "$*" >&2; exit 1; }

(cd "$ROOT/Examples/SampleAPI" && swift build) || fail "Examples/SampleAPI does not build against the library"
spool=$(mktemp -d)
SAMPLE_API_PORT=$PORT SAMPLE_SPOOL_DIR="$spool" "$ROOT/Examples/SampleAPI/.build/debug/SampleAPI" >"$ROOT/.local/log/sample-api.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$spool"' EXIT
for _ in $(seq 1 150); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || fail "the sample API did not start; see .local/log/sample-api.log"

tenant=$(curl -fsS -X POST "$TALLY_API_URL/v1/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d '{"name": "Sample API user", "billing_email": "ap@sample.test"}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
# On a plan: the middleware answers 403 NO_SUBSCRIPTION to a tenant the Aggregator has
# reported without one, as soon as its first usage is counted.
curl -fsS -o /dev/null -X POST "$TALLY_API_URL/v1/subscriptions" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d "{\"tenant_id\": \"$tenant\", \"plan\": \"starter\"}"
for path in /estimates /estimates /reports; do
  curl -fsS -o /dev/null -X "$([ "$path" = /estimates ] && echo POST || echo GET)" -H "X-Tenant-ID: $tenant" "http://127.0.0.1:$PORT$path"
done
curl -fsS -o /dev/null -H "X-Tenant-ID: $tenant" "http://127.0.0.1:$PORT/estimates/e1"

# The pipeline is asynchronous: poll the usage until it is counted (a minute at most).
expected='{"api_calls": "4", "documents": "1", "estimates": "2"}'
for _ in $(seq 1 300); do
  counted=$(curl -fsS "$TALLY_API_URL/v1/usage?tenant_id=$tenant" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
    | python3 -c 'import json, sys; print(json.dumps({m["metric"]: m["value"] for m in json.load(sys.stdin)["metrics"] if m["value"] != "0"}, sort_keys=True))')
  [ "$counted" = "$expected" ] && { echo "sample API test: the sample server's usage was counted: $counted"; exit 0; }
  sleep 0.2
done
fail "expected $expected, counted $counted"
