import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    TargetFrameError, checkTargetFrame, defaultTargetFrame, directionOf, frameAfter, planFrames, targetFrameRange,
} from './.build/core/frames.mjs';

const job = { start: 0, stop: 99 };

test('the default target is ten frames on, or ten back from the job\'s last frame', () => {
    assert.equal(defaultTargetFrame(0, job), 10);
    assert.equal(defaultTargetFrame(95, job), 99);
    assert.equal(defaultTargetFrame(99, job), 89);
    assert.equal(defaultTargetFrame(25, { start: 20, stop: 25 }), 20);
    // the dialog's range is the whole job: the current frame is refused by the check, not by the range
    assert.deepEqual(targetFrameRange(job), [0, 99]);
    assert.deepEqual(targetFrameRange({ start: 40, stop: 59 }), [40, 59]);
});

test('a target frame on either side is accepted as a number, and says the direction', () => {
    assert.equal(checkTargetFrame(20, 10, job), 20);
    assert.equal(checkTargetFrame('11', 10, job), 11);
    assert.equal(checkTargetFrame(99, 10, job), 99);
    assert.equal(checkTargetFrame(3, 10, job), 3);
    assert.equal(checkTargetFrame('0', 10, job), 0);
    assert.equal(checkTargetFrame(50, 99, job), 50);
    assert.equal(directionOf(10, 3), 'backward');
    assert.equal(directionOf(10, 11), 'forward');
});

test('a wrong target frame is refused with a sentence', () => {
    const refused = (value, current, bounds, pattern) => assert.throws(
        () => checkTargetFrame(value, current, bounds),
        (error) => error instanceof TargetFrameError && pattern.test(error.message),
    );
    refused(10, 10, job, /^Target frame 10 is the current frame: set it to a frame from 0 to 99 other than 10 \(after it tracks forward, before it backward\)\.$/);
    refused(120, 10, job, /^Target frame 120 is after the job's last frame 99: set it to a frame from 0 to 99 other than 10\.$/);
    refused(39, 45, { start: 40, stop: 59 }, /^Target frame 39 is before the job's first frame 40: set it to a frame from 40 to 59 other than 45\.$/);
    refused(-1, 10, job, /is before the job's first frame 0/);
    refused('abc', 10, job, /^Target frame "abc" is not a frame number/);
    refused('', 10, job, /is not a frame number/);
    refused(12.5, 10, job, /is not a frame number/);
    refused(undefined, 10, job, /is not a frame number/);
    refused(7, 7, { start: 7, stop: 7 }, /^The job has only frame 7: there is no other frame to track to\.$/);
});

test('the plan goes forward or backward, skips deleted frames and keeps to the job\'s frames', () => {
    const deleted = new Set([13, 14, 7]);
    assert.deepEqual(planFrames([], 10, 16, (f) => deleted.has(f)), [11, 12, 15, 16]);
    assert.deepEqual(planFrames([], 10, 5, (f) => deleted.has(f)), [9, 8, 6, 5]);
    assert.deepEqual(planFrames([], 10, 9, () => false), [9]);
    // a job of some frames only (a ground-truth job): its frames, in tracking order
    assert.deepEqual(planFrames([30, 5, 20, 10, 40], 5, 30, () => false), [10, 20, 30]);
    assert.deepEqual(planFrames([30, 5, 20, 10, 40], 40, 10, () => false), [30, 20, 10]);
    assert.deepEqual(planFrames([30, 5, 20, 10, 40], 35, 0, () => false), [30, 20, 10, 5]);
    assert.deepEqual(planFrames([10, 11, 12], 10, 12, () => true), []);
    assert.deepEqual(planFrames([10, 11, 12], 12, 10, () => true), []);
});

test('the frame after a frame is the job\'s next one, none after its last', () => {
    assert.equal(frameAfter([], 10, job), 11);
    assert.equal(frameAfter([], 99, job), null);
    assert.equal(frameAfter([30, 5, 20, 10, 40], 10, job), 20);
    assert.equal(frameAfter([30, 5, 20, 10, 40], 40, job), null);
});
