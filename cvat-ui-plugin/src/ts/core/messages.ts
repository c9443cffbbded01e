// What the user reads: the progress line in CVAT's action dialog and the notice after a run.

import { describeFailure } from './failures';
import { directionOf } from './frames';
import {
    MemoryUse, ObjectEnd, Progress, TrackingResult,
} from './tracking-loop';

export interface ProgressText {
    message: string;
    percent: number;
}

function plural(count: number, word: string): string {
    return `${count} ${word}${count === 1 ? '' : 's'}`;
}

export function progressText(progress: Progress, objects: number, startFrame: number): ProgressText {
    const { done, total, frame } = progress;
    const percent = total ? Math.floor((done / total) * 100) : 100;
    if (frame === null) {
        return done === 0 ?
            { message: `Starting the tracker on frame ${startFrame} for ${plural(objects, 'object')}`, percent } :
            { message: `Tracked ${plural(objects, 'object')} on ${plural(total, 'frame')}`, percent };
    }
    return { message: `Tracking ${plural(objects, 'object')}: frame ${done + 1} of ${total} (frame ${frame})`, percent };
}

export interface Outcome {
    level: 'success' | 'warning' | 'error';
    title: string;
    description: string;
}

export interface OutcomeInput {
    objects: number;
    startFrame: number;
    planned: number;
    result: TrackingResult;
    replaced: number; // earlier results replaced
    notes: readonly string[]; // e.g. objects the function cannot track
    objectNames?: readonly string[]; // per object, for the sentences about objects that ended
}

function capitalised(text: string): string {
    return text.charAt(0).toUpperCase() + text.slice(1);
}

function span(first: number, last: number): string {
    return first === last ? `frame ${first}` : `frames ${first}–${last}`;
}

// "Object 2 ("car" polygon) ended on frame 30 (absent on frames 26–30)."
function endedSentences(input: OutcomeInput): string[] {
    const { result, planned } = input;
    const names = input.objectNames ?? [];
    const sentences = result.ended.map(({ object, absentFrom, frame }: ObjectEnd) => {
        const name = names[object] ? ` (${names[object]})` : '';
        return `Object ${object + 1}${name} ended on frame ${frame} (absent on ${span(absentFrom, frame)}).`;
    });
    const tracked = result.trackedFrames.length;
    if (result.stop === null && result.ended.length === input.objects && tracked < planned) {
        sentences.push(`Every object had ended, so the run stopped after ${plural(tracked, 'frame')} of ${planned}.`);
    }
    return sentences;
}

// What became of the memory of earlier runs the run sent: continued, or refused and started fresh.
function memorySentences({ sent, refused, started }: MemoryUse): string[] {
    if (!sent) return [];
    const objects = plural(sent, 'object');
    const they = sent === 1 ? 'it' : 'they';
    if (refused) {
        const notAccepted = `The earlier memory of ${objects} was not accepted (expired, or the tracker's ` +
            'state store restarted)';
        return [started ? `${notAccepted}: ${they} started fresh.` : `${notAccepted} and is forgotten.`];
    }
    return started ? [`${objects} continued ${sent === 1 ? 'its' : 'their'} earlier memory.`] : [];
}

function keptSentence(result: TrackingResult, planned: number): string {
    const { trackedFrames: tracked } = result;
    if (!tracked.length) return 'No frame was tracked, nothing changed.';
    const first = tracked[0];
    const last = tracked[tracked.length - 1];
    const range = capitalised(span(first, last));
    return `${range} (${tracked.length} of ${planned}) ${tracked.length === 1 ? 'was' : 'were'} tracked and kept.`;
}

export function outcomeOf(input: OutcomeInput): Outcome {
    const {
        objects, startFrame, planned, result, replaced, notes,
    } = input;
    const { trackedFrames: tracked, stop } = result;
    const resumeFrame = tracked.length ? tracked[tracked.length - 1] : startFrame;
    const extra = [
        ...memorySentences(result.memory),
        ...endedSentences(input),
        ...(replaced ? [`${plural(replaced, 'shape')} from an earlier run on these frames replaced.`] : []),
        ...notes,
    ];
    if (stop === null) {
        const last = tracked[tracked.length - 1];
        const back = directionOf(startFrame, last) === 'backward' ? 'back ' : '';
        return {
            level: 'success',
            title: `Tracked ${plural(objects, 'object')} ${back}to frame ${last}`,
            description: [
                `${capitalised(span(tracked[0], last))}: ${plural(tracked.length, 'frame')} tracked.`,
                ...extra,
            ].join(' '),
        };
    }
    if (stop.kind === 'cancelled') {
        return {
            level: 'warning',
            title: `Tracking cancelled at frame ${stop.frame}`,
            description: [
                keptSentence(result, planned),
                ...(tracked.length ? [`To go on, run the action again from frame ${resumeFrame}.`] : []),
                ...extra,
            ].join(' '),
        };
    }
    const failure = describeFailure(stop.error, resumeFrame);
    return {
        level: 'error',
        title: `Tracking stopped at frame ${stop.frame}`,
        description: [`${capitalised(failure.reason)}.`, keptSentence(result, planned), failure.advice, ...extra]
            .join(' '),
    };
}
