# shellcheck shell=bash
# Shared by build-ui.sh and check.sh (sourced, not run): a writable copy of CVAT's JavaScript workspaces with
# node_modules installed as CVAT's Dockerfile.ui installs them, kept in a cache keyed by yarn.lock.
#
#   CVAT_SOURCE      CVAT checkout (read-only is fine); default ../shared/cvat-2.64.1 from the repository root
#   SAM2_E2E_CACHE   cache folder; default $HOME/.cache/sam2-cvat-e2e
#
# After `prepare_cvat_tree`, $CVAT_TREE holds CVAT's sources (synced from CVAT_SOURCE on every call) and its
# node_modules (installed once per yarn.lock). Callers hold $CVAT_TREE.lock while they use the tree; the
# functions return non-zero on failure, as they may run where errexit is off.

PLUGIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$PLUGIN_DIR/.." && pwd)"
CVAT_SOURCE="${CVAT_SOURCE:-$REPO_ROOT/../shared/cvat-2.64.1}"
if [ ! -f "$CVAT_SOURCE/yarn.lock" ] || [ ! -d "$CVAT_SOURCE/cvat-ui" ]; then
    echo "[cvat-ui-plugin] no CVAT source tree at $CVAT_SOURCE: set CVAT_SOURCE to a CVAT checkout" >&2
    exit 1
fi
CVAT_SOURCE="$(cd "$CVAT_SOURCE" && pwd)"
CACHE_DIR="${SAM2_E2E_CACHE:-$HOME/.cache/sam2-cvat-e2e}"
YARN_VERSION=4.9.2

# what CVAT's Dockerfile.ui copies: the root manifests and the five workspaces
CVAT_WORKSPACES=(cvat-data cvat-core cvat-canvas cvat-canvas3d cvat-ui)
CVAT_ROOT_FILES=(package.json yarn.lock .yarnrc.yml .eslintrc.cjs)

log() { echo "[cvat-ui-plugin] $*" >&2; }

# Hash of files given relative to a folder, by path and content (stable across machines and mtimes).
hash_files() {
    local base=$1
    shift
    (cd "$base" && find "$@" -type f ! -path '*/node_modules/*' ! -path 'cvat-ui/dist/*' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

deps_hash() {
    local manifests=(package.json yarn.lock .yarnrc.yml)
    for ws in "${CVAT_WORKSPACES[@]}"; do manifests+=("$ws/package.json"); done
    { hash_files "$CVAT_SOURCE" "${manifests[@]}"; echo "yarn $YARN_VERSION node $(node --version)"; } |
        sha256sum | cut -c1-16
}

# yarn 4.9.2 through corepack, both taking packages from the registry npm is configured with (corepack
# would fetch yarn from yarn's own site, and yarn would use its own registry host, otherwise)
npm_registry() {
    local registry
    registry="$(npm config get registry 2>/dev/null || true)"
    echo "${registry%/}"
}

run_yarn() {
    local registry
    registry="$(npm_registry)"
    COREPACK_NPM_REGISTRY="${COREPACK_NPM_REGISTRY:-$registry}" \
    COREPACK_ENABLE_DOWNLOAD_PROMPT=0 \
    YARN_NPM_REGISTRY_SERVER="${YARN_NPM_REGISTRY_SERVER:-$registry}" \
    YARN_ENABLE_TELEMETRY=0 \
    YARN_ENABLE_PROGRESS_BARS=0 \
    DISABLE_HUSKY=1 \
        corepack "yarn@$YARN_VERSION" "$@"
}

sync_cvat_sources() {
    local dirs=()
    for ws in "${CVAT_WORKSPACES[@]}"; do dirs+=("$ws"); done
    for f in "${CVAT_ROOT_FILES[@]}"; do [ -e "$CVAT_SOURCE/$f" ] && dirs+=("$f"); done
    (cd "$CVAT_SOURCE" && rsync -a --delete --chmod=u+w \
        --exclude node_modules --exclude /cvat-ui/dist \
        --exclude /cvat-ui/src/assets/opencv_4.8.0.js --exclude /cvat-ui/plugins/sam/assets/ \
        "${dirs[@]}" "$CVAT_TREE/") || return 1
    # the two binary assets CVAT's source tree lacks (OpenCV.js and SAM's decoder); the UI only fetches them
    # when a user opens those tools, so empty placeholders are enough for the build
    local asset
    for asset in cvat-ui/src/assets/opencv_4.8.0.js cvat-ui/plugins/sam/assets/decoder.onnx; do
        if [ -s "$CVAT_SOURCE/$asset" ]; then
            cp "$CVAT_SOURCE/$asset" "$CVAT_TREE/$asset" || return 1
        elif [ ! -e "$CVAT_TREE/$asset" ]; then
            mkdir -p "$(dirname "$CVAT_TREE/$asset")" && : > "$CVAT_TREE/$asset" || return 1
        fi
    done
}

install_cvat_deps() {
    if [ -f "$CVAT_TREE/.installed" ]; then
        return
    fi
    log "installing CVAT's UI dependencies into $CVAT_TREE (yarn $YARN_VERSION, once per yarn.lock; a few minutes)"
    command -v corepack >/dev/null || { log "corepack is missing: install Node.js 20 or newer"; return 1; }
    # as Dockerfile.ui: the manifests first, then `yarn install --immutable`
    local f
    for f in package.json yarn.lock .yarnrc.yml; do cp "$CVAT_SOURCE/$f" "$CVAT_TREE/$f" || return 1; done
    for ws in "${CVAT_WORKSPACES[@]}"; do
        mkdir -p "$CVAT_TREE/$ws" && cp "$CVAT_SOURCE/$ws/package.json" "$CVAT_TREE/$ws/package.json" || return 1
    done
    if ! (cd "$CVAT_TREE" && run_yarn install --immutable) > "$CVAT_TREE.install.log" 2>&1; then
        tail -n 40 "$CVAT_TREE.install.log" >&2
        log "yarn install failed; the whole log is $CVAT_TREE.install.log"
        return 1
    fi
    touch "$CVAT_TREE/.installed"
}

# Sets CVAT_TREE and makes it ready; the caller must hold the lock (with_tree_lock).
prepare_cvat_tree() {
    install_cvat_deps || return 1
    sync_cvat_sources
}

cvat_tree_path() {
    echo "$CACHE_DIR/cvat-tree-$(deps_hash)"
}

# Runs "$@" holding the tree's lock, so that a build and a check never use one tree at the same time.
with_tree_lock() {
    mkdir -p "$CVAT_TREE"
    exec 9>"$CVAT_TREE.lock"
    flock 9
    "$@"
    local rc=$?
    flock -u 9
    exec 9>&-
    return $rc
}
