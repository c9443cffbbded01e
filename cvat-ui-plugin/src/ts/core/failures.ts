// A failed tracker call, in words a user can act on.
//
// CVAT passes on only the function's HTTP status: its lambda view answers `str(requests.HTTPError)`, e.g.
// "413 Client Error: Request Entity Too Large for url: http://...", with that status, and cvat-core rejects
// with a ServerError carrying it as `code` (0 when no answer came at all). CVAT's own refusals (a state it
// cannot verify, a frame outside the job) come as other messages with their status.

export interface Failure {
    status: number | null; // null: not an HTTP failure (e.g. an answer this plugin could not read)
    reason: string; // what happened, lower-case start, no final period
    advice: string; // what to do, one or two sentences
}

interface ErrorLike {
    code?: unknown;
    message?: unknown;
}

const FUNCTION_STATUS = /^(\d{3}) (?:Client|Server) Error\b/;

function messageOf(error: unknown): string {
    if (error && typeof (error as ErrorLike).message === 'string') {
        return (error as ErrorLike).message as string;
    }
    return String(error);
}

export function statusOf(error: unknown): number | null {
    const { code } = (error ?? {}) as ErrorLike;
    if (typeof code === 'number' && Number.isInteger(code)) {
        return code;
    }
    const match = FUNCTION_STATUS.exec(messageOf(error).trim());
    return match ? Number(match[1]) : null;
}

// The status came from the function itself (forwarded by CVAT), not from CVAT or a proxy in front of it.
function fromFunction(message: string): boolean {
    return FUNCTION_STATUS.test(message.trim());
}

function firstLine(message: string): string {
    const line = message.trim().split('\n')[0].trim();
    return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

export function describeFailure(error: unknown, resumeFrame: number): Failure {
    const message = messageOf(error);
    const status = statusOf(error);
    const again = `run the action again from frame ${resumeFrame}`;
    const Again = `Run the action again from frame ${resumeFrame}`;
    const failure = (reason: string, advice: string): Failure => ({ status, reason, advice });

    if (status === 0 || (status === null && /network error/i.test(message))) {
        return failure('the connection to CVAT was lost', `Check the network, then ${again}.`);
    }
    if (status === null) {
        return failure(firstLine(message) || 'an unexpected error', `${Again}.`);
    }
    if (status === 400) {
        if (!fromFunction(message)) {
            return /tracker state/i.test(message) ?
                failure(
                    `CVAT refused the tracking state (${firstLine(message)})`,
                    `States expire after 8 hours: ${again}.`,
                ) :
                failure(`CVAT refused the call: ${firstLine(message)}`, `${Again}.`);
        }
        return failure(
            'the tracker found the request unusable (400)',
            `Its log line says why; usually it is enough to ${again}. ` +
            'A state from before the tracker was redeployed with another model is refused too.',
        );
    }
    if (status === 401) {
        return failure('your CVAT session has expired (401)', `Log in again, then ${again}.`);
    }
    if (status === 403) {
        return failure(
            'CVAT does not allow you to use this tracker on this task (403)',
            'Ask the task\'s owner or an administrator for access.',
        );
    }
    if (status === 404) {
        if (/\/api\/functions\//.test(message)) {
            return failure(
                'the tracker function is no longer deployed (404)',
                `Ask an administrator to deploy it again, then ${again}.`,
            );
        }
        return failure(
            'the tracker no longer has this tracking session (404): sessions expire after 8 hours ' +
            'unused, or the tracker\'s state store lost them',
            `${Again}.`,
        );
    }
    if (status === 413) {
        return failure(
            'the tracker cannot track this many objects in one call within CVAT\'s deadline (413)',
            `Track fewer objects at once (select fewer, or narrow the annotation filter), then ${again}. ` +
            'An administrator can raise the deadlines (the tracker\'s README, "Sizing").',
        );
    }
    if (status === 500) {
        return failure(
            'the tracker failed with an internal error (500)',
            `Its log has the details; ${again}, and report it if it happens again.`,
        );
    }
    if (status === 502) {
        return failure(
            'CVAT got no valid answer from the tracker function (502)',
            `Check that the function is running, then ${again}.`,
        );
    }
    if (status === 503) {
        if (fromFunction(message)) {
            return failure(
                'the tracker\'s state store (Redis or Kvrocks) is unreachable, refusing its password, or full (503)',
                `Once an administrator has fixed the store (the tracker's log names it), ${again}; ` +
                'the tracker needs no restart.',
            );
        }
        return failure(
            'CVAT could not reach the tracker function (503)',
            `Check that the function is deployed and running, then ${again}.`,
        );
    }
    if (status === 504) {
        return failure(
            'CVAT stopped waiting for the tracker (504): the call took longer than CVAT allows ' +
            '(CVAT_NUCLIO_DEFAULT_TIMEOUT, 120 s by default)',
            `Track fewer objects at once, then ${again}. An administrator can lower the tracker's ` +
            'SAM2_CALL_BUDGET_S so that such calls are refused at once instead.',
        );
    }
    const detail = firstLine(message);
    const reason = status >= 500 ?
        `the tracker call failed (${status}): ${detail}` :
        `CVAT refused the call (${status}): ${detail}`;
    return failure(reason, `${Again}.`);
}
