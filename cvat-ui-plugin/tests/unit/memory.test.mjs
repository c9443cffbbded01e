import assert from 'node:assert/strict';
import { test } from 'node:test';

import { scoreOf } from './.build/core/lineage.mjs';
import {
    MAX_KEPT_PER_JOB, forgetStates, keepState, keyframeKey, lineageIdentity, lookupStates, rememberRun, seedIdentity,
    trackIdentity,
} from './.build/core/memory.mjs';

const square = (x) => [x, 0, x + 4, 0, x + 4, 4, x, 4];
const shape = (extra) => ({
    clientID: 1, label_id: 1, group: 0, frame: 10, source: 'manual', attributes: [], elements: [], occluded: false,
    outside: false, points: square(10), rotation: 0, z_order: 0, type: 'polygon', ...extra,
});
const keyframe = (frame, x, outside = false) => ({
    frame, type: 'polygon', points: square(x), occluded: false, outside, rotation: 0, z_order: 0, attributes: [],
});
const trackSeed = (keyframes) => ({
    kind: 'track',
    track: {
        clientID: 9, label_id: 1, group: 0, frame: keyframes[0].frame, source: 'manual', attributes: [], elements: [],
        shapes: keyframes,
    },
    type: 'polygon',
    points: square(0),
    occluded: false,
    zOrder: 0,
    attributes: [],
});
const kept = (state, frame, direction = 'forward') => ({ state, frame, direction });

test('a shape is its lineage: unmarked or shared by a copy on its frame, it has none', () => {
    const marked = shape({ score: scoreOf(77) });
    assert.deepEqual(seedIdentity({ kind: 'shape', shape: marked }, [marked]), { kind: 'lineage', lineage: 77 });
    // the same lineage on another frame (a corrected result) is the same object
    const corrected = shape({ clientID: 2, frame: 30, score: scoreOf(77), points: square(99) });
    assert.deepEqual(seedIdentity({ kind: 'shape', shape: corrected }, [marked, corrected]), lineageIdentity(77));
    assert.equal(seedIdentity({ kind: 'shape', shape: shape({}) }, []), null);
    const copy = shape({ clientID: 3, score: scoreOf(77) });
    assert.equal(seedIdentity({ kind: 'shape', shape: copy }, [marked, copy]), null);
});

test('a track is its keyframes: exact frame, outside and points', () => {
    const identity = seedIdentity(trackSeed([keyframe(0, 0), keyframe(5, 25, true)]), []);
    assert.equal(identity.kind, 'track');
    assert.deepEqual(identity.keyframes, [keyframeKey(keyframe(0, 0)), keyframeKey(keyframe(5, 25, true))]);
    assert.notEqual(keyframeKey(keyframe(5, 25)), keyframeKey(keyframe(5, 25, true)));
    assert.notEqual(keyframeKey(keyframe(5, 25)), keyframeKey(keyframe(6, 25)));
    assert.notEqual(keyframeKey(keyframe(5, 25)), keyframeKey({ ...keyframe(5, 25), points: [25, 0, 29, 0, 29, 4, 25, 4.5] }));
    assert.equal(trackIdentity([]), null);
});

test('lookup: the kept state of each object, null where none; the job is part of the key', () => {
    const memory = new Map();
    keepState(memory, 1, { previous: null, next: lineageIdentity(7) }, kept('s7', 20));
    keepState(memory, 1, { previous: null, next: trackIdentity([keyframe(0, 0), keyframe(20, 100)]) }, kept('t', 20));
    keepState(memory, 2, { previous: null, next: lineageIdentity(8) }, kept('other job', 3));
    // the track was corrected on frame 0: its keyframe on 20 still says which it is
    const track = trackIdentity([keyframe(0, 3), keyframe(20, 100), keyframe(30, 150)]);
    assert.deepEqual(lookupStates(memory, 1, [lineageIdentity(7), null, track, lineageIdentity(8)]), [
        kept('s7', 20), null, kept('t', 20), null,
    ]);
    assert.deepEqual(lookupStates(memory, 3, [lineageIdentity(7)]), [null]);
    // one kept state goes to one object only
    assert.deepEqual(lookupStates(memory, 1, [track, track]), [kept('t', 20), null]);
});

test('keep replaces what the object had, also when it changed from a shape to a track', () => {
    const memory = new Map();
    keepState(memory, 1, { previous: null, next: lineageIdentity(7) }, kept('a', 20));
    keepState(memory, 1, { previous: lineageIdentity(7), next: lineageIdentity(7) }, kept('b', 30));
    assert.equal(memory.get(1).length, 1);
    const track = trackIdentity([keyframe(30, 150)]);
    keepState(memory, 1, { previous: lineageIdentity(7), next: track }, kept('c', 40, 'backward'));
    assert.deepEqual(lookupStates(memory, 1, [lineageIdentity(7), track]), [null, kept('c', 40, 'backward')]);
    assert.equal(memory.get(1).length, 1);
});

test('forget: some objects, or the whole job', () => {
    const memory = new Map();
    keepState(memory, 1, { previous: null, next: lineageIdentity(7) }, kept('a', 20));
    keepState(memory, 1, { previous: null, next: lineageIdentity(8) }, kept('b', 20));
    forgetStates(memory, 1, [lineageIdentity(7), null]);
    assert.deepEqual(lookupStates(memory, 1, [lineageIdentity(7), lineageIdentity(8)]), [null, kept('b', 20)]);
    forgetStates(memory, 1);
    assert.equal(memory.has(1), false);
});

test('a job keeps a bounded number of objects, the oldest go first', () => {
    const memory = new Map();
    for (let lineage = 1; lineage <= MAX_KEPT_PER_JOB + 2; lineage++) {
        keepState(memory, 1, { previous: null, next: lineageIdentity(lineage) }, kept(lineage, 0));
    }
    assert.equal(memory.get(1).length, MAX_KEPT_PER_JOB);
    assert.deepEqual(lookupStates(memory, 1, [lineageIdentity(1), lineageIdentity(3)]), [null, kept(3, 0)]);
});

test('after a run each object keeps its last state with its frame and the run\'s direction', () => {
    const memory = new Map();
    const track = trackIdentity([keyframe(4, 20)]);
    rememberRun(memory, 1, {
        direction: 'backward',
        previous: [null, lineageIdentity(5), null],
        next: [lineageIdentity(9), track, lineageIdentity(11)],
        last: [{ state: 's0', frame: 4 }, { state: 's1', frame: 6 }, null],
        refused: [false, false, false],
    });
    assert.deepEqual(lookupStates(memory, 1, [lineageIdentity(9), track, lineageIdentity(5), lineageIdentity(11)]), [
        kept('s0', 4, 'backward'), kept('s1', 6, 'backward'), null, null,
    ]);
});

test('after a run whose kept states were refused they are forgotten; those it got are kept', () => {
    const memory = new Map();
    keepState(memory, 1, { previous: null, next: lineageIdentity(5) }, kept('old5', 20));
    keepState(memory, 1, { previous: null, next: lineageIdentity(6) }, kept('old6', 20));
    keepState(memory, 1, { previous: null, next: lineageIdentity(7) }, kept('old7', 20));
    // the run started fresh after the refusal, then failed before object 1 (lineage 6) got a new state;
    // object 2 (lineage 7) had no state sent, and keeps its own
    rememberRun(memory, 1, {
        direction: 'forward',
        previous: [lineageIdentity(5), lineageIdentity(6), lineageIdentity(7)],
        next: [lineageIdentity(5), lineageIdentity(6), lineageIdentity(7)],
        last: [{ state: 'new5', frame: 21 }, null, null],
        refused: [true, true, false],
    });
    assert.deepEqual(
        lookupStates(memory, 1, [lineageIdentity(5), lineageIdentity(6), lineageIdentity(7)]),
        [kept('new5', 21), null, kept('old7', 20)],
    );
});
