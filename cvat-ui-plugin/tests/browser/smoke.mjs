// Smoke test of the browser side alone: Debian's chromium starts with the driver's flags, loads a page from
// a loopback server with CVAT's headers, runs script, and takes a screenshot. No CVAT needed.
//
//   node tests/browser/smoke.mjs [screenshot.png]
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { launchBrowser, screenshot } from './cvat-driver.mjs';
import { startServer } from './static-server.mjs';

const root = mkdtempSync(join(tmpdir(), 'sam2-smoke-'));
writeFileSync(join(root, 'index.html'), `<!doctype html><html><head><title>smoke</title></head>
<body><h1 id="greeting">Segment Anything 2: Tracker</h1>
<script>document.getElementById('greeting').dataset.isolated = String(window.crossOriginIsolated);</script>
</body></html>`);
const shot = process.argv[2] ?? join(root, 'smoke.png');

const server = await startServer({ root });
const session = await launchBrowser();
try {
    const started = Date.now();
    await session.page.goto(`${server.url}/some/route`, { waitUntil: 'load' });
    const text = await session.page.$eval('#greeting', (el) => el.textContent);
    const isolated = await session.page.$eval('#greeting', (el) => el.dataset.isolated);
    assert.equal(text, 'Segment Anything 2: Tracker');
    // COOP same-origin + COEP credentialless, as CVAT's nginx sends: SharedArrayBuffer is available
    assert.equal(isolated, 'true');
    await screenshot(session.page, shot);
    assert.ok(statSync(shot).size > 1000);
    console.log(`browser ok: ${await session.browser.version()}, page in ${Date.now() - started} ms, ${shot}`);
} finally {
    await session.close();
    await server.close();
    if (!process.argv[2]) rmSync(root, { recursive: true, force: true });
}
