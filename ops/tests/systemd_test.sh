#!/usr/bin/env bash
# ops/systemd/ checked by systemd itself: every unit, one instance of each template, passes
# `systemd-analyze verify` with no complaint at all (unknown keys are only warnings there,
# so any output fails this test), with ExecStart pointing at the binaries just built (verify
# checks that they are executables); and every worker unit keeps its restart policy and
# hardening.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN="$ROOT/.build/${TALLY_BUILD_CONFIG:-debug}"
fail() { printf 'systemd test: %s\n' "$*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (Debian package systemd)"

units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
cp "$ROOT"/ops/systemd/*.service "$ROOT"/ops/systemd/*.target "$units/"
sed -i "s|/opt/tally/bin/|$BIN/|" "$units"/*.service
names=(tally.target tally-migrate.service)
for template in "$ROOT"/ops/systemd/tally-*@.service; do
  unit=$(basename "$template")
  names+=("${unit/@.service/@1.service}")
  for key in 'Restart=on-failure' 'User=tally' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'PrivateTmp=yes' \
    'EnvironmentFile=/etc/tally/tally.env' 'KillSignal=SIGTERM' 'CapabilityBoundingSet=$'; do
    grep -q "^$key" "$template" || fail "$unit lacks $key"
  done
done
[ "${#names[@]}" -eq 7 ] || fail "expected a template for each of the 5 roles, found ${#names[@]} units in all"
output=$(cd "$units" && systemd-analyze verify --man=no "${names[@]}" 2>&1) || fail "systemd-analyze verify failed: $output"
[ -z "$output" ] || fail "systemd-analyze verify complained: $output"
echo "systemd test: ${names[*]} pass systemd-analyze verify, each worker restarts on failure and runs hardened as user tally"
