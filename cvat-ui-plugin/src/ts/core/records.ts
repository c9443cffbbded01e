// Plain annotation records, shaped like cvat-core's serialized collection (SerializedShape, SerializedTrack)
// but with plain strings where cvat-core has enums, so that the pure modules under core/ import nothing from
// CVAT and run under node for the unit tests. action.ts converts at the boundary.

export const POLYGON = 'polygon';
export const MASK = 'mask';
export type TrackableType = typeof POLYGON | typeof MASK;

export function isTrackable(type: unknown): type is TrackableType {
    return type === POLYGON || type === MASK;
}

export interface AttributeValue {
    spec_id: number;
    value: string;
}

export interface ShapeRecord {
    id?: number;
    clientID?: number;
    label_id: number;
    group: number;
    frame: number;
    source: string;
    score?: number;
    attributes: AttributeValue[];
    elements: unknown[];
    occluded: boolean;
    outside: boolean;
    points?: number[];
    rotation: number;
    z_order: number;
    type: string;
}

export interface TrackShapeRecord {
    id?: number;
    frame: number;
    type: string;
    points?: number[];
    occluded: boolean;
    outside: boolean;
    rotation: number;
    z_order: number;
    attributes: AttributeValue[];
}

export interface TrackRecord {
    id?: number;
    clientID?: number;
    label_id: number;
    group: number;
    frame: number;
    source: string;
    attributes: AttributeValue[];
    shapes: TrackShapeRecord[];
    elements: unknown[];
}

export interface CollectionRecord {
    shapes: ShapeRecord[];
    tracks: TrackRecord[];
    tags: unknown[];
}

export function emptyCollection(): CollectionRecord {
    return { shapes: [], tracks: [], tags: [] };
}

// An object the action tracks, with what it looks like on the frame tracking starts from.
export type Seed = ShapeSeed | TrackSeed;

export interface ShapeSeed {
    kind: 'shape';
    shape: ShapeRecord;
    type: TrackableType;
    points: number[];
}

export interface TrackSeed {
    kind: 'track';
    track: TrackRecord;
    type: typeof POLYGON; // CVAT has no mask tracks
    points: number[]; // the track's (maybe interpolated) polygon on the start frame
    occluded: boolean;
    zOrder: number;
    // mutable attribute values on the start frame, for a keyframe added there
    attributes: AttributeValue[];
}

// What the tracker answered for one object on one frame: its points, or null where it says the object is
// absent.
export type FrameAnswer = number[] | null;
