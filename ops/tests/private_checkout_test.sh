#!/usr/bin/env bash
# The local stack from a checkout only its owner can enter (issue 15, item 0): a home of
# mode 700 or a `mktemp -d` folder, which PostgreSQL's server user cannot traverse. A copy
# of ops/ in a fresh `mktemp -d` folder starts its PostgreSQL (on ports of its own), takes
# a query over TCP and stops; the folder's mode is untouched and the server's files live
# outside it. Run by `./ops/local.sh test`; needs root, as `up` does.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OFFSET=${TALLY_PRIVATE_TEST_OFFSET:-3500}
dir=$(mktemp -d)
checkout="$dir/tally"
fail() { printf 'private checkout test: %s\n' "$*" >&2; exit 1; }
cleanup() {
  if [ -x "$checkout/ops/local.sh" ]; then
    TALLY_PORT_OFFSET=$OFFSET "$checkout/ops/local.sh" stop postgres >/dev/null 2>&1 || true
    [ -L "$checkout/.local/postgres" ] && rm -rf "$(readlink -f "$checkout/.local/postgres")"
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$checkout" && cp -r "$ROOT/ops" "$checkout/"
[ "$(stat -c %a "$dir")" = 700 ] || fail "mktemp -d did not make a private folder"
if runuser -u postgres -- test -x "$checkout"; then fail "the postgres user can enter $checkout: nothing to test"; fi

TALLY_PORT_OFFSET=$OFFSET "$checkout/ops/local.sh" start postgres
[ -L "$checkout/.local/postgres" ] || fail ".local/postgres is not a link to the server's files outside the checkout"
answer=$(PGPASSWORD=tally psql -X -qtA -h 127.0.0.1 -p $((26432 + OFFSET)) -U tally tally -c "SELECT 'private checkout ok'")
[ "$answer" = "private checkout ok" ] || fail "PostgreSQL did not answer: $answer"
[ "$(stat -c %a "$dir")" = 700 ] || fail "the private folder's mode was changed"
TALLY_PORT_OFFSET=$OFFSET "$checkout/ops/local.sh" stop postgres
echo "private checkout test: PostgreSQL started, answered and stopped from a folder of mode 700"
