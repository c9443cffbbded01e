// Which deployed function tracks: a tracker that supports polygons or masks, this project's preferred.

import { MASK, POLYGON, TrackableType } from './records';

export const PREFERRED_FUNCTION_ID = 'pth-facebookresearch-sam2-tracker';

export interface FunctionInfo {
    id: string | number;
    name: string;
    kind: string;
    supportedShapeTypes?: readonly string[];
}

export function trackableTypes(fn: FunctionInfo): TrackableType[] {
    const supported = fn.supportedShapeTypes ?? [];
    return [POLYGON, MASK].filter((type) => supported.includes(type)) as TrackableType[];
}

export function chooseTracker<T extends FunctionInfo>(functions: readonly T[]): T | null {
    const trackers = functions.filter((fn) => fn.kind === 'tracker' && trackableTypes(fn).length > 0);
    const rank = (fn: T): number => {
        const id = String(fn.id);
        if (id === PREFERRED_FUNCTION_ID) return 0;
        if (id.startsWith(PREFERRED_FUNCTION_ID)) return 1; // another copy of it (deploy_*.sh with a path)
        return 2;
    };
    return [...trackers].sort((a, b) => rank(a) - rank(b))[0] ?? null;
}

export const NO_TRACKER =
    'No tracker that follows polygons or masks is deployed in this CVAT. Ask an administrator to deploy ' +
    `the SAM2 tracker function (${PREFERRED_FUNCTION_ID}, with its deploy_cpu.sh or deploy_gpu.sh), ` +
    'then run the action again; "Models" in CVAT\'s top menu lists what is deployed.';

export function unsupportedSentence(fn: FunctionInfo, skipped: Record<string, number>): string | null {
    const parts = Object.entries(skipped).filter(([, count]) => count > 0)
        .map(([type, count]) => `${count} ${type}${count > 1 ? 's' : ''}`);
    if (!parts.length) return null;
    return `${parts.join(' and ')} left as they are: "${fn.name}" tracks only ${trackableTypes(fn).join(' and ')}s.`;
}
