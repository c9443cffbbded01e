// One run of "Segment Anything 2: Tracker" in CVAT's real UI, as a user does it, for the tests against a
// real CVAT (e2e/tests/test_browser.py) and the benchmark (bench/plugin_overhead.py); with `then`, more steps
// in the same page afterwards (no reload: what the plugin keeps in the page's memory stays).
//
//   node browser/run-action.mjs '<JSON parameters>'      prints a JSON result as its last line
//
// Parameters: base (CVAT's URL), username, password, taskId, jobId, frame (where the run starts),
// probe (object types, e.g. ["RECTANGLE SHAPE"]: the actions Ctrl+E lists for each, before the run),
// select ({"type": "POLYGON SHAPE"}: that object, from its item and Ctrl+E; "all": Menu → Run actions),
// targetFrame, convertToTracks, stopAfterAbsent, cancelAtPercent (press Cancel once the progress reaches it), save (Ctrl+S
// after the run, default true), screenshot (a PNG path: the view at `screenshotFrame` after the run),
// errorScreenshot (a PNG path for the view when a step fails), finishTimeoutMs (default 600000, per run),
// then (steps after the run, in order, in the same page):
//   {"correct": {"frame": 3, "type": "POLYGON SHAPE", "dx": 6, "dy": 4}}   go to the frame, move the (first) object
//       of that type there by dx, dy as the view saves a dragged shape (cvat-driver.mjs moveObject), Ctrl+S;
//   {"frame": 3, "select": ..., "targetFrame": 7, ...}   another run from that frame (the notices on screen closed
//       first): the run's parameters above but probe, screenshot and screenshotFrame.
// Result: probed (type → listed actions), listedActions, parameters (as the dialog shows them), progress (every distinct message seen,
// with its percent and the milliseconds since Run), cancelled, notices, elapsedMs (Run to the end of the run), calls (the
// tracker calls of the run, in order: { function, body as posted, status, states of the answer });
// with `then`, then: per step, for a correction { frame, clientID, type, before, after } (the object's points as the
// view's state held them), for a run the fields of a run (probed aside).

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

// A run from the current frame: pick, set, Run, wait for the end, close the dialog, save.
async function runOnce(page, run, calls) {
    if (run.select === 'all') await driver.openRunActions(page);
    else await pickObject(page, run.select.type);
    const listedActions = await driver.listedActions(page);
    await driver.chooseAction(page);
    const parameters = await driver.setParameters(page, {
        targetFrame: run.targetFrame,
        convertToTracks: run.convertToTracks,
        stopAfterAbsent: run.stopAfterAbsent,
    });

    const firstCall = calls.length;
    const started = Date.now();
    await driver.runAction(page);
    const finished = { done: false };
    const watching = watchProgress(page, started, run.cancelAtPercent, finished);
    let done;
    try {
        done = await driver.waitForFinish(page, { timeoutMs: run.finishTimeoutMs ?? 600000 });
    } finally {
        finished.done = true;
    }
    const elapsedMs = Date.now() - started;
    const { seen, cancelled } = await watching;
    await calls.settled();
    await driver.closeDialog(page);
    if (run.save !== false) await driver.saveAnnotations(page);
    return {
        listedActions, parameters, progress: seen, cancelled, notices: done.notices, elapsedMs,
        calls: calls.slice(firstCall),
    };
}

async function goTo(page, frame) {
    if (await driver.currentFrame(page) !== frame) await driver.goToFrame(page, frame);
}

// A correction in the page: the object of `type` on `frame` moved by dx, dy, saved (Ctrl+S).
async function correct(page, {
    frame, type = 'POLYGON SHAPE', dx = 0, dy = 0,
}) {
    await goTo(page, frame);
    const object = (await driver.listObjects(page)).find((item) => item.type === type);
    if (!object) throw new Error(`No ${type} on frame ${frame} to correct`);
    const { before, after } = await driver.moveObject(page, object.clientID, { dx, dy });
    await driver.saveAnnotations(page);
    return {
        frame, clientID: object.clientID, type, before, after,
    };
}

async function main() {
    const args = JSON.parse(process.argv[2]);
    const session = await driver.launchBrowser();
    const { page } = session;
    const calls = driver.recordTrackerCalls(page);
    try {
        await driver.login(page, args.base, args.username, args.password);
        await driver.openJob(page, args.base, { taskId: args.taskId, jobId: args.jobId, frame: args.frame });
        const probed = await probe(page, args.probe ?? []);
        const first = await runOnce(page, args, calls);
        if (args.screenshot) {
            await driver.dismissNotices(page);
            await driver.goToFrame(page, args.screenshotFrame ?? args.frame);
            await driver.screenshot(page, args.screenshot);
        }
        const then = [];
        for (const step of args.then ?? []) {
            if (step.correct) {
                then.push(await correct(page, step.correct));
            } else {
                await driver.clearNotices(page);
                await goTo(page, step.frame);
                then.push(await runOnce(page, step, calls));
            }
        }
        const result = { probed, ...first, ...(args.then ? { then } : {}) };
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
