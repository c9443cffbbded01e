// How the action recognises the shapes an earlier run made for an object, so that a new run replaces them
// instead of adding a second shape on the same frame.
//
// A run that tracks a shape (not a track) gives that object a lineage number L and marks the shape it
// started from and every shape it makes with it, in the shape's `score`: score = 1 - L / 2^45. CVAT keeps a
// shape's score exactly (a float column, JSON both ways), shows it only for consensus shapes, and a marked
// score still reads 1.00 (it is within 6e-8 of 1). A later run from any shape of the lineage deletes the
// lineage's shapes (same label and type) on the frames it tracks, then adds its own.
//
// Why the score: CVAT has no free field on a shape, and label, attributes, group and z-order must stay the
// user's. The marker cannot be mistaken for a real score: (1 - score) * 2^45 is an integer below 2^21 only
// for scores that differ from 1 by a multiple of 2^-45 and by less than 2^-24, which no float32 score does
// (below 1 they differ from it by multiples of 2^-24) and no detector's float64 score does but by chance.
// A shape copied with its score keeps the marker: where two shapes of one frame carry the same lineage, the
// run starts a new lineage for its seed and replaces nothing.

import { ShapeRecord } from './records';

const SCALE = 2 ** 45;
export const MAX_LINEAGE = 2 ** 21 - 1;

export function scoreOf(lineage: number): number {
    if (!Number.isInteger(lineage) || lineage < 1 || lineage > MAX_LINEAGE) {
        throw new RangeError(`lineage ${lineage} is outside 1..${MAX_LINEAGE}`);
    }
    return 1 - lineage / SCALE;
}

export function lineageOf(score: number | undefined | null): number | null {
    if (typeof score !== 'number' || !(score < 1) || score < 0.5) {
        return null;
    }
    // exact for scores in [0.5, 1]: 1 - score has no rounding error there, and * 2^45 only shifts it
    const lineage = (1 - score) * SCALE;
    return Number.isInteger(lineage) && lineage >= 1 && lineage <= MAX_LINEAGE ? lineage : null;
}

export function usedLineages(shapes: readonly ShapeRecord[]): Set<number> {
    const used = new Set<number>();
    for (const shape of shapes) {
        const lineage = lineageOf(shape.score);
        if (lineage !== null) used.add(lineage);
    }
    return used;
}

// A lineage number no shape of the job uses yet; it is added to `used`.
export function newLineage(used: Set<number>, random: () => number = Math.random): number {
    let candidate = 1 + Math.floor(random() * MAX_LINEAGE);
    for (let tries = 0; tries <= MAX_LINEAGE; tries++) {
        if (candidate >= 1 && candidate <= MAX_LINEAGE && !used.has(candidate)) {
            used.add(candidate);
            return candidate;
        }
        candidate = (candidate % MAX_LINEAGE) + 1;
    }
    throw new Error('every lineage number is in use');
}

export interface SeedLineage {
    lineage: number;
    // the seed keeps its lineage (so earlier results can be recognised); false: a new one was started
    inherited: boolean;
}

// A seed shape's own lineage, when no other shape on its frame carries it (null: unmarked, or a copy's).
export function inheritedLineage(seed: ShapeRecord, allShapes: readonly ShapeRecord[]): number | null {
    const own = lineageOf(seed.score);
    if (own === null) return null;
    const shared = allShapes.some((shape) => shape.clientID !== seed.clientID && shape.frame === seed.frame &&
        lineageOf(shape.score) === own);
    return shared ? null : own;
}

// The lineage a run continues for a seed shape: its own when no other shape on its frame carries it.
export function seedLineage(
    seed: ShapeRecord,
    allShapes: readonly ShapeRecord[],
    used: Set<number>,
    random?: () => number,
): SeedLineage {
    const own = inheritedLineage(seed, allShapes);
    if (own !== null) {
        return { lineage: own, inherited: true };
    }
    return { lineage: newLineage(used, random), inherited: false };
}

// The shapes of the lineage on the given frames: what an earlier run made there for the same object.
export function earlierResults(
    allShapes: readonly ShapeRecord[],
    seed: ShapeRecord,
    lineage: number,
    frames: ReadonlySet<number>,
): ShapeRecord[] {
    return allShapes.filter((shape) => shape.clientID !== seed.clientID && frames.has(shape.frame) &&
        shape.label_id === seed.label_id && shape.type === seed.type && lineageOf(shape.score) === lineage);
}
