// What the tracker remembers of an object from earlier runs ("Remember earlier runs"): the last state CVAT
// answered for it, kept in this page's memory per job and object, so that the next run from the same object
// continues that SAM2 memory instead of starting fresh. Such a run sends, for the object, its kept state
// beside its shape on the start frame: a correction, which the tracker adds as a new anchor. A page reload
// forgets everything (nothing is stored); CVAT refuses a state older than 8 hours anyway.
//
// "The same object" across runs, whatever frame the next run starts from:
// - a shape: its lineage (lineage.ts), the number a run writes into the score of the shape it starts from
//   and of every shape it makes, and which a corrected shape keeps (CVAT keeps a shape's score when its
//   points change). Not a shape's ids: each run replaces the shapes it makes, so they change every run.
//   A shape whose lineage another shape of its frame shares (a copy) has no identity: it starts fresh.
// - a track: its keyframes. CVAT's tracks have no score, and a track a run changes or makes (converting a
//   polygon shape) gets a new client id on commit and has no server id until saved; but its keyframes stay
//   as the run left them until someone edits them. So a track is the object of an earlier run when one of its
//   keyframes (frame, outside, points, exactly) is one the object's track had after that run: correcting
//   some keyframes leaves the others to recognise it by.

import { Direction } from './frames';
import { inheritedLineage } from './lineage';
import { Seed, ShapeRecord } from './records';

export type ObjectIdentity =
    | { kind: 'lineage'; lineage: number }
    | { kind: 'track'; keyframes: readonly string[] }; // keyframeKey of each keyframe

export interface KeptState {
    state: unknown; // as CVAT answered it (signed by CVAT): sent back unchanged
    frame: number; // the frame it was answered for
    direction: Direction; // of the run that got it
}

interface Entry {
    identity: ObjectIdentity;
    kept: KeptState;
}

// job id -> the objects' kept states, oldest first
export type StateMemory = Map<number, Entry[]>;

// The page's memory: module-level, so a page reload forgets it.
export const pageMemory: StateMemory = new Map();

// A job keeps at most this many objects' states: the oldest go first.
export const MAX_KEPT_PER_JOB = 1000;

// Two polynomial hashes modulo primes below 2^32 (exact in doubles: every product stays below 2^53), so
// that keys stay small for long polygons; a false match needs both to collide on the same frame.
function hash(text: string): string {
    let h1 = 0;
    let h2 = 0;
    for (let i = 0; i < text.length; i++) {
        const code = text.charCodeAt(i);
        h1 = (h1 * 131 + code) % 4294967291;
        h2 = (h2 * 257 + code) % 4294967279;
    }
    return `${h1.toString(36)}.${h2.toString(36)}`;
}

interface Keyframe {
    frame: number;
    outside: boolean;
    points?: number[];
}

export function keyframeKey({ frame, outside, points }: Keyframe): string {
    return `${frame}${outside ? 'o' : ''}:${hash((points ?? []).join(','))}`;
}

export function lineageIdentity(lineage: number): ObjectIdentity {
    return { kind: 'lineage', lineage };
}

export function trackIdentity(keyframes: readonly Keyframe[]): ObjectIdentity | null {
    return keyframes.length ? { kind: 'track', keyframes: keyframes.map(keyframeKey) } : null;
}

// What identifies a seed before a run: a shape's own lineage (null: unmarked, or shared by a copy), a
// track's keyframes.
export function seedIdentity(seed: Seed, allShapes: readonly ShapeRecord[]): ObjectIdentity | null {
    if (seed.kind === 'track') return trackIdentity(seed.track.shapes);
    const lineage = inheritedLineage(seed.shape, allShapes);
    return lineage === null ? null : lineageIdentity(lineage);
}

export function sameObject(a: ObjectIdentity, b: ObjectIdentity): boolean {
    if (a.kind === 'lineage') return b.kind === 'lineage' && a.lineage === b.lineage;
    if (b.kind === 'lineage') return false;
    const keys = new Set(a.keyframes);
    return b.keyframes.some((key) => keys.has(key));
}

// The kept state of each object (null: none), the newest that matches; an entry goes to one object at most.
export function lookupStates(
    memory: StateMemory,
    job: number,
    identities: readonly (ObjectIdentity | null)[],
): (KeptState | null)[] {
    const entries = memory.get(job) ?? [];
    const given = new Set<Entry>();
    return identities.map((identity) => {
        if (!identity) return null;
        for (let i = entries.length - 1; i >= 0; i--) {
            const entry = entries[i];
            if (!given.has(entry) && sameObject(entry.identity, identity)) {
                given.add(entry);
                return entry.kept;
            }
        }
        return null;
    });
}

// Forgets the kept states of the given objects, or of the whole job without `identities`.
export function forgetStates(
    memory: StateMemory,
    job: number,
    identities?: readonly (ObjectIdentity | null)[],
): void {
    if (!identities) {
        memory.delete(job);
        return;
    }
    const gone = identities.filter((identity): identity is ObjectIdentity => identity !== null);
    const entries = (memory.get(job) ?? [])
        .filter((entry) => !gone.some((identity) => sameObject(entry.identity, identity)));
    if (entries.length) memory.set(job, entries);
    else memory.delete(job);
}

// Keeps `kept` for an object that was `previous` before the run and is `next` after it (a converted polygon
// shape becomes a track): what was kept for either is replaced.
export function keepState(
    memory: StateMemory,
    job: number,
    object: { previous: ObjectIdentity | null; next: ObjectIdentity },
    kept: KeptState,
): void {
    forgetStates(memory, job, [object.previous, object.next]);
    const entries = memory.get(job) ?? [];
    entries.push({ identity: object.next, kept });
    memory.set(job, entries.slice(-MAX_KEPT_PER_JOB));
}

export interface RunMemory {
    direction: Direction;
    previous: readonly (ObjectIdentity | null)[]; // per object, before the run (seedIdentity)
    next: readonly (ObjectIdentity | null)[]; // per object, after it (results.ts)
    last: readonly ({ state: unknown; frame: number } | null)[]; // per object, its last state in the run
    refused: readonly boolean[]; // per object: its kept state was sent and refused (expired, store lost)
}

// After a run (finished, cancelled or stopped midway): refused states are forgotten, and each object the run
// got a state for keeps its last one.
export function rememberRun(memory: StateMemory, job: number, run: RunMemory): void {
    forgetStates(memory, job, run.previous.filter((_, object) => run.refused[object]));
    run.last.forEach((last, object) => {
        const next = run.next[object];
        if (!last || !next) return;
        keepState(memory, job, { previous: run.previous[object] ?? null, next }, {
            state: last.state, frame: last.frame, direction: run.direction,
        });
    });
}
