import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    TargetFrameError, checkTargetFrame, defaultTargetFrame, planFrames, targetFrameRange,
} from './.build/core/frames.mjs';

test('the default target is ten frames on, capped at the job\'s last', () => {
    assert.equal(defaultTargetFrame(0, 99), 10);
    assert.equal(defaultTargetFrame(95, 99), 99);
    assert.deepEqual(targetFrameRange(5, 99), [6, 99]);
    assert.deepEqual(targetFrameRange(99, 99), [99, 99]);
});

test('a valid target frame is accepted as a number', () => {
    assert.equal(checkTargetFrame(20, 10, 99), 20);
    assert.equal(checkTargetFrame('11', 10, 99), 11);
    assert.equal(checkTargetFrame(99, 10, 99), 99);
});

test('a wrong target frame is refused with a sentence', () => {
    const refused = (value, current, stop, pattern) => assert.throws(
        () => checkTargetFrame(value, current, stop),
        (error) => error instanceof TargetFrameError && pattern.test(error.message),
    );
    refused(10, 10, 99, /^Target frame 10 is not after the current frame 10: set it to a frame from 11 to 99\.$/);
    refused(3, 10, 99, /is not after the current frame/);
    refused(120, 10, 99, /^Target frame 120 is after the job's last frame 99: set it to a frame from 11 to 99\.$/);
    refused('abc', 10, 99, /^Target frame "abc" is not a frame number/);
    refused('', 10, 99, /is not a frame number/);
    refused(12.5, 10, 99, /is not a frame number/);
    refused(undefined, 10, 99, /is not a frame number/);
    refused(50, 99, 99, /^Frame 99 is the job's last frame: there is no later frame to track to\./);
});

test('the plan skips deleted frames and keeps to the job\'s frames', () => {
    const deleted = new Set([13, 14]);
    assert.deepEqual(planFrames([], 10, 16, (f) => deleted.has(f)), [11, 12, 15, 16]);
    // a job of some frames only (a ground-truth job): its frames, in order
    assert.deepEqual(planFrames([30, 5, 20, 10, 40], 5, 30, () => false), [10, 20, 30]);
    assert.deepEqual(planFrames([10, 11, 12], 10, 12, () => true), []);
});
