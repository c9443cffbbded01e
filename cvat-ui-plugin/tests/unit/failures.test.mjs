import assert from 'node:assert/strict';
import { test } from 'node:test';

import { describeFailure, statusOf } from './.build/core/failures.mjs';

// what cvat-core rejects with: a ServerError carrying CVAT's status as `code`, CVAT's text as `message`
const serverError = (code, message) => Object.assign(new Error(message), { code });
const forwarded = (status, phrase) => serverError(
    status,
    `${status} ${status < 500 ? 'Client' : 'Server'} Error: ${phrase} for url: http://nuclio:8070/api/function_invocations`,
);

test('the status comes from the error code, else from the forwarded message', () => {
    assert.equal(statusOf(serverError(413, 'whatever')), 413);
    assert.equal(statusOf(new Error('503 Server Error: Service Unavailable for url: http://x/')), 503);
    assert.equal(statusOf(new Error('something else')), null);
    assert.equal(statusOf(serverError(0, 'Network Error.')), 0);
});

test('413: track fewer objects at once', () => {
    const failure = describeFailure(forwarded(413, 'Request Entity Too Large'), 17);
    assert.equal(failure.status, 413);
    assert.match(failure.reason, /cannot track this many objects in one call/);
    assert.match(failure.advice, /Track fewer objects at once/);
    assert.match(failure.advice, /run the action again from frame 17/);
});

test('404 from the function: the session is gone, run again from this frame', () => {
    const failure = describeFailure(forwarded(404, 'Not Found'), 12);
    assert.match(failure.reason, /no longer has this tracking session/);
    assert.equal(failure.advice, 'Run the action again from frame 12.');
});

test('404 naming the functions API: the function is not deployed any more', () => {
    const error = serverError(404, '404 Client Error: Not Found for url: http://nuclio:8070/api/functions/pth-x');
    assert.match(describeFailure(error, 3).reason, /no longer deployed/);
});

test('503 from the function is its state store; from CVAT it is the function unreachable', () => {
    const store = describeFailure(forwarded(503, 'Service Unavailable'), 8);
    assert.match(store.reason, /state store \(Redis or Kvrocks\) is unreachable/);
    assert.match(store.advice, /run the action again from frame 8; the tracker needs no restart/);
    const unreachable = describeFailure(
        serverError(503, "HTTPConnectionPool(host='localhost', port=32768): Max retries exceeded"),
        8,
    );
    assert.match(unreachable.reason, /could not reach the tracker function/);
});

test('504: CVAT stopped waiting', () => {
    const failure = describeFailure(serverError(504, 'HTTPConnectionPool: Read timed out. (read timeout=120)'), 5);
    assert.match(failure.reason, /CVAT stopped waiting for the tracker \(504\)/);
    assert.match(failure.advice, /Track fewer objects at once/);
    assert.match(failure.advice, /SAM2_CALL_BUDGET_S/);
});

test('a lost connection', () => {
    for (const error of [serverError(0, 'Network Error.'), new Error('Network Error')]) {
        const failure = describeFailure(error, 4);
        assert.equal(failure.reason, 'the connection to CVAT was lost');
        assert.match(failure.advice, /Check the network, then run the action again from frame 4/);
    }
});

test('400: the function refusing differs from CVAT refusing', () => {
    assert.match(describeFailure(forwarded(400, 'Bad Request'), 2).reason, /tracker found the request unusable/);
    const state = describeFailure(serverError(400, 'Invalid or expired tracker state'), 2);
    assert.match(state.reason, /CVAT refused the tracking state \(Invalid or expired tracker state\)/);
    assert.match(state.advice, /expire after 8 hours/);
    const range = describeFailure(serverError(400, 'The frame is outside the job range'), 2);
    assert.equal(range.reason, 'CVAT refused the call: The frame is outside the job range');
});

test('other statuses get a sentence too', () => {
    assert.match(describeFailure(serverError(401, 'x'), 1).advice, /Log in again/);
    assert.match(describeFailure(serverError(403, 'x'), 1).reason, /does not allow you/);
    assert.match(describeFailure(forwarded(500, 'Internal Server Error'), 1).reason, /internal error \(500\)/);
    assert.match(describeFailure(serverError(502, '<html>Bad Gateway</html>'), 1).reason, /no valid answer/);
    assert.equal(
        describeFailure(serverError(418, "I'm a teapot\ntrace"), 1).reason,
        "CVAT refused the call (418): I'm a teapot",
    );
    assert.equal(describeFailure(new Error('the tracker answered 1 states for 2 objects'), 9).reason,
        'the tracker answered 1 states for 2 objects');
});
