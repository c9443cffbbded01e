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
from tests.support.cvat import call_function, function_env, function_instance, start_body
from tests.support.models import fastest_precision
from tracking_call import CallRefused


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
        return cvat_sdk_function.create(
            checkpoint=str(checkpoint), device="cpu", precision=fastest_precision()
        )


@pytest.fixture(scope="module")
def handler(checkpoint):
    """The Nuclio function on the same model, for comparison."""
    return function_instance(checkpoint)


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
        stored = function.store.load([state.token for state in states])
        assert [s.state.step for s in stored] == [index] * len(states)


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
    assert lost.store.load([state.token])[0].state.step == 1


def test_bad_parameters_fail_clearly(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="SAM2_PRECISION"):
        cvat_sdk_function.create(checkpoint=str(checkpoint), precision="fp8")
    with pytest.raises(ConfigError, match="SAM2_CHECKPOINT"):
        cvat_sdk_function.create(checkpoint=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize(
    "shape",
    [
        cvataa.TrackableShape(type="polygon", points=[10, 10, 20, 20]),
        cvataa.TrackableShape(type="rectangle", points=[10, 10, 20]),
        cvataa.TrackableShape(type="points", points=[10, 10]),
    ],
    ids=["two-vertex-polygon", "three-number-rectangle", "points"],
)
def test_bad_shapes_are_refused_with_the_handlers_sentence(function, handler, images, shape):
    pp_image = function.preprocess_image(Context(), Image.open(io.BytesIO(images[0])))
    with pytest.raises(CallRefused) as refused:
        function.init_tracking_state(ShapeContext(shape.type), pp_image, shape)
    status, answer = call_function(
        handler, start_body(images[0], [{"type": shape.type, "points": shape.points}])
    )
    assert (refused.value.status, refused.value.message) == (status, answer["error"]) and status == 400


def test_a_dropped_state_leaves_the_store(function, images, start_shapes):
    pp_image = function.preprocess_image(Context(), Image.open(io.BytesIO(images[0])))
    before = len(function.store.bytes)
    shape = cvataa.TrackableShape(type="mask", points=start_shapes[0]["points"])
    state = function.init_tracking_state(ShapeContext("mask"), pp_image, shape)
    function.track(ShapeContext("mask"), pp_image, state)
    assert len(function.store.bytes) > before
    del state
    assert len(function.store.bytes) == before
