#!/usr/bin/env bash
# Builds CVAT's UI with this plugin, as CVAT's Dockerfile.ui does with CLIENT_PLUGINS, and prints the
# folder of the built UI (dist) on its last line. Cached by a hash of CVAT's sources and the plugin's: a
# second run with nothing changed prints the path at once. CVAT's node_modules are cached apart, by
# yarn.lock, so a change of the plugin only rebuilds (a cold build: ~6 min and ~4.3 GB of memory).
#
#   CVAT_SOURCE          CVAT checkout, read-only is fine (default ../shared/cvat-2.64.1 from the repo root)
#   SAM2_E2E_CACHE       cache folder (default $HOME/.cache/sam2-cvat-e2e): ui-<hash>/dist, cvat-tree-<hash>
#   DISABLE_SOURCE_MAPS  true by default here (faster, less memory); false for source maps
#
# Serve dist on the same origin as CVAT's /api, with an index.html fallback for every route and the headers
# of CVAT's cvat-ui/react_nginx.conf (COOP same-origin and COEP credentialless on pages, COEP require-corp
# on /assets, application/javascript for .mjs).
set -euo pipefail

# shellcheck source=SCRIPTDIR/scripts/cvat-tree.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/cvat-tree.sh"
export DISABLE_SOURCE_MAPS="${DISABLE_SOURCE_MAPS:-true}"
RECIPE=1 # raise when the way the UI is built changes, so that cached builds are not reused
KEEP_BUILDS=3

build_hash() {
    {
        hash_files "$CVAT_SOURCE" package.json yarn.lock .yarnrc.yml "${CVAT_WORKSPACES[@]}"
        hash_files "$PLUGIN_DIR" src
        echo "recipe $RECIPE source-maps-disabled $DISABLE_SOURCE_MAPS node $(node --version) yarn $YARN_VERSION"
    } | sha256sum | cut -c1-16
}

build() {
    if [ -f "$OUT/dist/index.html" ]; then
        return # built by another run while this one waited for the lock
    fi
    prepare_cvat_tree
    local dist="$CVAT_TREE/cvat-ui/dist" log_file="$CACHE_DIR/ui-build.log"
    rm -rf "$dist"
    # files CVAT keeps in cvat-ui/dist (the favicon) go into the image with the build, as in Dockerfile.ui
    if [ -d "$CVAT_SOURCE/cvat-ui/dist" ]; then cp -r "$CVAT_SOURCE/cvat-ui/dist" "$dist"; fi
    log "building CVAT's UI with CLIENT_PLUGINS=$PLUGIN_DIR (a few minutes; log: $log_file)"
    local start=$SECONDS
    if ! (cd "$CVAT_TREE" && CLIENT_PLUGINS="$PLUGIN_DIR" \
        NODE_OPTIONS="${NODE_OPTIONS:---max-old-space-size=6144}" \
        run_yarn run build:cvat-ui) > "$log_file" 2>&1; then
        tail -n 40 "$log_file" >&2
        log "the UI build failed; the whole log is $log_file"
        return 1
    fi
    # webpack skips a plugin whose entry it cannot find, with only a warning
    if ! grep -qF -- "- $PLUGIN_DIR/src/ts/index.tsx" "$log_file" ||
        grep -qF "Not found entrypoint $PLUGIN_DIR" "$log_file"; then
        log "webpack did not take the plugin's entry $PLUGIN_DIR/src/ts/index.tsx (see $log_file)"
        return 1
    fi
    [ -f "$dist/index.html" ] || { log "the build made no index.html (see $log_file)"; return 1; }
    log "built in $((SECONDS - start)) s"
    rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp" && mv "$dist" "$OUT.tmp/dist"
    rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
    # keep the newest builds only
    find "$CACHE_DIR" -maxdepth 1 -type d -name 'ui-*' -printf '%T@ %p\n' | sort -rn \
        | tail -n +$((KEEP_BUILDS + 1)) | cut -d' ' -f2- | xargs -r rm -rf
}

OUT="$CACHE_DIR/ui-$(build_hash)"
if [ ! -f "$OUT/dist/index.html" ]; then
    mkdir -p "$CACHE_DIR"
    CVAT_TREE="$(cvat_tree_path)"
    with_tree_lock build
fi
echo "$OUT/dist"
