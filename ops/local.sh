#!/usr/bin/env bash
# Tally's local stack: RabbitMQ, PostgreSQL, an SMTP sink, a Stripe emulator
# (localstripe) and the Tally processes,
# all as our own processes under .local/, listening on loopback only.
#
#   ./ops/local.sh up       install what is missing, start everything, migrate, build
#   ./ops/local.sh up --cluster 3  the same with a 3-node RabbitMQ cluster (rabbitmq-1 … rabbitmq-3,
#                           AMQP_URL listing every node); `up --cluster 1` goes back to one node
#   ./ops/local.sh servers  only RabbitMQ, PostgreSQL, the SMTP sink and localstripe (no build)
#   ./ops/local.sh down     stop exactly what `up` started
#   ./ops/local.sh status   what runs, with pids and ports
#   ./ops/local.sh demo     up + a month of usage for sample tenants on every plan, sent three ways
#                           (ingest API, producer publish, the Examples/SampleAPI server's middleware),
#                           billed, emailed with PDFs, and summarized with the dashboard's URL and a key
#   ./ops/local.sh test     up + the whole test suite against the real servers
#   ./ops/local.sh check    seconds, no servers: the sources' format, the layering of Sources/ (README, Package.swift, imports)
#                           and the syntax of ops/'s scripts and alert rules; run it before a commit
#   ./ops/local.sh test-cluster  only the cluster test (also part of `test`): a second stack with 3
#                           RabbitMQ nodes; a node, then the queue leader's, SIGKILLed during 100,000 events
#   ./ops/local.sh test-dates  CI's date checks: the date-sensitive suites with Tally's clock
#                           (TALLY_CLOCK_OFFSET) on Jan 31, Feb 29 and just into a new year
#   ./ops/local.sh bench [PHASE]  up + release build + SPEC §7 benchmarks (and the Notifier's) beside raw limits,
#                                 saved in .local/bench/; PHASE (ingest, pipeline, tenants, scaling, billing, notify, dashboard) runs one only
#                                 (tenants: the aggregator's drain rate at 20 … 50,000 tenants per batch;
#                                 scaling: the drain rate of 1, 2 and 4 aggregator processes side by side;
#                                 dashboard: page and usage-history times over 6 months of rollups)
#   ./ops/local.sh scale ROLE=N ...  run N processes of a role (billing-api, producer, aggregator,
#                           invoicer, notifier), e.g. `scale aggregator=4 notifier=2`; kept by `up`
#   ./ops/local.sh stop NAME / start NAME   one server (postgres, rabbitmq, rabbitmq-2 of a cluster, smtp),
#                           e.g. for outage tests, or every process of a role (aggregator, …)
#   ./ops/local.sh restart ROLE ...  every process of the roles, one at a time (rolling)
#   ./ops/local.sh --help   this text
#
# TALLY_PORT_OFFSET=N shifts every port by N (a second checkout beside this one);
# TALLY_BUILD_CONFIG=release builds optimized binaries for `up`.
#
# `up` is idempotent: run it again and it restarts whatever has died.
# It writes .local/env (KEY=value lines; `set -a; . .local/env; set +a`) and one
# pid file per process in .local/run/NAME.pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# TALLY_LOCAL_DIR puts a second stack's files elsewhere (with its own TALLY_PORT_OFFSET);
# the Python tools' virtualenv is shared.
LOCAL="${TALLY_LOCAL_DIR:-$ROOT/.local}"
VENV="$ROOT/.local/venv"
RUN="$LOCAL/run"
LOGS="$LOCAL/log"
BIN="$LOCAL/bin"

# Ports of our own, so a system-wide server never clashes with ours. They sit below
# Linux's ephemeral range (32768-60999): a server restarted in an outage test, or a
# second stack started beside a busy one, must never find its port taken by some
# client connection's source port (seen here with the old 35xxx ports).
# TALLY_PORT_OFFSET (0 to 4000) shifts them all, to run a second checkout beside this one.
OFFSET=${TALLY_PORT_OFFSET:-0}
PG_PORT=$((26432 + OFFSET))
# RabbitMQ: one node, or with `up --cluster N` N nodes; node 1 listens on AMQP_PORT, node i ≥ 2
# on 26680 + 10 i (26700, 26710, …), each with its Erlang distribution port next to it and
# its Prometheus endpoint two above (node 1: 26674).
AMQP_PORT=$((26672 + OFFSET))
# rabbitmqctl's own distribution ports default to AMQP + 30000: keep them here too.
CTL_DIST_PORT_MIN=$((26680 + OFFSET))
EPMD_PORT=$((26369 + OFFSET))
SMTP_PORT=$((26025 + OFFSET))
INGEST_PORT=$((28080 + OFFSET))
API_PORT=$((28081 + OFFSET))
AGGREGATOR_PORT=$((28082 + OFFSET))
NOTIFIER_PORT=$((28083 + OFFSET))
INVOICER_PORT=$((28084 + OFFSET))
STRIPE_PORT=$((28420 + OFFSET))
PROMETHEUS_PORT=$((26660 + OFFSET))
# The demo's Examples/SampleAPI server (its test starts its own on SAMPLE_API_PORT + 1).
SAMPLE_API_PORT=$((28090 + OFFSET))

PG_BIN=/usr/lib/postgresql/15/bin
RABBIT_BIN=/usr/lib/rabbitmq/bin
BUILD_CONFIG="${TALLY_BUILD_CONFIG:-debug}"

APT_PACKAGES=(rabbitmq-server postgresql librabbitmq-dev libpq-dev libcurl4-openssl-dev
  libcairo2-dev libssl-dev poppler-utils curl ca-certificates pkg-config chromium chromium-driver prometheus systemd)
# selenium drives Debian's Chromium in the dashboard's browser tests (ops/browser/);
# openapi-spec-validator and schemathesis check the API against /openapi.json (ops/contract/).
# kubernetes-validate and yamllint check ops/k8s/ (ops/tests/k8s_test.py).
# pika publishes the ops CLI test's unreadable command (ops/tests/ops_cli_test.py).
PIP_PACKAGES=(aiosmtpd localstripe selenium openapi-spec-validator schemathesis kubernetes-validate yamllint pika)

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------- install

install_system_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]} (or install them yourself)"
  apt-get update -q >"$LOGS/apt.log" 2>&1 || die "apt-get update failed; see $LOGS/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$LOGS/apt.log" 2>&1 \
    || die "apt-get install failed; see $LOGS/apt.log"
}

install_python_tools() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating a Python virtualenv in .local/venv"
    python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv"
  fi
  if ! "$VENV/bin/python" -c 'import aiosmtpd, localstripe, selenium, openapi_spec_validator, schemathesis, kubernetes_validate, yamllint, pika' 2>/dev/null; then
    say "installing Python tools: ${PIP_PACKAGES[*]}"
    "$VENV/bin/pip" install -q "${PIP_PACKAGES[@]}" >"$LOGS/pip.log" 2>&1 \
      || die "pip install failed; see $LOGS/pip.log"
  fi
}

# ---------------------------------------------------------------- processes

pid_of() { [ -f "$RUN/$1.pid" ] && cat "$RUN/$1.pid" || true; }

is_running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Waits until `command` succeeds, up to `seconds`; says what to look at if not.
wait_for() {
  local what=$1 seconds=$2 log=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s; see $log"
    sleep 0.2
  done
}

stop_pid() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

# ---------------------------------------------------------------- PostgreSQL

# PostgreSQL runs as the `postgres` user, which must reach its data, socket and log. In a
# checkout it can enter, they live in .local/postgres. In a private one (a home of mode
# 700, a `mktemp -d` folder) they live in /var/lib/tally-local/<checkout id>, which
# .local/postgres links to: the user's directories keep their permissions.
PG_HOME=""
pg_home() {
  if [ -z "$PG_HOME" ]; then
    if [ -L "$LOCAL/postgres" ]; then
      PG_HOME=$(readlink -f "$LOCAL/postgres")
    elif [ -d "$LOCAL/postgres" ] || runuser -u postgres -- test -x "$(dirname "$LOCAL")" 2>/dev/null; then
      PG_HOME="$LOCAL/postgres"
    else
      PG_HOME="/var/lib/tally-local/$(printf '%s' "$([ "$LOCAL" = "$ROOT/.local" ] && echo "$ROOT" || echo "$LOCAL")" | sha256sum | cut -c1-16)"
      mkdir -p "$LOCAL" && install -d -m 755 /var/lib/tally-local "$PG_HOME"
      ln -sfn "$PG_HOME" "$LOCAL/postgres"
      say "this checkout is private to its owner: PostgreSQL keeps its files in $PG_HOME (linked from .local/postgres)"
    fi
  fi
  printf '%s' "$PG_HOME"
}
pg_data() { echo "$(pg_home)/data"; }
pg_socket() { echo "$(pg_home)/socket"; }
as_postgres() { runuser -u postgres -- "$@"; }
psql_admin() { as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_socket)" -p $PG_PORT -U postgres "$@"; }

start_postgres() {
  pg_home >/dev/null
  mkdir -p "$(pg_home)" && chmod 755 "$LOCAL" "$(pg_home)"
  if [ ! -f "$(pg_data)/PG_VERSION" ]; then
    say "initializing PostgreSQL in $(pg_home)"
    install -d -o postgres -g postgres -m 700 "$(pg_data)"
    as_postgres "$PG_BIN/initdb" -D "$(pg_data)" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOGS/postgres-init.log" 2>&1 \
      || die "initdb failed; see $LOGS/postgres-init.log"
  fi
  install -d -o postgres -g postgres -m 755 "$(pg_socket)"
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$(pg_data)" status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    # The server writes its log where it can reach it; .local/log/postgres.log links there.
    touch "$(pg_home)/postgres.log" && chown postgres "$(pg_home)/postgres.log"
    [ "$(pg_home)/postgres.log" -ef "$LOGS/postgres.log" ] || ln -sfn "$(pg_home)/postgres.log" "$LOGS/postgres.log"
    # log_error_verbosity=terse: an error's DETAIL ("Failing row contains (…)", a key's
    # value) quotes row data — a webhook's signing secret — and stays out of the log.
    # max_connections=400: the test suite's parallel phase (every suite's pools and
    # in-process workers beside the stack's own) went past 200 on CI (2026-12-03: "remaining
    # connection slots are reserved", a webhook answered 503); an idle slot costs little.
    as_postgres "$PG_BIN/pg_ctl" -D "$(pg_data)" -l "$(pg_home)/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$(pg_socket) -c max_connections=400 -c shared_buffers=256MB -c timezone=UTC -c log_error_verbosity=terse" \
      start >/dev/null || die "PostgreSQL did not start; see $LOGS/postgres.log"
  fi
  head -1 "$(pg_data)/postmaster.pid" >"$RUN/postgres.pid"
  psql_admin -d postgres <<'SQL'
SELECT 'CREATE ROLE tally LOGIN CREATEDB PASSWORD ''tally'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tally') \gexec
SELECT 'CREATE DATABASE tally OWNER tally'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tally') \gexec
SQL
}

stop_postgres() {
  if [ -f "$(pg_data)/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$(pg_data)" -m fast -w stop >/dev/null 2>&1 || true
  fi
  stop_pid postgres
}

# ---------------------------------------------------------------- RabbitMQ

# The number of RabbitMQ nodes: 1, or what `up --cluster N` said (kept in .local/rabbitmq-nodes).
rabbit_nodes() { cat "$LOCAL/rabbitmq-nodes" 2>/dev/null || echo 1; }
rabbit_node() { if [ "$(rabbit_nodes)" -eq 1 ]; then echo tally@localhost; else echo "tally-$1@localhost"; fi; }
rabbit_name() { if [ "$(rabbit_nodes)" -eq 1 ]; then echo rabbitmq; else echo "rabbitmq-$1"; fi; }
rabbit_port() { if [ "$1" -eq 1 ]; then echo "$AMQP_PORT"; else echo $((26680 + 10 * $1 + OFFSET)); fi; }
rabbit_prometheus_port() { if [ "$1" -eq 1 ]; then echo $((26674 + OFFSET)); else echo $(($(rabbit_port "$1") + 2)); fi; }

rabbit_env() {
  local node=$1
  export HOME="$LOCAL/rabbitmq"
  export RABBITMQ_NODENAME
  RABBITMQ_NODENAME=$(rabbit_node "$node")
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT
  RABBITMQ_NODE_PORT=$(rabbit_port "$node")
  export RABBITMQ_DIST_PORT=$((RABBITMQ_NODE_PORT + 1))
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT=$EPMD_PORT
  # Each node keeps its data in mnesia/NODENAME and logs as NODENAME.log.
  export RABBITMQ_MNESIA_BASE="$LOCAL/rabbitmq/mnesia"
  export RABBITMQ_LOG_BASE="$LOGS/rabbitmq"
  export RABBITMQ_CONFIG_FILE="$LOCAL/rabbitmq/$(rabbit_name "$node").conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$LOCAL/rabbitmq/enabled_plugins"
  export RABBITMQ_CONF_ENV_FILE="$LOCAL/rabbitmq/rabbitmq-env.conf"
  export RABBITMQ_PID_FILE
  RABBITMQ_PID_FILE="$RUN/$(rabbit_name "$node").pid"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_DIST_PORT_MIN=$CTL_DIST_PORT_MIN RABBITMQ_CTL_DIST_PORT_MAX=$((CTL_DIST_PORT_MIN + 10))
}

write_rabbit_files() {
  local node
  mkdir -p "$LOCAL/rabbitmq/mnesia" "$LOGS/rabbitmq"
  for node in $(seq 1 "$(rabbit_nodes)"); do
    cat >"$LOCAL/rabbitmq/$(rabbit_name "$node").conf" <<CONF
loopback_users.guest = true
log.file.level = info
disk_free_limit.absolute = 200MB
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $(rabbit_prometheus_port "$node")
CONF
  done
  # Queue depths, per queue, for Prometheus (ops/prometheus/): /metrics/detailed on each node.
  echo '[rabbitmq_prometheus].' >"$LOCAL/rabbitmq/enabled_plugins"
  : >"$LOCAL/rabbitmq/rabbitmq-env.conf"
  # rabbitmqctl and rabbitmq-queues that address our private nodes, for people, scripts and
  # tests: the first live node unless -n names one.
  local tool
  for tool in rabbitmqctl rabbitmq-queues; do
    cat >"$BIN/$tool" <<WRAP
#!/usr/bin/env bash
# $tool for Tally's private RabbitMQ node(s) (written by ops/local.sh up).
export HOME="$LOCAL/rabbitmq" ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_DIST_PORT_MIN=$CTL_DIST_PORT_MIN RABBITMQ_CTL_DIST_PORT_MAX=$((CTL_DIST_PORT_MIN + 10))
for argument in "\$@"; do
  case \$argument in -n | --node | -n* | --node=*) exec "$RABBIT_BIN/$tool" "\$@" ;; esac
done
node=$(rabbit_node 1)
for index in \$(seq 1 $(rabbit_nodes)); do
  name=\$([ $(rabbit_nodes) -eq 1 ] && echo rabbitmq || echo "rabbitmq-\$index")
  if [ -f "$RUN/\$name.pid" ] && kill -0 "\$(cat "$RUN/\$name.pid")" 2>/dev/null; then
    node=\$([ $(rabbit_nodes) -eq 1 ] && echo tally@localhost || echo "tally-\$index@localhost")
    break
  fi
done
exec "$RABBIT_BIN/$tool" -n "\$node" "\$@"
WRAP
    chmod +x "$BIN/$tool"
  done
}

rabbitmqctl_on() { local node=$1; shift; "$BIN/rabbitmqctl" -n "$(rabbit_node "$node")" "$@"; }

# Starts node NODE (1 …) unless it runs; it rejoins its cluster by itself after a restart.
start_rabbit_node() {
  local node=$1 name
  name=$(rabbit_name "$node")
  if is_running "$name" && rabbitmqctl_on "$node" -q await_startup --timeout 5 >/dev/null 2>&1; then
    return 0
  fi
  say "starting RabbitMQ $([ "$(rabbit_nodes)" -eq 1 ] || echo "node $node ")on 127.0.0.1:$(rabbit_port "$node")"
  (
    rabbit_env "$node"
    epmd -address 127.0.0.1 -port "$EPMD_PORT" -daemon
    setsid "$RABBIT_BIN/rabbitmq-server" >"$LOGS/$name.out" 2>&1 </dev/null &
  )
}

# Waits for node NODE and writes its pid file (the VM's pid, from the node itself).
await_rabbit_node() {
  local node=$1 name
  name=$(rabbit_name "$node")
  wait_for "RabbitMQ node $node" 120 "$LOGS/$name.out and $LOGS/rabbitmq/" rabbitmqctl_on "$node" -q await_startup --timeout 5
  rabbitmqctl_on "$node" -q eval 'os:getpid().' | tr -d '"' >"$RUN/$name.pid"
}

# Node NODE ≥ 2 joins node 1's cluster unless it is a member already.
join_rabbit_node() {
  local node=$1 first
  first=$(rabbit_node 1)
  if rabbitmqctl_on "$node" -q eval "lists:member('$first', rabbit_nodes:all())." 2>/dev/null | grep -q true; then
    return 0
  fi
  say "RabbitMQ node $node joins the cluster of $first"
  rabbitmqctl_on "$node" -q stop_app >/dev/null
  rabbitmqctl_on "$node" -q join_cluster "$first" >/dev/null || die "node $node could not join $first; see $LOGS/rabbitmq/"
  rabbitmqctl_on "$node" -q start_app >/dev/null
}

cluster_running_nodes() {
  rabbitmqctl_on 1 -q eval 'length(rabbit_nodes:all_running()).' 2>/dev/null
}
cluster_complete() { [ "$(cluster_running_nodes)" = "$1" ]; }

start_rabbitmq() {
  local nodes node
  nodes=$(rabbit_nodes)
  write_rabbit_files
  for node in $(seq 1 "$nodes"); do start_rabbit_node "$node"; done
  for node in $(seq 1 "$nodes"); do await_rabbit_node "$node"; done
  for node in $(seq 2 "$nodes"); do join_rabbit_node "$node"; done
  if [ "$nodes" -gt 1 ]; then
    wait_for "the $nodes-node RabbitMQ cluster" 120 "$LOGS/rabbitmq/" cluster_complete "$nodes"
  fi
  # Imported once every node has joined, so each quorum queue gets a replica on every node.
  say "importing the topology (ops/rabbitmq/definitions.json)"
  "$BIN/rabbitmqctl" -q import_definitions "$ROOT/ops/rabbitmq/definitions.json" >/dev/null
}

stop_rabbit_node() {
  local node=$1 name
  name=$(rabbit_name "$node")
  if is_running "$name"; then
    rabbitmqctl_on "$node" -q stop >/dev/null 2>&1 || true
  fi
  stop_pid "$name"
}

stop_rabbitmq() {
  local node
  # The last node up stops last, so the cluster restarts from it without waiting for others.
  for node in $(seq "$(rabbit_nodes)" -1 1); do stop_rabbit_node "$node"; done
  ERL_EPMD_PORT=$EPMD_PORT epmd -port $EPMD_PORT -kill >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- SMTP sink

start_smtp() {
  mkdir -p "$LOCAL/mail"
  is_running smtp && return 0
  say "starting the SMTP sink on 127.0.0.1:$SMTP_PORT (mail lands in .local/mail)"
  setsid "$VENV/bin/python" "$ROOT/ops/mail_sink.py" --host 127.0.0.1 --port $SMTP_PORT \
    --dir "$LOCAL/mail" >"$LOGS/smtp.log" 2>&1 </dev/null &
  echo $! >"$RUN/smtp.pid"
  wait_for "the SMTP sink" 30 "$LOGS/smtp.log" bash -c "exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT"
}

# ---------------------------------------------------------------- Stripe emulator

# localstripe (PyPI) on loopback: the Invoicer pushes invoices of `stripe` tenants to it.
start_stripe() {
  is_running stripe && return 0
  say "starting the Stripe emulator (localstripe) on 127.0.0.1:$STRIPE_PORT"
  setsid "$VENV/bin/python" "$ROOT/ops/stripe_emulator.py" --host 127.0.0.1 --port $STRIPE_PORT \
    >"$LOGS/stripe.log" 2>&1 </dev/null &
  echo $! >"$RUN/stripe.pid"
  wait_for "the Stripe emulator" 30 "$LOGS/stripe.log" curl -fsS -H "Authorization: Bearer sk_test_tally_local" \
    "http://127.0.0.1:$STRIPE_PORT/v1/balance"
}

# ---------------------------------------------------------------- Prometheus

# Prometheus (Debian's) with ops/prometheus/: its configuration and rules are copied into
# .local/prometheus/ beside the targets files, which list every process `up` and `scale`
# run and every RabbitMQ node (Prometheus rereads them when they change).
write_prometheus_targets() {
  local dir="$LOCAL/prometheus" role index node first=1
  mkdir -p "$dir"
  cp "$ROOT/ops/prometheus/prometheus.yml" "$ROOT/ops/prometheus/alerts.yml" "$dir/"
  {
    printf '['
    for role in "${TALLY_PROCESSES[@]}"; do
      for index in $(seq 1 "$(desired_count "$role")"); do
        [ $first = 1 ] || printf ','
        first=0
        printf '\n  {"targets": ["127.0.0.1:%s"], "labels": {"role": "%s", "process": "%s"}}' \
          "$(instance_port "$role" "$index")" "$role" "$(instance_name "$role" "$index")"
      done
    done
    printf '\n]\n'
  } >"$dir/tally-targets.json.tmp"
  mv "$dir/tally-targets.json.tmp" "$dir/tally-targets.json"
  {
    printf '['
    for node in $(seq 1 "$(rabbit_nodes)"); do
      [ "$node" = 1 ] || printf ','
      printf '\n  {"targets": ["127.0.0.1:%s"], "labels": {"node": "%s"}}' "$(rabbit_prometheus_port "$node")" "$(rabbit_node "$node")"
    done
    printf '\n]\n'
  } >"$dir/rabbitmq-targets.json.tmp"
  mv "$dir/rabbitmq-targets.json.tmp" "$dir/rabbitmq-targets.json"
}

start_prometheus() {
  write_prometheus_targets
  if is_running prometheus; then
    # A changed configuration or rule file is read again without a restart.
    kill -HUP "$(pid_of prometheus)"
    return 0
  fi
  say "starting Prometheus on 127.0.0.1:$PROMETHEUS_PORT (ops/prometheus/, alert rules included)"
  setsid prometheus --config.file="$LOCAL/prometheus/prometheus.yml" --storage.tsdb.path="$LOCAL/prometheus/data" \
    --storage.tsdb.retention.time=3d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >"$LOGS/prometheus.log" 2>&1 </dev/null &
  echo $! >"$RUN/prometheus.pid"
  wait_for "Prometheus" 60 "$LOGS/prometheus.log" curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
}

# ---------------------------------------------------------------- Tally

# A random secret kept under .local/secrets: NAME, PREFIX.
local_secret() {
  local file="$LOCAL/secrets/$1"
  if [ ! -s "$file" ]; then
    mkdir -p "$LOCAL/secrets" && chmod 700 "$LOCAL/secrets"
    (umask 077 && python3 -c "import secrets; print('$2' + secrets.token_hex(24))" >"$file")
  fi
  cat "$file"
}
admin_token() { local_secret admin-token tally_admin_; }

# Every node of the broker, comma-separated: clients fail over from one to the next.
amqp_url() {
  local url="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2F" node
  for node in $(seq 2 "$(rabbit_nodes)"); do url+=",127.0.0.1:$(rabbit_port "$node")"; done
  echo "$url"
}

write_env() {
  cat >"$LOCAL/env" <<ENV
AMQP_URL=$(amqp_url)
DATABASE_URL=postgresql://tally:tally@127.0.0.1:$PG_PORT/tally
SMTP_URL=smtp://127.0.0.1:$SMTP_PORT
TALLY_INGEST_URL=http://127.0.0.1:$INGEST_PORT
TALLY_API_URL=http://127.0.0.1:$API_PORT
TALLY_AGGREGATOR_URL=http://127.0.0.1:$AGGREGATOR_PORT
TALLY_NOTIFIER_URL=http://127.0.0.1:$NOTIFIER_PORT
TALLY_INVOICER_URL=http://127.0.0.1:$INVOICER_PORT
BILLING_ADMIN_TOKEN=$(admin_token)
FINANCE_EMAIL=finance@tally.localhost
MAIL_SINK_DIR=$LOCAL/mail
TALLY_MIGRATIONS_DIR=$(migrations_dir)
TALLY_RABBITMQCTL=$BIN/rabbitmqctl
TALLY_SPOOL_DIR=$LOCAL/spool/producer
STRIPE_API_KEY=sk_test_tally_local
STRIPE_API_BASE=http://127.0.0.1:$STRIPE_PORT
STRIPE_WEBHOOK_SECRET=$(local_secret stripe-webhook-secret whsec_)
TALLY_DEFAULT_PAYMENT_PROVIDER=none
TALLY_WEBHOOK_ALLOW_PRIVATE=1
TALLY_PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
ENV
  chmod 600 "$LOCAL/env"
}

load_env() { set -a; . "$LOCAL/env"; set +a; }

# With BUILD_TESTS=1 (./ops/local.sh test) the tests are built in the same pass:
# a separate plain build would compile every package twice (tests need -enable-testing).
build() {
  local flags=(-c "$BUILD_CONFIG")
  [ "${BUILD_TESTS:-0}" = 1 ] && flags+=(--build-tests)
  say "building Tally ($BUILD_CONFIG${BUILD_TESTS:+, with tests})"
  (cd "$ROOT" && swift build "${flags[@]}") || die "swift build failed (see the compiler output above)"
}

# The binaries Tally runs: this checkout's build, or the release ops/rollback.sh pinned in
# .local/release (its binaries and its migrations).
pinned_release() { [ -s "$LOCAL/release" ] && [ -d "$LOCAL/releases/$(cat "$LOCAL/release")" ] && cat "$LOCAL/release"; }
tally_bin() {
  local release
  if release=$(pinned_release); then echo "$LOCAL/releases/$release/bin/$1"; else echo "$ROOT/.build/$BUILD_CONFIG/$1"; fi
}
migrations_dir() {
  local release
  if release=$(pinned_release); then echo "$LOCAL/releases/$release/sql"; else echo "$ROOT/ops/sql"; fi
}

migrate() {
  # Processes of the previous build must not run on a newer schema (e.g. 014 moves the
  # usage dedup): stop those that start_tally restarts with their rebuilt binary anyway.
  local name
  for name in $(tally_instances); do
    if is_running "$name" && [ "$(tally_bin "${name%-[0-9]*}")" -nt "$RUN/$name.pid" ]; then stop_pid "$name"; fi
  done
  say "migrating the database (ops/sql)"
  "$(tally_bin billing-api)" migrate || die "migration failed (see above)"
}

# NAME, then the command line; logs to .local/log/NAME.log.
start_tally_process() {
  local name=$1
  shift
  if is_running "$name"; then
    # A rebuilt binary replaces the running process, so `up` after a change runs the change.
    [ "$1" -nt "$RUN/$name.pid" ] || return 0
    say "restarting $name (its binary was rebuilt)"
    stop_pid "$name"
  fi
  say "starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# Each role runs as many processes as `scale` asked for (.local/scale, ROLE=N lines;
# default 1). Process 1 is NAME (NAME.pid, the ports above); process i ≥ 2 is NAME-i
# (NAME-i.pid) on the port of process 1 + 1000 + 10 × (i − 2), e.g. aggregator-2 on
# 29082, aggregator-3 on 29092; a producer's spool is .local/spool/NAME-i.
instance_name() { if [ "$2" -eq 1 ]; then echo "$1"; else echo "$1-$2"; fi; }

instance_port() {
  local base
  case $1 in
    billing-api) base=$API_PORT ;;
    producer) base=$INGEST_PORT ;;
    aggregator) base=$AGGREGATOR_PORT ;;
    invoicer) base=$INVOICER_PORT ;;
    notifier) base=$NOTIFIER_PORT ;;
  esac
  if [ "$2" -eq 1 ]; then echo "$base"; else echo $((base + 1000 + 10 * ($2 - 2))); fi
}

# ROLE INDEX: starts that process of the role unless it runs (with its current binary).
start_instance() {
  local role=$1 index=$2 name port
  name=$(instance_name "$role" "$index")
  port=$(instance_port "$role" "$index")
  case $role in
    billing-api) BILLING_API_PORT=$port start_tally_process "$name" "$(tally_bin billing-api)" serve --host 127.0.0.1 --port "$port" ;;
    producer) TALLY_SPOOL_DIR="$LOCAL/spool/$name" \
      start_tally_process "$name" "$(tally_bin producer)" serve --host 127.0.0.1 --port "$port" ;;
    # Two malloc arenas: glibc's default (8 per core, one per contended thread) keeps what
    # each batch freed; at 50,000 tenants per batch that is a third of the Aggregator's RSS.
    aggregator) MALLOC_ARENA_MAX=2 AGGREGATOR_PORT=$port start_tally_process "$name" "$(tally_bin aggregator)" run ;;
    invoicer) INVOICER_PORT=$port start_tally_process "$name" "$(tally_bin invoicer)" run ;;
    notifier) NOTIFIER_PORT=$port start_tally_process "$name" "$(tally_bin notifier)" run ;;
  esac
}

wait_instance() {
  local name
  name=$(instance_name "$1" "$2")
  wait_for "$name" 60 "$LOGS/$name.log" curl -fsS "http://127.0.0.1:$(instance_port "$1" "$2")/healthz"
}

# How many processes of ROLE `scale` asked for (1 unless it said otherwise).
desired_count() {
  local count=""
  [ -f "$LOCAL/scale" ] && count=$(sed -n "s/^$1=\([0-9]*\)$/\1/p" "$LOCAL/scale" | tail -1)
  echo "${count:-1}"
}

# The index of every pid file of ROLE (1 for NAME.pid, i for NAME-i.pid).
instance_indexes() {
  local file index
  [ -f "$RUN/$1.pid" ] && echo 1
  for file in "$RUN/$1"-*.pid; do
    [ -e "$file" ] || continue
    index=${file##*/$1-}
    index=${index%.pid}
    case $index in '' | *[!0-9]*) ;; *) echo "$index" ;; esac
  done
}

# The names of every Tally process with a pid file, scaled ones included.
tally_instances() {
  local role index
  for role in "${TALLY_PROCESSES[@]}"; do
    for index in $(instance_indexes "$role" | sort -n); do instance_name "$role" "$index"; done
  done
}

start_tally() {
  local role index
  for role in billing-api producer aggregator invoicer notifier; do
    for index in $(seq 1 "$(desired_count "$role")"); do start_instance "$role" "$index"; done
  done
  for role in billing-api aggregator producer notifier invoicer; do
    for index in $(seq 1 "$(desired_count "$role")"); do wait_instance "$role" "$index"; done
  done
}

TALLY_PROCESSES=(billing-api notifier invoicer aggregator producer)

cmd_servers() {
  mkdir -p "$RUN" "$LOGS" "$BIN"
  install_system_packages
  install_python_tools
  start_postgres
  start_rabbitmq
  start_smtp
  start_stripe
  write_env
  load_env
}

cmd_up() {
  local cluster=""
  while [ $# -gt 0 ]; do
    case $1 in
      --cluster) cluster=${2:-}; shift 2 || die "--cluster needs a node count" ;;
      --cluster=*) cluster=${1#--cluster=}; shift ;;
      *) die "up: unknown option '$1' (up [--cluster N])" ;;
    esac
  done
  if [ -n "$cluster" ]; then
    [[ "$cluster" =~ ^[1-5]$ ]] || die "--cluster takes 1 to 5 RabbitMQ nodes (3 survives the loss of one)"
    mkdir -p "$RUN" "$LOGS" "$BIN"
    if [ "$cluster" != "$(rabbit_nodes)" ]; then
      # The nodes change names, so the new broker starts from other data: what is queued now
      # would stay behind with the old one. Refuse while anything waits.
      local queued=0
      if is_running "$(rabbit_name 1)"; then
        queued=$("$BIN/rabbitmqctl" -q list_queues messages --no-table-headers 2>/dev/null | awk '{ n += $1 } END { print n + 0 }')
      fi
      [ "$queued" = 0 ] || [ "${TALLY_DISCARD_QUEUED:-0}" = 1 ] \
        || die "$queued message(s) still wait in RabbitMQ's queues, and the $cluster-node broker would start without them: let the workers drain them (./ops/local.sh status; .local/bin/rabbitmqctl list_queues name messages), or set TALLY_DISCARD_QUEUED=1 to leave them behind"
      say "RabbitMQ: $(rabbit_nodes) node(s) → $cluster; Tally's processes restart with the new AMQP_URL"
      local name
      for name in $(tally_instances) sample-api; do stop_pid "$name"; done
      stop_rabbitmq
      if [ "$cluster" = 1 ]; then rm -f "$LOCAL/rabbitmq-nodes"; else echo "$cluster" >"$LOCAL/rabbitmq-nodes"; fi
    fi
  fi
  cmd_servers
  build
  migrate
  start_tally
  start_prometheus
  if pinned_release >/dev/null; then
    say "running release $(pinned_release), pinned by ops/rollback.sh (ops/rollback.sh --to build runs this checkout's build)"
  fi
  say "up: .local/env written; pids in .local/run; logs in .local/log; Prometheus on $TALLY_PROMETHEUS_URL"
}

# `scale ROLE=N ...`: N processes of each role named, started or stopped to match, and
# remembered in .local/scale so `up` keeps them (scale ROLE=1 goes back to one).
cmd_scale() {
  [ $# -gt 0 ] || die "scale what? e.g. ./ops/local.sh scale aggregator=4 notifier=2 (roles: ${TALLY_PROCESSES[*]})"
  local pair role count index
  for pair in "$@"; do
    role=${pair%%=*}
    count=${pair#*=}
    [[ " ${TALLY_PROCESSES[*]} " == *" $role "* ]] || die "unknown role '$role' in '$pair' (roles: ${TALLY_PROCESSES[*]})"
    [[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] && [ "$count" -le 16 ] \
      || die "'$pair': give each role 1 to 16 processes (stop the stack with ./ops/local.sh down)"
  done
  is_running postgres && is_running "$(rabbit_name 1)" || die "the stack is not up: run ./ops/local.sh up first"
  [ -x "$(tally_bin aggregator)" ] || die "Tally is not built: run ./ops/local.sh up first"
  load_env
  touch "$LOCAL/scale"
  for pair in "$@"; do
    role=${pair%%=*}
    count=${pair#*=}
    sed -i "/^$role=/d" "$LOCAL/scale"
    echo "$role=$count" >>"$LOCAL/scale"
    for index in $(instance_indexes "$role"); do
      [ "$index" -le "$count" ] || { say "stopping $(instance_name "$role" "$index")"; stop_pid "$(instance_name "$role" "$index")"; }
    done
    for index in $(seq 1 "$count"); do start_instance "$role" "$index"; done
    for index in $(seq 1 "$count"); do wait_instance "$role" "$index"; done
    say "$role: $count process(es)"
  done
  # Prometheus scrapes what runs now (it rereads the targets file by itself).
  write_prometheus_targets
  cmd_status
}

cmd_down() {
  for name in $(tally_instances) sample-api prometheus; do stop_pid "$name"; done
  stop_pid smtp
  stop_pid stripe
  stop_rabbitmq
  stop_postgres
  say "down: every process of ours is stopped"
}

cmd_status() {
  local name pid state
  local role index names=(postgres)
  for index in $(seq 1 "$(rabbit_nodes)"); do names+=("$(rabbit_name "$index")"); done
  names+=(smtp stripe)
  # Every process a role should have (scale) and every one that has a pid file.
  for role in "${TALLY_PROCESSES[@]}"; do
    for index in $( (seq 1 "$(desired_count "$role")"; instance_indexes "$role") | sort -nu); do
      names+=("$(instance_name "$role" "$index")")
    done
  done
  [ -f "$RUN/sample-api.pid" ] && names+=(sample-api)
  names+=(prometheus)
  for name in "${names[@]}"; do
    pid=$(pid_of "$name")
    if is_running "$name"; then state="running"; elif [ -n "$pid" ]; then state="dead"; else state="stopped"; fi
    printf '%-14s %-8s %s\n' "$name" "$state" "${pid:-}"
  done
}

# ---------------------------------------------------------------- demo

# The demo's sample API server: Examples/SampleAPI, a package of its own that depends on
# Tally by path and meters its requests with the README's snippet.
start_sample_api() {
  say "building Examples/SampleAPI (a package of its own, depending on Tally by path)"
  (cd "$ROOT/Examples/SampleAPI" && swift build) || die "Examples/SampleAPI does not build (see the compiler output above)"
  SAMPLE_API_PORT=$SAMPLE_API_PORT SAMPLE_SPOOL_DIR="$LOCAL/spool/sample-api" \
    start_tally_process sample-api "$ROOT/Examples/SampleAPI/.build/debug/SampleAPI"
  wait_for "the sample API" 60 "$LOGS/sample-api.log" curl -fsS "http://127.0.0.1:$SAMPLE_API_PORT/healthz"
}

# The demo's plan with a hard quota, a catalog entry created through the catalog API as
# an operator would: Starter's prices, with `estimates` refused at 50. Created once; on
# later runs the API answers 409 (the code exists) and the plan is used as it is.
ensure_demo_plan() {
  local status
  status=$(load_env; curl -sS -o "$LOGS/demo-plan.json" -w '%{http_code}' -X POST "$TALLY_API_URL/v1/plans" \
    -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -H 'Content-Type: application/json' --data @- <<'JSON'
{"code": "demo-capped", "name": "Starter, capped estimates", "currency": "usd", "interval": "month", "base_cents": 29900,
 "charges": [
   {"metric": "api_calls", "enforcement": "soft", "quota": 1000, "model": "standard", "included": 1000, "unit_price": 10},
   {"metric": "estimates", "enforcement": "hard", "quota": 50, "model": "standard", "included": 50, "unit_price": 500},
   {"metric": "users", "enforcement": "soft", "quota": 3, "model": "standard", "included": 3, "unit_price": 1000}]}
JSON
  ) || die "could not reach the billing API to create the demo plan"
  case "$status" in
    201|409) ;;
    *) die "the billing API refused the demo plan ($status): $(cat "$LOGS/demo-plan.json")" ;;
  esac
}

# The demo itself on a running stack (ops/demo/demo.py says what it does).
run_demo() {
  start_sample_api
  ensure_demo_plan
  (load_env
   TALLY_BIN_DIR="$(dirname "$(tally_bin invoicer)")" timeout -k 10 900 python3 "$ROOT/ops/demo/demo.py" \
     --root "$ROOT" --sample-api "http://127.0.0.1:$SAMPLE_API_PORT" ${TALLY_DEMO_SEED:+--seed "$TALLY_DEMO_SEED"})
}

cmd_demo() {
  local started=$SECONDS
  cmd_up
  run_demo || die "the demo failed (its last lines say why); logs are in $LOGS"
  say "demo: done in $((SECONDS - started))s; run it again for new tenants, or ./ops/local.sh down to stop everything"
}

# run_suite LOG [swift test arguments...]: the suite's output goes to the terminal and LOG.
# The timeout is a guard, not a performance bound: a suite that hangs fails CI in
# minutes instead of at CI's 90-minute limit (TALLY_TEST_TIMEOUT seconds, default 1200).
run_suite() {
  local log=$1 status=0
  shift
  (cd "$ROOT" && timeout -k 30 "${TALLY_TEST_TIMEOUT:-1200}" swift test --skip-build --disable-xctest "$@" 2>&1 \
    | tee "$log"; exit "${PIPESTATUS[0]}") || status=$?
  [ "$status" -ne 124 ] || die "tests hung and were stopped after ${TALLY_TEST_TIMEOUT:-1200}s; the output is in $log"
  [ "$status" -eq 0 ] || die "tests failed; the full output is in $log"
}

# The dashboard in a real browser (headless Chromium through Selenium) against the
# running Billing API; screenshots land in .local/artifacts/.
run_browser_tests() {
  local status=0
  say "running the dashboard's browser tests (Chromium, headless; screenshots in .local/artifacts)"
  (set -a; . "$LOCAL/env"; set +a
   cd "$ROOT" && timeout -k 10 300 "$VENV/bin/python" ops/browser/dashboard_test.py 2>&1 | tee "$LOGS/test-browser.log"
   exit "${PIPESTATUS[0]}") || status=$?
  [ "$status" -eq 0 ] || die "browser tests failed; the output is in $LOGS/test-browser.log, screenshots in .local/artifacts"
}

# The API against its OpenAPI document: validated, then every operation called by
# schemathesis with a tenant key (no 5xx, no response contradicting the document).
run_contract_tests() {
  local status=0
  say "checking the API against /openapi.json (openapi-spec-validator, schemathesis)"
  (set -a; . "$LOCAL/env"; set +a
   timeout -k 10 600 "$ROOT/ops/contract/contract_test.sh" 2>&1 | tee "$LOGS/test-contract.log"
   exit "${PIPESTATUS[0]}") || status=$?
  [ "$status" -eq 0 ] || die "the API contract check failed; the output is in $LOGS/test-contract.log"
}

# One run of the demo inside `test` (its output in .local/log/test-demo-ROUND.log).
demo_round() {
  say "running the demo (round $1 of 2; its output is in $LOGS/test-demo-$1.log)"
  run_demo >"$LOGS/test-demo-$1.log" 2>&1 || { tail -20 "$LOGS/test-demo-$1.log" >&2
    die "the demo failed (round $1); its output is in $LOGS/test-demo-$1.log"; }
}

# ops/tests/scale_test.sh up|down: `scale` to 2 processes per worker, and back.
scale_check() {
  say "scale test ($1): ./ops/local.sh scale $([ "$1" = up ] && echo 'aggregator=2 invoicer=2 notifier=2 producer=2 billing-api=2' || echo 'back to 1')"
  (load_env; "$ROOT/ops/tests/scale_test.sh" "$1") 2>&1 | tee -a "$LOGS/test-scale.log" \
    || die "the scale test ($1) failed; its output is in $LOGS/test-scale.log"
}

# The cluster test (ops/tests/cluster_test.py) on a second stack of its own: files in
# .local/cluster-test, ports shifted by 300, RabbitMQ as 3 nodes (`up --cluster 3`), Tally's
# processes of the same build. The stack is stopped afterwards; its files stay for a look
# until the next run.
run_cluster_test() {
  local dir="$LOCAL/cluster-test" offset=$((OFFSET + 300)) status=0
  cluster_stack() { TALLY_LOCAL_DIR="$dir" TALLY_PORT_OFFSET=$offset "$ROOT/ops/local.sh" "$@"; }
  if [ -d "$dir" ]; then
    cluster_stack down >/dev/null 2>&1 || true
    [ ! -L "$dir/postgres" ] || rm -rf "$(readlink -f "$dir/postgres")"
    rm -rf "$dir"
  fi
  say "cluster test: a second stack in $dir with a 3-node RabbitMQ cluster (up --cluster 3; log $LOGS/test-cluster-up.log)"
  BUILD_TESTS=${BUILD_TESTS:-0} cluster_stack up --cluster 3 >"$LOGS/test-cluster-up.log" 2>&1 \
    || { tail -5 "$LOGS/test-cluster-up.log" >&2; die "the cluster stack did not start; see $LOGS/test-cluster-up.log"; }
  say "cluster test: 100,000 events through ingest while a RabbitMQ node, then the queue leader's, is killed"
  (set -a; . "$dir/env"; set +a; export TALLY_LOCAL_DIR="$dir" TALLY_PORT_OFFSET=$offset
   timeout -k 10 900 python3 "$ROOT/ops/tests/cluster_test.py" 2>&1 | tee "$LOGS/test-cluster.log"
   exit "${PIPESTATUS[0]}") || status=$?
  cluster_stack down >/dev/null 2>&1 || true
  [ "$status" -eq 0 ] || die "the cluster test failed; its output is in $LOGS/test-cluster.log, the stack's logs in $dir/log"
}

# `check`: the quick checks to run before a commit (seconds, no servers): the layering of
# Sources/ against the README and Package.swift, and the syntax of ops/'s scripts and rules.
# The Swift sources as .swift-format says they are written; `swift format format -i -r -p
# Sources Tests Examples/SampleAPI/Sources Package.swift` fixes what it can.
run_format_lint() {
  say "checking the Swift sources' format (swift format lint --strict, .swift-format)"
  (cd "$ROOT" && swift format lint --strict -r -p Sources Tests Examples/SampleAPI/Sources Package.swift) \
    || die "the sources are not formatted as .swift-format says (above); run: swift format format -i -r -p Sources Tests Examples/SampleAPI/Sources Package.swift"
}

cmd_check() {
  local started=$SECONDS script
  run_format_lint
  python3 "$ROOT/ops/tests/layering_test.py" || die "the layering check failed (above)"
  python3 "$ROOT/ops/tests/sql_placement_test.py" || die "SQL outside the store modules (above)"
  for script in "$ROOT"/ops/*.sh "$ROOT"/ops/tests/*.sh "$ROOT"/ops/contract/*.sh; do
    bash -n "$script" || die "$script has a syntax error"
  done
  python3 -m py_compile "$ROOT"/ops/*.py "$ROOT"/ops/tests/*.py "$ROOT"/ops/demo/*.py "$ROOT"/ops/bench/*.py "$ROOT"/ops/browser/*.py \
    || die "a Python script of ops/ does not compile (above)"
  find "$ROOT/ops" -name __pycache__ -type d -prune -exec rm -rf {} +
  if command -v promtool >/dev/null; then
    promtool check rules "$ROOT/ops/prometheus/alerts.yml" >/dev/null || die "ops/prometheus/alerts.yml does not pass promtool"
  fi
  say "check: passed in $((SECONDS - started))s (the whole suite is ./ops/local.sh test)"
}

cmd_test_cluster() {
  BUILD_TESTS=1 cmd_up
  BUILD_TESTS=1 run_cluster_test
}

cmd_test() {
  local started=$SECONDS
  [ "$BUILD_CONFIG" = debug ] || die "tests run against the debug build; unset TALLY_BUILD_CONFIG"
  run_format_lint
  BUILD_TESTS=1 cmd_up
  # Tests find their emails by their own ids; the sink's mail of earlier runs only takes space.
  find "$LOCAL/mail" -name '*.eml' -delete 2>/dev/null || true
  say "starting PostgreSQL from a private copy of ops/ (a folder of mode 700)"
  "$ROOT/ops/tests/private_checkout_test.sh" 2>&1 | tee "$LOGS/test-private-checkout.log" \
    || die "the private-checkout test failed; the output is in $LOGS/test-private-checkout.log"
  say "running the whole test suite against the real servers"
  run_suite "$LOGS/test.log"
  say "building Examples/SampleAPI against the library and metering a few requests through it"
  (set -a; . "$LOCAL/env"; set +a; timeout -k 10 900 "$ROOT/ops/tests/sample_api_test.sh" 2>&1 | tee "$LOGS/test-sample-api.log"
   exit "${PIPESTATUS[0]}") || die "the sample API test failed; the output is in $LOGS/test-sample-api.log"
  # The demo's generated month at every hour of a day holds no event in the future.
  python3 "$ROOT/ops/tests/demo_usage_test.py" 2>&1 | tee "$LOGS/test-demo-usage.log" \
    || die "the demo's usage generation test failed; its output is in $LOGS/test-demo-usage.log"
  # The README's first command, twice: the second run bills tenants of its own, on 2
  # processes of each worker (`scale`). Every check of ops/demo/demo.py (usage counted
  # exactly, invoices, emails with PDFs, the 429, the adjustment invoice, Stripe's total)
  # must hold both times.
  demo_round 1
  scale_check up
  demo_round 2
  scale_check down
  run_browser_tests
  run_contract_tests
  python3 "$ROOT/ops/tests/layering_test.py" 2>&1 | tee "$LOGS/test-layering.log" \
    || die "the layering test failed; its output is in $LOGS/test-layering.log"
  python3 "$ROOT/ops/tests/sql_placement_test.py" 2>&1 | tee "$LOGS/test-sql-placement.log" \
    || die "the SQL placement test failed; its output is in $LOGS/test-sql-placement.log"
  say "checking ops/systemd/ (systemd-analyze verify) and ops/k8s/ (yamllint, kubernetes-validate, the operators' CRD fields, the Dockerfile)"
  "$ROOT/ops/tests/systemd_test.sh" 2>&1 | tee "$LOGS/test-systemd.log" \
    || die "the systemd test failed; its output is in $LOGS/test-systemd.log"
  "$VENV/bin/python" "$ROOT/ops/tests/k8s_test.py" 2>&1 | tee "$LOGS/test-k8s.log" \
    || die "the Kubernetes test failed; its output is in $LOGS/test-k8s.log"
  say "checking observability: ops/prometheus/ (promtool), every /metrics, the stack's Prometheus and the Grafana dashboard's queries"
  (load_env; timeout -k 10 300 "$ROOT/ops/tests/observability_test.sh") 2>&1 | tee "$LOGS/test-observability.log" \
    || die "the observability test failed; its output is in $LOGS/test-observability.log"
  # Outage tests stop and restart the real servers, and the heavy exactness tests would
  # starve the parallel phase of CPU: they run alone, one by one.
  say "running the outage and heavy tests, one at a time (servers are stopped and restarted)"
  TALLY_DISRUPTIVE_TESTS=1 run_suite "$LOGS/test-outage.log" --no-parallel --filter 'OutageTests|SerialTests'
  say "ops commands: invoicer dlq, invoicer bill --rerun, notifier resend, producer backfill (and every --help)"
  (load_env; timeout -k 10 600 "$VENV/bin/python" "$ROOT/ops/tests/ops_cli_test.py") 2>&1 | tee "$LOGS/test-ops-cli.log" \
    || die "the ops CLI test failed; its output is in $LOGS/test-ops-cli.log"
  say "rollback test: ops/rollback.sh --dry-run, a refused rollback, then back to a previous release and forward while usage flows"
  (load_env; timeout -k 10 900 python3 "$ROOT/ops/tests/rollback_test.py") 2>&1 | tee "$LOGS/test-rollback.log" \
    || die "the rollback test failed; its output is in $LOGS/test-rollback.log"
  BUILD_TESTS=1 run_cluster_test
  say "test: passed in $((SECONDS - started))s"
}

# The date checks (CI only; `.ci/run` runs them after `test`): the suites whose dates
# derive from now (TALLY_DATE_SUITES, a --filter; by default every integration module
# but the outage and heavy tests) run again with Tally's clock (TALLY_CLOCK_OFFSET, see
# Sources/CivilTime/TallyClock.swift) moved to dates where calendars break — the 31st
# of a month, the 29th of February, the first minutes of a year (invoice numbers of the
# new year for periods of the old) — for the workers and the tests alike.
DATE_CHECKS=(2027-01-31T12:00:00Z 2028-02-29T12:00:00Z 2028-01-01T00:05:00Z)
DATE_SUITES=${TALLY_DATE_SUITES:-'AggregatorTests|BillingAPITests|InvoicerTests|NotifierTests|ProducerTests'}

restart_tally() {
  local name
  for name in $(tally_instances); do stop_pid "$name"; done
  start_tally
}

# The month partition of usage_events for `date` exists (the Aggregator's upkeep
# creates it around its clock at start).
partition_ready() {
  [ "$(PGPASSWORD=tally "$PG_BIN/psql" -X -qtA -h 127.0.0.1 -p $PG_PORT -U tally tally \
    -c "SELECT to_regclass('usage_events_$(date -u -d "$1" +%Y_%m)') IS NOT NULL")" = t ]
}

# Puts the workers back on the real clock; runs however test-dates ends (a failed
# check, a failed restart, Ctrl-C), so no worker stays in another year.
restore_real_clock() {
  trap - EXIT
  unset TALLY_CLOCK_OFFSET
  say "restarting the workers on the real clock"
  restart_tally
}

cmd_test_dates() {
  local started=$SECONDS target offset status=0
  [ "$BUILD_CONFIG" = debug ] || die "tests run against the debug build; unset TALLY_BUILD_CONFIG"
  BUILD_TESTS=1 cmd_up
  trap restore_real_clock EXIT
  for target in "${DATE_CHECKS[@]}"; do
    offset=$(($(date -u -d "$target" +%s) - $(date -u +%s)))
    say "date check: Tally's clock at $target (TALLY_CLOCK_OFFSET=$offset), workers restarted on it"
    export TALLY_CLOCK_OFFSET=$offset
    restart_tally
    wait_for "the usage partition of $target" 60 "$LOGS/aggregator.log" partition_ready "$target"
    (run_suite "$LOGS/test-dates-${target%%T*}.log" --filter "$DATE_SUITES") || status=$?
    [ "$status" -eq 0 ] || break
  done
  restore_real_clock
  [ "$status" -eq 0 ] || die "a date check failed at $target; its output is in $LOGS/test-dates-${target%%T*}.log"
  say "test-dates: passed in $((SECONDS - started))s"
}

cmd_stop() {
  [ $# -gt 0 ] || die "stop what? postgres, rabbitmq (every node), rabbitmq-N (one node of a cluster), smtp, or a role (${TALLY_PROCESSES[*]}: every process of it)"
  local what index
  for what in "$@"; do
    case "$what" in
      postgres) stop_postgres ;;
      rabbitmq) stop_rabbitmq ;;
      rabbitmq-[1-5]) [ "$(rabbit_nodes)" -gt 1 ] && [ "${what#rabbitmq-}" -le "$(rabbit_nodes)" ] \
        || die "there is no $what: RabbitMQ runs $(rabbit_nodes) node(s) (up --cluster 3 starts three)"
        stop_rabbit_node "${what#rabbitmq-}" ;;
      smtp) stop_pid smtp ;;
      billing-api | producer | aggregator | invoicer | notifier)
        # SIGTERM: each drains what it has in flight (SPEC §5).
        for index in $(instance_indexes "$what" | sort -n); do say "stopping $(instance_name "$what" "$index")"; stop_pid "$(instance_name "$what" "$index")"; done ;;
      *) die "stop what? postgres, rabbitmq, rabbitmq-N, smtp, or a role (${TALLY_PROCESSES[*]})" ;;
    esac
  done
}

# Tally processes need the environment and a build (or a pinned release).
tally_role_ready() {
  [ -f "$LOCAL/env" ] || die "the stack was never started here: ./ops/local.sh up"
  load_env
  [ -x "$(tally_bin "$1")" ] || die "$(tally_bin "$1") is missing: ./ops/local.sh up builds it"
}

# `restart ROLE ...`: every process of each role, one at a time (rolling), each healthy
# before the next stops; a role that was stopped is started.
cmd_restart() {
  [ $# -gt 0 ] || die "restart what? one or more roles: ${TALLY_PROCESSES[*]}"
  local role index
  for role in "$@"; do
    [[ " ${TALLY_PROCESSES[*]} " == *" $role "* ]] || die "restart: unknown role '$role' (${TALLY_PROCESSES[*]})"
    tally_role_ready "$role"
    for index in $(seq 1 "$(desired_count "$role")"); do
      say "restarting $(instance_name "$role" "$index")"
      stop_pid "$(instance_name "$role" "$index")"
      start_instance "$role" "$index"
      wait_instance "$role" "$index"
    done
  done
}

cmd_start() {
  mkdir -p "$RUN" "$LOGS" "$BIN"
  [ $# -gt 0 ] || die "start what? postgres, rabbitmq (every node), rabbitmq-N (one node of a cluster), smtp, or a role (${TALLY_PROCESSES[*]})"
  local what index
  for what in "$@"; do
    case "$what" in
      postgres) start_postgres ;;
      rabbitmq) start_rabbitmq ;;
      rabbitmq-[1-5]) [ "$(rabbit_nodes)" -gt 1 ] && [ "${what#rabbitmq-}" -le "$(rabbit_nodes)" ] \
        || die "there is no $what: RabbitMQ runs $(rabbit_nodes) node(s) (up --cluster 3 starts three)"
        write_rabbit_files
        start_rabbit_node "${what#rabbitmq-}"
        await_rabbit_node "${what#rabbitmq-}" ;;
      smtp) start_smtp ;;
      billing-api | producer | aggregator | invoicer | notifier)
        tally_role_ready "$what"
        for index in $(seq 1 "$(desired_count "$what")"); do start_instance "$what" "$index"; done
        for index in $(seq 1 "$(desired_count "$what")"); do wait_instance "$what" "$index"; done ;;
      *) die "start what? postgres, rabbitmq, rabbitmq-N, smtp, or a role (${TALLY_PROCESSES[*]})" ;;
    esac
  done
}

cmd_bench() {
  # `bench PHASE` runs one phase only: ingest (track, publish, HTTP), pipeline, tenants, billing, notify or dashboard.
  local only="${1:-}"
  case "$only" in
    "" | ingest | pipeline | tenants | scaling | billing | notify | dashboard) ;;
    *) die "unknown benchmark phase '$only' (ingest, pipeline, tenants, scaling, billing, notify, dashboard)" ;;
  esac
  phase() { [ -z "$only" ] || [ "$only" = "$1" ]; }
  # Every figure is kept: the run's whole output also goes to .local/bench/, one file per run.
  mkdir -p "$LOCAL/bench"
  local saved="$LOCAL/bench/bench-$(date -u +%Y%m%dT%H%M%SZ)${only:+-$only}.log"
  exec > >(tee -a "$saved") 2>&1
  say "this run's figures are saved in $saved"
  cmd_up
  say "building the benchmarks, the producer and the aggregator (release; the first time takes several minutes)"
  (cd "$ROOT" && swift build -c release --product tally-bench && swift build -c release --product producer \
    && swift build -c release --product aggregator && swift build -c release --product invoicer \
    && swift build -c release --product notifier && swift build -c release --product billing-api) \
    || die "release build failed (see above)"
  # The debug workers would take the benchmark's work and share the 2 cores; they are back at the end.
  local role index
  for role in aggregator invoicer notifier; do
    for index in $(instance_indexes "$role"); do stop_pid "$(instance_name "$role" "$index")"; done
  done
  local release="$ROOT/.build/release" port=$((INGEST_PORT + 100)) spool="$LOCAL/spool/bench"
  rm -rf "$spool"
  TALLY_SPOOL_DIR="$spool" LOG_LEVEL=warning \
    start_tally_process producer-bench "$release/producer" serve --host 127.0.0.1 --port $port
  wait_for "the release producer" 60 "$LOGS/producer-bench.log" curl -fsS "http://127.0.0.1:$port/healthz"
  local tenant
  tenant=$(curl -fsS -X POST "$TALLY_API_URL/v1/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
    -d '{"name": "Benchmark", "billing_email": "bench@tally.localhost"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  say "benchmarks (2 cores shared by broker, database and Tally; figures vary run to run)"
  # The local stack's queues are the benchmark's own: tally-bench may empty them.
  export TALLY_BENCH_PURGES=1
  if phase ingest; then
  "$release/tally-bench" track || true
  "$release/tally-bench" publish || true
  # Ingest HTTP throughput, loaded by wrk (Debian) with 1000-event batches from 8 connections.
  command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >>"$LOGS/apt.log" 2>&1
  python3 - "$tenant" >"$LOCAL/bench-batch.ndjson" <<'PY'
import datetime, sys, uuid
now = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
for index in range(1000):
    print('{"id": "bench-%s", "tenant_id": "%s", "type": "api_calls", "quantity": 1, "time": "%s"}' % (uuid.uuid4(), sys.argv[1], now))
PY
  "$BIN/rabbitmqctl" -q purge_queue aggregator.usage >/dev/null
  TALLY_BENCH_BODY="$LOCAL/bench-batch.ndjson" wrk -t2 -c8 -d15s -s "$ROOT/ops/bench/ingest.lua" "http://127.0.0.1:$port/v1/events" \
    | grep -E '^(ingest|bench-json):' || true
  fi
  stop_pid producer-bench
  # The benchmark's usage is not real usage: drop it before an Aggregator counts it.
  "$BIN/rabbitmqctl" -q purge_queue aggregator.usage >/dev/null
  if phase pipeline; then
  # End to end: the library → RabbitMQ → a release aggregator → PostgreSQL, beside raw COPY + dedup.
  LOG_LEVEL=warning AGGREGATOR_PORT=$((AGGREGATOR_PORT + 100)) \
    MALLOC_ARENA_MAX=2 start_tally_process aggregator-bench "$release/aggregator" run
  wait_for "the release aggregator" 60 "$LOGS/aggregator-bench.log" curl -fsS "http://127.0.0.1:$((AGGREGATOR_PORT + 100))/healthz"
  "$release/tally-bench" pipeline --tenant "$tenant" --aggregator-pid "$(pid_of aggregator-bench)" \
    --aggregator-metrics "http://127.0.0.1:$((AGGREGATOR_PORT + 100))/metrics" --latency-tenants 5000 || true
  stop_pid aggregator-bench
  fi
  if phase tenants; then
  # The aggregator's drain rate as the tenants mixed in its batches grow: for each count,
  # aggregator.usage is filled while no aggregator runs (drain-fill: the tenants, then 200k
  # events in 1000-event messages, event i to tenant i % N), then a release aggregator
  # drains it and drain-wait measures first to last insert and deletes the run. The
  # 20-tenant rate is the reference of the others; drain-wait's last line gives the rate.
  local tenants run_id drained reference="" reference_raw="" run_started
  run_started=$(date -u +%Y%m%d%H%M%S)
  # After each drain, drain-wait also times raw COPY + dedup of as many events over the
  # same tenants (the database alone at that spread); the 20-tenant one is its reference.
  # TALLY_BENCH_TENANT_COUNTS (e.g. "20 5000") measures fewer counts while iterating;
  # TALLY_BENCH_DRAIN_EVENTS (default 200000, the issue's figure) drains longer: a drain of
  # a few batches counts neither the first batch's decoding nor the last one's commit.
  # A count written N:active first sends one event per tenant, not counted (--warm-up): the
  # tenants are active in their period already, as a SaaS's are after their first request
  # of the month; without it every tenant is new to the Aggregator (its first-seen costs).
  # N:large (or N:active:large) drains with transactions of many times the tenants' count
  # (32–64 MiB batches, up to 200,000 tenant-hours a transaction): each tenant's rollup
  # and period-total rows then count several events, at several times the memory (README,
  # "Performance"); raw COPY + dedup is not timed again for it. It drains at least 1,000,000
  # events: first to last insert of 200,000 would leave out most of its few batches.
  local drain_events=${TALLY_BENCH_DRAIN_EVENTS:-200000} count warm large events
  local large_settings="AGGREGATOR_BATCH_BYTES=33554432 AGGREGATOR_BATCH_BYTES_MAX=67108864 AGGREGATOR_PREFETCH=400"
  large_settings+=" AGGREGATOR_TENANT_HOURS_PER_TRANSACTION=200000"
  for count in ${TALLY_BENCH_TENANT_COUNTS:-20 500 5000 50000 50000:active 50000:large}; do
    tenants=${count%%:*} warm="" large="" events=$drain_events
    case ":$count:" in *:active:*) warm=--warm-up ;; esac
    case ":$count:" in *:large:*) large=1 events=$((drain_events > 1000000 ? drain_events : 1000000)) ;; esac
    "$BIN/rabbitmqctl" -q purge_queue aggregator.usage >/dev/null
    run_id="${run_started}t$tenants${warm:+a}${large:+l}"
    if "$release/tally-bench" drain-fill --tenants $tenants --events "$events" --per-message 1000 --run-id "$run_id" $warm; then
      (
        # shellcheck disable=SC2086  # the settings are NAME=VALUE words
        [ -z "$large" ] || export $large_settings
        LOG_LEVEL=warning AGGREGATOR_PORT=$((AGGREGATOR_PORT + 100)) \
          MALLOC_ARENA_MAX=2 start_tally_process aggregator-bench "$release/aggregator" run
      )
      wait_for "the release aggregator" 60 "$LOGS/aggregator-bench.log" curl -fsS "http://127.0.0.1:$((AGGREGATOR_PORT + 100))/healthz"
      drained=$("$release/tally-bench" drain-wait --run-id "$run_id" --events "$events" --tenants $tenants --per-message 1000 \
        --aggregator-pid "$(pid_of aggregator-bench)" --aggregator-metrics "http://127.0.0.1:$((AGGREGATOR_PORT + 100))/metrics" \
        ${reference:+--reference-rate "$reference"} ${reference_raw:+--reference-raw-rate "$reference_raw"} $warm \
        ${large:+--no-raw --aggregator-setting "large transactions ($large_settings)"}) || true
      [ -z "$drained" ] || printf '%s\n' "$drained" | grep -v '^drain-rate:\|^drain-raw-rate:' || true
      if [ "$count" = 20 ]; then
        reference=$(printf '%s\n' "$drained" | sed -n 's/^drain-rate: //p')
        reference_raw=$(printf '%s\n' "$drained" | sed -n 's/^drain-raw-rate: //p')
      fi
      stop_pid aggregator-bench
    fi
  done
  # What a failed fill left in the queue is not real usage either.
  "$BIN/rabbitmqctl" -q purge_queue aggregator.usage >/dev/null
  fi
  if phase scaling; then
  # Aggregator processes side by side on one queue (1, 2, 4), each count draining the same
  # fill: 200k events of 500 tenants in 1000-event messages. On one machine they share its 2
  # cores with the broker and the database: see ops/SCALING.md for what the rows mean.
  local processes index one_process="" run_id drained
  run_started=$(date -u +%Y%m%d%H%M%S)
  for processes in 1 2 4; do
    "$BIN/rabbitmqctl" -q purge_queue aggregator.usage >/dev/null
    run_id="${run_started}p$processes"
    "$release/tally-bench" drain-fill --tenants 500 --events 200000 --per-message 1000 --run-id "$run_id" >/dev/null || continue
    for index in $(seq 1 $processes); do
      LOG_LEVEL=warning AGGREGATOR_PORT=$((AGGREGATOR_PORT + 100 + 10 * (index - 1))) \
        MALLOC_ARENA_MAX=2 start_tally_process "aggregator-bench-$index" "$release/aggregator" run
    done
    for index in $(seq 1 $processes); do
      wait_for "release aggregator $index" 60 "$LOGS/aggregator-bench-$index.log" \
        curl -fsS "http://127.0.0.1:$((AGGREGATOR_PORT + 100 + 10 * (index - 1)))/healthz"
    done
    drained=$("$release/tally-bench" drain-wait --run-id "$run_id" --events 200000 --tenants 500 --per-message 1000 \
      --processes $processes --aggregator-pid "$(pid_of aggregator-bench-1)" ${one_process:+--reference-rate "$one_process"}) || true
    [ -z "$drained" ] || printf '%s\n' "$drained" | grep -E '^(scaling|bench-json):' || true
    [ "$processes" != 1 ] || one_process=$(printf '%s\n' "$drained" | sed -n 's/^drain-rate: //p')
    for index in $(seq 1 $processes); do stop_pid "aggregator-bench-$index"; done
  done
  "$BIN/rabbitmqctl" -q purge_queue aggregator.usage >/dev/null
  fi
  if phase billing; then
  # Billing runs of 10,000 and of 50,000 subscriptions with usage, issued by a release invoicer (4 consumers).
  INVOICER_CONSUMERS=4 INVOICER_PORT=$((INVOICER_PORT + 100)) LOG_LEVEL=warning start_tally_process invoicer-bench "$release/invoicer" run
  local billed reference_billing
  billed=$("$release/tally-bench" billing) || true
  printf '%s\n' "$billed"
  # The same 10,000 on a graduated plan (5 tiers × 4 metrics, issue 17), beside the standard run's rate.
  reference_billing=$(printf '%s\n' "$billed" | sed -n 's/^bench-json: .*"value":\([0-9.e+-]*\).*/\1/p' | head -1)
  "$release/tally-bench" billing --plan graduated ${reference_billing:+--reference-rate "$reference_billing"} || true
  "$release/tally-bench" billing --subscriptions 50000 || true
  stop_pid invoicer-bench
  # Their invoice.finalized events are not real: no Notifier renders 60,000 PDFs for them.
  "$BIN/rabbitmqctl" -q purge_queue notifier.events >/dev/null
  fi
  if phase notify; then
  # The billing benchmark's invoices are not real: drop their notifications, then measure
  # the Notifier on a queue of its own (emails with PDFs into the sink, webhooks to a receiver).
  "$BIN/rabbitmqctl" -q purge_queue notifier.events >/dev/null
  local receiver_port=$((INGEST_PORT + 110))
  setsid python3 "$ROOT/ops/bench/webhook_receiver.py" --port $receiver_port >"$LOGS/webhook-receiver.log" 2>&1 </dev/null &
  echo $! >"$RUN/webhook-receiver.pid"
  NOTIFIER_QUEUE=bench.notifier NOTIFIER_CONSUMERS=4 NOTIFIER_PORT=$((NOTIFIER_PORT + 100)) LOG_LEVEL=warning \
    start_tally_process notifier-bench "$release/notifier" run
  wait_for "the release notifier" 60 "$LOGS/notifier-bench.log" curl -fsS "http://127.0.0.1:$((NOTIFIER_PORT + 100))/healthz"
  wait_for "the webhook receiver" 30 "$LOGS/webhook-receiver.log" curl -fsS "http://127.0.0.1:$receiver_port/count"
  "$release/tally-bench" notify --clients 4 --queue bench.notifier --receiver "http://127.0.0.1:$receiver_port" || true
  stop_pid notifier-bench
  stop_pid webhook-receiver
  fi
  if phase dashboard; then
  # Dashboard pages and the usage history of a tenant with 6 months of hourly rollups, from
  # a release billing-api, beside the bare SQL of the same rollups.
  BILLING_API_PORT=$((API_PORT + 100)) LOG_LEVEL=warning start_tally_process billing-api-bench "$release/billing-api" serve
  wait_for "the release billing-api" 60 "$LOGS/billing-api-bench.log" curl -fsS "http://127.0.0.1:$((API_PORT + 100))/healthz"
  "$release/tally-bench" dashboard --api "http://127.0.0.1:$((API_PORT + 100))" || true
  stop_pid billing-api-bench
  fi
  start_tally
  # The figures of this run as JSON, and drawn (the bench-json lines above).
  python3 "$ROOT/ops/bench/report.py" "$saved" || true
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  demo) cmd_demo ;;
  scale) shift; cmd_scale "$@" ;;
  bench) cmd_bench "${2:-}" ;;
  stop) shift; cmd_stop "$@" ;;
  start) shift; cmd_start "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  write-env) mkdir -p "$LOCAL"; write_env ;;
  servers) cmd_servers ;;
  down) cmd_down ;;
  status) cmd_status ;;
  test) cmd_test ;;
  test-cluster) cmd_test_cluster ;;
  check) cmd_check ;;
  test-dates) cmd_test_dates ;;
  -h | --help | help) usage ;;
  "") usage; exit 2 ;;
  *) usage; die "unknown command '$1'" ;;
esac
