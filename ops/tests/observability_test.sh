#!/usr/bin/env bash
# Observability, checked on the running stack (needs .local/env exported):
# - ops/prometheus/: `promtool check config` and `check rules`, then `promtool test rules`
#   (every alert fired by the series that should fire it, and not by look-alikes);
# - every Tally process's /metrics passes `promtool check metrics` (the exposition format
#   and Prometheus' naming rules);
# - the stack's Prometheus (started by `up` with ops/prometheus/) scrapes every target,
#   evaluates every rule without error, and has the series the alerts need;
# - every query of the Grafana dashboard (ops/grafana/tally-dashboard.json) runs on it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="${TALLY_LOCAL_DIR:-$ROOT/.local}"
fail() { printf 'observability test: %s\n' "$*" >&2; exit 1; }
: "${TALLY_PROMETHEUS_URL:?is not set: export .local/env (set -a; . .local/env; set +a)}"

promtool check config "$ROOT/ops/prometheus/prometheus.yml" >/dev/null || fail "ops/prometheus/prometheus.yml does not pass promtool check config"
promtool check config "$LOCAL/prometheus/prometheus.yml" >/dev/null || fail "the stack's copy of prometheus.yml does not pass promtool check config"
promtool check rules "$ROOT/ops/prometheus/alerts.yml" >/dev/null || fail "ops/prometheus/alerts.yml does not pass promtool check rules"
(cd "$ROOT/ops/prometheus" && promtool test rules alerts_test.yml) || fail "promtool test rules alerts_test.yml failed (above)"
echo "observability test: configuration and rules check, and every alert's unit test passes"

for url in "$TALLY_INGEST_URL" "$TALLY_API_URL" "$TALLY_AGGREGATOR_URL" "$TALLY_INVOICER_URL" "$TALLY_NOTIFIER_URL"; do
  body=$(curl -fsS "$url/metrics") || fail "$url/metrics does not answer"
  grep -q '^tally_' <<<"$body" || fail "$url/metrics has no tally_ metric"
  problems=$(promtool check metrics <<<"$body" 2>&1) || fail "$url/metrics: promtool check metrics: $problems"
done
echo "observability test: the /metrics of producer, billing-api, aggregator, invoicer and notifier pass promtool check metrics"

python3 - "$TALLY_PROMETHEUS_URL" "$ROOT/ops/grafana/tally-dashboard.json" <<'PY'
import json, sys, time, urllib.parse, urllib.request

prometheus, dashboard_path = sys.argv[1], sys.argv[2]

def get(path, **params):
    url = prometheus + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=30) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise SystemExit(f"observability test: {path} {params}: {answer}")
    return answer["data"]

def fail(text):
    raise SystemExit(f"observability test: {text}")

# Every target scraped successfully (a new target waits for its first scrape: 10 s apart).
deadline = time.monotonic() + 90
while True:
    targets = get("/api/v1/targets")["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets}
    down = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets if t["health"] != "up"]
    if not down and {"tally", "rabbitmq", "rabbitmq-queues"} <= jobs:
        break
    if time.monotonic() > deadline:
        fail(f"targets not up after 90 s: {down or 'jobs ' + str(sorted(jobs))}")
    time.sleep(1)
roles = sorted({t["labels"]["role"] for t in targets if t["labels"]["job"] == "tally"})
if roles != ["aggregator", "billing-api", "invoicer", "notifier", "producer"]:
    fail(f"the tally job scrapes roles {roles}, expected all five")
print(f"observability test: Prometheus scrapes {len(targets)} targets, all up ({', '.join(roles)}, RabbitMQ)")

# The rules are loaded and evaluate without error (after one evaluation interval).
deadline = time.monotonic() + 60
while True:
    groups = get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    if rules and all(rule.get("lastEvaluation", "").startswith("0001") is False and rule["health"] == "ok" for rule in rules):
        break
    if time.monotonic() > deadline:
        fail(f"rules not all evaluated and healthy: {[(r['name'], r['health'], r.get('lastError')) for r in rules if r['health'] != 'ok']}")
    time.sleep(1)
print(f"observability test: {len(rules)} alert rules in {len(groups)} groups evaluate without error")

# The series the alerts read exist.
for query in ['rabbitmq_detailed_queue_messages_ready{queue="aggregator.usage"}', 'rabbitmq_detailed_queue_messages{queue="notifier.events.parked"}',
              'tally_producer_spool_batches', 'tally_billing_runs_with_failures', 'tally_billing_run_oldest_running_seconds',
              'tally_notifier_parked_total{channel="email",kind="invoice"}', 'tally_stripe_invoices', 'tally_invoicer_stripe_pushes_total',
              'tally_notifier_mail_server_up', 'tally_api_requests_total',
              'tally_aggregator_config_cache_emptied_total{reason="log"}']:
    if not get("/api/v1/query", query=query)["result"]:
        fail(f"no series for {query}")

# Every dashboard query runs; those over always-present series answer something.
dashboard = json.load(open(dashboard_path))
queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
empty = [query for query in queries if not get("/api/v1/query", query=query)["result"]]
answering = len(queries) - len(empty)
if answering < len(queries) // 2:
    fail(f"only {answering} of {len(queries)} dashboard queries answer anything: {empty}")
print(f"observability test: the dashboard's {len(queries)} queries run ({answering} with data now; the rest are rates of events not seen yet)")
PY
