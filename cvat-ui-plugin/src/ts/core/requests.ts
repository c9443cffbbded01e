// The tracker calls, as CVAT's own tracker UI makes them (tools-control.tsx): one call per frame for all
// objects, `init_tracking` with the shapes on the start frame, then `track` with the states of the last
// answer. cvat-core's lambda manager adds `task` to the body; CVAT's server fetches the frame, signs the
// states and checks that `frame` is in the job.

import {
    FrameAnswer, MASK, POLYGON, TrackableType,
} from './records';

export interface StartShape {
    type: TrackableType;
    points: number[];
}

export interface InitBody {
    type: 'init_tracking';
    frame: number;
    shapes: StartShape[];
    job: number;
}

export interface TrackBody {
    type: 'track';
    frame: number;
    states: unknown[];
    job: number;
}

export type TrackerBody = InitBody | TrackBody;

export function initBody(job: number, frame: number, shapes: readonly StartShape[]): InitBody {
    return {
        type: 'init_tracking',
        frame,
        shapes: shapes.map(({ type, points }) => ({ type, points: [...points] })),
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
