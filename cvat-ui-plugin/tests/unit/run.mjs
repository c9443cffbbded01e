// Runs the unit tests of the pure modules (src/ts/core) under node's test runner: each module is
// transpiled with TypeScript's transpileModule (types are erased, nothing is checked: check.sh runs tsc)
// into tests/unit/.build/core/*.mjs, which the tests import.
//
//   node tests/unit/run.mjs            TypeScript from $TYPESCRIPT, tests/node_modules or CVAT's tree
import { spawnSync } from 'node:child_process';
import {
    existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const coreDir = join(here, '..', '..', 'src', 'ts', 'core');
const outDir = join(here, '.build', 'core');

function loadTypeScript() {
    const candidates = [process.env.TYPESCRIPT, join(here, '..', 'node_modules', 'typescript')].filter(Boolean);
    for (const candidate of candidates) {
        if (existsSync(join(candidate, 'package.json'))) {
            return createRequire(join(candidate, 'package.json'))(candidate);
        }
    }
    console.error('TypeScript not found: run `npm ci` in cvat-ui-plugin/tests, or set TYPESCRIPT=<its folder>');
    process.exit(2);
}

const ts = loadTypeScript();
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
for (const name of readdirSync(coreDir).filter((file) => file.endsWith('.ts'))) {
    const source = readFileSync(join(coreDir, name), 'utf8');
    const { outputText, diagnostics } = ts.transpileModule(source, {
        fileName: name,
        reportDiagnostics: true,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    if (diagnostics?.length) {
        console.error(ts.formatDiagnostics(diagnostics, ts.createCompilerHost({})));
        process.exit(1);
    }
    // ES modules under node need the file extension in relative imports
    const esm = outputText.replace(/(from\s+['"])(\.\/[^'"]+)(['"])/g, '$1$2.mjs$3');
    writeFileSync(join(outDir, name.replace(/\.ts$/, '.mjs')), esm);
}

const tests = readdirSync(here).filter((file) => file.endsWith('.test.mjs')).map((file) => join(here, file));
const run = spawnSync(process.execPath, ['--test', ...tests], { stdio: 'inherit' });
process.exit(run.status ?? 1);
