#!/usr/bin/env bash
# What the browser tests need: Debian's chromium (installed as root when missing) and puppeteer-core in
# cvat-ui-plugin/tests/node_modules (npm ci, from package-lock.json). Used by check.sh --browser and by
# ./dev.sh e2e.
set -euo pipefail
tests="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "[cvat-ui-plugin] $chromium is missing: install Chromium (Debian/Ubuntu: apt-get install chromium)" >&2
        exit 1
    fi
    echo "[cvat-ui-plugin] installing Debian's chromium" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
fi
if ! cmp -s "$tests/package-lock.json" "$tests/node_modules/.package-lock.json.installed" 2>/dev/null; then
    (cd "$tests" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$tests/package-lock.json" "$tests/node_modules/.package-lock.json.installed"
fi
