import assert from 'node:assert/strict';
import { test } from 'node:test';

import { outcomeOf, progressText } from './.build/core/messages.mjs';

test('progress says the frame of the plan and the percent', () => {
    assert.deepEqual(progressText({ done: 11, total: 40, frame: 57 }, 3, 45), {
        message: 'Tracking 3 objects: frame 12 of 40 (frame 57)', percent: 27,
    });
    assert.deepEqual(progressText({ done: 0, total: 40, frame: null }, 1, 45), {
        message: 'Starting the tracker on frame 45 for 1 object', percent: 0,
    });
    assert.equal(progressText({ done: 40, total: 40, frame: null }, 2, 45).percent, 100);
});

const fresh = { sent: 0, refused: false, started: true };
const result = (trackedFrames, stop, ended = [], memory = fresh) => ({
    trackedFrames, answers: new Map(), ended, stop, lastStates: [], memory,
});

test('a finished run', () => {
    const outcome = outcomeOf({
        objects: 2, startFrame: 10, planned: 3, result: result([11, 12, 13], null), replaced: 4, notes: [],
    });
    assert.equal(outcome.level, 'success');
    assert.equal(outcome.title, 'Tracked 2 objects to frame 13');
    assert.equal(outcome.description, 'Frames 11–13: 3 frames tracked. 4 shapes from an earlier run on these frames replaced.');
});

test('a cancelled run says what was kept and where to go on', () => {
    const outcome = outcomeOf({
        objects: 1, startFrame: 10, planned: 10, result: result([11, 12], { kind: 'cancelled', frame: 13 }),
        replaced: 0, notes: [],
    });
    assert.equal(outcome.level, 'warning');
    assert.equal(outcome.title, 'Tracking cancelled at frame 13');
    assert.equal(outcome.description,
        'Frames 11–12 (2 of 10) were tracked and kept. To go on, run the action again from frame 12.');
});

test('a failed run says why, what was kept and what to do', () => {
    const error = Object.assign(new Error('503 Server Error: Service Unavailable for url: http://f/'), { code: 503 });
    const outcome = outcomeOf({
        objects: 1, startFrame: 10, planned: 10, result: result([11], { kind: 'failed', frame: 12, error }),
        replaced: 0, notes: ['2 masks left as they are.'],
    });
    assert.equal(outcome.level, 'error');
    assert.equal(outcome.title, 'Tracking stopped at frame 12');
    assert.match(outcome.description, /^The tracker's state store \(Redis or Kvrocks\) is unreachable/);
    assert.match(outcome.description, /Frame 11 \(1 of 10\) was tracked and kept\./);
    assert.match(outcome.description, /run the action again from frame 11; the tracker needs no restart\./);
    assert.match(outcome.description, /2 masks left as they are\.$/);

    const atStart = outcomeOf({
        objects: 1, startFrame: 10, planned: 10, result: result([], { kind: 'failed', frame: 10, error }),
        replaced: 0, notes: [],
    });
    assert.match(atStart.description, /No frame was tracked, nothing changed\./);
    assert.match(atStart.description, /from frame 10/);
});

test('a backward run says so, and its ranges run backward', () => {
    const finished = outcomeOf({
        objects: 1, startFrame: 10, planned: 3, result: result([9, 8, 7], null), replaced: 0, notes: [],
    });
    assert.equal(finished.title, 'Tracked 1 object back to frame 7');
    assert.equal(finished.description, 'Frames 9–7: 3 frames tracked.');
    const cancelled = outcomeOf({
        objects: 1, startFrame: 10, planned: 10, result: result([9, 8], { kind: 'cancelled', frame: 7 }),
        replaced: 0, notes: [],
    });
    assert.equal(cancelled.description,
        'Frames 9–8 (2 of 10) were tracked and kept. To go on, run the action again from frame 8.');
});

test('objects that ended are named with where, and a run that ended early says why', () => {
    const ended = [{ object: 1, absentFrom: 14, frame: 16 }, { object: 0, absentFrom: 15, frame: 17 }];
    const names = ['"car" polygon', '"person" mask'];
    const all = outcomeOf({
        objects: 2, startFrame: 10, planned: 40, result: result([11, 12, 13, 14, 15, 16, 17], null, ended),
        replaced: 0, notes: [], objectNames: names,
    });
    assert.equal(all.level, 'success');
    assert.equal(all.title, 'Tracked 2 objects to frame 17');
    assert.equal(all.description, 'Frames 11–17: 7 frames tracked. ' +
        'Object 2 ("person" mask) ended on frame 16 (absent on frames 14–16). ' +
        'Object 1 ("car" polygon) ended on frame 17 (absent on frames 15–17). ' +
        'Every object had ended, so the run stopped after 7 frames of 40.');
    const one = outcomeOf({
        objects: 2, startFrame: 10, planned: 3, result: result([9, 8, 7], null, [{ object: 0, absentFrom: 8, frame: 8 }]),
        replaced: 0, notes: [],
    });
    assert.equal(one.description, 'Frames 9–7: 3 frames tracked. Object 1 ended on frame 8 (absent on frame 8).');
});

test('a run that sent earlier memory says how many objects continued it', () => {
    const memory = { sent: 2, refused: false, started: true };
    const outcome = outcomeOf({
        objects: 3, startFrame: 10, planned: 3, result: result([11, 12, 13], null, [], memory), replaced: 2, notes: [],
    });
    assert.equal(outcome.description, 'Frames 11–13: 3 frames tracked. 2 objects continued their earlier memory. ' +
        '2 shapes from an earlier run on these frames replaced.');
    const one = outcomeOf({
        objects: 1, startFrame: 10, planned: 3, result: result([9], null, [], { ...memory, sent: 1 }), replaced: 0, notes: [],
    });
    assert.equal(one.description, 'Frame 9: 1 frame tracked. 1 object continued its earlier memory.');
    // a first call that failed otherwise continued nothing
    const error = Object.assign(new Error('500 Server Error: Internal Server Error for url: http://f/'), { code: 500 });
    const failed = outcomeOf({
        objects: 1,
        startFrame: 10,
        planned: 3,
        result: result([], { kind: 'failed', frame: 10, error }, [], { ...memory, started: false }),
        replaced: 0,
        notes: [],
    });
    assert.doesNotMatch(failed.description, /memory/);
});

test('memory that was not accepted: the objects started fresh, or it is forgotten', () => {
    const refused = { sent: 2, refused: true, started: true };
    const outcome = outcomeOf({
        objects: 2, startFrame: 10, planned: 3, result: result([11, 12, 13], null, [], refused), replaced: 0, notes: [],
    });
    assert.equal(outcome.level, 'success');
    assert.equal(outcome.description, 'Frames 11–13: 3 frames tracked. The earlier memory of 2 objects was not ' +
        'accepted (expired, or the tracker\'s state store restarted): they started fresh.');
    const one = outcomeOf({
        objects: 1, startFrame: 10, planned: 3, result: result([11], null, [], { ...refused, sent: 1 }), replaced: 0, notes: [],
    });
    assert.match(one.description, /The earlier memory of 1 object was not accepted .*: it started fresh\.$/);
    const error = Object.assign(new Error('503 Server Error: Service Unavailable for url: http://f/'), { code: 503 });
    const failed = outcomeOf({
        objects: 2,
        startFrame: 10,
        planned: 3,
        result: result([], { kind: 'failed', frame: 10, error }, [], { ...refused, started: false }),
        replaced: 0,
        notes: [],
    });
    assert.match(failed.description, /No frame was tracked, nothing changed\./);
    assert.match(failed.description, /The earlier memory of 2 objects was not accepted \(expired, or the tracker's state store restarted\) and is forgotten\./);
});
