"""The tracker as a cvat-sdk auto-annotation tracking function, for CVAT Online and Enterprise agents.

    cvat-cli function create-native "SAM2 tracker" --function-file cvat_sdk_function.py \\
        -p checkpoint=str:checkpoints/sam2.1_hiera_tiny.pt
    cvat-cli function run-agent <function id> --function-file cvat_sdk_function.py \\
        -p checkpoint=str:checkpoints/sam2.1_hiera_tiny.pt [-p device=str:cuda]

(or `python -m cvat_cli ... --function-module cvat_sdk_function` from the repository root).

It implements cvat-sdk's `TrackingFunction` protocol on the same tracker core as the Nuclio function:
the image is encoded once per frame (`preprocess_image`) and shared by every object. The agent keeps
each object's state in its own memory; here that state is our `ObjectState` (a bounded SAM2 memory).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import PIL.Image
from cvat_sdk import auto_annotation as cvataa

# `cvat-cli ... --function-file` executes this file by path: the console script does not put the current
# folder on sys.path, so the project's modules are found only because the file puts its own folder there.
_PROJECT = os.path.dirname(os.path.abspath(__file__))
if _PROJECT not in sys.path:
    sys.path.insert(0, _PROJECT)

from config import ShapeConfig, TrackerConfig  # noqa: E402
from images import to_rgb  # noqa: E402
from model_handler import Frame, Sam2Tracker  # noqa: E402
from process_settings import claim_process  # noqa: E402
from shape_codecs import SHAPE_TYPES, mask_to_points, shape_to_prompt  # noqa: E402

if TYPE_CHECKING:
    from object_state import ObjectState


class AgentState:
    """What the agent holds per object; `track` replaces `state` with the next version.

    A plain class, not a dataclass: cvat-cli runs this file as a module named `__cvat_function__` that is
    not in sys.modules, where `@dataclass` (looking its module up there) fails. The agent keeps it in
    its worker process and never pickles it."""

    __slots__ = ("shape_type", "state")

    def __init__(self, state: ObjectState, shape_type: str):
        self.state = state
        self.shape_type = shape_type


class Sam2TrackingFunction:
    spec = cvataa.TrackingFunctionSpec(supported_shape_types=list(SHAPE_TYPES))

    def __init__(self, tracker: Sam2Tracker, shapes: ShapeConfig | None = None):
        self.tracker = tracker
        self.shapes = shapes or ShapeConfig()

    def preprocess_image(self, context: cvataa.TrackingFunctionContext, image: PIL.Image.Image) -> Frame:
        return self.tracker.encode(to_rgb(image))

    def init_tracking_state(
        self, context: cvataa.TrackingFunctionShapeContext, pp_image: Frame, shape: cvataa.TrackableShape
    ) -> AgentState:
        prompt = shape_to_prompt(shape.type, shape.points, pp_image.video_size)
        (tracked,) = self.tracker.start(pp_image, [prompt])
        return AgentState(tracked.state, shape.type)

    def track(
        self, context: cvataa.TrackingFunctionShapeContext, pp_image: Frame, state: AgentState
    ) -> cvataa.TrackableShape | None:
        (tracked,) = self.tracker.step(pp_image, [state.state])
        state.state = tracked.state
        points = mask_to_points(tracked.result.mask, state.shape_type, self.shapes.polygon_tolerance)
        return None if points is None else cvataa.TrackableShape(type=state.shape_type, points=points)


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
    return Sam2TrackingFunction(
        Sam2Tracker.from_config(tracker_config, process.device), ShapeConfig.from_env(env)
    )
