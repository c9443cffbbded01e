"""The cvat-sdk tracking function, driven with cvat_sdk.auto_annotation types as cvat-cli's agent does:
preprocess each image once, init a state per shape, track every state on each following image, and
check that each answer is a TrackableShape of the original type (or None)."""

from __future__ import annotations

import io

import pytest
from cvat_sdk import auto_annotation as cvataa
from PIL import Image

import cvat_sdk_function
from config import ConfigError, TrackerConfig
from model_handler import Sam2Tracker
from tests.support.cvat import function_env


class ShapeContext(cvataa.TrackingFunctionShapeContext):
    def __init__(self, original_shape_type: str):
        self._type = original_shape_type

    @property
    def original_shape_type(self) -> str:
        return self._type


class Context(cvataa.TrackingFunctionContext):
    pass


@pytest.fixture(scope="module")
def function(checkpoint):
    env = function_env(checkpoint)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAM2_MODEL_OVERRIDES", env["SAM2_MODEL_OVERRIDES"])
        return cvat_sdk_function.create(checkpoint=str(checkpoint), device="cpu", precision="bf16")


def test_spec_is_a_tracking_spec_for_our_shape_types(function):
    assert isinstance(function.spec, cvataa.TrackingFunctionSpec)
    assert function.spec.supported_shape_types == {"mask", "polygon", "rectangle"}


def test_agent_style_session_equals_the_nuclio_function(function, images, start_shapes, expected):
    shapes = [cvataa.TrackableShape(type=s["type"], points=s["points"]) for s in start_shapes]
    first = function.preprocess_image(Context(), Image.open(io.BytesIO(images[0])))
    states = [function.init_tracking_state(ShapeContext(s.type), first, s) for s in shapes]
    for index in range(1, 4):
        pp_image = function.preprocess_image(Context(), Image.open(io.BytesIO(images[index])))
        answers = [
            function.track(ShapeContext(shape.type), pp_image, state)
            for shape, state in zip(shapes, states, strict=True)
        ]
        for shape, answer in zip(shapes, answers, strict=True):
            assert isinstance(answer, cvataa.TrackableShape)
            assert answer.type == shape.type
        assert [a.points for a in answers] == list(expected[index - 1])
        assert all(state.state.step == index for state in states)


def test_rectangle_and_lost_object(function, images, absent_checkpoint):
    pp_image = function.preprocess_image(Context(), Image.open(io.BytesIO(images[0])))
    rectangle = cvataa.TrackableShape(type="rectangle", points=[40, 30, 120, 110])
    state = function.init_tracking_state(ShapeContext("rectangle"), pp_image, rectangle)
    answer = function.track(
        ShapeContext("rectangle"),
        function.preprocess_image(Context(), Image.open(io.BytesIO(images[1]))),
        state,
    )
    assert answer.type == "rectangle" and len(answer.points) == 4

    lost = cvat_sdk_function.Sam2TrackingFunction(
        Sam2Tracker.from_config(TrackerConfig.from_env(function_env(absent_checkpoint)))
    )
    polygon = cvataa.TrackableShape(type="polygon", points=[40, 30, 120, 30, 120, 110, 40, 110])
    frame0 = lost.preprocess_image(Context(), Image.open(io.BytesIO(images[0])))
    state = lost.init_tracking_state(ShapeContext("polygon"), frame0, polygon)
    frame1 = lost.preprocess_image(Context(), Image.open(io.BytesIO(images[1])))
    assert lost.track(ShapeContext("polygon"), frame1, state) is None
    assert state.state.step == 1


def test_bad_parameters_fail_clearly(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="SAM2_PRECISION"):
        cvat_sdk_function.create(checkpoint=str(checkpoint), precision="fp8")
    with pytest.raises(ConfigError, match="SAM2_CHECKPOINT"):
        cvat_sdk_function.create(checkpoint=str(tmp_path / "missing.pt"))
