import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    AnswerError, initBody, readAnswer, readStates, trackBody,
} from './.build/core/requests.mjs';

test('the bodies are those of CVAT\'s own tracker UI (cvat-core adds task)', () => {
    const shapes = [{ type: 'polygon', points: [1, 2, 3, 4, 5, 6] }, { type: 'mask', points: [0, 4, 1, 1, 2, 2] }];
    assert.equal(
        JSON.stringify(initBody(7, 12, shapes)),
        '{"type":"init_tracking","frame":12,"shapes":[{"type":"polygon","points":[1,2,3,4,5,6]},' +
        '{"type":"mask","points":[0,4,1,1,2,2]}],"job":7}',
    );
    assert.equal(JSON.stringify(trackBody(7, 13, ['s1', 's2'])), '{"type":"track","frame":13,"states":["s1","s2"],"job":7}');
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
