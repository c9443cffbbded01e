#!/usr/bin/env bash
# Type-check, lint and unit-test the CVAT UI plugin, as CI does: `cvat-ui-plugin/check.sh`.
#
# - tsc --noEmit --strict on the plugin against CVAT's UI sources (imports such as `cvat-core-wrapper` resolve in
#   cvat-ui/src as webpack resolves them, `@modules/<name>` in CVAT's node_modules);
# - eslint with CVAT's own cvat-ui rules;
# - the unit tests of the pure modules (src/ts/core) with node's test runner;
# - with --browser also: CVAT's UI built with the plugin (build-ui.sh) and the action run in it in headless
#   Chromium against a fake CVAT API (tests/browser/bundle.test.mjs); installs Debian's chromium as root.
#
# Needs Node.js 20+ with corepack; installs CVAT's UI dependencies into the cache on first use (see
# scripts/cvat-tree.sh for CVAT_SOURCE and SAM2_E2E_CACHE). Exits non-zero on any type error, lint error
# or failed test.
set -euo pipefail

# shellcheck source=SCRIPTDIR/scripts/cvat-tree.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/cvat-tree.sh"
CVAT_TREE="$(cvat_tree_path)"
TSCONFIG=cvat-ui/tsconfig.sam2-plugin.json
ESLINTRC=cvat-ui/.eslintrc.sam2-plugin.cjs

timed() {
    local name=$1 start=$SECONDS
    shift
    log "$name ..."
    if "$@"; then
        log "$name: ok ($((SECONDS - start)) s)"
    else
        log "$name: FAILED ($((SECONDS - start)) s)"
        return 1
    fi
}

write_configs() {
    # Generated next to cvat-ui's own configs, so that what they extend resolves as in CVAT's tree.
    cat > "$CVAT_TREE/$TSCONFIG" <<JSON
{
    "extends": "./tsconfig.json",
    "compilerOptions": {
        "baseUrl": "src",
        "paths": { "@modules/*": ["../../node_modules/*"] }
    },
    "include": ["./index.d.ts", "src/assets/index.d.ts", "$PLUGIN_DIR/src/ts/**/*"]
}
JSON
    cat > "$CVAT_TREE/$ESLINTRC" <<'JS'
// cvat-ui's eslint configuration (its own rules over the root one's), for the SAM2 tracker plugin
const root = require('../.eslintrc.cjs');
const ui = require('./.eslintrc.cjs');

module.exports = {
    ...root,
    root: true,
    parserOptions: {
        ...root.parserOptions,
        project: './tsconfig.sam2-plugin.json',
        tsconfigRootDir: __dirname,
    },
    extends: [...root.extends, ...ui.extends],
    settings: {
        ...root.settings,
        react: { version: require('../node_modules/react/package.json').version },
    },
    rules: {
        ...ui.rules,
        // the plugin imports CVAT's modules as webpack resolves them (cvat-ui/src, @modules/<name>)
        'import/no-unresolved': 0,
        'import/no-extraneous-dependencies': 0,
    },
};
JS
}

# CVAT's own sources do not pass `--strict`; the plugin must. So tsc runs strict over the whole program and
# only diagnostics in the plugin's files (or without a file: a broken configuration) count.
type_check() {
    local out rc=0
    out="$(cd "$PLUGIN_DIR" && node "$CVAT_TREE/node_modules/typescript/bin/tsc" -p "$CVAT_TREE/$TSCONFIG" \
        --noEmit --strict --pretty false)" || rc=$?
    local ours
    ours="$(printf '%s\n' "$out" | grep -E '^(src/ts/[^(]+\([0-9]+,[0-9]+\): error|error) TS' || true)"
    if [ -n "$ours" ]; then
        printf '%s\n' "$ours" >&2
        return 1
    fi
    if [ "$rc" -ne 0 ] && [[ "$out" != *"): error TS"* ]]; then
        printf '%s\n' "$out" | tail -n 20 >&2  # tsc failed without diagnostics: say why
        return 1
    fi
}

lint() {
    (cd "$PLUGIN_DIR" && node "$CVAT_TREE/node_modules/eslint/bin/eslint.js" --no-eslintrc \
        -c "$CVAT_TREE/$ESLINTRC" --resolve-plugins-relative-to "$CVAT_TREE" \
        --max-warnings 0 --ext .ts,.tsx src/ts)
}

unit_tests() {
    TYPESCRIPT="$CVAT_TREE/node_modules/typescript" node "$PLUGIN_DIR/tests/unit/run.mjs"
}

checks() {
    # (errexit does not apply in here: this runs on the left of ||)
    prepare_cvat_tree || return 1
    write_configs || return 1
    local failed=0
    timed "tsc --noEmit --strict" type_check || failed=1
    timed "eslint" lint || failed=1
    timed "unit tests" unit_tests || failed=1
    return $failed
}

browser_tests() {
    "$PLUGIN_DIR/tests/browser/setup.sh" || return 1
    local dist
    dist="$("$PLUGIN_DIR/build-ui.sh" | tail -n 1)"
    (cd "$PLUGIN_DIR/tests" && CVAT_UI_DIST="$dist" node --test browser/bundle.test.mjs)
}

start=$SECONDS
failed=0
with_tree_lock checks || failed=1
if [ "${1:-}" = --browser ]; then
    timed "browser tests (the action in the built UI)" browser_tests || failed=1
fi
if [ $failed = 0 ]; then
    log "all checks passed ($((SECONDS - start)) s)"
else
    log "checks failed ($((SECONDS - start)) s)"
    exit 1
fi
