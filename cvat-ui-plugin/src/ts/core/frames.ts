// The target frame parameter and the frames a run visits. A target after the current frame tracks forward,
// one before it backward: SAM2 tracks either way from the start frame (it follows the order of the frames it
// is sent; the first call's shapes also say the direction, for a correction's anchor).

export const DEFAULT_TARGET_DISTANCE = 10;

export type Direction = 'forward' | 'backward';

export class TargetFrameError extends Error {}

export interface JobBounds {
    start: number; // the job's first frame
    stop: number; // the job's last frame
}

export function directionOf(current: number, target: number): Direction {
    return target < current ? 'backward' : 'forward';
}

// The job's frames the user may name: any but the current one, which the check refuses (the dialog's number
// field only knows a range).
export function targetFrameRange(bounds: JobBounds): [number, number] {
    return [bounds.start, bounds.stop];
}

// Ten frames on, or ten frames back from the job's last frame.
export function defaultTargetFrame(current: number, bounds: JobBounds): number {
    if (current < bounds.stop) return Math.min(current + DEFAULT_TARGET_DISTANCE, bounds.stop);
    return Math.max(current - DEFAULT_TARGET_DISTANCE, bounds.start);
}

// The target frame as a number, or a TargetFrameError whose message says what is wrong and what to set.
export function checkTargetFrame(value: unknown, current: number, bounds: JobBounds): number {
    const { start, stop } = bounds;
    if (start >= stop) {
        throw new TargetFrameError(`The job has only frame ${start}: there is no other frame to track to.`);
    }
    const range = `a frame from ${start} to ${stop} other than ${current}`;
    const text = typeof value === 'string' ? value.trim() : value;
    const target = typeof text === 'number' ? text : Number(text === '' ? NaN : text);
    if (!Number.isFinite(target) || !Number.isInteger(target)) {
        throw new TargetFrameError(`Target frame "${String(value)}" is not a frame number: set it to ${range}.`);
    }
    if (target === current) {
        throw new TargetFrameError(
            `Target frame ${target} is the current frame: set it to ${range} (after it tracks forward, ` +
            'before it backward).',
        );
    }
    if (target > stop) {
        throw new TargetFrameError(`Target frame ${target} is after the job's last frame ${stop}: set it to ${range}.`);
    }
    if (target < start) {
        throw new TargetFrameError(
            `Target frame ${target} is before the job's first frame ${start}: set it to ${range}.`,
        );
    }
    return target;
}

// The frame numbers strictly between `current` and `target`'s far side, in tracking order.
export function framesToward(current: number, target: number): number[] {
    const step = target < current ? -1 : 1;
    return Array.from({ length: Math.abs(target - current) }, (_, i) => current + step * (i + 1));
}

// The frames to track in order, forward or backward: the job's frames from `current` (excluded) to `target`
// (included), without deleted ones (the tracker continues over a gap as if the deleted frames were not
// there). `jobFrames` may be empty when the job does not say (then every frame number in the range is a job
// frame).
export function planFrames(
    jobFrames: readonly number[],
    current: number,
    target: number,
    isDeleted: (frame: number) => boolean,
): number[] {
    const backward = directionOf(current, target) === 'backward';
    const [low, high] = backward ? [target, current] : [current, target];
    const inRange = jobFrames.length ?
        jobFrames.filter((frame) => frame >= low && frame <= high && frame !== current) :
        framesToward(current, target);
    const ordered = [...new Set(inRange)].sort((a, b) => (backward ? b - a : a - b));
    return ordered.filter((frame) => !isDeleted(frame));
}

// The job's next frame after `frame`, deleted or not; null after its last.
export function frameAfter(jobFrames: readonly number[], frame: number, bounds: JobBounds): number | null {
    if (!jobFrames.length) return frame < bounds.stop ? frame + 1 : null;
    const later = jobFrames.filter((candidate) => candidate > frame);
    return later.length ? Math.min(...later) : null;
}
