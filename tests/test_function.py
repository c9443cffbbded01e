"""The Nuclio handler through nuclio-sdk's test platform, against a real redis-server."""

from __future__ import annotations

import json

import nuclio_sdk
import pytest
from nuclio_sdk.test import Platform

import main
from tests.support.cvat import (
    FRAMES,
    b64,
    call_function,
    continue_body,
    cvat_signs,
    cvat_unsigns,
    encode_image,
    function_env,
    function_instance,
    start_body,
)


@pytest.fixture
def function_with_redis(checkpoint, redis_server, monkeypatch):
    redis_server.client().flushall()
    for name, value in {**function_env(checkpoint), **redis_server.env()}.items():
        monkeypatch.setenv(name, value)


def test_session_across_two_replicas_equals_the_tracker_core(
    function_with_redis, redis_server, images, start_shapes, expected
):
    replicas = [Platform(), Platform()]  # two contexts, two trackers: state only shared through Redis
    status, body = call_function(replicas[0], start_body(images[0], start_shapes))
    assert status == 200
    assert body["shapes"] == start_shapes
    states = body["states"]
    assert len(states) == 2 and all(isinstance(s, str) for s in states)

    for index in range(1, FRAMES):
        status, body = call_function(replicas[index % 2], continue_body(images[index], states))
        assert status == 200, body
        mask_shape, polygon_shape = body["shapes"]
        assert mask_shape == {"type": "mask", "points": expected[index - 1][0]}
        assert polygon_shape == {"type": "polygon", "points": expected[index - 1][1]}
        assert len(set(body["states"]) | set(states)) == 4  # every step is a new version
        states = body["states"]

    keys = redis_server.client().keys("sam2-tracker:*")
    heads = [k for k in keys if b":v:" in k]
    assert len(heads) == 4  # per object: the current version and the one before it
    assert all(0 < redis_server.client().ttl(k) <= 2 * 28800 for k in keys)


def test_states_survive_cvat_signing_them_for_the_browser(
    function_with_redis, images, start_shapes, expected
):
    """CVAT signs each state (Django's TimestampSigner over compact JSON) before the browser keeps it,
    and unsigns it for the next call: the states must come back equal and keep tracking."""
    platform = Platform()
    _, body = call_function(platform, start_body(images[0], start_shapes))
    signed = cvat_signs(body["states"])
    returned = cvat_unsigns(signed)
    assert returned == body["states"]
    status, body = call_function(platform, continue_body(images[1], returned))
    assert status == 200
    assert [s["points"] for s in body["shapes"]] == list(expected[0])


def test_body_as_bytes_and_extra_fields_are_accepted(function_with_redis, images, start_shapes):
    platform = Platform()
    payload = {**start_body(images[0], start_shapes[:1]), "threshold": 0.5}
    event = nuclio_sdk.Event(body=json.dumps(payload).encode(), content_type="text/plain")
    response = platform.call_handler(main.handler, event)
    assert response.status_code == 200
    states = json.loads(response.body)["states"]
    # a shape beside its state corrects the object there: answered as sent, with a new state
    payload = {"image": b64(images[1]), "shapes": start_shapes[:1], "states": states}
    status, body = call_function(platform, payload)
    assert status == 200 and body["shapes"] == start_shapes[:1] and body["states"][0] != states[0]


def test_memory_store_without_redis(checkpoint, images, start_shapes, expected):
    platform = function_instance(checkpoint)
    status, body = call_function(platform, start_body(images[0], start_shapes))
    assert status == 200
    status, body = call_function(platform, continue_body(images[1], body["states"]))
    assert status == 200
    assert body["shapes"][0]["points"] == expected[0][0]
    assert platform.app.store.describe() == "in-process memory"


def test_log_line_has_stage_timings_but_no_image_or_tokens(function_with_redis, images, start_shapes, capsys):
    platform = Platform()
    _, body = call_function(platform, start_body(images[0], start_shapes[:1]))
    _, body = call_function(platform, continue_body(images[1], body["states"]))
    output = capsys.readouterr().out
    line = [row for row in output.splitlines() if "track" in row and "encode_ms" in row][-1]
    stages = ("decode_ms", "load_ms", "encode_ms", "track_ms", "store_ms", "total_ms")
    for field in ("objects", "image", *stages):
        assert field in line
    assert "320x240 JPEG RGB" in line and "state:1" in line
    assert body["states"][0] not in output and body["states"][0][3:] not in output
    assert b64(images[1])[:40] not in output


def test_a_refused_call_logs_its_reason_and_the_request_shape(
    function_with_redis, images, scene, start_shapes, capsys
):
    """CVAT shows the user only the status: the function's log line is where an admin reads why."""
    platform = Platform()
    _, body = call_function(platform, start_body(images[0], start_shapes))
    smaller = encode_image(scene.frames[1][:120, :160], "PNG")
    status, answer = call_function(platform, continue_body(smaller, body["states"]))
    assert status == 400
    output = capsys.readouterr().out
    line = [row for row in output.splitlines() if "track" in row and "400" in row][-1]
    assert answer["error"] in line
    assert "state:2" in line and "160x120 PNG RGB" in line
    assert all(token not in output and token[3:] not in output for token in body["states"])
    assert b64(smaller)[:40] not in output


# ---- errors -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memory_platform(checkpoint):
    """One function instance with the in-process store, shared by the error tests."""
    return function_instance(checkpoint)


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"{not json", "text/plain", "not valid JSON"),
        (b"", "text/plain", "body is empty"),
        ([1, 2], "application/json", "must be a JSON object"),
        ({"shapes": []}, "application/json", "image is missing"),
        ({"image": 5, "shapes": []}, "application/json", "image is missing"),
        ({"image": "!!!not base64!!!", "shapes": []}, "application/json", "image is not valid base64"),
        (
            {"image": b64(b"these bytes are not an image"), "shapes": []},
            "application/json",
            "image could not be decoded",
        ),
        ({"image": "IMAGE", "shapes": "mask"}, "application/json", "shapes must be a list"),
        ({"image": "IMAGE", "states": {"a": 1}}, "application/json", "states must be a list"),
        (
            {"image": "IMAGE", "shapes": [{"type": "ellipse", "points": [1, 2, 3, 4]}]},
            "application/json",
            "shapes[0] has type 'ellipse'; this tracker supports mask, polygon, rectangle",
        ),
        (
            {"image": "IMAGE", "shapes": [{"type": "polygon", "points": "1,2"}]},
            "application/json",
            "shapes[0].points must be a list",
        ),
        (
            {"image": "IMAGE", "shapes": [{"type": "polygon", "points": [1, 2, 3, 4]}]},
            "application/json",
            "shapes[0]: a polygon needs at least 3 points",
        ),
        (
            {"image": "IMAGE", "shapes": [{"type": "mask", "points": [5, 0, 0, 0, 0]}]},
            "application/json",
            "shapes[0]: mask run lengths add up to 5 pixels but the box has 1",
        ),
        (
            {"image": "IMAGE", "shapes": [{"type": "polygon", "points": [-9, -9, -5, -9, -5, -5]}]},
            "application/json",
            "shapes[0]: the polygon covers no pixel of the 320x240 image",
        ),
        ({"image": "IMAGE", "shapes": [None]}, "application/json", "shapes[0] and states[0] are both empty"),
        (
            {"image": "IMAGE", "states": ["hello"]},
            "application/json",
            "states[0] is not a state of this tracker",
        ),
        ({"image": "IMAGE", "states": [7]}, "application/json", "states[0] is not a state of this tracker"),
        (
            {"image": "IMAGE", "shapes": [None, None], "states": ["v1." + "A" * 22]},
            "application/json",
            "shapes has 2 items but states has 1",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_bad_requests_get_400_with_a_reason(memory_platform, images, body, content_type, message):
    if isinstance(body, dict) and body.get("image") == "IMAGE":
        body = {**body, "image": b64(images[0])}
    status, answer = call_function(memory_platform, body, content_type)
    assert status == 400
    assert message in answer["error"]


def test_unknown_or_expired_state_is_404(memory_platform, images):
    unknown = "v2." + "A" * 11 + "." + "A" * 22
    status, answer = call_function(memory_platform, continue_body(images[1], [unknown]))
    assert status == 404
    assert "unknown or has expired: re-run the tracker from the current frame" in answer["error"]


def test_a_state_of_an_earlier_release_is_404_with_the_way_on(memory_platform, images):
    """States stored before tokens named their object (v1) are not looked up after an upgrade."""
    status, answer = call_function(memory_platform, continue_body(images[1], ["v1." + "A" * 22]))
    assert status == 404
    assert "earlier release of this tracker: re-run the tracker from the current frame" in answer["error"]


def test_image_of_another_size_than_the_start_is_400(memory_platform, images, scene, start_shapes):
    _, body = call_function(memory_platform, start_body(images[0], start_shapes[:1]))
    smaller = encode_image(scene.frames[1][:120, :160], "PNG")
    status, answer = call_function(memory_platform, continue_body(smaller, body["states"]))
    assert status == 400
    assert "the image is 160x120 but the object was started on a 320x240 image" in answer["error"]
    # nothing was lost: the state still continues on the right image
    status, _ = call_function(memory_platform, continue_body(images[1], body["states"]))
    assert status == 200


def test_store_unavailable_is_503_and_recovers_without_restart(
    function_with_redis, redis_server, images, start_shapes
):
    platform = Platform()
    status, body = call_function(platform, start_body(images[0], start_shapes[:1]))
    assert status == 200
    redis_server.stop()
    try:
        status, answer = call_function(platform, continue_body(images[1], body["states"]))
        assert status == 503
        assert "state store is unavailable" in answer["error"]
        assert f"127.0.0.1:{redis_server.port}" in answer["error"]
    finally:
        redis_server.start()
    # Redis kept nothing (no persistence): the old state is gone, but the function works again
    status, answer = call_function(platform, continue_body(images[1], body["states"]))
    assert status == 404
    status, body = call_function(platform, start_body(images[0], start_shapes[:1]))
    assert status == 200


def test_rectangles_typed_and_in_the_legacy_bare_form(memory_platform, checkpoint, images, scene):
    """Community CVAT's tracker tab: rectangles start SAM2 from a box and come back as the box of the
    tracked mask; a legacy function gets bare [xtl, ytl, xbr, ybr] and answers the same way."""
    import io

    import numpy as np
    from PIL import Image

    from config import TrackerConfig
    from model_handler import Sam2Tracker
    from shape_codecs import Box, mask_to_rectangle
    from tests.support.models import track_frames

    ys, xs = np.nonzero(scene.masks[0][0])
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint)))
    decoded = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images[:3]]
    boxes = [
        mask_to_rectangle(tracked[0].result.mask)
        for tracked in track_frames(tracker, decoded, [Box(*box)])[1:]
    ]

    typed = {"type": "rectangle", "points": box}
    for shape, answer_of in ((typed, lambda pts: {"type": "rectangle", "points": pts}), (box, list)):
        body = {"image": b64(images[0]), "shapes": [shape], "states": []}
        status, body = call_function(memory_platform, body)
        assert status == 200 and body["shapes"] == [shape]
        for index in (1, 2):
            status, body = call_function(memory_platform, continue_body(images[index], body["states"]))
            assert status == 200
            assert body["shapes"] == [answer_of(boxes[index - 1])]


@pytest.mark.parametrize(
    "shape, message",
    [
        ({"type": "rectangle", "points": [10, 10, 5, 20]}, "is empty"),
        ({"type": "rectangle", "points": [1, 2, 3]}, "4 numbers"),
        ([400, 300, 500, 400], "outside the 320x240 image"),
    ],
)
def test_bad_rectangles_are_400(memory_platform, images, shape, message):
    status, answer = call_function(memory_platform, {"image": b64(images[0]), "shapes": [shape]})
    assert status == 400 and message in answer["error"]
