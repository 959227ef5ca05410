#!/usr/bin/env bash
# `./ops/local.sh scale` as ops use it, on the running stack (needs .local/env):
#   scale_test.sh up    refuses bad arguments, then runs 2 processes of every role and checks
#                       their pid files, `status`, health and the workers' consumers on the broker;
#                       an event sent to the second producer is counted and read through the
#                       second billing API
#                       (./ops/local.sh test then runs the demo on them: its checks prove the
#                       scaled workers count, bill and email exactly)
#   scale_test.sh down  back to 1 process each: the extra processes and pid files are gone
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_SH="$ROOT/ops/local.sh"
LOCAL="${TALLY_LOCAL_DIR:-$ROOT/.local}"
RUN="$LOCAL/run"
fail() { printf 'scale test: %s\n' "$*" >&2; exit 1; }
: "${TALLY_RABBITMQCTL:?is not set: run with .local/env exported (set -a; . .local/env; set +a)}"

consumers() { "$TALLY_RABBITMQCTL" -q list_consumers queue_name | grep -cx "$1" || true; }
pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

case "${1:-}" in
  up)
    for bad in "aggregator=0" "aggregator=17" "aggregator=two" "janitor=2" ""; do
      if output=$("$LOCAL_SH" scale $bad 2>&1); then fail "'scale $bad' was accepted"; fi
      grep -q '^error: ' <<<"$output" || fail "'scale $bad' failed without saying why: $output"
    done
    declare -A before
    for queue in aggregator.usage invoicer.commands notifier.events; do
      before[$queue]=$(consumers "$queue")
      [ "${before[$queue]}" -ge 1 ] || fail "$queue has no consumer before scaling: is the stack up?"
    done
    "$LOCAL_SH" scale aggregator=2 invoicer=2 notifier=2 producer=2 billing-api=2 >/dev/null
    status=$("$LOCAL_SH" status)
    for name in aggregator-2 invoicer-2 notifier-2 producer-2 billing-api-2; do
      pid_alive "$name" || fail "$name has no live process after scale (see .local/log/$name.log)"
      grep -Eq "^$name +running" <<<"$status" || fail "status does not list $name as running: $status"
    done
    for port in 29082 29084 29083 29080 29081; do
      curl -fsS "http://127.0.0.1:$((port + ${TALLY_PORT_OFFSET:-0}))/healthz" >/dev/null || fail "nothing healthy on port $port"
    done
    grep -qx 'aggregator=2' "$LOCAL/scale" || fail ".local/scale does not remember aggregator=2"
    # Each process consumes its queue with its own consumers: twice as many as before.
    for queue in aggregator.usage invoicer.commands notifier.events; do
      expected=$((2 * before[$queue]))
      for _ in $(seq 1 100); do [ "$(consumers "$queue")" -ge "$expected" ] && break; sleep 0.2; done
      [ "$(consumers "$queue")" -ge "$expected" ] || fail "$queue has $(consumers "$queue") consumers, expected $expected"
    done
    # The HTTP roles serve on their own ports: an event into producer-2, read back through billing-api-2.
    ingest2="http://127.0.0.1:$((29080 + ${TALLY_PORT_OFFSET:-0}))" api2="http://127.0.0.1:$((29081 + ${TALLY_PORT_OFFSET:-0}))"
    tenant=$(curl -fsS -X POST "$api2/v1/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -H 'Content-Type: application/json' \
      -d '{"name": "Scale test", "billing_email": "scale@test.invalid"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') \
      || fail "billing-api-2 does not create a tenant"
    curl -fsS -o /dev/null -X POST "$ingest2/v1/events" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"id\": \"scale-$tenant\", \"tenant_id\": \"$tenant\", \"type\": \"api_calls\", \"quantity\": 3, \"time\": \"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\"}" \
      || fail "producer-2 does not accept an event"
    counted=""
    for _ in $(seq 1 300); do
      counted=$(curl -fsS "$api2/v1/usage?tenant_id=$tenant" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
        | python3 -c 'import json, sys; print(sum(int(m["value"]) for m in json.load(sys.stdin)["metrics"] if m["metric"] == "api_calls"))') || true
      [ "$counted" = 3 ] && break
      sleep 0.2
    done
    [ "$counted" = 3 ] || fail "the event sent to producer-2 was not counted through billing-api-2 (got '$counted')"
    echo "scale test: 2 processes of every role run; the workers consume their queues; producer-2 and billing-api-2 serve"
    ;;
  down)
    pids=()
    for name in aggregator-2 invoicer-2 notifier-2 producer-2 billing-api-2; do pids+=("$(cat "$RUN/$name.pid")"); done
    "$LOCAL_SH" scale aggregator=1 invoicer=1 notifier=1 producer=1 billing-api=1 >/dev/null
    for name in aggregator-2 invoicer-2 notifier-2 producer-2 billing-api-2; do
      [ ! -e "$RUN/$name.pid" ] || fail "$name.pid is still there after scaling back to 1"
    done
    for pid in "${pids[@]}"; do ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs after scaling back to 1"; done
    pid_alive aggregator || fail "the first aggregator stopped too"
    echo "scale test: back to one process each; the extra ones stopped and their pid files are gone"
    ;;
  *) fail "usage: scale_test.sh up|down" ;;
esac
