// One run of "Segment Anything 2: Tracker" in CVAT's real UI, as a user does it, for the tests against a
// real CVAT (e2e/tests/test_browser.py) and the benchmark (bench/plugin_overhead.py).
//
//   node browser/run-action.mjs '<JSON parameters>'      prints a JSON result as its last line
//
// Parameters: base (CVAT's URL), username, password, taskId, jobId, frame (where the run starts),
// probe (object types, e.g. ["RECTANGLE SHAPE"]: the actions Ctrl+E lists for each, before the run),
// select ({"type": "POLYGON SHAPE"}: that object, from its item and Ctrl+E; "all": Menu → Run actions),
// targetFrame, convertToTracks, stopAfterAbsent, cancelAtPercent (press Cancel once the progress reaches it), save (Ctrl+S
// after the run, default true), screenshot (a PNG path: the view at `screenshotFrame` after the run),
// errorScreenshot (a PNG path for the view when a step fails), finishTimeoutMs (default 600000).
// Result: probed (type → listed actions), listedActions, parameters (as the dialog shows them), progress (every distinct message seen,
// with its percent and the milliseconds since Run), notices, elapsedMs (Run to the end of the run).

import * as driver from './cvat-driver.mjs';

async function pickObject(page, type) {
    const objects = await driver.listObjects(page);
    const object = objects.find((item) => item.type === type);
    if (!object) throw new Error(`No ${type} on the frame; the objects: ${JSON.stringify(objects)}`);
    await driver.hoverObject(page, object);
    await driver.openActionsForHovered(page);
}

async function probe(page, types) {
    const probed = {};
    for (const type of types) {
        await pickObject(page, type);
        probed[type] = await driver.listedActions(page);
        await driver.closeDialog(page);
    }
    return probed;
}

async function watchProgress(page, started, cancelAtPercent, finished) {
    const seen = [];
    let cancelled = false;
    while (!finished.done) {
        const progress = await driver.readProgress(page).catch(() => null);
        if (progress && progress.message && seen.at(-1)?.message !== progress.message) {
            seen.push({ ...progress, ms: Date.now() - started });
        }
        if (!cancelled && cancelAtPercent !== undefined && progress && progress.percent >= cancelAtPercent) {
            await driver.cancelAction(page);
            cancelled = true;
        }
        await new Promise((resolve) => { setTimeout(resolve, 50); });
    }
    return { seen, cancelled };
}

async function main() {
    const args = JSON.parse(process.argv[2]);
    const session = await driver.launchBrowser();
    const { page } = session;
    try {
        await driver.login(page, args.base, args.username, args.password);
        await driver.openJob(page, args.base, { taskId: args.taskId, jobId: args.jobId, frame: args.frame });
        const probed = await probe(page, args.probe ?? []);
        if (args.select === 'all') await driver.openRunActions(page);
        else await pickObject(page, args.select.type);
        const listedActions = await driver.listedActions(page);
        await driver.chooseAction(page);
        const parameters = await driver.setParameters(page, {
            targetFrame: args.targetFrame,
            convertToTracks: args.convertToTracks,
            stopAfterAbsent: args.stopAfterAbsent,
        });

        const started = Date.now();
        await driver.runAction(page);
        const finished = { done: false };
        const watching = watchProgress(page, started, args.cancelAtPercent, finished);
        let done;
        try {
            done = await driver.waitForFinish(page, { timeoutMs: args.finishTimeoutMs ?? 600000 });
        } finally {
            finished.done = true;
        }
        const elapsedMs = Date.now() - started;
        const { seen, cancelled } = await watching;
        await driver.closeDialog(page);
        if (args.save !== false) await driver.saveAnnotations(page);
        if (args.screenshot) {
            await driver.dismissNotices(page);
            await driver.goToFrame(page, args.screenshotFrame ?? args.frame);
            await driver.screenshot(page, args.screenshot);
        }
        const result = {
            probed, listedActions, parameters, progress: seen, cancelled, notices: done.notices, elapsedMs,
        };
        process.stdout.write(`${JSON.stringify(result)}\n`);
    } catch (error) {
        const shot = args.errorScreenshot ?? (args.screenshot ? args.screenshot.replace(/\.png$/, '.error.png') : null);
        if (shot) await driver.screenshot(page, shot).catch(() => undefined);
        process.stdout.write(`${JSON.stringify({ error: error.message, consoleErrors: session.consoleErrors })}\n`);
        process.exitCode = 1;
    } finally {
        await session.close();
    }
}

await main();
