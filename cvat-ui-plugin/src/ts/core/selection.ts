// Which objects the action takes: polygons and masks on the current frame, and polygon tracks whose shape
// there is visible (CVAT has no mask tracks).

import {
    CollectionRecord, POLYGON, TrackRecord, emptyCollection, isTrackable,
} from './records';

function visibleOn(track: TrackRecord, frame: number): boolean {
    let latest: TrackRecord['shapes'][number] | null = null;
    for (const shape of track.shapes) {
        if (shape.frame <= frame && (latest === null || shape.frame > latest.frame)) latest = shape;
    }
    return latest !== null && !latest.outside;
}

export function trackableObjects(collection: CollectionRecord, frame: number): CollectionRecord {
    return {
        ...emptyCollection(),
        shapes: collection.shapes.filter((shape) => shape.frame === frame && isTrackable(shape.type)),
        tracks: collection.tracks.filter((track) => track.shapes.length > 0 &&
            track.shapes[0].type === POLYGON && visibleOn(track, frame)),
    };
}

// For an object's menu (Ctrl+E): the object as cvat-core's ObjectState describes it on the current frame.
export function isTrackableObject(object: { objectType?: unknown; shapeType?: unknown; outside?: unknown }): boolean {
    if (object.outside === true) return false;
    if (object.objectType === 'shape') return isTrackable(object.shapeType);
    return object.objectType === 'track' && object.shapeType === POLYGON;
}
