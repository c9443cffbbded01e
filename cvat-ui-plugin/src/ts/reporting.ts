// The notice after a run, shown once cvat-core has committed the run's changes: a cvat-core plugin whose
// `leave` hooks follow `actions.run` (Menu → Run actions) and `actions.call` (an object's menu, Ctrl+E).
// A run the user cancelled also refreshes the annotation view, which CVAT's dialog skips after a cancel
// although what was tracked until then is committed.

import notification from '@modules/antd/lib/notification';
import type { CVATCore } from 'cvat-core-wrapper';

import { Outcome } from './core/messages';

export const NOTICE_CLASS = 'cvat-sam2-tracker-notice';

export function showOutcome(outcome: Outcome): void {
    const open = {
        success: notification.success,
        warning: notification.warning,
        error: notification.error,
    }[outcome.level];
    open({
        message: outcome.title,
        description: outcome.description,
        // stopped runs stay until closed: the notice says where to go on from
        duration: outcome.level === 'success' ? 8 : 0,
        className: NOTICE_CLASS,
    });
}

interface Reporter {
    takeOutcome(): Outcome | null;
}

export function registerReporting(
    core: CVATCore,
    action: Reporter,
    refresh: () => void,
): Promise<void> {
    const leave = async (
        _plugin: unknown,
        result: unknown,
        _instance: unknown,
        ranAction: unknown,
    ): Promise<unknown> => {
        if (ranAction === action) {
            const outcome = action.takeOutcome();
            if (outcome) {
                if (outcome.level === 'warning') refresh();
                showOutcome(outcome);
            }
        }
        return result;
    };
    return core.plugins.register({
        name: 'Segment Anything 2: Tracker notices',
        description: 'Says where a tracking run stopped and why, after its frames are saved in the job',
        cvat: {
            actions: {
                run: { leave },
                call: { leave },
            },
        },
    });
}
