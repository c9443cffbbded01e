import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    MAX_LINEAGE, earlierResults, lineageOf, newLineage, scoreOf, seedLineage, usedLineages,
} from './.build/core/lineage.mjs';

const shape = (fields) => ({
    label_id: 1, type: 'polygon', frame: 0, group: 0, source: 'manual', attributes: [], elements: [],
    occluded: false, outside: false, rotation: 0, z_order: 0, points: [0, 0, 1, 0, 1, 1], ...fields,
});

test('a lineage survives the score round trip exactly and still reads 1.00', () => {
    for (const lineage of [1, 2, 12345, MAX_LINEAGE]) {
        const score = scoreOf(lineage);
        assert.ok(score < 1 && score > 0.99999);
        assert.equal(score.toFixed(2), '1.00');
        // CVAT stores it as JSON both ways (a double column in between)
        assert.equal(lineageOf(JSON.parse(JSON.stringify(score))), lineage);
    }
    assert.throws(() => scoreOf(0), RangeError);
    assert.throws(() => scoreOf(MAX_LINEAGE + 1), RangeError);
});

test('ordinary scores are not lineages', () => {
    for (const score of [undefined, null, 1, 0, 0.5, 0.95, 0.999999, 1 - 1e-10, 0.9999999999999999]) {
        assert.equal(lineageOf(score), null, String(score));
    }
    // every float32 score below 1 (a detector's confidence) is out of the marker's range
    for (let m = 1; m < 5000; m++) {
        assert.equal(lineageOf(Math.fround(1 - m * 2 ** -24)), null);
    }
});

test('a new lineage is one the job does not use', () => {
    const used = new Set([5, 6]);
    assert.equal(newLineage(used, () => 4 / MAX_LINEAGE), 7);
    assert.ok(used.has(7));
    const another = newLineage(used);
    assert.ok(another >= 1 && another <= MAX_LINEAGE && ![5, 6, 7].includes(another));
    assert.deepEqual([...usedLineages([shape({ score: scoreOf(9) }), shape({ score: 1 }), shape({})])], [9]);
});

test('a seed keeps its lineage unless another shape of its frame carries it', () => {
    const seed = shape({ clientID: 1, frame: 4, score: scoreOf(42) });
    const later = shape({ clientID: 2, frame: 5, score: scoreOf(42) });
    assert.deepEqual(seedLineage(seed, [seed, later], new Set([42])), { lineage: 42, inherited: true });

    const copy = shape({ clientID: 3, frame: 4, score: scoreOf(42) });
    const result = seedLineage(seed, [seed, later, copy], new Set([42]), () => 0);
    assert.equal(result.inherited, false);
    assert.notEqual(result.lineage, 42);

    const unmarked = shape({ clientID: 4, frame: 4 });
    assert.equal(seedLineage(unmarked, [unmarked], new Set()).inherited, false);
});

test('earlier results: the lineage\'s shapes of the same label and type on the frames given', () => {
    const seed = shape({ clientID: 1, frame: 4, score: scoreOf(7) });
    const mine = shape({ clientID: 2, frame: 5, score: scoreOf(7) });
    const outside = shape({ clientID: 3, frame: 9, score: scoreOf(7) });
    const otherLineage = shape({ clientID: 4, frame: 5, score: scoreOf(8) });
    const otherLabel = shape({ clientID: 5, frame: 5, score: scoreOf(7), label_id: 2 });
    const manual = shape({ clientID: 6, frame: 6 });
    const all = [seed, mine, outside, otherLineage, otherLabel, manual];
    assert.deepEqual(earlierResults(all, seed, 7, new Set([5, 6])), [mine]);
});
