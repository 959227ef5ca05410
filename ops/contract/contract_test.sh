#!/usr/bin/env bash
# The API contract, against the running Billing API and ingest API of `./ops/local.sh up`
# (run by `./ops/local.sh test`; needs .local/env and the tools in .local/venv):
#   1. GET /openapi.json is a valid OpenAPI 3.1 document (openapi-spec-validator);
#   2. schemathesis calls every operation of the Billing API with a new tenant's key, with
#      inputs drawn from the document, and finds no 5xx and no response that contradicts
#      the document (status code, content type, schema);
#   3. the same for the ingest API's POST /v1/events.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$ROOT/.local/venv/bin"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

curl -sf "$TALLY_API_URL/openapi.json" -o "$WORK/openapi.json"
"$VENV/openapi-spec-validator" "$WORK/openapi.json"

tenant=$(curl -sf -X POST "$TALLY_API_URL/v1/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d '{"name": "Contract Test Co", "billing_email": "ap@contract.test"}')
key=$("$VENV/python" -c 'import json, sys; print(json.load(sys.stdin)["api_key"])' <<<"$tenant")

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
# Deterministic inputs, so a run is reproducible; a small number of examples per operation
# keeps the run to a minute or two.
common=(--checks "$checks" --max-examples "${TALLY_CONTRACT_EXAMPLES:-25}" --generation-deterministic
  --header "Authorization: Bearer $key" --no-color)
# Each drawn Idempotency-Key is made unique (ops/contract/hooks.py).
export SCHEMATHESIS_HOOKS="$ROOT/ops/contract/hooks.py"
"$VENV/schemathesis" run "$WORK/openapi.json" --url "$TALLY_API_URL" "${common[@]}" --exclude-path /v1/events
# The ingest API has one operation: no links to follow.
"$VENV/schemathesis" run "$WORK/openapi.json" --url "$TALLY_INGEST_URL" "${common[@]}" --include-path /v1/events \
  --phases examples,coverage,fuzzing
