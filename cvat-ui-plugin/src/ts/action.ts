// "Segment Anything 2: Tracker" as a cvat-core annotation action. cvat-core calls init, applyFilter, run
// and destroy, then commits what run returns (one undo step). A run that stops early still returns what it
// tracked, so a cancel, a failed call or a lost connection keeps those frames; the notice saying where and
// why is shown after the commit (reporting.ts). Each object's last state is kept in the page's memory
// (core/memory.ts), and the next run from the same object sends it ("Remember earlier runs").

import {
    ActionParameterType, BaseCollectionAction, Job, MLModel, ObjectState, Task,
} from 'cvat-core-wrapper';
import type { CVATCore } from 'cvat-core-wrapper';

import {
    NO_TRACKER, chooseTracker, trackableTypes, unsupportedSentence,
} from './core/function-choice';
import {
    JobBounds, checkTargetFrame, defaultTargetFrame, directionOf, frameAfter, framesToward, planFrames,
    targetFrameRange,
} from './core/frames';
import {
    lookupStates, pageMemory, rememberRun, seedIdentity,
} from './core/memory';
import { Outcome, outcomeOf, progressText } from './core/messages';
import {
    CollectionRecord, POLYGON, Seed, isTrackable,
} from './core/records';
import { buildChanges } from './core/results';
import { isTrackableObject, trackableObjects } from './core/selection';
import { MAX_STOP_AFTER, checkStopAfter, runTracking } from './core/tracking-loop';

export const ACTION_NAME = 'Segment Anything 2: Tracker';
const TARGET_FRAME = 'Target frame';
const CONVERT = 'Convert polygon shapes to tracks';
const STOP_AFTER = 'Stop an object after N frames absent';
const REMEMBER = 'Remember earlier runs';

type RunInput = Parameters<BaseCollectionAction['run']>[0];
type Collection = RunInput['collection'];
type RunOutput = Awaited<ReturnType<BaseCollectionAction['run']>>;

function noChanges(): RunOutput {
    return {
        created: { shapes: [], tags: [], tracks: [] },
        deleted: { shapes: [], tags: [], tracks: [] },
    };
}

// cvat-core's records have enums where ours have strings: the same JSON
const asRecords = (collection: Collection): CollectionRecord => collection as unknown as CollectionRecord;
const asCollection = (records: CollectionRecord): Collection => records as unknown as Collection;

async function deletedFrames(job: Job, frames: readonly number[]): Promise<Set<number>> {
    const deleted = new Set<number>();
    for (const frame of frames) {
        if ((await job.frames.get(frame)).deleted) deleted.add(frame);
    }
    return deleted;
}

const boundsOf = (job: Job): JobBounds => ({ start: job.startFrame, stop: job.stopFrame });

// "“car” polygon", for the notice's sentences about objects that ended
function seedName(seed: Seed, labels: Job['labels']): string {
    const labelId = seed.kind === 'shape' ? seed.shape.label_id : seed.track.label_id;
    const label = labels.find((candidate) => candidate.id === labelId);
    const kind = seed.kind === 'track' ? 'polygon track' : seed.type;
    return label ? `"${label.name}" ${kind}` : kind;
}

function seedsOf(
    collection: CollectionRecord,
    states: readonly ObjectState[],
    supported: readonly string[],
    skipped: Record<string, number>,
): Seed[] {
    const seeds: Seed[] = [];
    for (const shape of collection.shapes) {
        if (!isTrackable(shape.type) || !supported.includes(shape.type)) {
            skipped[shape.type] = (skipped[shape.type] ?? 0) + 1;
        } else {
            seeds.push({
                kind: 'shape', shape, type: shape.type, points: [...(shape.points ?? [])],
            });
        }
    }
    for (const track of collection.tracks) {
        // a track's shape on this frame may be interpolated: CVAT computes it for us
        const state = states.find((objectState) => objectState.clientID === track.clientID);
        if (!state || state.outside || !state.points) continue;
        if (!supported.includes(POLYGON)) {
            skipped[POLYGON] = (skipped[POLYGON] ?? 0) + 1;
            continue;
        }
        seeds.push({
            kind: 'track',
            track,
            type: POLYGON,
            points: [...state.points],
            occluded: Boolean(state.occluded),
            zOrder: state.zOrder ?? 0,
            attributes: Object.entries(state.attributes ?? {})
                .map(([specId, value]) => ({ spec_id: +specId, value: String(value) })),
        });
    }
    return seeds;
}

export class Sam2TrackerAction extends BaseCollectionAction {
    readonly #core: CVATCore;
    readonly #currentFrame: () => number | null;
    #job: Job | null = null;
    #model: MLModel | null = null;
    #target: unknown = null;
    #convert = false;
    #stopAfter = 0;
    #remember = true;
    #outcome: Outcome | null = null;

    // currentFrame: the frame open in the annotation view, for the target frame's default and range
    public constructor(core: CVATCore, currentFrame: () => number | null) {
        super();
        this.#core = core;
        this.#currentFrame = currentFrame;
    }

    public async init(instance: Job | Task, parameters: Record<string, string | number>): Promise<void> {
        if (!(instance instanceof Job)) {
            throw new Error(`${ACTION_NAME} runs in a job: open the job and run it there.`);
        }
        this.#job = instance;
        this.#target = parameters[TARGET_FRAME];
        this.#convert = String(parameters[CONVERT]) === 'true';
        this.#stopAfter = checkStopAfter(parameters[STOP_AFTER], STOP_AFTER);
        // on unless turned off: a script calling cvat-core may leave it out
        this.#remember = String(parameters[REMEMBER]) !== 'false';
        this.#outcome = null;

        let models: MLModel[];
        try {
            ({ models } = await this.#core.lambda.list());
        } catch (error) {
            throw new Error(`Could not ask CVAT which functions are deployed: ${(error as Error).message}`);
        }
        this.#model = chooseTracker(models);
        if (!this.#model) throw new Error(NO_TRACKER);
    }

    public async destroy(): Promise<void> {
        this.#job = null;
        this.#model = null;
    }

    public async run(input: RunInput): Promise<RunOutput> {
        const job = this.#job;
        const model = this.#model;
        if (!job || !model) return noChanges();
        const startFrame = input.frameData.number;
        // CVAT's dialog always passes the parameter; a script calling cvat-core may leave it out (NaN)
        const requested = this.#target === undefined || Number.isNaN(this.#target) ?
            defaultTargetFrame(startFrame, boundsOf(job)) : this.#target;
        const target = checkTargetFrame(requested, startFrame, boundsOf(job));

        const skipped: Record<string, number> = {};
        const states = await job.annotations.get(startFrame, false, []);
        const seeds = seedsOf(asRecords(input.collection), states, trackableTypes(model), skipped);
        const notes = [unsupportedSentence(model, skipped)].filter((note): note is string => note !== null);
        if (!seeds.length) {
            throw new Error(notes[0] ?? `No polygon or mask on frame ${startFrame} to track ` +
                '(only visible objects that pass the annotation filter are tracked).');
        }

        const range = framesToward(startFrame, target);
        const deleted = await deletedFrames(job, range);
        const jobFrames = await job.frames.frameNumbers();
        const plan = planFrames(jobFrames, startFrame, target, (f) => deleted.has(f));
        if (!plan.length) {
            throw new Error(`Frames ${range[0]}–${target} are all deleted or outside the job: ` +
                'choose another target frame.');
        }

        // nothing changes the job during the run: cvat-core commits what it returns
        const all = asRecords(await job.annotations.export() as unknown as Collection);
        const previous = seeds.map((seed) => seedIdentity(seed, all.shapes));
        const kept = this.#remember ?
            lookupStates(pageMemory, job.id, previous).map((entry) => entry?.state ?? null) :
            seeds.map(() => null);

        const result = await runTracking({
            job: job.id,
            startFrame,
            plan,
            shapes: seeds.map(({ type, points }) => ({ type, points })),
            keptStates: kept,
            call: (body) => this.#core.lambda.call(job.taskId as number, model, body),
            cancelled: input.cancelled,
            stopAfterAbsent: this.#stopAfter,
            onProgress: (progress) => {
                const { message, percent } = progressText(progress, seeds.length, startFrame);
                input.onProgress(message, percent);
            },
        });

        const changes = buildChanges({
            seeds,
            trackedFrames: result.trackedFrames,
            answers: result.answers,
            ended: new Map(result.ended.map(({ object, frame }) => [object, frame])),
            startFrame,
            convertPolygons: this.#convert,
            frameAfterStart: frameAfter(jobFrames, startFrame, boundsOf(job)),
            allShapes: all.shapes,
            mutableSpecIds: new Set(job.labels.flatMap((label) => label.attributes)
                .filter((attribute) => attribute.mutable && typeof attribute.id === 'number')
                .map((attribute) => attribute.id as number)),
        });
        rememberRun(pageMemory, job.id, {
            direction: directionOf(startFrame, target),
            previous,
            next: changes.identities,
            last: result.lastStates,
            refused: kept.map((state) => result.memory.refused && state !== null),
        });
        this.#outcome = outcomeOf({
            objects: seeds.length,
            startFrame,
            planned: plan.length,
            result,
            replaced: changes.replaced,
            notes,
            objectNames: seeds.map((seed) => seedName(seed, job.labels)),
        });
        return { created: asCollection(changes.created), deleted: asCollection(changes.deleted) };
    }

    // The notice of the last run, once: reporting.ts shows it after cvat-core has committed the changes.
    public takeOutcome(): Outcome | null {
        const outcome = this.#outcome;
        this.#outcome = null;
        return outcome;
    }

    public applyFilter(input: Parameters<BaseCollectionAction['applyFilter']>[0]): Collection {
        return asCollection(trackableObjects(asRecords(input.collection), input.frameData.number));
    }

    public isApplicableForObject(objectState: ObjectState): boolean {
        return isTrackableObject(objectState);
    }

    public get name(): string {
        return ACTION_NAME;
    }

    public get parameters(): BaseCollectionAction['parameters'] {
        return {
            [TARGET_FRAME]: {
                type: ActionParameterType.NUMBER,
                values: ({ instance }) => {
                    const [min, max] = instance instanceof Job ? targetFrameRange(boundsOf(instance)) : [0, 0];
                    return [String(min), String(max), '1'];
                },
                defaultValue: ({ instance }) => {
                    if (!(instance instanceof Job)) return '0';
                    const current = this.#currentFrame() ?? instance.startFrame;
                    return String(defaultTargetFrame(current, boundsOf(instance)));
                },
                tooltip: {
                    type: 'text',
                    content: 'Track from the current frame to this one, frame by frame: a frame after the ' +
                        'current one tracks forward, a frame before it tracks backward (any frame of the job).',
                },
            },
            [CONVERT]: {
                type: ActionParameterType.CHECKBOX,
                values: ['true', 'false'],
                defaultValue: 'false',
                tooltip: {
                    type: 'text',
                    content: 'Polygon shapes become tracks whose keyframes are the tracked frames. ' +
                        'Masks stay shapes: CVAT has no mask tracks.',
                },
            },
            [STOP_AFTER]: {
                type: ActionParameterType.NUMBER,
                values: ['0', String(MAX_STOP_AFTER), '1'],
                defaultValue: '0',
                tooltip: {
                    type: 'text',
                    content: 'An object the tracker finds absent on this many frames in a row ends there: it ' +
                        'is no longer tracked (a track gets outside keyframes up to that frame), and the run ' +
                        'ends early once every object has ended. 0: never.',
                },
            },
            [REMEMBER]: {
                type: ActionParameterType.CHECKBOX,
                values: ['true', 'false'],
                defaultValue: 'true',
                tooltip: {
                    type: 'text',
                    content: 'An object tracked before (since this page was loaded) continues the tracker\'s ' +
                        'memory of it, and its shape on the current frame becomes a new anchor: correct a ' +
                        'shape where tracking drifted, then run from there. Off: every object starts fresh.',
                },
            },
        };
    }
}
