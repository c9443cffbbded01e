// What a run changes in the job, as the `created` and `deleted` collections cvat-core commits (one undo
// step). Only frames the tracker answered are touched, so a run stopped midway keeps what it tracked, and a
// backward run the frames before its start. An object that ended (absent N frames in a row) is touched up to
// the frame it ended on.
//
// - A shape keeps its type: each tracked frame where the object is present gets a new shape with the
//   seed's label, attributes, group, z-order and occlusion, marked with the seed's lineage (lineage.ts);
//   the lineage's earlier shapes on those frames are deleted. An unmarked seed is replaced by a marked copy.
// - A polygon shape with "Convert polygon shapes to tracks" becomes a track: a keyframe on the start frame
//   (the shape), one per tracked frame, on either side of it; the shape and its lineage's shapes on the
//   tracked frames go. Tracked backward, it gets an `outside` keyframe on the job's next frame after the start:
//   the shape was on that frame only, and a track would otherwise hold it on every later frame.
// - A polygon track gets a keyframe on every tracked frame, replacing any there, `outside` where the
//   tracker says the object is absent, and one on the start frame when its shape there was interpolated.
// Each object's identity after the run (memory.ts) comes with the changes: its lineage, or its track's
// keyframes.

import {
    AttributeValue, CollectionRecord, FrameAnswer, POLYGON, Seed, ShapeRecord, ShapeSeed, TrackRecord,
    TrackSeed, TrackShapeRecord, emptyCollection,
} from './records';
import { directionOf } from './frames';
import {
    earlierResults, scoreOf, seedLineage, usedLineages,
} from './lineage';
import {
    ObjectIdentity, lineageIdentity, seedIdentity, trackIdentity,
} from './memory';

// source of the shapes the tracker makes (as CVAT's own tracking action); tracks it changes are a mix
export const SHAPE_SOURCE = 'auto';
export const TRACK_SOURCE = 'semi-auto';
const KEEP_SOURCES = new Set(['consensus', 'gt']);

export interface ChangeInput {
    seeds: readonly Seed[];
    trackedFrames: readonly number[]; // in the order tracked (descending when backward)
    answers: ReadonlyMap<number, readonly FrameAnswer[]>; // per tracked frame, per seed
    ended?: ReadonlyMap<number, number>; // seed index -> the last frame it was tracked on
    startFrame: number;
    convertPolygons: boolean;
    frameAfterStart?: number | null; // the job's next frame after the start frame (null: none)
    allShapes: readonly ShapeRecord[]; // every shape of the job, to find earlier results
    mutableSpecIds: ReadonlySet<number>; // attribute specs that vary per frame (track keyframe attributes)
    random?: () => number;
}

export interface Changes {
    created: CollectionRecord;
    deleted: CollectionRecord;
    shapesMade: number;
    keyframesMade: number;
    replaced: number; // earlier results deleted
    identities: (ObjectIdentity | null)[]; // per seed, what identifies its object after the run
}

function splitAttributes(attributes: readonly AttributeValue[], mutable: ReadonlySet<number>): {
    track: AttributeValue[];
    shape: AttributeValue[];
} {
    const copy = attributes.map(({ spec_id: specId, value }) => ({ spec_id: specId, value }));
    return {
        track: copy.filter((attribute) => !mutable.has(attribute.spec_id)),
        shape: copy.filter((attribute) => mutable.has(attribute.spec_id)),
    };
}

function withoutIds(shape: ShapeRecord): ShapeRecord {
    const { id, clientID, ...rest } = shape;
    return {
        ...rest,
        attributes: shape.attributes.map((attribute) => ({ ...attribute })),
        points: [...(shape.points ?? [])],
        elements: [],
    };
}

// The frames tracked for one seed, in the order tracked: all of them, or those up to where it ended.
export function seedFrames(input: ChangeInput, seedIndex: number): readonly number[] {
    const end = input.ended?.get(seedIndex);
    if (end === undefined) return input.trackedFrames;
    return input.trackedFrames.slice(0, input.trackedFrames.indexOf(end) + 1);
}

function firstFrame(shapes: readonly TrackShapeRecord[]): number {
    return Math.min(...shapes.map((shape) => shape.frame));
}

// Keyframes for the tracked frames: the answer's polygon, or `outside` with the last known polygon.
function trackedKeyframes(
    input: ChangeInput,
    seedIndex: number,
    base: { points: number[]; occluded: boolean; zOrder: number },
): TrackShapeRecord[] {
    let last = base.points;
    return seedFrames(input, seedIndex).map((frame) => {
        const points = input.answers.get(frame)?.[seedIndex] ?? null;
        if (points) last = points;
        return {
            frame,
            type: POLYGON,
            points: [...last],
            occluded: base.occluded,
            outside: points === null,
            rotation: 0,
            z_order: base.zOrder,
            attributes: [],
        };
    });
}

function trackSource(source: string): string {
    return KEEP_SOURCES.has(source) ? source : TRACK_SOURCE;
}

function changeTrack(input: ChangeInput, seed: TrackSeed, index: number, changes: Changes): void {
    const { track } = seed;
    const keyframes = new Map<number, TrackShapeRecord>();
    for (const shape of track.shapes) {
        keyframes.set(shape.frame, { ...shape, points: [...(shape.points ?? [])] });
    }
    if (!keyframes.has(input.startFrame)) {
        // pin the start frame: new keyframes after it would otherwise change its interpolated shape
        keyframes.set(input.startFrame, {
            frame: input.startFrame,
            type: POLYGON,
            points: [...seed.points],
            occluded: seed.occluded,
            outside: false,
            rotation: 0,
            z_order: seed.zOrder,
            attributes: seed.attributes.filter((attribute) => input.mutableSpecIds.has(attribute.spec_id)),
        });
    }
    for (const made of trackedKeyframes(input, index, seed)) {
        const existing = keyframes.get(made.frame);
        // a keyframe already there keeps its attributes and occlusion; the tracker decides where it is
        keyframes.set(made.frame, existing ? { ...existing, points: made.points, outside: made.outside } : made);
        changes.keyframesMade++;
    }
    const { clientID, ...rest } = track;
    const shapes = [...keyframes.values()].sort((a, b) => a.frame - b.frame);
    changes.created.tracks.push({
        ...rest,
        frame: firstFrame(shapes), // a backward run may start the track earlier
        source: trackSource(track.source),
        shapes,
    });
    changes.deleted.tracks.push(track);
    changes.identities[index] = trackIdentity(shapes);
}

function convertShape(
    input: ChangeInput,
    seed: ShapeSeed,
    index: number,
    changes: Changes,
    replaced: ShapeRecord[],
): void {
    const { shape } = seed;
    const attributes = splitAttributes(shape.attributes, input.mutableSpecIds);
    const start: TrackShapeRecord = {
        frame: input.startFrame,
        type: POLYGON,
        points: [...seed.points],
        occluded: shape.occluded,
        outside: false,
        rotation: shape.rotation,
        z_order: shape.z_order,
        attributes: attributes.shape,
    };
    const tracked = trackedKeyframes(input, index, {
        points: seed.points, occluded: shape.occluded, zOrder: shape.z_order,
    });
    const backward = tracked.length > 0 && directionOf(input.startFrame, tracked[0].frame) === 'backward';
    const after = input.frameAfterStart;
    const end = backward && after !== undefined && after !== null ? [{ ...start, frame: after, outside: true }] : [];
    const shapes = [start, ...tracked, ...end].sort((a, b) => a.frame - b.frame);
    const track: TrackRecord = {
        label_id: shape.label_id,
        group: shape.group,
        frame: firstFrame(shapes),
        source: trackSource(shape.source),
        attributes: attributes.track,
        elements: [],
        shapes,
    };
    changes.keyframesMade += tracked.length;
    changes.created.tracks.push(track);
    changes.deleted.shapes.push(shape, ...replaced);
    changes.identities[index] = trackIdentity(shapes);
}

function trackShape(
    input: ChangeInput,
    seed: ShapeSeed,
    index: number,
    changes: Changes,
    lineage: { lineage: number; inherited: boolean },
    replaced: ShapeRecord[],
): void {
    const { shape } = seed;
    const score = scoreOf(lineage.lineage);
    if (!lineage.inherited) {
        // mark the seed too, so that a run from it later finds what this run makes
        changes.created.shapes.push({ ...withoutIds(shape), score });
        changes.deleted.shapes.push(shape);
    }
    for (const frame of seedFrames(input, index)) {
        const points = input.answers.get(frame)?.[index] ?? null;
        if (points === null) continue;
        changes.created.shapes.push({
            ...withoutIds(shape),
            frame,
            points: [...points],
            outside: false,
            rotation: 0,
            source: SHAPE_SOURCE,
            score,
        });
        changes.shapesMade++;
    }
    changes.deleted.shapes.push(...replaced);
    changes.identities[index] = lineageIdentity(lineage.lineage);
}

export function buildChanges(input: ChangeInput): Changes {
    const changes: Changes = {
        created: emptyCollection(),
        deleted: emptyCollection(),
        shapesMade: 0,
        keyframesMade: 0,
        replaced: 0,
        // nothing tracked: the objects stay as they are
        identities: input.seeds.map((seed) => seedIdentity(seed, input.allShapes)),
    };
    if (!input.trackedFrames.length) {
        return changes;
    }
    const used = usedLineages(input.allShapes);
    const gone = new Set<number | undefined>(); // clientIDs already deleted (an earlier result of two seeds)

    input.seeds.forEach((seed, index) => {
        if (seed.kind === 'track') {
            changeTrack(input, seed, index, changes);
            return;
        }
        const lineage = seedLineage(seed.shape, input.allShapes, used, input.random);
        const covered = new Set(seedFrames(input, index));
        const replaced = lineage.inherited ?
            earlierResults(input.allShapes, seed.shape, lineage.lineage, covered)
                .filter((shape) => !gone.has(shape.clientID)) :
            [];
        replaced.forEach((shape) => gone.add(shape.clientID));
        changes.replaced += replaced.length;
        if (input.convertPolygons && seed.type === POLYGON) {
            convertShape(input, seed, index, changes, replaced);
        } else {
            trackShape(input, seed, index, changes, lineage, replaced);
        }
    });
    return changes;
}
