import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    AnswerError, initBody, readAnswer, readStates, trackBody,
} from './.build/core/requests.mjs';

const shapes = [{ type: 'polygon', points: [1, 2, 3, 4, 5, 6] }, { type: 'mask', points: [0, 4, 1, 1, 2, 2] }];

test('the bodies are those of CVAT\'s own tracker UI (cvat-core adds task), shapes with frame and direction', () => {
    assert.equal(
        JSON.stringify(initBody(7, 12, 'forward', shapes)),
        '{"type":"init_tracking","frame":12,"shapes":[' +
        '{"type":"polygon","points":[1,2,3,4,5,6],"frame":12,"direction":"forward"},' +
        '{"type":"mask","points":[0,4,1,1,2,2],"frame":12,"direction":"forward"}],"job":7}',
    );
    assert.equal(JSON.stringify(trackBody(7, 13, ['s1', 's2'])), '{"type":"track","frame":13,"states":["s1","s2"],"job":7}');
});

test('a first call with kept states: states beside shapes, null for objects without one', () => {
    assert.equal(
        JSON.stringify(initBody(7, 12, 'backward', shapes, [null, 'signed:kept'])),
        '{"type":"init_tracking","frame":12,"shapes":[' +
        '{"type":"polygon","points":[1,2,3,4,5,6],"frame":12,"direction":"backward"},' +
        '{"type":"mask","points":[0,4,1,1,2,2],"frame":12,"direction":"backward"}],' +
        '"states":[null,"signed:kept"],"job":7}',
    );
    // a kept state is sent exactly as it was received
    const state = { any: ['json', 1] };
    assert.equal(initBody(7, 12, 'forward', shapes, [state]).states[0], state);
    assert.deepEqual(initBody(7, 12, 'forward', shapes, [state]).states, [state, null]);
    // none kept (or all null): a plain start, no states key
    for (const kept of [undefined, [], [null, null], [undefined, null]]) {
        const body = initBody(7, 12, 'forward', shapes, kept);
        assert.deepEqual(Object.keys(body), ['type', 'frame', 'shapes', 'job']);
    }
    // the shapes sent are copies
    const sent = initBody(7, 12, 'forward', shapes);
    sent.shapes[0].points.push(9);
    assert.equal(shapes[0].points.length, 6);
});

test('an answer gives points per object, null where absent', () => {
    const answer = {
        shapes: [{ type: 'polygon', points: [1, 1, 5, 1, 5, 5] }, null],
        states: ['a', 'b'],
    };
    assert.deepEqual(readAnswer(answer, ['polygon', 'mask']), {
        shapes: [[1, 1, 5, 1, 5, 5], null],
        states: ['a', 'b'],
    });
    assert.deepEqual(readStates({ shapes: [], states: ['x'] }, 1), ['x']);
});

test('answers this plugin cannot use are refused with what was wrong', () => {
    const refused = (answer, types, pattern) => assert.throws(
        () => readAnswer(answer, types),
        (error) => error instanceof AnswerError && pattern.test(error.message),
    );
    refused({ shapes: [null], states: [] }, ['mask'], /0 states for 1 objects/);
    refused({ shapes: [null], states: [null] }, ['mask'], /an empty state/);
    refused({ states: ['a'] }, ['mask'], /no shapes for 1 objects/);
    refused({ shapes: [{ type: 'mask', points: [1, 2] }], states: ['a'] }, ['polygon'], /"mask" points where a polygon/);
    refused({ shapes: [{ type: 'polygon', points: [1, 2, 3, 4] }], states: ['a'] }, ['polygon'], /polygon of 4 numbers/);
    refused({ shapes: [{ type: 'mask', points: [1, 2, 3] }], states: ['a'] }, ['mask'], /mask of 3 numbers/);
    refused({ shapes: [{ type: 'mask', points: [1, 'x', 3, 4, 5] }], states: ['a'] }, ['mask'], /where a mask/);
    refused(null, ['mask'], /no states/);
});
