// Entry of the CVAT UI plugin (CLIENT_PLUGINS=<this folder> when building CVAT's UI): registers the
// "Segment Anything 2: Tracker" annotation action once CVAT's UI announces that plugins may register.

import type { ComponentBuilder, PluginEntryPoint } from 'components/plugins-entrypoint';

import { Sam2TrackerAction } from './action';
import { registerReporting } from './reporting';

const PLUGIN_NAME = 'Segment Anything 2: Tracker';

const builder: ComponentBuilder = ({
    core, store, dispatch, actionCreators,
}) => {
    const currentFrame = (): number | null => {
        const { job, player } = store.getState().annotation;
        return job.instance ? player.frame.number : null;
    };
    const action = new Sam2TrackerAction(core, currentFrame);
    core.actions.register(action).catch((error: Error) => {
        console.error(`${PLUGIN_NAME}: the action could not be registered: ${error.message}`);
    });
    registerReporting(core, action, () => {
        const frame = currentFrame();
        if (frame !== null) {
            // the thunk CVAT's own components dispatch; forceUpdate reloads the frame's objects
            (dispatch as unknown as (thunk: unknown) => void)(
                actionCreators.changeFrameAsync(frame, false, 1, true),
            );
        }
    });

    return {
        name: PLUGIN_NAME,
        destructor: () => {
            core.actions.unregister(action).catch(() => undefined);
        },
    };
};

function register(): void {
    const { cvatUI } = window as unknown as { cvatUI?: { registerComponent: PluginEntryPoint } };
    cvatUI?.registerComponent(builder);
}

window.addEventListener('plugins.ready', register, { once: true });
