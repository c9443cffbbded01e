"""The tracker as a cvat-sdk auto-annotation tracking function, for CVAT Online and Enterprise agents.

    cvat-cli function create-native "SAM2 tracker" --function-file cvat_sdk_function.py \\
        -p checkpoint=str:checkpoints/sam2.1_hiera_tiny.pt
    cvat-cli function run-agent <function id> --function-file cvat_sdk_function.py \\
        -p checkpoint=str:checkpoints/sam2.1_hiera_tiny.pt [-p device=str:cuda]

(or `python -m cvat_cli ... --function-module cvat_sdk_function` from the repository root).

It implements cvat-sdk's `TrackingFunction` protocol on the same call path as the Nuclio function
(tracking_call.py): the image is encoded once per frame (`preprocess_image`) and shared by every
object. The agent keeps a token per object; the state it names (a bounded SAM2 memory) lives in this
function's in-memory store, as the same bytes Redis holds for the Nuclio function.
"""

from __future__ import annotations

import os
import sys
import weakref

import PIL.Image
from cvat_sdk import auto_annotation as cvataa

# `cvat-cli ... --function-file` executes this file by path: the console script does not put the current
# folder on sys.path, so the project's modules are found only because the file puts its own folder there.
_PROJECT = os.path.dirname(os.path.abspath(__file__))
if _PROJECT not in sys.path:
    sys.path.insert(0, _PROJECT)

from call_inputs import ObjectInput, StartShape  # noqa: E402
from config import Limits, ShapeConfig, TrackerConfig  # noqa: E402
from images import to_rgb  # noqa: E402
from model_handler import Frame, Sam2Tracker  # noqa: E402
from process_settings import claim_process  # noqa: E402
from shape_codecs import SHAPE_TYPES  # noqa: E402
from state_store import MemoryStateStore  # noqa: E402
from tracking_call import TrackingCall  # noqa: E402


class AgentState:
    """What the agent holds per object: the token of its state in this function's in-memory store,
    which `track` replaces with the next one. When the agent drops it (its tracking request is done),
    the object's stored versions go too.

    A plain class, not a dataclass: cvat-cli runs this file as a module named `__cvat_function__` that is
    not in sys.modules, where `@dataclass` (looking its module up there) fails. The agent keeps it in
    its worker process and never pickles it."""

    __slots__ = ("__weakref__", "token")

    def __init__(self, token: str, store: MemoryStateStore):
        self.token = token
        weakref.finalize(self, store.forget_object, token)


class Sam2TrackingFunction:
    """cvat-sdk's tracking protocol over the call path every front end uses (tracking_call.py): the
    same checks, sentences and answers as the Nuclio handler. Bad input raises `CallRefused`, whose
    message is the handler's."""

    spec = cvataa.TrackingFunctionSpec(supported_shape_types=list(SHAPE_TYPES))

    def __init__(self, tracker: Sam2Tracker, shapes: ShapeConfig | None = None, limits: Limits | None = None):
        self.store = MemoryStateStore()
        tolerance = (shapes or ShapeConfig()).polygon_tolerance
        self.call = TrackingCall(tracker, self.store, tolerance, limits)

    @property
    def tracker(self) -> Sam2Tracker:
        return self.call.tracker

    def preprocess_image(self, context: cvataa.TrackingFunctionContext, image: PIL.Image.Image) -> Frame:
        return self.tracker.encode(to_rgb(image))

    def init_tracking_state(
        self, context: cvataa.TrackingFunctionShapeContext, pp_image: Frame, shape: cvataa.TrackableShape
    ) -> AgentState:
        start = StartShape(shape.type, list(shape.points), sent=shape)
        answer = self.call.run_on_frame(pp_image, [ObjectInput(shape=start)])
        return AgentState(answer.states[0], self.store)

    def track(
        self, context: cvataa.TrackingFunctionShapeContext, pp_image: Frame, state: AgentState
    ) -> cvataa.TrackableShape | None:
        answer = self.call.run_on_frame(pp_image, [ObjectInput(token=state.token)])
        state.token = answer.states[0]
        shape = answer.shapes[0]
        return None if shape is None else cvataa.TrackableShape(type=shape["type"], points=shape["points"])


def create(
    checkpoint: str = "",
    config: str = "",
    device: str = "",
    precision: str = "",
    polygon_tolerance: float | str = "",
) -> Sam2TrackingFunction:
    """Build the function. Parameters (cvat-cli ``-p name=type:value``) override the environment
    variables of the same meaning (see the README); empty ones leave them as they are."""
    given = {
        "SAM2_CHECKPOINT": checkpoint,
        "SAM2_CONFIG": config,
        "SAM2_DEVICE": device,
        "SAM2_PRECISION": precision,
        "SAM2_POLYGON_TOLERANCE": polygon_tolerance,
    }
    env = {**os.environ, **{name: str(value) for name, value in given.items() if value != ""}}
    tracker_config = TrackerConfig.from_env(env)
    process = claim_process(tracker_config)
    tracker = Sam2Tracker.from_config(tracker_config, process.device)
    return Sam2TrackingFunction(tracker, ShapeConfig.from_env(env), Limits.from_env(env))
