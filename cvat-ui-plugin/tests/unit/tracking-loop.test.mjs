import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkStopAfter, runTracking } from './.build/core/tracking-loop.mjs';

const square = (x) => [x, 0, x + 4, 0, x + 4, 4, x, 4];

// A stand-in for core.lambda.call: records the bodies and answers like the function would.
function fakeTracker({ failAt = null, absentAt = {}, onCall = () => {} } = {}) {
    const bodies = [];
    const call = async (body) => {
        bodies.push(JSON.parse(JSON.stringify(body)));
        onCall(body);
        if (body.frame === failAt) {
            throw Object.assign(new Error('503 Server Error: Service Unavailable for url: http://f/'), { code: 503 });
        }
        if (body.type === 'init_tracking') {
            return { shapes: body.shapes, states: body.shapes.map((_, i) => `state-${i}@${body.frame}`) };
        }
        return {
            shapes: body.states.map((_, i) => ((absentAt[body.frame] ?? []).includes(i) ?
                null : { type: 'polygon', points: square(body.frame) })),
            states: body.states.map((_, i) => `state-${i}@${body.frame}`),
        };
    };
    return { bodies, call };
}

const base = (call, extra = {}) => ({
    job: 3,
    startFrame: 10,
    plan: [11, 12, 14],
    shapes: [{ type: 'polygon', points: square(10) }, { type: 'polygon', points: square(20) }],
    call,
    cancelled: () => false,
    onProgress: () => {},
    cancelPollMs: 5,
    ...extra,
});

test('one call per frame for all objects, states carried from answer to call', async () => {
    const { bodies, call } = fakeTracker({ absentAt: { 12: [1] } });
    const progress = [];
    const result = await runTracking(base(call, { onProgress: (p) => progress.push(p) }));
    assert.equal(result.stop, null);
    assert.deepEqual(result.trackedFrames, [11, 12, 14]);
    assert.deepEqual(bodies.map((b) => [b.type, b.frame, b.job]), [
        ['init_tracking', 10, 3], ['track', 11, 3], ['track', 12, 3], ['track', 14, 3],
    ]);
    assert.deepEqual(bodies[1].states, ['state-0@10', 'state-1@10']);
    assert.deepEqual(bodies[3].states, ['state-0@12', 'state-1@12']);
    assert.deepEqual(result.answers.get(12), [square(12), null]);
    assert.deepEqual(progress.map((p) => [p.done, p.total, p.frame]), [
        [0, 3, null], [0, 3, 11], [1, 3, 12], [2, 3, 14], [3, 3, null],
    ]);
});

test('a failed call stops the run and keeps the frames before it', async () => {
    const { bodies, call } = fakeTracker({ failAt: 12 });
    const result = await runTracking(base(call));
    assert.deepEqual(result.trackedFrames, [11]);
    assert.equal(result.stop.kind, 'failed');
    assert.equal(result.stop.frame, 12);
    assert.equal(result.stop.error.code, 503);
    assert.equal(bodies.length, 3);
});

test('a failing start tracks nothing', async () => {
    const { call } = fakeTracker({ failAt: 10 });
    const result = await runTracking(base(call));
    assert.deepEqual(result.trackedFrames, []);
    assert.deepEqual([result.stop.kind, result.stop.frame], ['failed', 10]);
});

test('an unusable answer stops like a failed call', async () => {
    const result = await runTracking(base(async (body) => (body.type === 'init_tracking' ?
        { states: ['a', 'b'] } : { shapes: [null], states: ['a', 'b'] })));
    assert.equal(result.stop.kind, 'failed');
    assert.match(result.stop.error.message, /1 shapes for 2 objects/);
});

test('cancel between frames keeps what was tracked', async () => {
    let cancel = false;
    const { bodies, call } = fakeTracker({ onCall: (body) => { if (body.frame === 12) cancel = true; } });
    const result = await runTracking(base(call, { cancelled: () => cancel }));
    assert.deepEqual(result.trackedFrames, [11, 12]);
    assert.deepEqual(result.stop, { kind: 'cancelled', frame: 14 });
    assert.equal(bodies.length, 3);
});

test('cancel does not wait for a call in flight', async () => {
    let cancel = false;
    const never = new Promise(() => {});
    const call = async (body) => {
        if (body.type === 'init_tracking') return { states: ['a', 'b'] };
        if (body.frame === 12) {
            setTimeout(() => { cancel = true; }, 20);
            return never;
        }
        return { shapes: [null, null], states: ['a', 'b'] };
    };
    const started = Date.now();
    const result = await runTracking(base(call, { cancelled: () => cancel }));
    assert.ok(Date.now() - started < 2000);
    assert.deepEqual(result.trackedFrames, [11]);
    assert.deepEqual(result.stop, { kind: 'cancelled', frame: 12 });
});

test('cancelled before the start calls nothing', async () => {
    const { bodies, call } = fakeTracker();
    const result = await runTracking(base(call, { cancelled: () => true }));
    assert.deepEqual(result.stop, { kind: 'cancelled', frame: 10 });
    assert.equal(bodies.length, 0);
});

test('backward: the frames in the plan\'s order, one call each', async () => {
    const { bodies, call } = fakeTracker();
    const result = await runTracking(base(call, { plan: [9, 8, 6] }));
    assert.deepEqual(result.trackedFrames, [9, 8, 6]);
    assert.deepEqual(bodies.map((b) => [b.type, b.frame]), [['init_tracking', 10], ['track', 9], ['track', 8], ['track', 6]]);
    assert.deepEqual(bodies[3].states, ['state-0@8', 'state-1@8']);
});

test('an object absent N frames in a row ends: it is no longer sent, the others go on', async () => {
    // object 1 is absent on 12 and 13 (ends there with N = 2); object 0 is absent on 12 only
    const { bodies, call } = fakeTracker({ absentAt: { 12: [0, 1], 13: [1] } });
    const progress = [];
    const result = await runTracking(base(call, {
        plan: [11, 12, 13, 14, 15], stopAfterAbsent: 2, onProgress: (p) => progress.push(p),
    }));
    assert.equal(result.stop, null);
    assert.deepEqual(result.trackedFrames, [11, 12, 13, 14, 15]);
    assert.deepEqual(result.ended, [{ object: 1, absentFrom: 12, frame: 13 }]);
    assert.deepEqual(bodies.slice(1).map((b) => b.states.length), [2, 2, 2, 1, 1]);
    // after it ended only object 0's state goes, and its answers are spread back to its index
    assert.deepEqual(bodies[4].states, ['state-0@13']);
    assert.deepEqual(result.answers.get(14), [square(14), null]);
    assert.deepEqual(result.answers.get(12), [null, null]);
    assert.deepEqual(progress.at(-1), { done: 5, total: 5, frame: null });
});

test('the run ends early once every object has ended', async () => {
    const { bodies, call } = fakeTracker({ absentAt: { 12: [1], 13: [0, 1], 14: [0] } });
    const progress = [];
    const result = await runTracking(base(call, {
        plan: [11, 12, 13, 14, 15, 16], stopAfterAbsent: 2, onProgress: (p) => progress.push(p),
    }));
    assert.equal(result.stop, null);
    assert.deepEqual(result.trackedFrames, [11, 12, 13, 14]);
    assert.deepEqual(result.ended, [{ object: 1, absentFrom: 12, frame: 13 }, { object: 0, absentFrom: 13, frame: 14 }]);
    assert.equal(bodies.length, 5);
    assert.deepEqual(progress.at(-1), { done: 4, total: 4, frame: null });
    // 0: never ends
    const never = fakeTracker({ absentAt: { 12: [0, 1], 13: [0, 1], 14: [0, 1] } });
    const all = await runTracking(base(never.call, { plan: [11, 12, 13, 14, 15], stopAfterAbsent: 0 }));
    assert.deepEqual(all.ended, []);
    assert.equal(all.trackedFrames.length, 5);
});

test('the stop parameter is a whole number from 0, left out is 0', () => {
    assert.equal(checkStopAfter('5', 'Stop'), 5);
    assert.equal(checkStopAfter(0, 'Stop'), 0);
    assert.equal(checkStopAfter(undefined, 'Stop'), 0);
    assert.equal(checkStopAfter(NaN, 'Stop'), 0);
    for (const wrong of [-1, 2.5, 'many', 100000]) {
        assert.throws(() => checkStopAfter(wrong, 'Stop'), /^Error: "Stop" is .*: set it to a whole number from 0 \(never\) to 1000\.$/);
    }
});

// The tracker's refusal of a kept state, as cvat-core rejects: CVAT's own 400, or the function's 404.
const refusal = (status) => Object.assign(
    new Error(status === 400 ? '["Invalid or expired tracker state"]' :
        `${status} Client Error: Not Found for url: http://nuclio:8070/`),
    { code: status },
);

test('every first call gives its shapes the start frame and the direction; no kept state, no states key', async () => {
    const forward = fakeTracker();
    await runTracking(base(forward.call));
    assert.deepEqual(forward.bodies[0].shapes.map(({ frame, direction }) => [frame, direction]), [[10, 'forward'], [10, 'forward']]);
    assert.equal('states' in forward.bodies[0], false);
    const backward = fakeTracker();
    await runTracking(base(backward.call, { plan: [9, 8], keptStates: [null, null] }));
    assert.deepEqual(backward.bodies[0].shapes.map(({ frame, direction }) => [frame, direction]), [[10, 'backward'], [10, 'backward']]);
    assert.equal('states' in backward.bodies[0], false);
});

test('kept states go beside the shapes in the first call only; each object\'s last state comes back', async () => {
    const { bodies, call } = fakeTracker();
    const result = await runTracking(base(call, { keptStates: [null, 'kept-1@30'] }));
    assert.equal(result.stop, null);
    assert.deepEqual(bodies[0].states, [null, 'kept-1@30']);
    assert.deepEqual(bodies[0].shapes.map((shape) => shape.direction), ['forward', 'forward']);
    assert.deepEqual(bodies.slice(1).map((body) => [body.type, 'shapes' in body]), [['track', false], ['track', false], ['track', false]]);
    assert.deepEqual(bodies[1].states, ['state-0@10', 'state-1@10']);
    assert.deepEqual(result.memory, { sent: 1, refused: false, started: true });
    assert.deepEqual(result.lastStates, [{ state: 'state-0@14', frame: 14 }, { state: 'state-1@14', frame: 14 }]);
});

test('last states: backward, cancelled midway, failed midway, an ended object\'s, none before an answer', async () => {
    const backward = await runTracking(base(fakeTracker().call, { plan: [9, 8, 6] }));
    assert.deepEqual(backward.lastStates.map((last) => last.frame), [6, 6]);
    assert.deepEqual(backward.memory, { sent: 0, refused: false, started: true });

    let cancel = false;
    const cancelling = fakeTracker({ onCall: (body) => { if (body.frame === 12) cancel = true; } });
    const cancelled = await runTracking(base(cancelling.call, { cancelled: () => cancel }));
    assert.equal(cancelled.stop.kind, 'cancelled');
    assert.deepEqual(cancelled.lastStates, [{ state: 'state-0@12', frame: 12 }, { state: 'state-1@12', frame: 12 }]);

    const failed = await runTracking(base(fakeTracker({ failAt: 12 }).call));
    assert.deepEqual(failed.lastStates.map((last) => last.state), ['state-0@11', 'state-1@11']);
    const unusable = await runTracking(base(async (body) => (body.type === 'init_tracking' ?
        { states: ['a', 'b'] } : { shapes: [null], states: ['c', 'd'] })));
    assert.deepEqual(unusable.lastStates, [{ state: 'a', frame: 10 }, { state: 'b', frame: 10 }]);

    const ending = await runTracking(base(fakeTracker({ absentAt: { 12: [1], 13: [1] } }).call, {
        plan: [11, 12, 13, 14], stopAfterAbsent: 2,
    }));
    assert.deepEqual(ending.lastStates, [{ state: 'state-0@14', frame: 14 }, { state: 'state-1@13', frame: 13 }]);

    const startFailed = await runTracking(base(fakeTracker({ failAt: 10 }).call));
    assert.deepEqual(startFailed.lastStates, [null, null]);
    assert.equal(startFailed.memory.started, false);
});

for (const status of [400, 404]) {
    test(`kept states refused with ${status}: the first call once more without them, every object fresh`, async () => {
        const tracker = fakeTracker();
        const call = async (body) => {
            if (body.states && body.type === 'init_tracking') {
                tracker.bodies.push(JSON.parse(JSON.stringify(body)));
                throw refusal(status);
            }
            return tracker.call(body);
        };
        const result = await runTracking(base(call, { keptStates: ['old-0', 'old-1'] }));
        assert.equal(result.stop, null);
        assert.deepEqual(result.trackedFrames, [11, 12, 14]);
        const { bodies } = tracker;
        assert.deepEqual(bodies.map((body) => [body.type, body.frame, 'states' in body]), [
            ['init_tracking', 10, true], ['init_tracking', 10, false],
            ['track', 11, true], ['track', 12, true], ['track', 14, true],
        ]);
        assert.deepEqual(bodies[1].shapes, bodies[0].shapes);
        assert.deepEqual(result.memory, { sent: 2, refused: true, started: true });
        assert.deepEqual(result.lastStates.map((last) => last.state), ['state-0@14', 'state-1@14']);
    });
}

test('a refused retry, or a 500, fails the run at its start as before; without kept states no retry', async () => {
    const always400 = [];
    const refusedTwice = await runTracking(base(async (body) => {
        always400.push(body);
        throw refusal(400);
    }, { keptStates: ['old-0', null] }));
    assert.equal(always400.length, 2); // once more, not again
    assert.deepEqual([refusedTwice.stop.kind, refusedTwice.stop.frame, refusedTwice.stop.error.code], ['failed', 10, 400]);
    assert.deepEqual(refusedTwice.memory, { sent: 1, refused: true, started: false });

    const bodies = [];
    const failed = await runTracking(base(async (body) => {
        bodies.push(body);
        throw Object.assign(new Error('500 Server Error: Internal Server Error for url: http://f/'), { code: 500 });
    }, { keptStates: ['old-0', 'old-1'] }));
    assert.equal(bodies.length, 1);
    assert.equal(failed.stop.error.code, 500);
    assert.deepEqual(failed.memory, { sent: 2, refused: false, started: false });

    const plain = [];
    const plain400 = await runTracking(base(async (body) => {
        plain.push(body);
        throw refusal(400);
    }));
    assert.equal(plain.length, 1);
    assert.equal(plain400.stop.error.code, 400);
    assert.deepEqual(plain400.memory, { sent: 0, refused: false, started: false });
});
