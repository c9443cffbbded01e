#!/usr/bin/env bash
# What the real-CVAT stack needs on this machine, installed once; prints the Python that has CVAT's
# server requirements on its last line. Called by ./dev.sh e2e.
#   CVAT_SOURCE     a CVAT checkout (default ../shared/cvat-2.64.1 from the repository root)
#   SAM2_E2E_CACHE  where the Python environment for CVAT is kept (default ~/.cache/sam2-cvat-e2e),
#                   one per set of CVAT requirements, so a second run installs nothing
#   PYTHON          the Python to build it with (default python3; CVAT 2.64 asks for 3.10, 3.11 works)
set -euo pipefail
cd "$(dirname "$0")/.."

CVAT_SOURCE=${CVAT_SOURCE:-../shared/cvat-2.64.1}
PYTHON=${PYTHON:-python3}
cache=${SAM2_E2E_CACHE:-$HOME/.cache/sam2-cvat-e2e}
OPA_BINDINGS=opa-golib-python-bindings==0.4.4
DATUMARO=datumaro==1.10.0

say() { echo "e2e setup: $*" >&2; }

[ -f "$CVAT_SOURCE/manage.py" ] || { say "$CVAT_SOURCE is not a CVAT checkout: set CVAT_SOURCE"; exit 1; }

# Debian packages: the services, and the headers CVAT's python-ldap and Shapely build against
packages=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
command -v redis-server >/dev/null || packages+=(redis-server)
[ -f /usr/include/ldap.h ] || packages+=(libldap2-dev)
[ -f /usr/include/sasl/sasl.h ] || packages+=(libsasl2-dev)
compgen -G "/usr/lib/*/libgeos_c.so" >/dev/null || packages+=(libgeos-dev)
if [ ${#packages[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${packages[*]} (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }
    else
        say "install these Debian/Ubuntu packages first: ${packages[*]}"
        exit 1
    fi
fi

requirements=$("$PYTHON" e2e/cvat_requirements.py "$CVAT_SOURCE")
key=$({ echo "$requirements"; echo "$OPA_BINDINGS $DATUMARO"; cat e2e/datumaro_compat.py; "$PYTHON" -V; } \
      | sha256sum | cut -c1-16)
venv="$cache/cvat-venv-$key"
if [ ! -f "$venv/.complete" ]; then
    say "installing CVAT's server requirements into $venv (a few minutes, once)"
    rm -rf "$venv"
    mkdir -p "$cache"
    "$PYTHON" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    filter() { grep -v -e "^WARNING: Location 'file:" -e "dependency resolver does not currently" \
                       -e "^datumaro .* requires" || true; }
    "${pip[@]}" -r <(echo "$requirements") 2>&1 | filter
    # the fork's stand-in (see e2e/cvat_requirements.py) and what its modules import beyond CVAT's pins
    "${pip[@]}" --no-deps "$DATUMARO" 2>&1 | filter
    "${pip[@]}" pyemd 2>&1 | filter
    "$venv/bin/python" e2e/datumaro_compat.py
    # OPA's Go engine; the wheel declares Python >= 3.14 but runs on 3.10 and 3.11
    "${pip[@]}" --no-deps --ignore-requires-python "$OPA_BINDINGS" 2>&1 | filter
    touch "$venv/.complete"
fi
echo "$venv/bin/python"
