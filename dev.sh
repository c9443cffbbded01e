#!/usr/bin/env bash
# One command per job on a fresh machine (Python >= 3.10 with venv; everything else is installed here):
#   ./dev.sh test [pytest args]   set up .venv with the test tools and run the test suite
#   ./dev.sh lint                 ruff check and ruff format --check (what CI checks)
#   ./dev.sh serve                set up .venv, fetch the default checkpoint if absent, serve the
#                                 function on http://127.0.0.1:8080 (args go to local_server: --port N)
#   ./dev.sh setup [dev]          only set up .venv
#   ./dev.sh e2e [pytest args]    the real-CVAT tests: set up .venv-e2e and CVAT's requirements, build CVAT's
#                                 UI with the plugin, bring up a CVAT (server, workers, PostgreSQL, Redis,
#                                 nginx, OPA, a Nuclio stand-in) with the function deployed, run e2e/tests
#                                 (API and browser), take it all down
#   ./dev.sh plugin-check         the CVAT UI plugin's type check, lint, unit and bundle tests (CI runs it)
# The last two need a CVAT checkout: CVAT_SOURCE, default ../shared/cvat-2.64.1 beside this repository (or
# beside the repository this one was cloned from).
# Environment: PYTHON (default python3), TORCH_SPEC (default torch==2.13.0; a CUDA machine may want
# another build), PIP_ARGS (extra pip arguments, e.g. an index URL).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
SAM2_SPEC=sam2==1.1.0
VENV=${VENV:-.venv}
read -r -a pip_args <<< "${PIP_ARGS:-}"

pip_install() {
    # sam2's metadata asks for torchvision, which its video predictor never imports: pip's complaint
    # about it is dropped.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}" "$@" 2>&1 \
        | { grep -v -e "requires torchvision" -e "dependency resolver does not currently" \
                    -e "^WARNING: Location 'file:" || true; }
}

setup() {
    local extras=${1:-}
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # torch first: sam2 builds against it, and an unpinned torch would pull a multi-GB CUDA build.
    pip_install "$TORCH_SPEC"
    # sam2 1.1.0 is an sdist whose CUDA extension is optional (only used for hole filling, which we
    # do ourselves); its runtime dependencies are in requirements.txt.
    if ! "$VENV/bin/python" -m pip show sam2 2>/dev/null | grep -q '^Version: 1.1.0$'; then
        SAM2_BUILD_CUDA=0 pip_install --no-build-isolation --no-deps "$SAM2_SPEC"
    fi
    if [ "$extras" = dev ]; then
        pip_install -r requirements-dev.txt
    elif [ "$extras" = e2e ]; then
        pip_install -r e2e/requirements.txt
    else
        pip_install -r requirements-local.txt
    fi
}

ensure_redis_server() {
    # The tests start and stop their own redis-server (and a Redis Cluster made with redis-cli); only
    # the binaries are needed. Debian's redis-server package brings redis-cli (redis-tools).
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing redis-server (apt-get)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
    fi
    if ! { command -v redis-server && command -v redis-cli; } >/dev/null; then
        echo "redis-server and redis-cli are needed by the tests: install them (Debian/Ubuntu: apt-get install" \
             "redis-server, macOS: brew install redis)" >&2
        exit 1
    fi
}

cvat_source() {
    # a local clone (CI's, or one made to check a change) looks beside the repository it came from too
    local origin
    origin=$(git config --get remote.origin.url 2>/dev/null || true)
    for candidate in "${CVAT_SOURCE:-}" ../shared/cvat-2.64.1 "${origin:+$origin/../shared/cvat-2.64.1}"; do
        if [ -n "$candidate" ] && [ -f "$candidate/manage.py" ]; then
            (cd "$candidate" && pwd)
            return 0
        fi
    done
    echo "no CVAT checkout found: set CVAT_SOURCE to one (CVAT 2.64.1 is what the tests were written for)" >&2
    exit 1
}

fetch_checkpoint() {
    "$VENV/bin/python" -m fetch_checkpoint
}

command=${1:-test}
shift || true
case "$command" in
    setup) setup "${1:-}" ;;
    test)
        setup dev
        ensure_redis_server
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    lint)
        setup dev
        "$VENV/bin/ruff" check .
        exec "$VENV/bin/ruff" format --check .
        ;;
    serve)
        setup
        fetch_checkpoint
        exec "$VENV/bin/python" -m local_server "$@"
        ;;
    e2e)
        VENV=.venv-e2e
        CVAT_SOURCE=$(cvat_source)
        export CVAT_SOURCE
        setup e2e
        ensure_redis_server
        cvat_python=$(e2e/setup.sh | tail -n 1)
        # CVAT's UI built with our plugin (cached), and the browser that drives it
        ui_dist=$(cvat-ui-plugin/build-ui.sh | tail -n 1)
        cvat-ui-plugin/tests/browser/setup.sh
        SAM2_E2E_CVAT_PYTHON=$cvat_python SAM2_E2E_UI_DIST=$ui_dist \
            exec "$VENV/bin/python" -m pytest -c e2e/pytest.ini --rootdir . "$@"
        ;;
    plugin-check)
        CVAT_SOURCE=$(cvat_source)
        export CVAT_SOURCE
        exec cvat-ui-plugin/check.sh --browser
        ;;
    *) echo "usage: $0 {test|lint|serve|setup|e2e|plugin-check} [args]" >&2; exit 2 ;;
esac
