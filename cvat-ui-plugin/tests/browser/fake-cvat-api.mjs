// The few CVAT API answers cvat-core needs to run the action on a job in the built UI, without CVAT: the
// job's annotations and frame meta, the functions list, and a tracker behind /api/lambda/functions/<id>
// that moves every object 5 px right per frame (either way: by the distance from its start frame). Errors come back as CVAT's lambda view sends them: the
// status, and str(HTTPError) as a JSON string. A first call may carry, beside the shapes, states of an earlier run
// (a correction): the fake answers it like a start (the shape as sent, a new state), or, with `refuseStates`, as
// CVAT answers a state whose signature expired: 400 ["Invalid or expired tracker state"]. Its states are JSON:
// the start shape and frame, the frame answered, and for a correction the frame of the state it continued.

export const JOB = {
    id: 1,
    task_id: 7,
    start_frame: 0,
    stop_frame: 19,
    frame_count: 20,
    type: 'annotation',
    mode: 'annotation',
    stage: 'annotation',
    state: 'new',
    dimension: '2d',
    data_compressed_chunk_type: 'imageset',
    data_chunk_size: 10,
    labels: [{
        id: 1,
        name: 'car',
        color: '#ff0000',
        type: 'any',
        sublabels: [],
        attributes: [
            {
                id: 20, name: 'kind', mutable: false, input_type: 'select', default_value: 'sedan', values: ['sedan', 'truck'],
            },
            {
                id: 21, name: 'moving', mutable: true, input_type: 'checkbox', default_value: 'false', values: ['false'],
            },
        ],
    }],
};

export const DELETED_FRAME = 5;
export const POLYGON = [100, 100, 140, 100, 140, 130, 100, 130];
// a 10x10 mask at (200, 200): one background run of 0, 100 foreground pixels, then its box
export const MASK = [0, 100, 200, 200, 209, 209];

const base = {
    frame: 0, group: 2, source: 'manual', occluded: false, outside: false, rotation: 0, z_order: 1, elements: [],
    label_id: 1,
};
export const INITIAL = {
    version: 0,
    tags: [],
    tracks: [],
    shapes: [
        {
            ...base, id: 101, type: 'polygon', points: POLYGON, attributes: [{ spec_id: 20, value: 'truck' }, { spec_id: 21, value: 'true' }],
        },
        {
            ...base, id: 102, type: 'mask', points: MASK, attributes: [{ spec_id: 20, value: 'sedan' }, { spec_id: 21, value: 'false' }],
        },
    ],
};

const META = {
    chunk_size: 10,
    chapters: null,
    deleted_frames: [DELETED_FRAME],
    included_frames: null,
    frame_filter: '',
    chunks_updated_date: '2024-01-01T00:00:00Z',
    frames: [{ width: 640, height: 480, name: 'frame.png', related_files: 0 }],
    image_quality: 70,
    size: 20,
    start_frame: 0,
    stop_frame: 19,
    storage: 'local',
    cloud_storage_id: null,
};

export const FUNCTION = {
    id: 'pth-facebookresearch-sam2-tracker',
    kind: 'tracker',
    name: 'Segment Anything 2: Tracker',
    description: 'SAM 2.1 video tracker',
    labels_v2: [],
    version: 1,
    supported_shape_types: ['mask', 'polygon', 'rectangle'],
};

function moved(shape, dx) {
    if (shape.type === 'polygon') {
        return { type: 'polygon', points: shape.points.map((value, i) => (i % 2 === 0 ? value + dx : value)) };
    }
    const points = [...shape.points];
    const n = points.length;
    points[n - 4] += dx;
    points[n - 2] += dx;
    return { type: 'mask', points };
}

// The leftmost x of a polygon or of a mask's box
function leftEdge(shape) {
    return shape.type === 'polygon' ? Math.min(...shape.points.filter((_, i) => i % 2 === 0)) : shape.points.at(-4);
}

// scenario: { functions, failAt: { frame, status, text }, absent: { [frame]: [objectIndex] }, delayMs,
// exitAt: x (an object whose left edge has moved past x has left the frame: absent), refuseStates }
export function fakeCvatApi(scenario) {
    const calls = [];
    const api = async (request, body, url) => {
        const { pathname } = url;
        if (pathname === '/api/lambda/functions') {
            return { status: 200, body: scenario.functions ?? [] };
        }
        if (pathname.startsWith('/api/lambda/functions/') && request.method === 'POST') {
            calls.push(body);
            if (scenario.delayMs) await new Promise((resolve) => { setTimeout(resolve, scenario.delayMs); });
            const { failAt } = scenario;
            if (failAt && failAt.frame === body.frame && (failAt.type ?? body.type) === body.type) {
                return { status: failAt.status, body: JSON.stringify(failAt.text) };
            }
            if (body.type === 'init_tracking') {
                const kept = body.states ?? [];
                if (scenario.refuseStates && kept.some((state) => state !== null)) {
                    return { status: 400, body: ['Invalid or expired tracker state'] };
                }
                const shapes = body.shapes.map(({ type, points }) => ({ type, points }));
                return {
                    status: 200,
                    body: {
                        shapes,
                        states: shapes.map((shape, i) => JSON.stringify({
                            shape,
                            frame: body.frame,
                            answered: body.frame,
                            continued: kept[i] ? JSON.parse(kept[i]).answered : null, // the kept state's frame
                        })),
                    },
                };
            }
            const states = body.states.map((state) => JSON.parse(state));
            const absent = scenario.absent?.[body.frame] ?? [];
            return {
                status: 200,
                body: {
                    shapes: states.map((state, i) => {
                        const shape = moved(state.shape, 5 * (body.frame - state.frame));
                        const gone = scenario.exitAt !== undefined && leftEdge(shape) >= scenario.exitAt;
                        return absent.includes(i) || gone ? null : shape;
                    }),
                    states: states.map((state) => JSON.stringify({ ...state, answered: body.frame })),
                },
            };
        }
        if (pathname === `/api/jobs/${JOB.id}/annotations`) return { status: 200, body: INITIAL };
        if (pathname === `/api/jobs/${JOB.id}/data/meta`) return { status: 200, body: META };
        if (pathname === '/api/events') return { status: 201, body: {} };
        return null;
    };
    return { api, calls };
}
