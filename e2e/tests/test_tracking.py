"""CVAT's server calls the function: the shapes CVAT answers equal the official SAM2VideoPredictor run on
the frames CVAT itself serves (0 pixels apart at fp32), forward, backward, on a video task and an image
task, from masks, polygons and rectangles; the states CVAT signs come back and continue."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask
from PIL import Image

from e2e.client import (
    Answer,
    TrackingJob,
    call_tracker,
    correct_tracking,
    create_task,
    placed,
    put_shapes,
    run_session,
    served_frame,
    track,
)
from shape_codecs import mask_to_polygon, shape_to_prompt
from tests.support.oracle import Prompts, Propagate
from tracking_call import answer_shape

TOLERANCE = 1.0  # SAM2_POLYGON_TOLERANCE, the function's default


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.height, image.width


def start_shapes(scene, frame: int = 0) -> list[dict]:
    """A mask and a polygon, drawn on `frame` as an annotator would."""
    return [
        {"type": "mask", "points": encode_mask(scene.masks[frame][0])},
        {"type": "polygon", "points": mask_to_polygon(scene.masks[frame][1], tolerance=TOLERANCE)},
    ]


def assert_answers_equal_oracle(answers: list[Answer], sent: list[dict], expected, size) -> None:
    """The start call echoes the shapes; every later answer is the official masks in each object's
    form: masks compared pixel by pixel through cvat_sdk's decoder, polygons and rectangles point by
    point."""
    height, width = size
    assert [a.status for a in answers] == [200] * len(answers), [a.body for a in answers if a.status != 200]
    assert answers[0].shapes == sent
    differing = 0
    for answer, masks in zip(answers[1:], expected[1:], strict=True):
        assert len(answer.shapes) == len(answer.states) == len(sent)
        for shape, mask, start in zip(answer.shapes, masks, sent, strict=True):
            if not mask.any():
                assert shape is None
            elif start["type"] == "mask":
                assert shape["type"] == "mask"
                decoded = decode_mask(shape["points"], image_width=width, image_height=height)
                differing += int((decoded != mask).sum())
            else:
                assert shape == answer_shape(start["type"], mask, TOLERANCE)
    assert differing == 0, f"{differing} mask pixels differ from the official predictor"


def signed_tokens(states: list[str]) -> list[str]:
    """CVAT hands out our states signed (Django's TimestampSigner over the JSON string):
    ``"<our token>":<timestamp>:<signature>``."""
    tokens = []
    for state in states:
        value, timestamp, signature = state.rsplit(":", 2)
        assert timestamp and signature
        tokens.append(json.loads(value))
    return tokens


def test_a_video_task_tracks_as_the_official_predictor(stack, owner, scene, video_job, video_frames, oracle):
    frames = list(range(video_job.frames))
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in video_frames)  # CVAT serves video as PNG
    first = len(stack.nuclio.trigger.bodies)
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, start_shapes(scene))
        answers = run_session(client, video_job, frames, shapes)
    size = image_size(video_frames[0])
    prompts = [shape_to_prompt(s["type"], s["points"], size) for s in shapes]
    expected = oracle.masks(video_frames, prompts, start=0, count=len(frames))
    assert_answers_equal_oracle(answers, shapes, expected, size)
    # the comparison sees a broken memory: 3 object pointers kept instead of 15 differ from frame 5 on
    broken = oracle.masks(video_frames, prompts, start=0, count=len(frames), broken=True)
    with pytest.raises(AssertionError):
        assert_answers_equal_oracle(answers, shapes, broken, size)
    # each call's states are new versions of the same objects, and calls went to both workers
    tokens = [signed_tokens(a.states) for a in answers]
    assert all(len(set(step)) == len(shapes) for step in tokens)
    assert len({t for step in tokens for t in step}) == len(shapes) * len(frames)
    assert set(stack.nuclio.trigger.calls) == {0, 1}
    # what the function received: exactly the bodies tests/support/cvat.py builds for the unit suite
    received = stack.nuclio.trigger.bodies[first:]
    # application/json, exactly: Nuclio's HTTP trigger hands the handler the parsed JSON
    assert set(stack.nuclio.trigger.content_types[first:]) == {"application/json"}
    images = [{"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for data in video_frames]
    assert received[0] == {"image": images[0], "shapes": shapes, "states": []}
    for frame, body in zip(frames[1:], received[1:], strict=True):
        assert body == {"image": images[frame], "shapes": [None, None], "states": tokens[frame - 1]}


def test_backward_tracking_is_the_official_reverse_propagation(
    stack, owner, scene, video_job, video_frames, oracle
):
    last = video_job.frames - 1
    frames = list(range(last, -1, -1))
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, last, start_shapes(scene, last))
        answers = run_session(client, video_job, frames, shapes)
    size = image_size(video_frames[0])
    prompts = [shape_to_prompt(s["type"], s["points"], size) for s in shapes]
    expected = oracle.masks(video_frames, prompts, start=last, count=len(frames), reverse=True)
    assert_answers_equal_oracle(answers, shapes, expected, size)


def test_a_rectangle_as_the_ai_tools_tracker_sends_it(stack, owner, scene, video_job, video_frames, oracle):
    """Community CVAT's AI Tools tracker: init_tracking on the frame before, then track, one frame at a
    time; the function answers the box of the tracked mask."""
    ys, xs = np.nonzero(scene.masks[0][2])
    rectangle = {
        "type": "rectangle",
        "points": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
    }
    frames = list(range(5))
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, [rectangle])
        answers = run_session(client, video_job, frames, shapes)
    size = image_size(video_frames[0])
    expected = oracle.masks(
        video_frames, [shape_to_prompt("rectangle", shapes[0]["points"], size)], 0, len(frames)
    )
    assert_answers_equal_oracle(answers, shapes, expected, size)
    assert all(a.shapes[0]["type"] == "rectangle" for a in answers[1:])


def test_a_rerun_after_a_correction_keeps_the_start_frame_as_an_anchor(
    stack, owner, scene, video_job, video_frames, oracle
):
    """The CVAT UI plugin's re-run after a correction: tracked 0..5, then the shapes drawn on frame 3 sent
    beside the states the run ended with. The answers equal one official session holding the masks of
    frames 0 and 3, propagated from 3 (docs/fidelity.md's flow (b)); a fresh start on 3 answers otherwise."""
    size = image_size(video_frames[0])
    with owner.client(stack.url) as client:
        shapes = placed(put_shapes(client, video_job, 0, start_shapes(scene)), 0)
        first = run_session(client, video_job, list(range(6)), shapes)
        assert [a.status for a in first] == [200] * 6
        corrected = placed(put_shapes(client, video_job, 3, start_shapes(scene, 3)), 3)
        sent = len(stack.nuclio.trigger.bodies)
        rerun = [call_tracker(client, correct_tracking(video_job, 3, corrected, first[-1].states))]
        for frame in (4, 5, 6):
            rerun.append(call_tracker(client, track(video_job, frame, rerun[-1].states)))
    # CVAT forwarded the correction as sent: each shape object whole, the states unsigned
    received = stack.nuclio.trigger.bodies[sent]
    assert received["shapes"] == corrected and received["states"] == signed_tokens(first[-1].states)

    def prompts(given: list[dict]) -> list:
        return [shape_to_prompt(s["type"], s["points"], size) for s in given]

    expected = oracle.session(
        video_frames, [Prompts(0, prompts(shapes)), Prompts(3, prompts(corrected)), Propagate(3, 3)]
    )
    assert_answers_equal_oracle(rerun, corrected, expected, size)
    fresh = oracle.masks(video_frames, prompts(corrected), start=3, count=4)
    with pytest.raises(AssertionError):
        assert_answers_equal_oracle(rerun, corrected, fresh, size)


@pytest.fixture(scope="session")
def image_files(scene, tmp_path_factory) -> list[Path]:
    """The scene's first frames as image files of several formats, as a photographer's folder holds."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index, frame in enumerate(scene.frames[:5]):
        fmt, suffix = [("PNG", "png"), ("JPEG", "jpg")][index % 2]
        path = folder / f"frame_{index:02d}.{suffix}"
        Image.fromarray(frame).save(path, format=fmt, quality=90)
        paths.append(path)
    return paths


def test_an_image_task_tracks_on_the_uploaded_files(stack, owner, scene, image_files, oracle):
    with owner.client(stack.url) as client:
        job: TrackingJob = create_task(client, "images", image_files)
        served = [served_frame(client, job, frame) for frame in range(job.frames)]
        shapes = put_shapes(client, job, 0, start_shapes(scene))
        answers = run_session(client, job, list(range(job.frames)), shapes)
    # CVAT forwards an image task's files as they were uploaded
    assert served == [path.read_bytes() for path in image_files]
    size = image_size(served[0])
    prompts = [shape_to_prompt(s["type"], s["points"], size) for s in shapes]
    expected = oracle.masks(served, prompts, start=0, count=job.frames)
    assert_answers_equal_oracle(answers, shapes, expected, size)


def test_the_dashboard_invoke_method_tracks_the_same(stack, owner, scene, video_job):
    """CVAT_NUCLIO_INVOKE_METHOD=dashboard (CVAT's default on Kubernetes): the same answers as direct."""
    frames = [0, 1, 2]
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, start_shapes(scene))
        direct = run_session(client, video_job, frames, shapes)
    invocations = len(stack.nuclio.invocations)
    with owner.client(stack.dashboard_url) as client:
        through_dashboard = run_session(client, video_job, frames, shapes)
    assert [a.shapes for a in through_dashboard] == [a.shapes for a in direct]
    headers = [{k.lower(): v for k, v in h.items()} for h in stack.nuclio.invocations[invocations:]]
    assert len(headers) == len(frames)
    assert {h["x-nuclio-function-name"] for h in headers} == {"pth-facebookresearch-sam2-tracker"}
    assert {h["x-nuclio-invoke-timeout"] for h in headers} == {"120s"}


def test_the_tracker_is_listed_with_its_shape_types(stack, owner):
    with owner.client(stack.url) as client:
        _, response = client.api_client.lambda_api.list_functions(_parse_response=False)
    (function,) = json.loads(response.data)
    assert function["id"] == "pth-facebookresearch-sam2-tracker"
    assert function["kind"] == "tracker"
    assert function["name"] == "Segment Anything 2: Tracker"
    assert function["supported_shape_types"] == ["mask", "polygon", "rectangle"]
    with owner.client(stack.url) as client:
        assert call_tracker(client, {"job": 0, "frame": 0, "shapes": []}, "no-such-function").status >= 400
