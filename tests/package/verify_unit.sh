#!/bin/sh
# verify_unit.sh UNIT_FILE
#
# `systemd-analyze verify` on ferryd.service: any error, and any warning
# (an unknown key is only a warning, with exit status 0), fails. Exits 77
# (skipped) where systemd-analyze is missing (Debian: systemd). The man
# pages the unit names are not looked up: they may not be installed here.
set -eu
unit=$1
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze not found (Debian: systemd): skipped"
    exit 77
fi
out=$(systemd-analyze verify --man=no "$unit" 2>&1) || {
    printf '%s\n' "$out" >&2
    exit 1
}
if [ -n "$out" ]; then
    printf 'systemd-analyze verify %s:\n%s\n' "$unit" "$out" >&2
    exit 1
fi
echo "verify_unit: $unit ok"
