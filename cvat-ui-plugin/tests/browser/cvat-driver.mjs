// Drives CVAT's UI in headless Chromium (Debian's chromium, puppeteer-core 24) the way a user runs the
// "Segment Anything 2: Tracker" action. Every step waits for what the user would see, and fails with a
// sentence naming what did not appear.
//
//   const session = await launchBrowser();
//   await login(session.page, baseUrl, 'admin', 'password');
//   await openJob(session.page, baseUrl, { taskId, jobId, frame: 0 });
//   const objects = await listObjects(session.page);     // [{ clientID, type: 'POLYGON SHAPE', label }]
//   await hoverObject(session.page, objects.find((o) => o.type === 'POLYGON SHAPE'));
//   await openActionsForHovered(session.page);          // Ctrl+E
//   await chooseAction(session.page);
//   await setParameters(session.page, { targetFrame: 9, convertToTracks: true, stopAfterAbsent: 3 });
//   await runAction(session.page);
//   const done = await waitForFinish(session.page);     // { notices: [...] }
//   await saveAnnotations(session.page);
//   await session.close();
//
// Beside a user's steps: recordTrackerCalls (the tracker calls the page makes, with their answers' status and
// states) and moveObject (a correction made in the page, as the UI saves a dragged shape).
//
// Selectors are CVAT 2.64's own class names (cvat-ui/src/components/annotation-page/...).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import puppeteer from 'puppeteer-core';

export const ACTION_NAME = 'Segment Anything 2: Tracker';
export const NOTICE_CLASS = 'cvat-sam2-tracker-notice';
const TARGET_FRAME = 'Target frame';
const CONVERT = 'Convert polygon shapes to tracks';
const STOP_AFTER = 'Stop an object after N frames absent';

// Flags that work here as root without a display or GPU.
export const CHROMIUM_FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
];

// Hosts other than these resolve to nothing, so the page reaches only CVAT on the loopback (CVAT's
// index.html asks an outside host for a web font; the UI falls back to local fonts without it).
export const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

function hostRules(allowHosts) {
    return `--host-resolver-rules=MAP * ~NOTFOUND, ${allowHosts.map((host) => `EXCLUDE ${host}`).join(', ')}`;
}

export async function launchBrowser({
    executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium',
    width = 1600,
    height = 1000,
    extraArgs = [],
    allowHosts = LOOPBACK_HOSTS,
    timeoutMs = 30000,
} = {}) {
    const userDataDir = mkdtempSync(join(tmpdir(), 'sam2-chromium-'));
    let browser;
    try {
        browser = await puppeteer.launch({
            executablePath,
            headless: true,
            userDataDir,
            args: [...CHROMIUM_FLAGS, hostRules(allowHosts), `--window-size=${width},${height}`, ...extraArgs],
            defaultViewport: { width, height },
            timeout: timeoutMs,
        });
    } catch (error) {
        rmSync(userDataDir, { recursive: true, force: true });
        throw new Error(`Chromium did not start (${executablePath}): ${error.message}`);
    }
    const page = await browser.newPage();
    page.setDefaultTimeout(timeoutMs);
    const consoleErrors = [];
    page.on('console', (message) => {
        if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(String(error)));
    return {
        browser,
        page,
        consoleErrors,
        async close() {
            try {
                await browser.close();
            } finally {
                rmSync(userDataDir, { recursive: true, force: true });
            }
        },
    };
}

async function waitFor(page, selector, what, options = {}) {
    try {
        return await page.waitForSelector(selector, { visible: true, ...options });
    } catch (error) {
        throw new Error(`${what} did not appear (${selector}): ${error.message}`);
    }
}

// CVAT's sign-in form: the credential field, then the password field it reveals, then "Next".
export async function login(page, baseUrl, username, password) {
    await page.goto(new URL('/auth/login', baseUrl).href, { waitUntil: 'domcontentloaded' });
    const credential = await waitFor(page, '.cvat-login-form input[autocomplete="credential"]', 'The sign-in form');
    await credential.type(username);
    const passwordInput = await waitFor(page, '.cvat-login-form input#password', 'The password field');
    await passwordInput.type(password);
    await page.click('.cvat-credentials-action-button');
    try {
        await page.waitForFunction(() => !window.location.pathname.startsWith('/auth/login'), { timeout: 30000 });
    } catch {
        throw new Error(`Signing in as ${username} did not leave the sign-in page: ${await noticeTexts(page)}`);
    }
}

// The annotation view of a job, on the given frame, with its objects listed.
export async function openJob(page, baseUrl, { taskId, jobId, frame = 0 }) {
    const url = new URL(`/tasks/${taskId}/jobs/${jobId}`, baseUrl);
    url.searchParams.set('frame', String(frame));
    await page.goto(url.href, { waitUntil: 'domcontentloaded' });
    await waitFor(page, '.cvat-canvas-container', 'The annotation canvas', { timeout: 120000 });
    await waitFor(page, '.cvat-objects-sidebar', 'The objects panel', { timeout: 60000 });
    await page.waitForFunction(
        (expected) => document.querySelector('.cvat-player-frame-selector input')?.value === String(expected) &&
            !document.querySelector('.cvat-spinner-container .cvat-spinner'),
        { timeout: 60000 },
        frame,
    );
}

// The objects panel's items on the current frame: clientID, type text ("POLYGON SHAPE", "MASK SHAPE",
// "POLYGON TRACK") and label.
export async function listObjects(page) {
    return page.$$eval('[id^="cvat-objects-sidebar-state-item-"]', (items) => items.map((item) => ({
        clientID: Number(item.id.replace('cvat-objects-sidebar-state-item-', '')),
        type: item.querySelector('.cvat-objects-sidebar-state-item-object-type-text')?.textContent?.trim() ?? '',
        label: item.querySelector('.cvat-objects-sidebar-state-item-label-selector')?.textContent?.trim() ?? '',
    })));
}

// Activates an object as the user does: the mouse over its item in the objects panel. Ctrl+E acts on the
// object CVAT has activated, which its item shows with the active class; on a loaded machine a hover can be
// missed (another object stays active and Ctrl+E would list that one's actions), so it hovers again, from
// outside the item, until the item is active.
export async function hoverObject(page, object) {
    const clientID = typeof object === 'number' ? object : object?.clientID;
    if (!Number.isInteger(clientID)) throw new Error(`No such object to select: ${JSON.stringify(object)}`);
    const selector = `#cvat-objects-sidebar-state-item-${clientID}`;
    for (let attempt = 1; ; attempt += 1) {
        const item = await waitFor(page, selector, `Object #${clientID}`);
        await item.hover();
        try {
            await page.waitForFunction(
                (query) => document.querySelector(query)?.className.includes('cvat-objects-sidebar-state-active-item'),
                { timeout: 5000 },
                selector,
            );
            return;
        } catch (error) {
            if (attempt === 6) throw new Error(`Object #${clientID} did not become active: ${error.message}`);
            await page.mouse.move(1, 1);
        }
    }
}

async function waitForDialog(page) {
    await waitFor(page, '.cvat-action-runner-content .cvat-action-runner-run-btn', 'The actions dialog');
}

// Ctrl+E with the hovered object active: the dialog lists only actions that apply to it.
export async function openActionsForHovered(page) {
    await page.keyboard.down('Control');
    await page.keyboard.press('KeyE');
    await page.keyboard.up('Control');
    await waitForDialog(page);
}

// Menu → "Run actions": every visible object that passes the annotation filter.
export async function openRunActions(page) {
    await page.click('.cvat-annotation-header-menu-button');
    const item = await waitFor(page, '::-p-text(Run actions)', 'The "Run actions" menu item');
    // a DOM click: the menu may still be animating in, which puppeteer's mouse click refuses
    await item.evaluate((element) => element.click());
    await waitForDialog(page);
}

// The action names the dialog offers.
// Opens the dialog's list of actions. A click while the dialog is still animating in can be lost, so it
// clicks again until the list shows.
async function openActionList(page) {
    for (let attempt = 1; ; attempt += 1) {
        await page.click('.cvat-action-runner-list .ant-select-selector');
        try {
            await page.waitForSelector(
                '.ant-select-dropdown:not(.ant-select-dropdown-hidden) .ant-select-item-option',
                { visible: true, timeout: 2000 },
            );
            return;
        } catch (error) {
            if (attempt === 5) throw new Error(`The list of actions did not appear: ${error.message}`);
        }
    }
}

export async function listedActions(page) {
    await openActionList(page);
    const names = await page.$$eval(
        '.ant-select-dropdown:not(.ant-select-dropdown-hidden) .ant-select-item-option',
        (options) => options.map((option) => option.getAttribute('title') ?? option.textContent.trim()),
    );
    await page.keyboard.press('Escape');
    return names;
}

export async function chooseAction(page, name = ACTION_NAME) {
    const current = await page.$eval('.cvat-action-runner-list .ant-select-selection-item', (el) => el.title || el.textContent)
        .catch(() => null);
    if (current === name) return;
    await openActionList(page);
    const option = await waitFor(
        page,
        `.ant-select-dropdown:not(.ant-select-dropdown-hidden) .ant-select-item-option[title="${name}"]`,
        `The action "${name}" in the list`,
    );
    // a DOM click: antd's dropdown may still be animating in, which puppeteer's mouse click refuses
    await option.evaluate((element) => element.click());
    await page.waitForFunction(
        (expected) => document.querySelector('.cvat-action-runner-list .ant-select-selection-item')
            ?.getAttribute('title') === expected,
        { timeout: 5000 },
        name,
    );
}

async function parameterRow(page, name) {
    const rows = await page.$$('.cvat-action-runner-action-parameter');
    for (const row of rows) {
        const text = await row.evaluate((el) => el.textContent ?? '');
        if (text.trim().startsWith(name)) return row;
    }
    throw new Error(`The action has no parameter "${name}"`);
}

// The dialog's current parameter values.
export async function readParameters(page) {
    const target = await (await parameterRow(page, TARGET_FRAME)).$eval('input', (input) => input.value);
    const convert = await (await parameterRow(page, CONVERT)).$eval(
        'button.ant-switch',
        (button) => button.classList.contains('ant-switch-checked'),
    );
    const stopAfter = await (await parameterRow(page, STOP_AFTER)).$eval('input', (input) => input.value);
    return {
        targetFrame: target === '' ? null : Number(target),
        convertToTracks: convert,
        stopAfterAbsent: stopAfter === '' ? null : Number(stopAfter),
    };
}

// Types a whole value into an input at once, as React sees a paste: antd's InputNumber clamps every
// intermediate value, so key by key "15" could become "11" then "115".
async function fillInput(page, input, value) {
    await input.evaluate((element, text) => {
        const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        element.focus();
        setter.call(element, text);
        element.dispatchEvent(new Event('input', { bubbles: true }));
    }, String(value));
    await page.keyboard.press('Tab');
}

// Sets the parameters in the dialog and answers them as the dialog now shows them. The dialog keeps the
// target frame within its range (the job's frames): a value outside it comes back changed, which the caller
// can check.
export async function setParameters(page, { targetFrame, convertToTracks, stopAfterAbsent } = {}) {
    if (targetFrame !== undefined) {
        await fillInput(page, await (await parameterRow(page, TARGET_FRAME)).$('input'), targetFrame);
    }
    if (stopAfterAbsent !== undefined) {
        await fillInput(page, await (await parameterRow(page, STOP_AFTER)).$('input'), stopAfterAbsent);
    }
    if (convertToTracks !== undefined) {
        const button = await (await parameterRow(page, CONVERT)).$('button.ant-switch');
        const checked = await button.evaluate((el) => el.classList.contains('ant-switch-checked'));
        if (checked !== convertToTracks) await button.click();
    }
    return readParameters(page);
}

export async function runAction(page) {
    await page.click('.cvat-action-runner-run-btn');
}

// The dialog's progress: percent and message ("Tracking 2 objects: frame 3 of 10 (frame 3)"), or null.
export async function readProgress(page) {
    return page.evaluate(() => {
        const bar = document.querySelector('.cvat-action-runner-progress');
        if (!bar) return null;
        const text = bar.querySelector('.ant-progress-text')?.textContent ?? '';
        const message = document.querySelector('.cvat-action-runner-progress-message')?.textContent ?? '';
        return { percent: Number.parseInt(text, 10), message: message.trim() };
    });
}

// Waits until the progress satisfies `predicate(progress)`, e.g. ({ percent }) => percent >= 30.
export async function waitForProgress(page, predicate, { timeoutMs = 300000, pollMs = 100 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let last = null;
    while (Date.now() < deadline) {
        last = await readProgress(page);
        if (last && predicate(last)) return last;
        await new Promise((resolve) => { setTimeout(resolve, pollMs); });
    }
    throw new Error(`The progress did not get there in ${timeoutMs} ms; last seen: ${JSON.stringify(last)}`);
}

export async function cancelAction(page) {
    await page.click('.cvat-action-runner-cancel-btn');
}

// Closes the dialog when it is still open (after Run actions, or a cancel).
export async function closeDialog(page) {
    const button = await page.$('.cvat-action-runner-content .cvat-action-runner-cancel-btn');
    if (!button) return;
    await page.waitForFunction(
        () => document.querySelector('.cvat-action-runner-cancel-btn')?.textContent?.trim() === 'Close',
        { timeout: 30000 },
    );
    await button.click();
    await page.waitForFunction(() => !document.querySelector('.cvat-action-runner-content .ant-modal-body'), {
        timeout: 10000,
    }).catch(() => undefined);
}

// Notifications on screen: { kind: 'tracker' | 'error' | 'other', title, description }.
export async function readNotices(page) {
    return page.$$eval('.ant-notification-notice', (notices, trackerClass) => notices.map((notice) => {
        let kind = 'other';
        if (notice.classList.contains(trackerClass)) kind = 'tracker';
        else if (notice.classList.contains('ant-notification-notice-error')) kind = 'error';
        return {
            kind,
            title: notice.querySelector('.ant-notification-notice-message')?.textContent?.trim() ?? '',
            description: notice.querySelector('.ant-notification-notice-description')?.textContent?.trim() ?? '',
        };
    }), NOTICE_CLASS);
}

async function noticeTexts(page) {
    const notices = await readNotices(page).catch(() => []);
    return notices.map((notice) => `${notice.title} ${notice.description}`.trim()).join(' | ') || 'no message shown';
}

// Waits until the run is over: the Run button no longer loading (or the dialog closed) and a notice shown
// (the tracker's own, or CVAT's error notice for a run refused before it started).
export async function waitForFinish(page, { timeoutMs = 600000 } = {}) {
    try {
        await page.waitForFunction(
            (trackerClass) => {
                const button = document.querySelector('.cvat-action-runner-run-btn');
                const running = button?.classList.contains('ant-btn-loading') ?? false;
                const notice = document.querySelector(
                    `.ant-notification-notice.${trackerClass}, .ant-notification-notice-error`,
                );
                return !running && notice !== null;
            },
            { timeout: timeoutMs, polling: 200 },
            NOTICE_CLASS,
        );
    } catch (error) {
        throw new Error(`The action did not finish in ${timeoutMs} ms (${error.message}); ` +
            `progress: ${JSON.stringify(await readProgress(page))}; notices: ${await noticeTexts(page)}`);
    }
    return { notices: await readNotices(page) };
}

// The tracker's notice after the run, as { level, title, description }.
export async function trackerNotice(page) {
    const notices = await readNotices(page);
    const notice = notices.find((item) => item.kind === 'tracker');
    if (!notice) throw new Error(`No notice of the tracker on screen: ${await noticeTexts(page)}`);
    return notice;
}

export async function dismissNotices(page) {
    for (const close of await page.$$('.ant-notification-notice .ant-notification-notice-close')) {
        await close.click().catch(() => undefined);
    }
}

// Closes every notice and waits until none is on screen (before another run in the same page, whose end
// waitForFinish recognises by a notice).
export async function clearNotices(page, { timeoutMs = 10000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    while (await page.$('.ant-notification-notice')) {
        if (Date.now() > deadline) throw new Error(`The notices did not close: ${await noticeTexts(page)}`);
        await dismissNotices(page);
        await new Promise((resolve) => { setTimeout(resolve, 200); });
    }
}

// Records the tracker calls the page makes (cvat-core's lambda.call: POST /api/lambda/functions/<id>) from now
// on: the returned array gets, per call in the order sent, { function, body (as posted), status, states (the
// answer's, on 200) }; `await calls.settled()` before reading the last ones.
export function recordTrackerCalls(page) {
    const calls = [];
    const pending = [];
    const entries = new Map();
    page.on('request', (request) => {
        const found = /\/api\/lambda\/functions\/([^/?]+)/.exec(request.url());
        if (!found || request.method() !== 'POST') return;
        const entry = { function: decodeURIComponent(found[1]), body: null, status: null, states: null };
        calls.push(entry);
        entries.set(request, entry);
        pending.push((async () => {
            const data = request.postData() ?? await request.fetchPostData();
            entry.body = data === undefined ? null : JSON.parse(data);
        })().catch((error) => { entry.body = { unreadable: String(error) }; }));
    });
    page.on('response', (response) => {
        const entry = entries.get(response.request());
        if (!entry) return;
        entry.status = response.status();
        if (!response.ok()) return;
        pending.push(response.json().then((answer) => { entry.states = answer?.states ?? null; })
            .catch(() => undefined));
    });
    calls.settled = async () => {
        for (let count = -1; count !== pending.length;) {
            count = pending.length;
            await Promise.all(pending);
        }
    };
    return calls;
}

// CVAT's store, cvat-core and the UI's action creators in the page, through the entry CVAT gives UI plugins
// (window.cvatUI.registerComponent, cvat-ui/src/components/plugins-entrypoint.tsx); kept as window.sam2Driver.
async function installPageHandles(page) {
    await page.waitForFunction(() => Boolean(window.cvatUI?.registerComponent), { timeout: 30000 });
    await page.evaluate(() => {
        if (window.sam2Driver) return;
        window.cvatUI.registerComponent(({ store, core, actionCreators }) => {
            window.sam2Driver = { store, core, actionCreators };
            return { name: 'SAM2 tracker e2e driver', destructor: () => undefined };
        });
    });
}

// A correction as the annotation view saves a dragged shape (updateAnnotationsAsync: the object's state in
// cvat-core with new points, then save()): the object on the current frame (`clientID`) moved by dx, dy; the
// view then shows the frame again from cvat-core (changeFrameAsync, forced). Nothing is saved to the server
// (saveAnnotations does). Answers the points before and after, as the view's state holds them.
export async function moveObject(page, clientID, { dx = 0, dy = 0 } = {}) {
    await installPageHandles(page);
    const moved = await page.evaluate(async (id, shiftX, shiftY) => {
        const { store, actionCreators } = window.sam2Driver;
        const current = () => store.getState().annotation;
        const state = current().annotations.states.find((object) => object.clientID === id);
        if (!state) return { error: `no object #${id} in the view's state` };
        const before = [...state.points];
        state.points = before.map((value, index) => value + (index % 2 === 0 ? shiftX : shiftY));
        await state.save();
        const frame = current().player.frame.number;
        await store.dispatch(actionCreators.changeFrameAsync(frame, false, 1, true));
        const after = current().annotations.states.find((object) => object.clientID === id);
        return { before, after: after ? [...after.points] : null, frame };
    }, clientID, dx, dy);
    if (moved.error) throw new Error(`Moving object #${clientID} failed: ${moved.error}`);
    return moved;
}

// Ctrl+S in the annotation view; waits for CVAT's save request(s) to end.
export async function saveAnnotations(page, { timeoutMs = 120000 } = {}) {
    const saved = page.waitForResponse(
        (response) => /\/api\/jobs\/\d+\/annotations/.test(response.url()) &&
            ['PATCH', 'PUT'].includes(response.request().method()),
        { timeout: timeoutMs },
    );
    await page.keyboard.down('Control');
    await page.keyboard.press('KeyS');
    await page.keyboard.up('Control');
    const response = await saved;
    if (!response.ok()) throw new Error(`Saving the annotations failed: ${response.status()}`);
    await page.waitForFunction(
        () => !document.querySelector('.cvat-annotation-header-save-button.cvat-annotation-disabled-header-button'),
        { timeout: timeoutMs },
    );
}

// The frame shown in the player.
export async function currentFrame(page) {
    return page.$eval('.cvat-player-frame-selector input', (input) => Number(input.value));
}

// Goes to a frame through the player's frame field, as a user types it.
export async function goToFrame(page, frame, { timeoutMs = 60000 } = {}) {
    await fillInput(page, await page.$('.cvat-player-frame-selector input'), frame);
    await page.waitForFunction(
        (expected) => document.querySelector('.cvat-player-frame-selector input')?.value === String(expected) &&
            !document.querySelector('.cvat-spinner-container .cvat-spinner'),
        { timeout: timeoutMs },
        frame,
    );
}

export async function screenshot(page, path) {
    await page.screenshot({ path, type: path.endsWith('.jpg') ? 'jpeg' : 'png' });
    return path;
}
