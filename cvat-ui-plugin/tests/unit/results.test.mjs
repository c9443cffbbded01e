import assert from 'node:assert/strict';
import { test } from 'node:test';

import { lineageOf, scoreOf } from './.build/core/lineage.mjs';
import { lineageIdentity, lookupStates, keepState, trackIdentity } from './.build/core/memory.mjs';
import { buildChanges } from './.build/core/results.mjs';

const square = (x) => [x, 0, x + 4, 0, x + 4, 4, x, 4];
const MUTABLE = 21; // attribute spec ids: 20 immutable, 21 mutable

const polygon = (fields) => ({
    clientID: 1, id: 101, label_id: 5, type: 'polygon', frame: 10, group: 3, source: 'manual',
    attributes: [{ spec_id: 20, value: 'car' }, { spec_id: MUTABLE, value: 'moving' }], elements: [],
    occluded: true, outside: false, rotation: 0, z_order: 2, points: square(10), ...fields,
});

const shapeSeed = (shape) => ({
    kind: 'shape', shape, type: shape.type, points: shape.points,
});

const input = (seeds, answers, extra = {}) => ({
    seeds,
    trackedFrames: [...answers.keys()],
    answers,
    startFrame: 10,
    convertPolygons: false,
    allShapes: seeds.filter((seed) => seed.kind === 'shape').map((seed) => seed.shape),
    mutableSpecIds: new Set([MUTABLE]),
    random: () => 0.5,
    ...extra,
});

test('a shape gets a shape on each frame where the object is present, like the seed', () => {
    const seed = polygon({});
    const answers = new Map([[11, [square(11)]], [12, [null]], [13, [square(13)]]]);
    const changes = buildChanges(input([shapeSeed(seed)], answers));

    const [markedSeed, ...made] = changes.created.shapes;
    const lineage = lineageOf(markedSeed.score);
    assert.ok(lineage !== null);
    // the seed is replaced by a copy that carries the lineage: the same but for its ids
    const { id, clientID, ...unchanged } = seed;
    const { score, ...copied } = markedSeed;
    assert.deepEqual(copied, unchanged);
    assert.deepEqual(changes.deleted.shapes, [seed]);

    assert.deepEqual(made.map((shape) => shape.frame), [11, 13]);
    for (const shape of made) {
        assert.equal(shape.type, 'polygon');
        assert.deepEqual(shape.points, square(shape.frame));
        assert.equal(shape.label_id, 5);
        assert.equal(shape.group, 3);
        assert.equal(shape.z_order, 2);
        assert.equal(shape.occluded, true);
        assert.deepEqual(shape.attributes, seed.attributes);
        assert.equal(shape.source, 'auto');
        assert.equal(lineageOf(shape.score), lineage);
        assert.equal(shape.id, undefined);
        assert.equal(shape.clientID, undefined);
    }
    assert.equal(changes.shapesMade, 2);
    assert.deepEqual(changes.created.tracks, []);
});

test('a mask stays a mask, also with conversion on', () => {
    const mask = polygon({ type: 'mask', points: [0, 4, 2, 2, 3, 3] });
    const answers = new Map([[11, [[1, 3, 2, 2, 3, 3]]]]);
    const changes = buildChanges(input([shapeSeed(mask)], answers, { convertPolygons: true }));
    assert.deepEqual(changes.created.tracks, []);
    const made = changes.created.shapes.filter((shape) => shape.frame === 11);
    assert.equal(made.length, 1);
    assert.equal(made[0].type, 'mask');
    assert.deepEqual(made[0].points, [1, 3, 2, 2, 3, 3]);
});

test('a run from a shape of an earlier run replaces that run\'s shapes on the frames it tracks', () => {
    const lineage = 77;
    const corrected = polygon({
        clientID: 2, id: 102, frame: 12, score: scoreOf(lineage), source: 'semi-auto', points: square(99),
    });
    const earlier = [11, 13, 14, 20].map((frame, i) => polygon({
        clientID: 10 + i, id: 110 + i, frame, score: scoreOf(lineage), source: 'auto',
    }));
    const someoneElse = polygon({ clientID: 30, frame: 13, score: scoreOf(78) });
    const manual = polygon({ clientID: 31, frame: 13 });
    const answers = new Map([[13, [square(13)]], [14, [null]]]);
    const changes = buildChanges(input([shapeSeed(corrected)], answers, {
        startFrame: 12,
        allShapes: [corrected, ...earlier, someoneElse, manual],
    }));
    // the corrected seed already carries the lineage: it stays as it is
    assert.deepEqual(changes.deleted.shapes.map((shape) => shape.clientID), [11, 12]);
    assert.equal(changes.replaced, 2);
    assert.deepEqual(changes.created.shapes.map((shape) => [shape.frame, lineageOf(shape.score)]), [[13, lineage]]);
});

test('a copied shape (two of one frame share a lineage) starts a new lineage and replaces nothing', () => {
    const original = polygon({ clientID: 1, score: scoreOf(5) });
    const copy = polygon({ clientID: 2, score: scoreOf(5), points: square(50) });
    const resultOfOriginal = polygon({ clientID: 3, frame: 11, score: scoreOf(5) });
    const changes = buildChanges(input([shapeSeed(copy)], new Map([[11, [square(51)]]]), {
        allShapes: [original, copy, resultOfOriginal],
    }));
    assert.equal(changes.replaced, 0);
    assert.deepEqual(changes.deleted.shapes, [copy]);
    const lineages = new Set(changes.created.shapes.map((shape) => lineageOf(shape.score)));
    assert.equal(lineages.size, 1);
    assert.ok(!lineages.has(5));
});

test('conversion: a polygon shape becomes a track whose keyframes are the tracked frames', () => {
    const seed = polygon({ score: scoreOf(9) });
    const earlierResult = polygon({ clientID: 40, frame: 11, score: scoreOf(9) });
    const answers = new Map([[11, [square(11)]], [12, [null]], [13, [square(13)]]]);
    const changes = buildChanges(input([shapeSeed(seed)], answers, {
        convertPolygons: true, allShapes: [seed, earlierResult],
    }));
    assert.deepEqual(changes.created.shapes, []);
    assert.deepEqual(changes.deleted.shapes, [seed, earlierResult]);
    const [track] = changes.created.tracks;
    assert.deepEqual({
        label: track.label_id, group: track.group, frame: track.frame, source: track.source, attributes: track.attributes,
    }, {
        label: 5, group: 3, frame: 10, source: 'semi-auto', attributes: [{ spec_id: 20, value: 'car' }],
    });
    assert.deepEqual(track.shapes.map((s) => [s.frame, s.outside, s.points]), [
        [10, false, square(10)], [11, false, square(11)], [12, true, square(11)], [13, false, square(13)],
    ]);
    assert.deepEqual(track.shapes[0].attributes, [{ spec_id: MUTABLE, value: 'moving' }]);
    assert.ok(track.shapes.every((s) => s.type === 'polygon' && s.z_order === 2 && s.occluded === true));
    assert.equal(changes.keyframesMade, 3);
});

test('a track gets keyframes on the tracked frames, replacing those there, and one on an interpolated start', () => {
    const keyframe = (frame, fields = {}) => ({
        id: 500 + frame, frame, type: 'polygon', points: square(frame), occluded: false, outside: false,
        rotation: 0, z_order: 1, attributes: [], ...fields,
    });
    const track = {
        clientID: 7, id: 70, label_id: 5, group: 0, frame: 0, source: 'manual', attributes: [], elements: [],
        shapes: [keyframe(0), keyframe(12, { attributes: [{ spec_id: MUTABLE, value: 'parked' }] }), keyframe(30)],
    };
    const seed = {
        kind: 'track', track, type: 'polygon', points: square(10.5), occluded: false, zOrder: 1,
        attributes: [{ spec_id: 20, value: 'car' }, { spec_id: MUTABLE, value: 'moving' }],
    };
    const answers = new Map([[11, [square(11)]], [12, [null]]]);
    const changes = buildChanges(input([seed], answers));
    assert.deepEqual(changes.deleted.tracks, [track]);
    const [made] = changes.created.tracks;
    assert.equal(made.id, 70); // the same track on the server: an update
    assert.equal(made.clientID, undefined);
    assert.equal(made.source, 'semi-auto');
    assert.deepEqual(made.shapes.map((s) => [s.frame, s.outside, s.points]), [
        [0, false, square(0)],
        [10, false, square(10.5)], // pinned start
        [11, false, square(11)],
        [12, true, square(11)], // replaced: absent now, keeps its attributes
        [30, false, square(30)], // after the run: untouched
    ]);
    assert.deepEqual(made.shapes[1].attributes, [{ spec_id: MUTABLE, value: 'moving' }]);
    assert.deepEqual(made.shapes[3].attributes, [{ spec_id: MUTABLE, value: 'parked' }]);
    assert.equal(made.shapes[3].id, 512);
});

test('nothing tracked, nothing changed', () => {
    const changes = buildChanges(input([shapeSeed(polygon({}))], new Map()));
    assert.deepEqual(changes.created, { shapes: [], tracks: [], tags: [] });
    assert.deepEqual(changes.deleted, { shapes: [], tracks: [], tags: [] });
});

test('several objects: each gets its own answers and lineage', () => {
    const a = polygon({ clientID: 1 });
    const b = polygon({ clientID: 2, type: 'mask', points: [0, 1, 0, 0, 0, 0] });
    const answers = new Map([[11, [square(11), [1, 0, 0, 0, 0]]]]);
    const changes = buildChanges(input([shapeSeed(a), shapeSeed(b)], answers));
    const made = changes.created.shapes.filter((shape) => shape.frame === 11);
    assert.deepEqual(made.map((shape) => shape.type), ['polygon', 'mask']);
    assert.notEqual(lineageOf(made[0].score), lineageOf(made[1].score));
});

const keyframe = (frame, fields = {}) => ({
    id: 500 + frame, frame, type: 'polygon', points: square(frame), occluded: false, outside: false,
    rotation: 0, z_order: 1, attributes: [], ...fields,
});

test('backward: shapes on the frames before the start, replacing only that side\'s earlier results', () => {
    const lineage = 12;
    const seed = polygon({ score: scoreOf(lineage) });
    const before = [7, 8, 9].map((frame) => polygon({ clientID: 20 + frame, frame, score: scoreOf(lineage) }));
    const after = [11, 12].map((frame) => polygon({ clientID: 20 + frame, frame, score: scoreOf(lineage) }));
    const answers = new Map([[9, [square(9)]], [8, [null]], [7, [square(7)]]]);
    const changes = buildChanges(input([shapeSeed(seed)], answers, { allShapes: [seed, ...before, ...after] }));
    assert.deepEqual(changes.deleted.shapes.map((shape) => shape.frame).sort(), [7, 8, 9]);
    assert.deepEqual(changes.created.shapes.map((shape) => shape.frame), [9, 7]);
    assert.equal(changes.replaced, 3);
});

test('backward conversion: the track begins on the target side and ends after the start frame', () => {
    const seed = polygon({});
    const answers = new Map([[9, [square(9)]], [8, [null]], [7, [square(7)]]]);
    const changes = buildChanges(input([shapeSeed(seed)], answers, { convertPolygons: true, frameAfterStart: 12 }));
    const [track] = changes.created.tracks;
    assert.equal(track.frame, 7);
    // the shape was on frame 10 only: outside from the job's next frame on, as before the run
    assert.deepEqual(track.shapes.map((s) => [s.frame, s.outside, s.points]), [
        [7, false, square(7)], [8, true, square(9)], [9, false, square(9)], [10, false, square(10)],
        [12, true, square(10)],
    ]);
    assert.equal(changes.keyframesMade, 3);
    // on the job's last frame there is no frame after it; forward, the track goes on after the target as ever
    const last = buildChanges(input([shapeSeed(seed)], answers, { convertPolygons: true, frameAfterStart: null }));
    assert.deepEqual(last.created.tracks[0].shapes.map((s) => s.frame), [7, 8, 9, 10]);
    const forward = buildChanges(input([shapeSeed(seed)], new Map([[11, [square(11)]]]), {
        convertPolygons: true, frameAfterStart: 11,
    }));
    assert.deepEqual(forward.created.tracks[0].shapes.map((s) => [s.frame, s.outside]), [[10, false], [11, false]]);
});

test('a track tracked backward from its first keyframe grows before it: one track, both sides', () => {
    // what a forward run with conversion made from frame 10
    const track = {
        clientID: 7, id: 70, label_id: 5, group: 0, frame: 10, source: 'semi-auto', attributes: [], elements: [],
        shapes: [keyframe(10), keyframe(11), keyframe(12)],
    };
    const seed = {
        kind: 'track', track, type: 'polygon', points: square(10), occluded: false, zOrder: 1, attributes: [],
    };
    const answers = new Map([[9, [square(9.5)]], [8, [square(8.5)]]]);
    const [made] = buildChanges(input([seed], answers)).created.tracks;
    assert.equal(made.id, 70);
    assert.equal(made.frame, 8);
    assert.deepEqual(made.shapes.map((s) => [s.frame, s.points]), [
        [8, square(8.5)], [9, square(9.5)], [10, square(10)], [11, square(11)], [12, square(12)],
    ]);
});

test('an object that ended is changed up to its end frame only', () => {
    const lineage = 33;
    const a = polygon({ clientID: 1, score: scoreOf(lineage) });
    const b = polygon({ clientID: 2, type: 'mask', points: [0, 1, 0, 0, 0, 0] });
    // an earlier run's shape of `a` on frame 14, after the frame where it ends now: left as it was
    const earlier = [12, 14].map((frame) => polygon({ clientID: 40 + frame, frame, score: scoreOf(lineage) }));
    const answers = new Map([
        [11, [square(11), [1, 0, 0, 0, 0]]], [12, [null, [1, 0, 0, 0, 0]]], [13, [null, null]], [14, [null, [2, 0, 0, 0, 0]]],
    ]);
    const changes = buildChanges(input([shapeSeed(a), shapeSeed(b)], answers, {
        ended: new Map([[0, 13]]), allShapes: [a, b, ...earlier],
    }));
    assert.deepEqual(changes.deleted.shapes.filter((shape) => shape.clientID >= 40).map((shape) => shape.frame), [12]);
    const frames = (type) => changes.created.shapes.filter((s) => s.type === type && s.frame !== 10).map((s) => s.frame);
    assert.deepEqual(frames('polygon'), [11]);
    assert.deepEqual(frames('mask'), [11, 12, 14]);

    // converted: outside keyframes up to where it ended, none after
    const converted = buildChanges(input([shapeSeed(polygon({}))], new Map([
        [11, [square(11)]], [12, [null]], [13, [null]], [14, [null]],
    ]), { convertPolygons: true, ended: new Map([[0, 13]]) }));
    assert.deepEqual(converted.created.tracks[0].shapes.map((s) => [s.frame, s.outside]), [
        [10, false], [11, false], [12, true], [13, true],
    ]);
});

test('each object\'s identity after the run: its lineage, or its track\'s keyframes', () => {
    const shape = polygon({ clientID: 1 });
    const corrected = polygon({ clientID: 2, type: 'mask', points: [0, 1, 0, 0, 0, 0], score: scoreOf(33) });
    const converted = polygon({ clientID: 3, points: square(50) });
    const track = {
        clientID: 7, id: 70, label_id: 5, group: 0, frame: 0, source: 'manual', attributes: [], elements: [],
        shapes: [keyframe(0)],
    };
    const trackSeed = {
        kind: 'track', track, type: 'polygon', points: square(10), occluded: false, zOrder: 1, attributes: [],
    };
    const answers = new Map([[11, [square(11), [1, 0, 0, 0, 0], square(51), square(11)]]]);
    const changes = buildChanges(input(
        [shapeSeed(shape), shapeSeed(corrected), shapeSeed(converted), trackSeed],
        answers,
        { convertPolygons: true },
    ));
    // with conversion on the polygons become tracks; the mask keeps its lineage
    const [first, second, third, fourth] = changes.identities;
    assert.equal(second.kind, 'lineage');
    assert.equal(second.lineage, 33);
    assert.deepEqual(third, trackIdentity(changes.created.tracks[1].shapes));
    assert.deepEqual(first, trackIdentity(changes.created.tracks[0].shapes));
    assert.deepEqual(fourth, trackIdentity(changes.created.tracks[2].shapes));

    // a shape without conversion: the lineage its results are marked with
    const plain = buildChanges(input([shapeSeed(polygon({}))], new Map([[11, [square(11)]]])));
    assert.deepEqual(plain.identities, [lineageIdentity(lineageOf(plain.created.shapes[1].score))]);

    // a track corrected on one keyframe is still recognised by the others the run left
    const memory = new Map();
    keepState(memory, 1, { previous: null, next: fourth }, { state: 's', frame: 11, direction: 'forward' });
    const edited = changes.created.tracks[2].shapes.map((s) => (s.frame === 10 ? { ...s, points: square(12) } : s));
    assert.deepEqual(lookupStates(memory, 1, [trackIdentity(edited)]).map((kept) => kept?.state), ['s']);
});

test('nothing tracked: a marked shape and a track keep their identity, an unmarked shape has none', () => {
    const marked = polygon({ clientID: 1, score: scoreOf(44) });
    const unmarked = polygon({ clientID: 2, frame: 10 });
    const track = {
        clientID: 7, label_id: 5, group: 0, frame: 0, source: 'manual', attributes: [], elements: [], shapes: [keyframe(0)],
    };
    const trackSeed = {
        kind: 'track', track, type: 'polygon', points: square(10), occluded: false, zOrder: 1, attributes: [],
    };
    const changes = buildChanges(input([shapeSeed(marked), shapeSeed(unmarked), trackSeed], new Map()));
    assert.deepEqual(changes.identities, [lineageIdentity(44), null, trackIdentity([keyframe(0)])]);
});
