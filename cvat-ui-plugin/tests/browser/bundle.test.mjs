// The action inside CVAT's real built UI (cvat-core's actions, commit, plugin hooks, antd notices) in
// headless Chromium, against a fake CVAT API (fake-cvat-api.mjs): everything but CVAT's server and the
// annotation view. The real-CVAT tests drive the view itself (cvat-driver.mjs).
//
//   node --test tests/browser/bundle.test.mjs      CVAT_UI_DIST=<dist> to skip ./build-ui.sh
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ACTION_NAME, NOTICE_CLASS, launchBrowser } from './cvat-driver.mjs';
import {
    DELETED_FRAME, FUNCTION, JOB, MASK, POLYGON, fakeCvatApi,
} from './fake-cvat-api.mjs';
import { startServer } from './static-server.mjs';

const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const scenario = {};
const fake = fakeCvatApi(scenario);
let server;
let session;
let page;

function setScenario(values) {
    for (const key of Object.keys(scenario)) delete scenario[key];
    Object.assign(scenario, { functions: [FUNCTION] }, values);
    fake.calls.length = 0;
}

const shifted = (points, dx) => points.map((value, i) => (i % 2 === 0 ? value + dx : value));
const maskAt = (dx) => [...MASK.slice(0, -4), MASK.at(-4) + dx, MASK.at(-3), MASK.at(-2) + dx, MASK.at(-1)];

// Runs in the page: helpers around the real cvat-core (window.cvat).
function installHelpers(job, actionName, noticeClass) {
    const { cvat } = window;
    window.sam2Calls = 0;
    cvat.plugins.register({
        name: 'test call counter',
        description: 'counts tracker calls',
        cvat: { lambda: { call: { leave: async (plugin, result) => { window.sam2Calls += 1; return result; } } } },
    });
    window.sam2 = {
        async newJob() {
            this.job = new cvat.classes.Job(job);
            this.action = (await cvat.actions.list()).find((action) => action.name === actionName);
            return (await this.job.annotations.get(0, false, [])).map((state) => state.clientID);
        },
        async states(frame) {
            return (await this.job.annotations.get(frame, false, [])).map((state) => ({
                clientID: state.clientID,
                objectType: state.objectType,
                shapeType: state.shapeType,
                points: state.points,
                outside: state.outside,
                applicable: this.action.isApplicableForObject(state),
            }));
        },
        async move(frame, clientID, points) {
            const [state] = (await this.job.annotations.get(frame, false, []))
                .filter((object) => object.clientID === clientID);
            state.points = points;
            await state.save();
        },
        async run({
            frame, target, convert = false, stopAfter = 0, remember = true, clientIDs = null, cancelAfterCalls = null,
        }) {
            document.querySelectorAll(`.${noticeClass}`).forEach((notice) => { notice.dataset.seen = '1'; });
            window.sam2Calls = 0;
            const progress = [];
            const parameters = {
                'Target frame': String(target),
                'Convert polygon shapes to tracks': String(convert),
                'Stop an object after N frames absent': String(stopAfter),
                'Remember earlier runs': String(remember),
            };
            const cancelled = () => cancelAfterCalls !== null && window.sam2Calls >= cancelAfterCalls;
            const onProgress = (message, percent) => progress.push({ message, percent });
            let error = null;
            try {
                if (clientIDs) {
                    const states = (await this.job.annotations.get(frame, false, []))
                        .filter((state) => clientIDs.includes(state.clientID));
                    await cvat.actions.call(this.job, this.action, parameters, frame, states, onProgress, cancelled);
                } else {
                    await cvat.actions.run(this.job, this.action, parameters, frame, frame, [], onProgress, cancelled);
                }
            } catch (caught) {
                error = caught.message;
            }
            const deadline = Date.now() + 3000;
            let notices = [];
            while (!error && !notices.length && Date.now() < deadline) {
                await new Promise((resolve) => { setTimeout(resolve, 50); });
                notices = [...document.querySelectorAll(`.${noticeClass}:not([data-seen])`)].map((notice) => ({
                    title: notice.querySelector('.ant-notification-notice-message')?.textContent ?? '',
                    description: notice.querySelector('.ant-notification-notice-description')?.textContent ?? '',
                }));
            }
            return {
                error, progress, notices, collection: await this.job.annotations.export(),
            };
        },
    };
}

const byFrame = (objects) => Object.fromEntries(objects.map((object) => [object.frame, object]));
const shapesOf = (collection, type) => collection.shapes.filter((shape) => shape.type === type)
    .sort((a, b) => a.frame - b.frame);

before(async () => {
    const dist = process.env.CVAT_UI_DIST ??
        execFileSync(join(pluginDir, 'build-ui.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
            .trim().split('\n').at(-1);
    server = await startServer({ root: dist, api: fake.api });
    session = await launchBrowser();
    ({ page } = session);
    await page.goto(`${server.url}/`, { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(async (name) => {
        if (!window.cvat) return false;
        return (await window.cvat.actions.list()).some((action) => action.name === name);
    }, { timeout: 60000, polling: 250 }, ACTION_NAME);
    await page.evaluate(installHelpers, JOB, ACTION_NAME, NOTICE_CLASS);
});

after(async () => {
    await session?.close();
    await server?.close();
});

test('the action is registered with its four parameters and takes polygons and masks', async () => {
    setScenario({});
    await page.evaluate(() => window.sam2.newJob());
    const parameters = await page.evaluate(() => Object.keys(window.sam2.action.parameters));
    assert.deepEqual(parameters, [
        'Target frame', 'Convert polygon shapes to tracks', 'Stop an object after N frames absent', 'Remember earlier runs',
    ]);
    const states = await page.evaluate(() => window.sam2.states(0));
    assert.deepEqual(states.map((state) => [state.shapeType, state.applicable]), [['polygon', true], ['mask', true]]);
});

test('with no tracker deployed the user is told so, and nothing is called', async () => {
    setScenario({ functions: [] });
    await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate(() => window.sam2.run({ frame: 0, target: 4 }));
    assert.match(result.error, /^No tracker that follows polygons or masks is deployed in this CVAT/);
    assert.equal(fake.calls.length, 0);
});

test('Run actions: one call per frame for all objects, a shape per tracked frame, deleted frames skipped', async () => {
    setScenario({ delayMs: 150 }); // cvat-core passes on one progress message per 100 ms
    await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate(() => window.sam2.run({ frame: 0, target: 8 }));
    assert.equal(result.error, null);

    assert.deepEqual(fake.calls.map((body) => [body.type, body.frame]), [
        ['init_tracking', 0], ...[1, 2, 3, 4, 6, 7, 8].map((frame) => ['track', frame]),
    ]);
    assert.deepEqual(fake.calls[0], {
        type: 'init_tracking',
        frame: 0,
        shapes: [
            { type: 'polygon', points: POLYGON, frame: 0, direction: 'forward' },
            { type: 'mask', points: MASK, frame: 0, direction: 'forward' },
        ],
        job: JOB.id,
        task: JOB.task_id,
    });
    assert.deepEqual(Object.keys(fake.calls[1]).sort(), ['frame', 'job', 'states', 'task', 'type']);
    assert.equal(fake.calls[1].states.length, 2);

    const polygons = byFrame(shapesOf(result.collection, 'polygon'));
    const masks = byFrame(shapesOf(result.collection, 'mask'));
    const tracked = [1, 2, 3, 4, 6, 7, 8];
    assert.deepEqual(Object.keys(polygons).map(Number), [0, ...tracked]);
    assert.deepEqual(Object.keys(masks).map(Number), [0, ...tracked]);
    assert.ok(!(DELETED_FRAME in polygons));
    for (const frame of tracked) {
        assert.deepEqual(polygons[frame].points, shifted(POLYGON, 5 * frame));
        assert.deepEqual(masks[frame].points, maskAt(5 * frame));
        assert.deepEqual(polygons[frame].attributes, [{ spec_id: 20, value: 'truck' }, { spec_id: 21, value: 'true' }]);
        assert.equal(polygons[frame].group, 2);
        assert.equal(polygons[frame].z_order, 1);
        assert.equal(polygons[frame].source, 'auto');
        assert.equal(polygons[frame].score, polygons[0].score); // one lineage per object
    }
    assert.notEqual(polygons[0].score, masks[0].score);
    assert.equal(result.notices.length, 1);
    assert.equal(result.notices[0].title, 'Tracked 2 objects to frame 8');
    assert.ok(result.progress.some(({ message }) => /^Tracking 2 objects: frame \d of 7 \(frame \d\)$/.test(message)));
});

test('a run again from a corrected middle frame replaces the earlier shapes, never duplicates', async () => {
    setScenario({});
    // continues on the job of the previous test
    const states = await page.evaluate(() => window.sam2.states(3));
    const polygon = states.find((state) => state.shapeType === 'polygon');
    const corrected = shifted(POLYGON, 40);
    await page.evaluate((id, points) => window.sam2.move(3, id, points), polygon.clientID, corrected);

    const result = await page.evaluate((id) => window.sam2.run({ frame: 3, target: 6, clientIDs: [id] }), polygon.clientID);
    assert.equal(result.error, null);
    assert.deepEqual(fake.calls.map((body) => [body.type, body.frame, (body.shapes ?? body.states).length]), [
        ['init_tracking', 3, 1], ['track', 4, 1], ['track', 6, 1],
    ]);
    const polygons = shapesOf(result.collection, 'polygon');
    assert.deepEqual(polygons.map((shape) => shape.frame), [0, 1, 2, 3, 4, 6, 7, 8]);
    const at = byFrame(polygons);
    assert.deepEqual(at[3].points, corrected);
    assert.deepEqual(at[4].points, shifted(corrected, 5));
    assert.deepEqual(at[6].points, shifted(corrected, 15));
    assert.deepEqual(at[7].points, shifted(POLYGON, 35)); // after the new run's last frame: the earlier run's
    assert.equal(shapesOf(result.collection, 'mask').length, 8);
    assert.equal(result.notices[0].title, 'Tracked 1 object to frame 6');
    assert.match(result.notices[0].description, /2 shapes from an earlier run on these frames replaced/);
    // the polygon goes on from its state of the run before (answered on frame 8) and its corrected shape
    assert.equal(JSON.parse(fake.calls[0].states[0]).answered, 8);
    assert.match(result.notices[0].description, /1 object continued its earlier memory\./);
});

test('backward from a corrected frame: the frames before it are replaced, those after it untouched', async () => {
    setScenario({});
    // continues on the job of the previous tests: polygons on 0-4 and 6-8, the corrected one on 3
    const states = await page.evaluate(() => window.sam2.states(7));
    const polygon = states.find((state) => state.shapeType === 'polygon');
    const corrected = shifted(POLYGON, 60);
    await page.evaluate((id, points) => window.sam2.move(7, id, points), polygon.clientID, corrected);
    const before = byFrame(shapesOf(await page.evaluate(() => window.sam2.job.annotations.export()), 'polygon'));

    const result = await page.evaluate((id) => window.sam2.run({ frame: 7, target: 2, clientIDs: [id] }), polygon.clientID);
    assert.equal(result.error, null);
    // one call per frame, backward, the deleted frame skipped
    assert.deepEqual(fake.calls.map((body) => [body.type, body.frame]), [
        ['init_tracking', 7], ['track', 6], ['track', 4], ['track', 3], ['track', 2],
    ]);
    const polygons = shapesOf(result.collection, 'polygon');
    assert.deepEqual(polygons.map((shape) => shape.frame), [0, 1, 2, 3, 4, 6, 7, 8]); // one per frame
    const at = byFrame(polygons);
    for (const frame of [2, 3, 4, 6]) assert.deepEqual(at[frame].points, shifted(corrected, 5 * (frame - 7)));
    for (const frame of [0, 1, 8]) assert.deepEqual(at[frame].points, before[frame].points);
    assert.equal(result.notices[0].title, 'Tracked 1 object back to frame 2');
    // the polygon's state from the run before (forward, to frame 6) goes with the corrected shape
    assert.equal(JSON.parse(fake.calls[0].states[0]).answered, 6);
    assert.deepEqual(fake.calls[0].shapes, [{
        type: 'polygon', points: corrected, frame: 7, direction: 'backward',
    }]);
    assert.match(result.notices[0].description,
        /^Frames 6–2: 4 frames tracked\. 1 object continued its earlier memory\. 4 shapes from an earlier run/);
});

test('objects that leave the frame end after N frames absent, and the run ends with the last', async () => {
    setScenario({ exitAt: 640 }); // the fake's frames are 640 wide
    const [polygonID, maskID] = await page.evaluate(() => window.sam2.newJob());
    // the polygon from x 600 leaves on frame 8, the mask from x 620 on frame 4 (5 px per frame)
    await page.evaluate((id, points) => window.sam2.move(0, id, points), polygonID, shifted(POLYGON, 500));
    await page.evaluate((id, points) => window.sam2.move(0, id, points), maskID, maskAt(420));
    const result = await page.evaluate(() => window.sam2.run({
        frame: 0, target: 19, convert: true, stopAfter: 2,
    }));
    assert.equal(result.error, null);
    assert.deepEqual(fake.calls.map((body) => [body.frame, (body.shapes ?? body.states).length]), [
        [0, 2], [1, 2], [2, 2], [3, 2], [4, 2], [6, 2], [7, 1], [8, 1], [9, 1],
    ]);
    const [track] = result.collection.tracks;
    assert.deepEqual(track.shapes.map((shape) => [shape.frame, shape.outside]), [
        [0, false], [1, false], [2, false], [3, false], [4, false], [6, false], [7, false], [8, true], [9, true],
    ]);
    assert.deepEqual(shapesOf(result.collection, 'mask').map((shape) => shape.frame), [0, 1, 2, 3]);
    const [notice] = result.notices;
    assert.equal(notice.title, 'Tracked 2 objects to frame 9');
    assert.match(notice.description, /Object 2 \("car" mask\) ended on frame 6 \(absent on frames 4–6\)\./);
    assert.match(notice.description, /Object 1 \("car" polygon\) ended on frame 9 \(absent on frames 8–9\)\./);
    assert.match(notice.description, /Every object had ended, so the run stopped after 8 frames of 18\./);
});

test('conversion: the polygon becomes a track with the tracked frames as keyframes, the mask stays', async () => {
    setScenario({ absent: { 3: [0] } });
    const [polygonID] = await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate(
        (id) => window.sam2.run({ frame: 0, target: 4, convert: true, clientIDs: [id] }),
        polygonID,
    );
    assert.equal(result.error, null);
    assert.deepEqual(shapesOf(result.collection, 'polygon'), []);
    assert.equal(shapesOf(result.collection, 'mask').length, 1);
    const [track] = result.collection.tracks;
    assert.equal(track.label_id, 1);
    assert.equal(track.group, 2);
    assert.deepEqual(track.attributes, [{ spec_id: 20, value: 'truck' }]);
    assert.deepEqual(track.shapes.map((shape) => [shape.frame, shape.outside]), [
        [0, false], [1, false], [2, false], [3, true], [4, false],
    ]);
    assert.deepEqual(track.shapes[0].attributes, [{ spec_id: 21, value: 'true' }]);
    assert.deepEqual(track.shapes[4].points, shifted(POLYGON, 20));

    // the track again, from frame 2 to 6: its keyframes 3 and 4 are replaced, 5 is deleted, 6 added
    const states = await page.evaluate(() => window.sam2.states(2));
    const trackState = states.find((state) => state.objectType === 'track');
    assert.equal(trackState.applicable, true);
    setScenario({});
    const again = await page.evaluate((id) => window.sam2.run({ frame: 2, target: 6, clientIDs: [id] }), trackState.clientID);
    // the track made by the first run is the same object: its state from frame 4 goes with its shape
    assert.equal(fake.calls[0].states.length, 1);
    assert.equal(JSON.parse(fake.calls[0].states[0]).answered, 4);
    const [changed] = again.collection.tracks;
    assert.equal(again.collection.tracks.length, 1);
    assert.deepEqual(changed.shapes.map((shape) => [shape.frame, shape.outside]), [
        [0, false], [1, false], [2, false], [3, false], [4, false], [6, false],
    ]);
});

test('run, correct a result, run again from it: each object continues its kept state, the shape an anchor', async () => {
    setScenario({});
    await page.evaluate(() => window.sam2.newJob());
    const first = await page.evaluate(() => window.sam2.run({ frame: 0, target: 4 }));
    assert.equal(first.error, null);
    assert.equal('states' in fake.calls[0], false); // nothing kept for these objects yet
    assert.doesNotMatch(first.notices[0].description, /memory/);

    // the polygon drifted on frame 4: the user moves it there, then runs on from frame 4
    const states = await page.evaluate(() => window.sam2.states(4));
    const polygon = states.find((state) => state.shapeType === 'polygon');
    const corrected = shifted(POLYGON, 40);
    await page.evaluate((id, points) => window.sam2.move(4, id, points), polygon.clientID, corrected);
    setScenario({});
    const second = await page.evaluate(() => window.sam2.run({ frame: 4, target: 7 }));
    assert.equal(second.error, null);
    const [start] = fake.calls;
    assert.deepEqual(Object.keys(start).sort(), ['frame', 'job', 'shapes', 'states', 'task', 'type']);
    assert.equal(start.type, 'init_tracking');
    assert.equal(start.frame, 4);
    const at = (type) => start.shapes.findIndex((shape) => shape.type === type);
    assert.deepEqual(start.shapes[at('polygon')], {
        type: 'polygon', points: corrected, frame: 4, direction: 'forward',
    });
    assert.deepEqual(start.shapes[at('mask')], {
        type: 'mask', points: maskAt(20), frame: 4, direction: 'forward',
    });
    // each object's last state of the first run (answered on frame 4), as CVAT answered it
    for (const type of ['polygon', 'mask']) {
        const kept = JSON.parse(start.states[at(type)]);
        assert.equal(kept.answered, 4);
        assert.equal(kept.shape.type, type);
        assert.equal(kept.frame, 0);
    }
    assert.deepEqual(fake.calls.slice(1).map((body) => [body.type, body.frame, 'shapes' in body]), [
        ['track', 6, false], ['track', 7, false],
    ]);
    // the corrected shape is where the tracker goes on from
    const polygons = byFrame(shapesOf(second.collection, 'polygon'));
    assert.deepEqual(polygons[6].points, shifted(corrected, 10));
    assert.equal(second.notices[0].title, 'Tracked 2 objects to frame 7');
    assert.match(second.notices[0].description, /2 objects continued their earlier memory\./);

    // with "Remember earlier runs" off every object starts fresh: no states; the direction goes with the shapes
    setScenario({});
    const fresh = await page.evaluate(() => window.sam2.run({ frame: 4, target: 2, remember: false }));
    assert.equal(fresh.error, null);
    assert.equal('states' in fake.calls[0], false);
    assert.deepEqual(fake.calls[0].shapes.map((shape) => [shape.frame, shape.direction]), [[4, 'backward'], [4, 'backward']]);
    assert.doesNotMatch(fresh.notices[0].description, /memory/);

    // what it got is still kept: the next run continues from that run's last states (frame 2)
    setScenario({});
    await page.evaluate(() => window.sam2.run({ frame: 4, target: 6 }));
    assert.deepEqual(fake.calls[0].states.map((state) => JSON.parse(state).answered), [2, 2]);
});

test('a kept state CVAT refuses (400, expired) makes the object start fresh, and the run succeeds', async () => {
    setScenario({});
    const [polygonID] = await page.evaluate(() => window.sam2.newJob());
    await page.evaluate((id) => window.sam2.run({ frame: 0, target: 3, clientIDs: [id] }), polygonID);
    const polygon = (await page.evaluate(() => window.sam2.states(3))).find((state) => state.shapeType === 'polygon');

    setScenario({ refuseStates: true });
    const result = await page.evaluate((id) => window.sam2.run({ frame: 3, target: 6, clientIDs: [id] }), polygon.clientID);
    assert.equal(result.error, null);
    assert.deepEqual(fake.calls.map((body) => [body.type, body.frame, 'states' in body]), [
        ['init_tracking', 3, true], ['init_tracking', 3, false], ['track', 4, true], ['track', 6, true],
    ]);
    assert.deepEqual(fake.calls[1].shapes, fake.calls[0].shapes);
    assert.deepEqual(shapesOf(result.collection, 'polygon').map((shape) => shape.frame), [0, 1, 2, 3, 4, 6]);
    const [notice] = result.notices;
    assert.equal(notice.title, 'Tracked 1 object to frame 6');
    assert.match(notice.description, /The earlier memory of 1 object was not accepted \(expired, or the tracker's state store restarted\): it started fresh\./);

    // the refused state is gone: the next run sends the fresh run's state (answered on frame 6)
    setScenario({});
    const onSix = (await page.evaluate(() => window.sam2.states(6))).find((state) => state.shapeType === 'polygon');
    await page.evaluate((id) => window.sam2.run({ frame: 6, target: 8, clientIDs: [id] }), onSix.clientID);
    assert.equal(JSON.parse(fake.calls[0].states[0]).answered, 6);
});

test('a 503 midway keeps the frames tracked and says why, in words', async () => {
    setScenario({
        failAt: {
            frame: 3, status: 503, text: '503 Server Error: Service Unavailable for url: http://nuclio:8070/api/function_invocations',
        },
    });
    const [polygonID] = await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate((id) => window.sam2.run({ frame: 0, target: 8, clientIDs: [id] }), polygonID);
    assert.equal(result.error, null);
    assert.deepEqual(shapesOf(result.collection, 'polygon').map((shape) => shape.frame), [0, 1, 2]);
    const [notice] = result.notices;
    assert.equal(notice.title, 'Tracking stopped at frame 3');
    assert.match(notice.description, /state store \(Redis or Kvrocks\) is unreachable/);
    assert.match(notice.description, /Frames 1–2 \(2 of 7\) were tracked and kept\./);
    assert.match(notice.description, /run the action again from frame 2/);
});

test('Cancel midway keeps the frames tracked', async () => {
    setScenario({ delayMs: 150 });
    const [polygonID] = await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate(
        (id) => window.sam2.run({
            frame: 0, target: 8, clientIDs: [id], cancelAfterCalls: 4,
        }),
        polygonID,
    );
    assert.equal(result.error, null);
    assert.deepEqual(shapesOf(result.collection, 'polygon').map((shape) => shape.frame), [0, 1, 2, 3]);
    assert.equal(result.notices[0].title, 'Tracking cancelled at frame 4');
    assert.match(result.notices[0].description, /Frames 1–3 \(3 of 7\) were tracked and kept\. To go on, run the action again from frame 3\./);
});

test('413 at the start changes nothing and says to track fewer objects', async () => {
    setScenario({
        failAt: {
            frame: 0, status: 413, text: '413 Client Error: Request Entity Too Large for url: http://nuclio:8070/',
        },
    });
    await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate(() => window.sam2.run({ frame: 0, target: 8 }));
    assert.deepEqual(result.collection.shapes.map((shape) => shape.id), [101, 102]);
    assert.match(result.notices[0].description, /No frame was tracked, nothing changed\./);
    assert.match(result.notices[0].description, /Track fewer objects at once/);
});

test('the current frame as the target, or a stop count that is no number, is refused with a sentence', async () => {
    setScenario({});
    await page.evaluate(() => window.sam2.newJob());
    const result = await page.evaluate(() => window.sam2.run({ frame: 10, target: 10 }));
    assert.equal(result.error, 'Target frame 10 is the current frame: set it to a frame from 0 to 19 other than 10 ' +
        '(after it tracks forward, before it backward).');
    const stop = await page.evaluate(() => window.sam2.run({ frame: 0, target: 5, stopAfter: -2 }));
    assert.match(stop.error, /^"Stop an object after N frames absent" is -2: set it to a whole number from 0 \(never\) to 1000\.$/);
    assert.equal(fake.calls.length, 0);
});
