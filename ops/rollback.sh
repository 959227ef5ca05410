#!/usr/bin/env bash
# Rolls Tally back to an earlier build (a release), or forward again, without losing usage.
#
#   ops/rollback.sh releases                     the saved releases, and the one that runs
#   ops/rollback.sh save [NAME]                  keep the build that runs now as release NAME
#                                                (binaries hard-linked, migrations copied)
#   ops/rollback.sh --to previous|NAME|build [--dry-run]
#                                                roll to the newest other release, to NAME, or
#                                                forward to this checkout's build
#   ops/rollback.sh --help
#
# The steps, each printed before it runs (--dry-run prints them and changes nothing):
#   0. plan the schema: migrations the target lacks are undone by their down step
#      (ops/sql/down/NNN.sql) when ops/sql/rollback.tsv says it is safe, and the rollback is
#      refused, before anything changes, when one is not; migrations the target has and the
#      database lacks are applied by the target's own `migrate`;
#   1. pause billing: the Invoicers stop (SIGTERM: the batch in flight is issued and acked);
#      the commands of runs in progress wait in invoicer.commands, none is lost, numbers
#      stay gapless;
#   2. keep metering durable: the Notifiers and Aggregators stop the same way; usage waits
#      in aggregator.usage; producers keep accepting (spooling to disk if they must);
#   3. the schema, as planned;
#   4. switch binaries: the target's build becomes the one `./ops/local.sh` runs
#      (.local/release names it; `up` keeps it);
#   5. resume: billing-api and producers restart one at a time, then Aggregators,
#      Notifiers and Invoicers start (billing resumes where it paused);
#   6. verify: every process healthy on the target's binaries, the schema at the target's
#      version, and a probe event through ingest counted by GET /v1/usage.
#
# Works on the stack of ./ops/local.sh (needs .local/env). In Kubernetes the same steps are:
# scale the invoicer Deployment to 0, then notifier and aggregator; run the older image's
# down steps in a Job; `kubectl rollout undo` each Deployment; scale back up.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="${TALLY_LOCAL_DIR:-$ROOT/.local}"
RELEASES="$LOCAL/releases"
LOCAL_SH="$ROOT/ops/local.sh"
BUILD_BIN="$ROOT/.build/${TALLY_BUILD_CONFIG:-debug}"
EXECUTABLES=(producer aggregator invoicer notifier billing-api)

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'rollback: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

load_env() {
  [ -f "$LOCAL/env" ] || die "no $LOCAL/env: start the stack first (./ops/local.sh up)"
  set -a
  # shellcheck disable=SC1091
  . "$LOCAL/env"
  set +a
}
psql_tally() { psql "$DATABASE_URL" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }

# The release ./ops/local.sh runs (as its pinned_release decides: a pin naming a missing release is ignored).
running_release() {
  if [ -s "$LOCAL/release" ] && [ -d "$RELEASES/$(cat "$LOCAL/release")" ]; then cat "$LOCAL/release"; else echo build; fi
}
release_sql() { if [ "$1" = build ]; then echo "$ROOT/ops/sql"; else echo "$RELEASES/$1/sql"; fi; }
release_bin() { if [ "$1" = build ]; then echo "$BUILD_BIN"; else echo "$RELEASES/$1/bin"; fi; }
versions_in() { find "$1" -maxdepth 1 -name '[0-9][0-9][0-9]_*.sql' -printf '%f\n' | cut -c1-3 | sed 's/^0*//' | sort -n; }

cmd_releases() {
  local current name
  current=$(running_release)
  printf '%-36s %-10s %-8s %s\n' RELEASE COMMIT SCHEMA SAVED
  printf '%-36s %-10s %-8s %s%s\n' build "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$(versions_in "$ROOT/ops/sql" | tail -1)" "(this checkout's .build)" "$([ "$current" = build ] && echo '  <- runs')"
  [ -d "$RELEASES" ] || return 0
  for name in $(ls -t "$RELEASES"); do
    [ -f "$RELEASES/$name/release.env" ] || continue
    # shellcheck disable=SC1090
    (. "$RELEASES/$name/release.env"
     printf '%-36s %-10s %-8s %s%s\n' "$name" "$COMMIT" "$SCHEMA" "$SAVED_AT" "$([ "$current" = "$name" ] && echo '  <- runs')")
  done
}

cmd_save() {
  local name=${1:-} source commit
  source=$(running_release)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$name" ] || name="$commit-$(date -u +%Y%m%dT%H%M%SZ)"
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] && [ "$name" != build ] || die "a release name is letters, digits, . _ - (and not 'build')"
  [ ! -e "$RELEASES/$name" ] || die "release $name exists already"
  local bin
  bin=$(release_bin "$source")
  for executable in "${EXECUTABLES[@]}"; do
    [ -x "$bin/$executable" ] || die "$bin/$executable is missing: build first (./ops/local.sh up)"
  done
  mkdir -p "$RELEASES/$name/bin"
  # Hard links: no copy of the binaries, and a later build writes new files beside them.
  for executable in "${EXECUTABLES[@]}"; do cp -l "$bin/$executable" "$RELEASES/$name/bin/" 2>/dev/null || cp "$bin/$executable" "$RELEASES/$name/bin/"; done
  cp -r "$(release_sql "$source")" "$RELEASES/$name/sql"
  [ "$source" = build ] || commit=$(. "$RELEASES/$source/release.env"; echo "$COMMIT")
  cat >"$RELEASES/$name/release.env" <<ENV
COMMIT=$commit
SCHEMA=$(versions_in "$RELEASES/$name/sql" | tail -1)
SAVED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ENV
  say "saved release $name (schema $(versions_in "$RELEASES/$name/sql" | tail -1), from $source)"
}

# How migration VERSION may be undone, from the newer build's ops/sql/rollback.tsv:
# "reversible" (its down step exists) or "blocking: why".
migration_class() {
  local version=$1 sql=$2 line
  line=$(awk -F'\t' -v v="$version" '$1 == v { print $2 "\t" $3 }' "$sql/rollback.tsv" 2>/dev/null || true)
  [ -n "$line" ] || { echo "blocking: $sql/rollback.tsv says nothing about migration $version"; return; }
  case ${line%%$'\t'*} in
    reversible)
      if [ -f "$sql/down/$(printf '%03d' "$version").sql" ]; then echo reversible; else echo "blocking: its down step $sql/down/$(printf '%03d' "$version").sql is missing"; fi ;;
    *) echo "blocking: ${line#*$'\t'}" ;;
  esac
}

STAGE=""
step() {
  STAGE=$*
  printf '\n\033[1m%s\033[0m\n' "$*"
}

# Once processes are stopped, a failure must not leave the operator guessing: say where it
# stopped, what runs, and the one command that starts everything again.
on_failure() {
  local status=$?
  [ "$status" -ne 0 ] || return 0
  printf '\nrollback: stopped during "%s" (exit %s).\n' "$STAGE" "$status" >&2
  printf '  Pinned now: %s. Invoicers, Notifiers or Aggregators may be stopped; their work waits in RabbitMQ, nothing is lost.\n' \
    "$(running_release)" >&2
  printf '  To run again on it: ./ops/local.sh up (applies its migrations, starts whatever is stopped); fix the cause, then retry the rollback.\n' >&2
}
run() {
  printf '   $ %s\n' "$*"
  [ "$DRY_RUN" = 1 ] || "$@"
}

cmd_to() {
  local target=$1 current sql_now sql_target applied newer missing version class
  load_env
  current=$(running_release)
  if [ "$target" = previous ]; then
    target=$(ls -t "$RELEASES" 2>/dev/null | grep -vx "$current" | head -1 || true)
    [ -n "$target" ] || die "no saved release other than the one that runs ($current); see ops/rollback.sh releases"
  fi
  [ "$target" = build ] || [ -f "$RELEASES/$target/release.env" ] || die "no release $target; see ops/rollback.sh releases"
  [ "$target" != "$current" ] || die "$target runs already"
  for executable in "${EXECUTABLES[@]}"; do [ -x "$(release_bin "$target")/$executable" ] || die "$(release_bin "$target")/$executable is missing"; done
  sql_now=$(release_sql "$current")
  sql_target=$(release_sql "$target")

  step "0. plan: $current → $target"
  applied=$(psql_tally -c "SELECT version FROM schema_migrations ORDER BY version") || die "cannot read schema_migrations; is PostgreSQL up?"
  newer=$(comm -23 <(printf '%s\n' $applied | sort) <(versions_in "$sql_target" | sort) | sort -rn)
  missing=$(comm -13 <(printf '%s\n' $applied | sort) <(versions_in "$sql_target" | sort) | sort -n)
  local refused=""
  for version in $newer; do
    class=$(migration_class "$version" "$sql_now")
    if [ "$class" = reversible ]; then
      echo "   migration $version: undone by $(basename "$sql_now")/down/$(printf '%03d' "$version").sql"
    else
      echo "   migration $version: cannot be undone — ${class#blocking: }"
      refused+=" $version"
    fi
  done
  [ -z "$missing" ] || echo "   migrations $(echo $missing) will be applied by $target's migrate"
  [ -n "$newer$missing" ] || echo "   the schema stays as it is (version $(printf '%s\n' $applied | tail -1))"
  [ -z "$refused" ] || die "refused before changing anything: $target predates migration(s)$refused, which cannot be undone safely (ops/sql/rollback.tsv says why)"
  local pending
  pending=$(psql_tally -c "SELECT count(DISTINCT billing_run_id) FROM billing_run_items WHERE status = 'pending'")
  echo "   billing runs with invoices still to issue: $pending (their commands wait in invoicer.commands while billing is paused)"

  [ "$DRY_RUN" = 1 ] || trap on_failure EXIT
  step "1. pause billing: stop the Invoicers (each issues and acks the batch in flight first)"
  run "$LOCAL_SH" stop invoicer
  step "2. keep metering durable: stop the Notifiers and Aggregators (usage waits in aggregator.usage; producers keep accepting)"
  run "$LOCAL_SH" stop notifier
  run "$LOCAL_SH" stop aggregator
  step "3. schema"
  for version in $newer; do
    local down
    down="$sql_now/down/$(printf '%03d' "$version").sql"
    printf '   $ psql -1 -f %s; DELETE FROM schema_migrations WHERE version = %s\n' "$down" "$version"
    if [ "$DRY_RUN" != 1 ]; then
      { cat "$down"; printf '\nDELETE FROM schema_migrations WHERE version = %s;\n' "$version"; } | psql_tally -1 -f - >/dev/null \
        || die "the down step of migration $version failed (above)"
    fi
  done
  [ -n "$newer" ] || echo "   nothing to undo"
  step "4. switch binaries to $target ($(release_bin "$target"))"
  if [ -n "$missing" ]; then
    # Forward: the target's own migrate, before it is pinned (a failure leaves the current release pinned).
    printf '   $ TALLY_MIGRATIONS_DIR=%s %s migrate\n' "$sql_target" "$(release_bin "$target")/billing-api"
    [ "$DRY_RUN" = 1 ] || TALLY_MIGRATIONS_DIR="$sql_target" "$(release_bin "$target")/billing-api" migrate >/dev/null
  fi
  if [ "$target" = build ]; then run rm -f "$LOCAL/release"; else printf '   $ echo %s > %s\n' "$target" "$LOCAL/release"; [ "$DRY_RUN" = 1 ] || echo "$target" >"$LOCAL/release"; fi
  run "$LOCAL_SH" write-env
  step "5. resume: billing-api and producers one at a time, then Aggregators, Notifiers and Invoicers (billing resumes)"
  run "$LOCAL_SH" restart billing-api producer
  run "$LOCAL_SH" start aggregator notifier invoicer
  step "6. verify"
  if [ "$DRY_RUN" = 1 ]; then
    echo "   every process healthy on $target's binaries; schema at $(versions_in "$sql_target" | tail -1); a probe event counted"
    echo
    say "dry run: nothing was changed"
    return 0
  fi
  verify "$target" "$sql_target"
  trap - EXIT
  say "now running $target; ops/rollback.sh --to $current goes back"
}

verify() {
  local target=$1 sql=$2 name pid exe schema expected
  load_env
  local status roles=" "
  status=$("$LOCAL_SH" status)
  for name in $(awk '$2 != "running" { print $1 }' <<<"$status"); do
    case ${name%-[0-9]*} in producer | aggregator | invoicer | notifier | billing-api) die "verify: $name is not running (see .local/log/$name.log)" ;; esac
  done
  for name in $(awk '$2 == "running" { print $1 }' <<<"$status"); do
    case ${name%-[0-9]*} in producer | aggregator | invoicer | notifier | billing-api) roles+="${name%-[0-9]*} " ;; *) continue ;; esac
    pid=$(cat "$LOCAL/run/$name.pid")
    exe=$(readlink -f "/proc/$pid/exe")
    [ "$(dirname "$exe")" = "$(readlink -f "$(release_bin "$target")")" ] || die "verify: $name runs $exe, not $target's"
  done
  for name in producer aggregator invoicer notifier billing-api; do
    [[ "$roles" == *" $name "* ]] || die "verify: no $name runs"
  done
  echo "   every Tally process runs $target's binaries"
  schema=$(psql_tally -c "SELECT max(version) FROM schema_migrations")
  expected=$(versions_in "$sql" | tail -1)
  [ "$schema" = "$expected" ] || die "verify: the schema is at $schema, $target expects $expected"
  echo "   the schema is at $schema"
  local tenant event counted=""
  tenant=$(curl -fsS -X POST "$TALLY_API_URL/v1/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"name": "Rollback probe", "billing_email": "ops@tally.localhost"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') \
    || die "verify: the billing API does not create a tenant"
  event="rollback-probe-$(date -u +%s%N)"
  curl -fsS -o /dev/null -X POST "$TALLY_INGEST_URL/v1/events" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"id\": \"$event\", \"tenant_id\": \"$tenant\", \"type\": \"api_calls\", \"quantity\": 1, \"time\": \"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\"}" \
    || die "verify: ingest does not accept an event"
  for _ in $(seq 1 300); do
    counted=$(curl -fsS "$TALLY_API_URL/v1/usage?tenant_id=$tenant" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" \
      | python3 -c 'import json, sys; print(sum(int(m["value"]) for m in json.load(sys.stdin)["metrics"] if m["metric"] == "api_calls"))') || true
    [ "$counted" = 1 ] && break
    sleep 0.2
  done
  [ "$counted" = 1 ] || die "verify: the probe event was not counted within a minute; see .local/log/aggregator.log"
  echo "   a probe event went through ingest, the broker and the Aggregator into GET /v1/usage"
}

DRY_RUN=0
target=""
case "${1:-}" in
  -h | --help | help) usage; exit 0 ;;
  releases) cmd_releases; exit 0 ;;
  save) shift; cmd_save "${1:-}"; exit 0 ;;
esac
while [ $# -gt 0 ]; do
  case $1 in
    --to) target=${2:-}; shift 2 || die "--to needs a release: previous, a name (ops/rollback.sh releases) or build" ;;
    --to=*) target=${1#--to=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[ -n "$target" ] || { usage >&2; die "say where to: --to previous, --to NAME or --to build"; }
cmd_to "$target"
