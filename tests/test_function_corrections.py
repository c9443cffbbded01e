"""Corrections through the Nuclio handler: a shape beside its object's state, as CVAT's lambda manager
forwards a body with both "shapes" and "states" (each shape object as the client posted it)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from cvat_sdk.masks import encode_mask
from PIL import Image

from anchors import Placement
from config import TrackerConfig
from model_handler import Correction, Sam2Tracker, Start
from object_state import FORWARD
from shape_codecs import Box, mask_to_polygon, mask_to_rectangle, shape_to_prompt
from tests.support.cvat import b64, call_function, continue_body, function_env, function_instance, start_body


def placed(shape, frame: int, direction: str = "forward"):
    return {**shape, "frame": frame, "direction": direction}


def correction_body(image: bytes, shapes: list, states: list[str]) -> dict:
    """A body with both keys filled: CVAT forwards it as sent (its states unsigned)."""
    return {"image": b64(image), "shapes": shapes, "states": states}


@pytest.fixture(scope="module")
def platform(checkpoint):
    return function_instance(checkpoint)


@pytest.fixture(scope="module")
def decoded(images):
    return [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images]


def test_a_shape_beside_its_state_corrects_the_object_and_keeps_its_memory(
    platform, checkpoint, images, decoded, scene, start_shapes, expected
):
    """Object 0 is corrected on frame 3 while object 1 continues: the answers on later frames equal the
    tracker core's Correction, and the object's memory holds both anchors."""
    shapes = [placed(shape, 0) for shape in start_shapes]
    status, body = call_function(platform, start_body(images[0], shapes))
    assert status == 200 and body["shapes"] == shapes
    for index in (1, 2):
        status, body = call_function(platform, continue_body(images[index], body["states"]))
        assert status == 200
    correction = placed({"type": "mask", "points": encode_mask(scene.masks[3][0])}, 3)
    status, body = call_function(platform, correction_body(images[3], [correction, None], body["states"]))
    assert status == 200, body
    assert body["shapes"][0] == correction  # the shape as sent, as on a start
    assert body["shapes"][1]["type"] == "polygon"
    (stored,) = platform.app.store.load(body["states"][:1])
    assert stored.state.anchor_frames == (0, 3)
    answers = []
    for index in (4, 5):
        status, body = call_function(platform, continue_body(images[index], body["states"]))
        assert status == 200
        answers.append(body["shapes"])

    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint)))
    masks = [shape_to_prompt(shape["type"], shape["points"], scene.size) for shape in start_shapes]
    frame = tracker.encode(decoded[0])
    states = [t.state for t in tracker.track(frame, [Start(m, Placement(0, FORWARD)) for m in masks])]
    for index in (1, 2):
        states = [t.state for t in tracker.step(tracker.encode(decoded[index]), states)]
    fix = Correction(states[0], scene.masks[3][0], Placement(3, FORWARD))
    states = [t.state for t in tracker.track(tracker.encode(decoded[3]), [fix, states[1]])]
    for index, answer in zip((4, 5), answers, strict=True):
        tracked = tracker.step(tracker.encode(decoded[index]), states)
        states = [t.state for t in tracked]
        assert answer[0] == {"type": "mask", "points": encode_mask(tracked[0].result.mask)}
        assert answer[1] == {"type": "polygon", "points": mask_to_polygon(tracked[1].result.mask)}
    # the correction changed what SAM2 tracks: without it object 0 comes out otherwise on frame 4
    assert answers[0][0]["points"] != expected[3][0]


def test_a_lost_object_comes_back_with_a_correction(absent_checkpoint, images, scene, start_shapes):
    lost = function_instance(absent_checkpoint)
    shape = placed(start_shapes[0], 0)
    _, body = call_function(lost, start_body(images[0], [shape]))
    status, body = call_function(lost, continue_body(images[1], body["states"]))
    assert status == 200 and body["shapes"] == [None]
    correction = placed({"type": "mask", "points": encode_mask(scene.masks[2][0])}, 2)
    status, body = call_function(lost, correction_body(images[2], [correction], body["states"]))
    assert status == 200 and body["shapes"] == [correction]
    (stored,) = lost.app.store.load(body["states"])
    assert stored.state.anchor_frames == (0, 2) and stored.state.recent_frames == (1,)
    status, body = call_function(lost, continue_body(images[3], body["states"]))
    assert status == 200 and body["shapes"] == [None]  # this model calls every tracked frame absent


def test_rectangle_corrections_typed_and_bare(platform, checkpoint, images, decoded, scene):
    """A rectangle beside its state is SAM2's box prompt on a later frame (the core's Correction with
    a Box); the answers keep the form the correction came in."""
    box, later = box_of(scene.masks[0][0]), box_of(scene.masks[2][0])
    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint)))
    (state,) = [t.state for t in tracker.start(tracker.encode(decoded[0]), [Box(*box)])]
    (state,) = [t.state for t in tracker.step(tracker.encode(decoded[1]), [state])]
    (state,) = [t.state for t in tracker.track(tracker.encode(decoded[2]), [Correction(state, Box(*later))])]
    (tracked,) = tracker.step(tracker.encode(decoded[3]), [state])
    expected = mask_to_rectangle(tracked.result.mask)

    typed = {"type": "rectangle", "points": later}
    for start, correction in (({"type": "rectangle", "points": box}, typed), (box, later)):
        _, body = call_function(platform, start_body(images[0], [start]))
        _, body = call_function(platform, continue_body(images[1], body["states"]))
        status, body = call_function(platform, correction_body(images[2], [correction], body["states"]))
        assert status == 200 and body["shapes"] == [correction]
        status, body = call_function(platform, continue_body(images[3], body["states"]))
        assert status == 200
        wanted = expected if correction is later else {"type": "rectangle", "points": expected}
        assert body["shapes"] == [wanted]


def box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_a_frame_number_for_an_object_tracked_without_them_is_400_and_nothing_is_lost(
    platform, images, start_shapes
):
    _, started = call_function(platform, start_body(images[0], start_shapes[:1]))  # no "frame"
    shape = placed(start_shapes[0], 1)
    status, answer = call_function(platform, correction_body(images[1], [shape], started["states"]))
    assert status == 400
    assert "tracked without frame numbers" in answer["error"] and "shapes[0]" in answer["error"]
    # without the frame number it corrects the next frame; the state itself still continues
    status, body = call_function(platform, correction_body(images[1], [start_shapes[0]], started["states"]))
    assert status == 200 and body["shapes"] == [start_shapes[0]]
    status, _ = call_function(platform, continue_body(images[1], started["states"]))
    assert status == 200


@pytest.mark.parametrize(
    "change, message",
    [
        ({"frame": -1}, "shapes[0].frame must be the frame number"),
        ({"frame": 2.5}, "shapes[0].frame must be the frame number"),
        ({"frame": "3"}, "shapes[0].frame must be the frame number"),
        ({"direction": "sideways"}, "shapes[0].direction must be one of 'forward', 'backward'"),
    ],
)
def test_bad_frame_or_direction_is_400(platform, images, start_shapes, change, message):
    status, answer = call_function(platform, start_body(images[0], [{**start_shapes[0], **change}]))
    assert status == 400 and message in answer["error"]
