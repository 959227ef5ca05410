#!/usr/bin/env bash
# `./ops/local.sh scale` as ops use it, on the running stack (needs .local/env):
#   scale_test.sh up    refuses bad arguments, then runs 2 processes of every worker role and
#                       checks their pid files, `status`, health and their consumers on the broker
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
    "$LOCAL_SH" scale aggregator=2 invoicer=2 notifier=2 >/dev/null
    status=$("$LOCAL_SH" status)
    for name in aggregator-2 invoicer-2 notifier-2; do
      pid_alive "$name" || fail "$name has no live process after scale (see .local/log/$name.log)"
      grep -Eq "^$name +running" <<<"$status" || fail "status does not list $name as running: $status"
    done
    for port in 29082 29084 29083; do
      curl -fsS "http://127.0.0.1:$((port + ${TALLY_PORT_OFFSET:-0}))/healthz" >/dev/null || fail "nothing healthy on port $port"
    done
    grep -qx 'aggregator=2' "$LOCAL/scale" || fail ".local/scale does not remember aggregator=2"
    # Each process consumes its queue with its own consumers: twice as many as before.
    for queue in aggregator.usage invoicer.commands notifier.events; do
      expected=$((2 * before[$queue]))
      for _ in $(seq 1 100); do [ "$(consumers "$queue")" -ge "$expected" ] && break; sleep 0.2; done
      [ "$(consumers "$queue")" -ge "$expected" ] || fail "$queue has $(consumers "$queue") consumers, expected $expected"
    done
    echo "scale test: 2 processes of aggregator, invoicer and notifier run and consume their queues"
    ;;
  down)
    pids=()
    for name in aggregator-2 invoicer-2 notifier-2; do pids+=("$(cat "$RUN/$name.pid")"); done
    "$LOCAL_SH" scale aggregator=1 invoicer=1 notifier=1 >/dev/null
    for name in aggregator-2 invoicer-2 notifier-2; do
      [ ! -e "$RUN/$name.pid" ] || fail "$name.pid is still there after scaling back to 1"
    done
    for pid in "${pids[@]}"; do ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs after scaling back to 1"; done
    pid_alive aggregator || fail "the first aggregator stopped too"
    echo "scale test: back to one process each; the extra ones stopped and their pid files are gone"
    ;;
  *) fail "usage: scale_test.sh up|down" ;;
esac
