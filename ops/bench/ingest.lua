-- wrk script for ./ops/local.sh bench: POST one 1000-event NDJSON batch per request.
-- The body file and the token come from the environment (TALLY_BENCH_BODY, BILLING_ADMIN_TOKEN).
local file = io.open(os.getenv("TALLY_BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BILLING_ADMIN_TOKEN")

local accepted = 0
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("ingest: %d requests of 1000 events in %.1f s = %.0f events/s (non-2xx: %d; target >= 50k/s), p99 latency %.1f ms\n",
    summary.requests, seconds, summary.requests * 1000 / seconds, summary.errors.status, latency:percentile(99) / 1000))
  io.write(string.format('bench-json: {"figure": "ingest POST /v1/events, 1000-event batches", "phase": "ingest", "target": "≥ 50k/s", "unit": "events/s", "value": %.0f}\n',
    summary.requests * 1000 / seconds))
end
