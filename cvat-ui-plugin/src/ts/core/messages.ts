// What the user reads: the progress line in CVAT's action dialog and the notice after a run.

import { describeFailure } from './failures';
import { Progress, TrackingResult } from './tracking-loop';

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
}

function keptSentence(result: TrackingResult, planned: number): string {
    const { trackedFrames: tracked } = result;
    if (!tracked.length) return 'No frame was tracked, nothing changed.';
    const first = tracked[0];
    const last = tracked[tracked.length - 1];
    const range = first === last ? `Frame ${first}` : `Frames ${first}–${last}`;
    return `${range} (${tracked.length} of ${planned}) ${tracked.length === 1 ? 'was' : 'were'} tracked and kept.`;
}

function capitalised(text: string): string {
    return text.charAt(0).toUpperCase() + text.slice(1);
}

export function outcomeOf(input: OutcomeInput): Outcome {
    const {
        objects, startFrame, planned, result, replaced, notes,
    } = input;
    const { trackedFrames: tracked, stop } = result;
    const resumeFrame = tracked.length ? tracked[tracked.length - 1] : startFrame;
    const extra = [
        ...(replaced ? [`${plural(replaced, 'shape')} from an earlier run on these frames replaced.`] : []),
        ...notes,
    ];
    if (stop === null) {
        const last = tracked[tracked.length - 1];
        return {
            level: 'success',
            title: `Tracked ${plural(objects, 'object')} to frame ${last}`,
            description: [`Frames ${tracked[0]}–${last}: ${plural(tracked.length, 'frame')} tracked.`, ...extra]
                .join(' '),
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
