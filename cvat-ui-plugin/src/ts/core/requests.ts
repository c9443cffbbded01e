// The tracker calls, as CVAT's own tracker UI makes them (tools-control.tsx): one call per frame for all
// objects, `init_tracking` with the shapes on the start frame, then `track` with the states of the last
// answer. cvat-core's lambda manager adds `task` to the body; CVAT's server fetches the frame, signs the
// states and checks that `frame` is in the job.
//
// The first call may also carry, beside the shapes, the states an earlier run left for some objects
// (memory.ts): for those a correction on this frame, where the tracker continues the object's memory and
// adds the shape as a new anchor. CVAT forwards a body with both `shapes` and `states` as sent (extra keys of
// a shape kept, each state checked and unsigned, null entries allowed).

import { Direction } from './frames';
import {
    FrameAnswer, MASK, POLYGON, TrackableType,
} from './records';

export interface StartShape {
    type: TrackableType;
    points: number[];
}

// A shape as the first call sends it: with the run's start frame and direction.
export interface SentShape extends StartShape {
    frame: number;
    direction: Direction;
}

export interface InitBody {
    type: 'init_tracking';
    frame: number;
    shapes: SentShape[];
    states?: unknown[]; // per object its kept state, null where none; absent when no object has one
    job: number;
}

export interface TrackBody {
    type: 'track';
    frame: number;
    states: unknown[];
    job: number;
}

export type TrackerBody = InitBody | TrackBody;

const isState = (state: unknown): boolean => state !== null && state !== undefined;

// The first call of a run from `frame` toward `direction`. `kept`: per object the state an earlier run left
// for it (null or absent: none); without any the body is a plain start, without `states`.
export function initBody(
    job: number,
    frame: number,
    direction: Direction,
    shapes: readonly StartShape[],
    kept: readonly unknown[] = [],
): InitBody {
    const sent = shapes.map(({ type, points }) => ({
        type, points: [...points], frame, direction,
    }));
    if (!kept.some(isState)) {
        return {
            type: 'init_tracking', frame, shapes: sent, job,
        };
    }
    return {
        type: 'init_tracking',
        frame,
        shapes: sent,
        states: shapes.map((_, index) => (isState(kept[index]) ? kept[index] : null)),
        job,
    };
}

export function trackBody(job: number, frame: number, states: readonly unknown[]): TrackBody {
    return {
        type: 'track', frame, states: [...states], job,
    };
}

// An answer this plugin cannot use; the run stops there like on a failed call.
export class AnswerError extends Error {}

export interface TrackerAnswer {
    shapes: FrameAnswer[]; // per object, in request order
    states: unknown[];
}

function finiteNumbers(points: unknown): points is number[] {
    return Array.isArray(points) && points.every((value) => typeof value === 'number' && Number.isFinite(value));
}

function answerPoints(shape: unknown, expected: TrackableType, index: number): FrameAnswer {
    if (shape === null || shape === undefined) {
        return null;
    }
    const { type, points } = shape as { type?: unknown; points?: unknown };
    if (type !== expected || !finiteNumbers(points)) {
        throw new AnswerError(
            `the tracker answered object ${index + 1} with ${JSON.stringify(type ?? null)} points ` +
            `where a ${expected} was expected`,
        );
    }
    if (expected === POLYGON && (points.length < 6 || points.length % 2 !== 0)) {
        throw new AnswerError(`the tracker answered object ${index + 1} with a polygon of ${points.length} numbers`);
    }
    if (expected === MASK && points.length < 5) {
        throw new AnswerError(`the tracker answered object ${index + 1} with a mask of ${points.length} numbers`);
    }
    return points;
}

// The states of an answer, one per object asked for.
export function readStates(answer: unknown, count: number): unknown[] {
    const { states } = (answer ?? {}) as { states?: unknown };
    if (!Array.isArray(states) || states.length !== count) {
        throw new AnswerError(
            `the tracker answered ${Array.isArray(states) ? states.length : 'no'} states for ${count} objects`,
        );
    }
    if (states.some((state) => state === null || state === undefined)) {
        throw new AnswerError('the tracker answered an empty state');
    }
    return states;
}

// A `track` answer's shapes (null where the object is absent) and states, checked against what was asked.
export function readAnswer(answer: unknown, types: readonly TrackableType[]): TrackerAnswer {
    const states = readStates(answer, types.length);
    const { shapes } = (answer ?? {}) as { shapes?: unknown };
    if (!Array.isArray(shapes) || shapes.length !== types.length) {
        throw new AnswerError(
            `the tracker answered ${Array.isArray(shapes) ? shapes.length : 'no'} shapes for ${types.length} objects`,
        );
    }
    return {
        shapes: types.map((type, index) => answerPoints(shapes[index], type, index)),
        states,
    };
}
