import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chooseTracker, trackableTypes, unsupportedSentence } from './.build/core/function-choice.mjs';
import { isTrackableObject, trackableObjects } from './.build/core/selection.mjs';

const shape = (type, frame) => ({ type, frame, clientID: `${type}@${frame}` });
const track = (type, keyframes) => ({
    clientID: `${type}-track`, shapes: keyframes.map(([frame, outside]) => ({ type, frame, outside })),
});

test('polygons and masks on the current frame, and polygon tracks visible there', () => {
    const collection = {
        shapes: [shape('polygon', 5), shape('mask', 5), shape('rectangle', 5), shape('polygon', 6)],
        tracks: [
            track('polygon', [[0, false], [8, true]]), // visible on 5
            track('polygon', [[0, false], [4, true]]), // outside since 4
            track('polygon', [[6, false]]), // starts later
            track('rectangle', [[0, false]]),
        ],
        tags: [{ frame: 5 }],
    };
    const picked = trackableObjects(collection, 5);
    assert.deepEqual(picked.shapes.map((s) => s.clientID), ['polygon@5', 'mask@5']);
    assert.deepEqual(picked.tracks, [collection.tracks[0]]);
    assert.deepEqual(picked.tags, []);
});

test('an object\'s menu offers the action for polygons and masks only', () => {
    assert.equal(isTrackableObject({ objectType: 'shape', shapeType: 'polygon' }), true);
    assert.equal(isTrackableObject({ objectType: 'shape', shapeType: 'mask' }), true);
    assert.equal(isTrackableObject({ objectType: 'track', shapeType: 'polygon' }), true);
    assert.equal(isTrackableObject({ objectType: 'track', shapeType: 'polygon', outside: true }), false);
    assert.equal(isTrackableObject({ objectType: 'shape', shapeType: 'rectangle' }), false);
    assert.equal(isTrackableObject({ objectType: 'tag' }), false);
});

test('the tracker: ours by its id first, else any tracker of polygons or masks', () => {
    const fn = (id, kind, types) => ({ id, name: id, kind, supportedShapeTypes: types });
    const ours = fn('pth-facebookresearch-sam2-tracker', 'tracker', ['mask', 'polygon', 'rectangle']);
    const copy = fn('pth-facebookresearch-sam2-tracker-gpu', 'tracker', ['mask', 'polygon']);
    const other = fn('another-tracker', 'tracker', ['polygon']);
    const boxes = fn('siammask', 'tracker', ['rectangle']);
    const legacy = fn('legacy', 'tracker', undefined);
    const detector = fn('yolo', 'detector', ['polygon']);
    assert.equal(chooseTracker([other, copy, ours, boxes]), ours);
    assert.equal(chooseTracker([other, copy]), copy);
    assert.equal(chooseTracker([boxes, legacy, detector, other]), other);
    assert.equal(chooseTracker([boxes, legacy, detector]), null);
    assert.deepEqual(trackableTypes(ours), ['polygon', 'mask']);
    assert.equal(unsupportedSentence(other, { mask: 2 }), '2 masks left as they are: "another-tracker" tracks only polygons.');
    assert.equal(unsupportedSentence(ours, {}), null);
});
