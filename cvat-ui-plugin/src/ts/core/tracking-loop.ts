// The run itself: one tracker call per frame for all objects, stopping at a cancel or a failure with every
// frame answered so far kept. The call is injected, so this runs the same against CVAT and in the tests.

import { FrameAnswer, TrackableType } from './records';
import {
    StartShape, TrackerBody, initBody, readAnswer, readStates, trackBody,
} from './requests';

export interface Progress {
    done: number; // frames answered
    total: number; // frames planned
    frame: number | null; // the frame being tracked now; null before the first and after the last
}

export type Stop =
    | { kind: 'cancelled'; frame: number }
    | { kind: 'failed'; frame: number; error: unknown };

export interface TrackingResult {
    trackedFrames: number[]; // in the order tracked
    answers: Map<number, FrameAnswer[]>; // per tracked frame, per object
    stop: Stop | null; // null: every planned frame was tracked
}

export interface TrackingRun {
    job: number;
    startFrame: number;
    plan: readonly number[];
    shapes: readonly StartShape[];
    call: (body: TrackerBody) => Promise<unknown>;
    cancelled: () => boolean;
    onProgress: (progress: Progress) => void;
    cancelPollMs?: number;
}

const CANCELLED = Symbol('cancelled');

// Resolves with the call's answer, or with CANCELLED as soon as the user cancels: a call may take CVAT's
// whole deadline, and Cancel should not wait for it (its answer is then dropped).
async function unlessCancelled<T>(
    promise: Promise<T>,
    cancelled: () => boolean,
    pollMs: number,
): Promise<T | typeof CANCELLED> {
    let timer: ReturnType<typeof setInterval> | undefined;
    const watcher = new Promise<typeof CANCELLED>((resolve) => {
        timer = setInterval(() => {
            if (cancelled()) resolve(CANCELLED);
        }, pollMs);
    });
    promise.catch(() => undefined); // a dropped call's failure is nobody's concern
    try {
        return await Promise.race([promise, watcher]);
    } finally {
        clearInterval(timer);
    }
}

export async function runTracking(run: TrackingRun): Promise<TrackingResult> {
    const {
        job, startFrame, plan, shapes, call, cancelled, onProgress,
    } = run;
    const pollMs = run.cancelPollMs ?? 200;
    const types: TrackableType[] = shapes.map((shape) => shape.type);
    const result: TrackingResult = { trackedFrames: [], answers: new Map(), stop: null };
    const total = plan.length;

    onProgress({ done: 0, total, frame: null });
    if (cancelled()) {
        return { ...result, stop: { kind: 'cancelled', frame: startFrame } };
    }

    let states: unknown[];
    try {
        const answer = await unlessCancelled(call(initBody(job, startFrame, shapes)), cancelled, pollMs);
        if (answer === CANCELLED) {
            return { ...result, stop: { kind: 'cancelled', frame: startFrame } };
        }
        states = readStates(answer, shapes.length);
    } catch (error) {
        return { ...result, stop: { kind: 'failed', frame: startFrame, error } };
    }

    for (let index = 0; index < total; index++) {
        const frame = plan[index];
        if (cancelled()) {
            result.stop = { kind: 'cancelled', frame };
            return result;
        }
        onProgress({ done: index, total, frame });
        try {
            const answer = await unlessCancelled(call(trackBody(job, frame, states)), cancelled, pollMs);
            if (answer === CANCELLED) {
                result.stop = { kind: 'cancelled', frame };
                return result;
            }
            const read = readAnswer(answer, types);
            result.answers.set(frame, read.shapes);
            result.trackedFrames.push(frame);
            ({ states } = read);
        } catch (error) {
            result.stop = { kind: 'failed', frame, error };
            return result;
        }
    }

    onProgress({ done: total, total, frame: null });
    return result;
}
