#!/usr/bin/env bash
# Install the OS services that tests/celery needs (PostgreSQL server binaries and redis-server) from Debian's
# packages when they are missing. The test starts and stops them itself; nothing is started here.
# Run as root (CI runs .ci/run as root); as another user it only reports what is missing.
set -euo pipefail

missing=()
if ! command -v redis-server >/dev/null 2>&1; then
    missing+=(redis-server)
fi
pgbin=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pgbin="$(pg_config --bindir)"
else
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ]; then pgbin="$dir"; fi
    done
fi
if [ -z "$pgbin" ]; then
    missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "ci_services: redis-server ($(command -v redis-server)) and PostgreSQL ($pgbin) already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ci_services: missing ${missing[*]}; run as root (or: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
fi
echo "ci_services: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: do not start the services at install time (the test starts its own on free ports)
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
if [ "$status" -ne 0 ]; then
    echo "ci_services: apt-get install ${missing[*]} failed ($status)" >&2
    exit "$status"
fi
echo "ci_services: installed ${missing[*]}: redis-server at $(command -v redis-server || echo '?')"
