// The target frame parameter and the frames a run visits.

export const DEFAULT_TARGET_DISTANCE = 10;

export class TargetFrameError extends Error {}

// The job's frames the user may name: after the current frame, up to the job's last.
export function targetFrameRange(current: number, stopFrame: number): [number, number] {
    return [Math.min(current + 1, stopFrame), stopFrame];
}

export function defaultTargetFrame(current: number, stopFrame: number): number {
    return Math.min(current + DEFAULT_TARGET_DISTANCE, stopFrame);
}

// The target frame as a number, or a TargetFrameError whose message says what is wrong and what to set.
export function checkTargetFrame(value: unknown, current: number, stopFrame: number): number {
    if (current >= stopFrame) {
        throw new TargetFrameError(
            `Frame ${current} is the job's last frame: there is no later frame to track to. ` +
            'Go to an earlier frame to track from there.',
        );
    }
    const range = `a frame from ${current + 1} to ${stopFrame}`;
    const text = typeof value === 'string' ? value.trim() : value;
    const target = typeof text === 'number' ? text : Number(text === '' ? NaN : text);
    if (!Number.isFinite(target) || !Number.isInteger(target)) {
        throw new TargetFrameError(`Target frame "${String(value)}" is not a frame number: set it to ${range}.`);
    }
    if (target <= current) {
        throw new TargetFrameError(
            `Target frame ${target} is not after the current frame ${current}: set it to ${range}.`,
        );
    }
    if (target > stopFrame) {
        throw new TargetFrameError(
            `Target frame ${target} is after the job's last frame ${stopFrame}: set it to ${range}.`,
        );
    }
    return target;
}

// The frames to track in order: the job's frames after `current` up to `target`, without deleted ones (the
// tracker continues over a gap as if the deleted frames were not there). `jobFrames` may be empty when the
// job does not say (then every frame number in the range is a job frame).
export function planFrames(
    jobFrames: readonly number[],
    current: number,
    target: number,
    isDeleted: (frame: number) => boolean,
): number[] {
    const candidates = jobFrames.length ?
        [...jobFrames].sort((a, b) => a - b) :
        Array.from({ length: Math.max(target - current, 0) + 1 }, (_, i) => current + i);
    return candidates.filter((frame) => frame > current && frame <= target && !isDeleted(frame));
}
