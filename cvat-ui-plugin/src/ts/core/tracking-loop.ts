// The run itself: one tracker call per frame for all objects, stopping at a cancel or a failure with every
// frame answered so far kept. The call is injected, so this runs the same against CVAT and in the tests.
// With `stopAfterAbsent` N > 0 an object the tracker calls absent on N frames in a row ends there: it is not
// sent any more, and the run ends early once every object has ended.
// With `keptStates` the first call carries the states an earlier run left (memory.ts); refused with 400 or
// 404 (CVAT: expired or invalid; the tracker: its store lost them), it is repeated once without them, every
// object starting fresh. The result has each object's last state, for the next run.

import { statusOf } from './failures';
import { directionOf } from './frames';
import { FrameAnswer, TrackableType } from './records';
import {
    StartShape, TrackerAnswer, TrackerBody, initBody, readAnswer, readStates, trackBody,
} from './requests';

export interface Progress {
    done: number; // frames answered
    total: number; // frames planned
    frame: number | null; // the frame being tracked now; null before the first and after the last
}

export type Stop =
    | { kind: 'cancelled'; frame: number }
    | { kind: 'failed'; frame: number; error: unknown };

// An object that ended: absent from `absentFrom` to `frame`, the last frame it was tracked on.
export interface ObjectEnd {
    object: number; // its index in the run's shapes
    absentFrom: number;
    frame: number;
}

// The last state the tracker answered for an object in a run, and the frame it was answered for.
export interface LastState {
    state: unknown;
    frame: number;
}

// How the kept states of earlier runs went.
export interface MemoryUse {
    sent: number; // objects whose kept state the first call carried
    refused: boolean; // that call was refused (400 or 404) and repeated without them
    started: boolean; // the first call (with them, or repeated without) was answered
}

export interface TrackingResult {
    trackedFrames: number[]; // in the order tracked
    answers: Map<number, FrameAnswer[]>; // per tracked frame, per object (null: absent, or ended before)
    ended: ObjectEnd[]; // in the order they ended
    stop: Stop | null; // null: every planned frame was tracked, or every object ended
    lastStates: (LastState | null)[]; // per object (null: no answer); an object that ended keeps its last
    memory: MemoryUse;
}

export interface TrackingRun {
    job: number;
    startFrame: number;
    plan: readonly number[];
    shapes: readonly StartShape[];
    keptStates?: readonly unknown[]; // per object its state from an earlier run (null: none)
    call: (body: TrackerBody) => Promise<unknown>;
    cancelled: () => boolean;
    onProgress: (progress: Progress) => void;
    stopAfterAbsent?: number; // 0 or absent: never (checkStopAfter reads the parameter)
    cancelPollMs?: number;
}

export const MAX_STOP_AFTER = 1000;

// The "stop after N frames absent" parameter as a number: 0 (never) when left out, as a script calling
// cvat-core may do; an Error naming the parameter for anything but a whole number from 0 to MAX_STOP_AFTER.
export function checkStopAfter(value: unknown, name: string): number {
    const text = typeof value === 'string' ? value.trim() : value;
    if (text === undefined || text === null || text === '' || (typeof text === 'number' && Number.isNaN(text))) {
        return 0;
    }
    const number = Number(text);
    if (!Number.isInteger(number) || number < 0 || number > MAX_STOP_AFTER) {
        throw new Error(`"${name}" is ${JSON.stringify(value)}: set it to a whole number from 0 (never) ` +
            `to ${MAX_STOP_AFTER}.`);
    }
    return number;
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

// Which objects are still sent, with their states, and how long each has been absent. An object absent on
// `stopAfter` (> 0) frames in a row ends: it is no longer sent.
class ActiveObjects {
    readonly indices: number[];
    states: unknown[];
    readonly #absent: number[];
    readonly #stopAfter: number;

    constructor(states: unknown[], stopAfter: number) {
        this.indices = states.map((_, i) => i);
        this.states = states;
        this.#absent = new Array(states.length).fill(0);
        this.#stopAfter = stopAfter;
    }

    // The answer's shapes spread over all objects (null for those not sent) and the objects that end on
    // `frame`, absent since `absentFrom`.
    take(frame: number, absentFrom: number, answer: TrackerAnswer): { all: FrameAnswer[]; ended: ObjectEnd[] } {
        const all: FrameAnswer[] = new Array(this.#absent.length).fill(null);
        const ended: ObjectEnd[] = [];
        const keep: number[] = [];
        this.indices.forEach((object, position) => {
            all[object] = answer.shapes[position];
            this.#absent[object] = answer.shapes[position] === null ? this.#absent[object] + 1 : 0;
            if (this.#stopAfter > 0 && this.#absent[object] >= this.#stopAfter) {
                ended.push({ object, absentFrom, frame });
            } else {
                keep.push(position);
            }
        });
        this.states = keep.map((position) => answer.states[position]);
        this.indices.splice(0, this.indices.length, ...keep.map((position) => this.indices[position]));
        return { all, ended };
    }
}

// A kept state CVAT or the tracker no longer accepts: CVAT's 400 "Invalid or expired tracker state", the
// tracker's 400 for a state it cannot use or 404 for one its store lost.
export function refusesKeptStates(error: unknown): boolean {
    const status = statusOf(error);
    return status === 400 || status === 404;
}

// The first call: with the kept states, and once more without them if they are refused.
async function start(run: TrackingRun, result: TrackingResult, pollMs: number): Promise<unknown> {
    const {
        job, startFrame, plan, shapes, call, cancelled,
    } = run;
    const direction = directionOf(startFrame, plan.length ? plan[0] : startFrame);
    const kept = run.keptStates ?? [];
    result.memory.sent = shapes.filter((_, index) => kept[index] !== null && kept[index] !== undefined).length;
    let answer: unknown;
    try {
        answer = await unlessCancelled(call(initBody(job, startFrame, direction, shapes, kept)), cancelled, pollMs);
    } catch (error) {
        if (!result.memory.sent || !refusesKeptStates(error)) throw error;
        result.memory.refused = true;
        answer = await unlessCancelled(call(initBody(job, startFrame, direction, shapes)), cancelled, pollMs);
    }
    if (answer !== CANCELLED) result.memory.started = true;
    return answer;
}

export async function runTracking(run: TrackingRun): Promise<TrackingResult> {
    const {
        job, startFrame, plan, shapes, call, cancelled, onProgress,
    } = run;
    const pollMs = run.cancelPollMs ?? 200;
    const stopAfter = run.stopAfterAbsent ?? 0;
    const types: TrackableType[] = shapes.map((shape) => shape.type);
    const result: TrackingResult = {
        trackedFrames: [],
        answers: new Map(),
        ended: [],
        stop: null,
        lastStates: shapes.map(() => null),
        memory: { sent: 0, refused: false, started: false },
    };
    const total = plan.length;

    onProgress({ done: 0, total, frame: null });
    if (cancelled()) {
        return { ...result, stop: { kind: 'cancelled', frame: startFrame } };
    }

    let active: ActiveObjects;
    try {
        const answer = await start(run, result, pollMs);
        if (answer === CANCELLED) {
            return { ...result, stop: { kind: 'cancelled', frame: startFrame } };
        }
        const states = readStates(answer, shapes.length);
        result.lastStates = states.map((state) => ({ state, frame: startFrame }));
        active = new ActiveObjects(states, stopAfter);
    } catch (error) {
        return { ...result, stop: { kind: 'failed', frame: startFrame, error } };
    }

    for (let index = 0; index < total && active.indices.length; index++) {
        const frame = plan[index];
        if (cancelled()) {
            result.stop = { kind: 'cancelled', frame };
            return result;
        }
        onProgress({ done: index, total, frame });
        try {
            const answer = await unlessCancelled(call(trackBody(job, frame, active.states)), cancelled, pollMs);
            if (answer === CANCELLED) {
                result.stop = { kind: 'cancelled', frame };
                return result;
            }
            const read = readAnswer(answer, active.indices.map((object) => types[object]));
            active.indices.forEach((object, position) => {
                result.lastStates[object] = { state: read.states[position], frame };
            });
            result.trackedFrames.push(frame);
            const absentFrom = result.trackedFrames[Math.max(0, result.trackedFrames.length - stopAfter)];
            const { all, ended } = active.take(frame, absentFrom, read);
            result.answers.set(frame, all);
            result.ended.push(...ended);
        } catch (error) {
            result.stop = { kind: 'failed', frame, error };
            return result;
        }
    }

    const done = result.trackedFrames.length; // fewer than planned when every object ended
    onProgress({ done, total: done, frame: null });
    return result;
}
