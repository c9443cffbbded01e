"""The "Segment Anything 2: Tracker" action of our CVAT UI plugin, driven in headless Chromium in CVAT's own
UI (built with the plugin, served by the stack's nginx): what it saves is what the tracker answers through
CVAT's API for the same frames; a re-run replaces; a cancel or a failed call keeps the frames tracked."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask

from e2e.browser import ARTIFACTS, run_action
from e2e.client import TrackingJob, User, create_task, put_shapes, run_session
from e2e.tests.test_tracking import start_shapes
from tests.support.synthetic import Scene, moving_objects_scene, write_video

ACTION = "Segment Anything 2: Tracker"
FRAMES = 20


@pytest.fixture(scope="module")
def ui(stack):
    if stack.config.ui_dist is None:
        pytest.fail("the browser tests need CVAT's UI built with the plugin: run them with ./dev.sh e2e")
    return stack


@pytest.fixture(scope="module")
def long_scene() -> Scene:
    return moving_objects_scene(FRAMES, seed=5)


@pytest.fixture(scope="module")
def long_video(long_scene, tmp_path_factory) -> Path:
    return write_video(long_scene, tmp_path_factory.mktemp("long") / "long.mp4")


def new_job(stack, user: User, video: Path, scene, name: str) -> tuple[TrackingJob, list[dict]]:
    """A task from the video with a mask, a polygon and a rectangle on frame 0; the shapes as saved."""
    ys, xs = np.nonzero(scene.masks[0][2])
    rectangle = {
        "type": "rectangle",
        "points": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
    }
    with user.client(stack.url) as client:
        job = create_task(client, name, [video])
        shapes = put_shapes(client, job, 0, [*start_shapes(scene), rectangle])
    return job, shapes


def annotations(stack, user: User, job: TrackingJob):
    with user.client(stack.url) as client:
        return client.jobs.retrieve(job.job_id).get_annotations()


def reference(stack, user: User, job: TrackingJob, shapes: list[dict], frames: list[int]) -> list:
    """The tracker's answers through CVAT's API (as the server-level tests call it), same start and frames."""
    with user.client(stack.url) as client:
        answers = run_session(client, job, frames, shapes)
    assert [a.status for a in answers] == [200] * len(frames)
    return answers


def same_mask(stored_points, answered: dict, size) -> bool:
    height, width = size
    return np.array_equal(
        decode_mask(list(stored_points), image_width=width, image_height=height),
        decode_mask(answered["points"], image_width=width, image_height=height),
    )


def by_frame(shapes, shape_type: str) -> dict[int, list]:
    found: dict[int, list] = {}
    for shape in shapes:
        if shape.type.value == shape_type:
            found.setdefault(shape.frame, []).append(shape)
    return found


def test_one_polygon_from_its_menu(ui, owner, long_scene, long_video):
    job, shapes = new_job(ui, owner, long_video, long_scene, "browser: one object")
    result = run_action(
        ui, owner, job, frame=0, probe=["MASK SHAPE", "RECTANGLE SHAPE"],
        select={"type": "POLYGON SHAPE"}, targetFrame=5, convertToTracks=False,
    )  # fmt: skip
    # offered for polygons and masks, not for rectangles
    assert ACTION in result["listedActions"] and ACTION in result["probed"]["MASK SHAPE"]
    assert ACTION not in result["probed"]["RECTANGLE SHAPE"]
    assert result["parameters"] == {"targetFrame": 5, "convertToTracks": False}
    # one progress step per frame, in words and percent
    messages = [step["message"] for step in result["progress"]]
    assert any("frame 5 of 5" in message for message in messages), messages
    assert [step["percent"] for step in result["progress"]] == sorted(
        step["percent"] for step in result["progress"]
    )

    expected = reference(ui, owner, job, [shapes[1]], list(range(6)))
    saved = annotations(ui, owner, job)
    polygons = by_frame(saved.shapes, "polygon")
    assert sorted(polygons) == list(range(6))
    for frame in range(1, 6):
        (shape,) = polygons[frame]
        assert list(shape.points) == expected[frame].shapes[0]["points"]
        assert shape.label_id == job.label_id
    # the mask and the rectangle were not tracked
    assert sorted(by_frame(saved.shapes, "mask")) == [0]
    assert sorted(by_frame(saved.shapes, "rectangle")) == [0]


def move(points, dx: float, dy: float) -> list[float]:
    return [value + (dx if index % 2 == 0 else dy) for index, value in enumerate(points)]


def correct(stack, user: User, job: TrackingJob, shape=None, track=None) -> None:
    """An annotator's correction, saved as CVAT's UI saves it (PATCH ?action=update)."""
    from cvat_sdk import models

    request = models.PatchedLabeledDataRequest(
        shapes=[models.LabeledShapeRequest(**shape_fields(shape))] if shape else [],
        tracks=[models.LabeledTrackRequest(**track_fields(track))] if track else [],
        tags=[],
    )
    with user.client(stack.url) as client:
        client.api_client.jobs_api.partial_update_annotations(
            "update", job.job_id, patched_labeled_data_request=request
        )


SHAPE_FIELDS = ("id", "type", "frame", "points", "z_order", "occluded", "outside", "rotation")


def shape_fields(shape) -> dict:
    """A labeled shape as a request, its score (where the action keeps its marker) included."""
    values = shape.to_dict()
    fields = (*SHAPE_FIELDS, "label_id", "group", "source", "score")
    return {name: values[name] for name in fields if name in values} | {"attributes": []}


def track_fields(track) -> dict:
    shapes = []
    for shape in track.shapes:
        values = shape.to_dict()
        shapes.append({name: values[name] for name in SHAPE_FIELDS if name in values} | {"attributes": []})
    return {
        "id": track.id, "frame": track.frame, "label_id": track.label_id, "group": track.group,
        "source": track.source, "attributes": [], "shapes": shapes,
    }  # fmt: skip


def test_a_rerun_after_a_correction_replaces_the_shapes_it_covers(ui, owner, long_scene, long_video):
    job, _ = new_job(ui, owner, long_video, long_scene, "browser: re-run")
    run_action(
        ui, owner, job, frame=0, select={"type": "POLYGON SHAPE"}, targetFrame=5, convertToTracks=False
    )
    (tracked_3,) = by_frame(annotations(ui, owner, job).shapes, "polygon")[3]
    tracked_3.points = move(tracked_3.points, 6, 4)
    correct(ui, owner, job, shape=tracked_3)

    result = run_action(ui, owner, job, frame=3, select={"type": "POLYGON SHAPE"}, targetFrame=7)
    assert "replaced" in result["notices"][0]["description"]
    saved = annotations(ui, owner, job)
    polygons = by_frame(saved.shapes, "polygon")
    assert {frame: len(found) for frame, found in polygons.items()} == {frame: 1 for frame in range(8)}
    assert list(polygons[3][0].points) == list(tracked_3.points)  # the correction stays
    corrected = {"type": "polygon", "points": list(tracked_3.points)}
    expected = reference(ui, owner, job, [corrected], list(range(3, 8)))
    for frame in range(4, 8):
        assert list(polygons[frame][0].points) == expected[frame - 3].shapes[0]["points"]


def test_all_objects_from_run_actions_with_polygons_converted_to_tracks(ui, owner, long_scene, long_video):
    job, shapes = new_job(ui, owner, long_video, long_scene, "browser: run actions")
    screenshot = ARTIFACTS / "annotation-view-after-a-run.png"
    calls = len(ui.nuclio.trigger.calls)
    result = run_action(
        ui, owner, job, frame=0, select="all", targetFrame=5, convertToTracks=True,
        screenshot=str(screenshot), screenshotFrame=5,
    )  # fmt: skip
    assert result["notices"][0]["title"] == "Tracked 2 objects to frame 5"
    assert len(ui.nuclio.trigger.calls) - calls == 6  # one call per frame for both objects
    assert screenshot.stat().st_size > 10_000
    expected = reference(ui, owner, job, shapes[:2], list(range(6)))
    size = long_scene.size
    saved = annotations(ui, owner, job)
    masks = by_frame(saved.shapes, "mask")
    assert sorted(masks) == list(range(6))  # masks stay shapes
    for frame in range(1, 6):
        assert same_mask(masks[frame][0].points, expected[frame].shapes[0], size)
    assert by_frame(saved.shapes, "polygon") == {}  # the polygon became a track
    (track,) = saved.tracks
    keyframes = {shape.frame: shape for shape in track.shapes}
    assert sorted(keyframes) == list(range(6))
    assert list(keyframes[0].points) == shapes[1]["points"]
    for frame in range(1, 6):
        assert list(keyframes[frame].points) == expected[frame].shapes[1]["points"]
        assert not keyframes[frame].outside

    # correct the track on frame 3 and run again from there: its keyframes are replaced, not duplicated
    keyframes[3].points = move(keyframes[3].points, 6, 4)
    correct(ui, owner, job, track=track)
    run_action(ui, owner, job, frame=3, select="all", targetFrame=7, convertToTracks=True)
    saved = annotations(ui, owner, job)
    (track,) = saved.tracks
    assert sorted(shape.frame for shape in track.shapes) == list(range(8))
    assert sorted(by_frame(saved.shapes, "mask")) == list(range(8))
    assert all(len(found) == 1 for found in by_frame(saved.shapes, "mask").values())


def stop_reason(notice: dict) -> tuple[str, list[int]]:
    """The notice's title, and the frames it says were kept ("Frames 1–4 (4 of 19) were tracked and kept")."""

    found = re.search(
        r"Frames? (\d+)(?:–(\d+))? \(\d+ of \d+\) (?:was|were) tracked and kept", notice["description"]
    )
    assert found, notice
    first, last = int(found.group(1)), int(found.group(2) or found.group(1))
    return notice["title"], list(range(first, last + 1))


def test_cancel_midway_keeps_the_frames_tracked(ui, owner, long_scene, long_video):
    job, _ = new_job(ui, owner, long_video, long_scene, "browser: cancel")
    result = run_action(
        ui, owner, job, frame=0, select={"type": "POLYGON SHAPE"}, targetFrame=FRAMES - 1, cancelAtPercent=20,
    )  # fmt: skip
    assert result["cancelled"]
    title, kept = stop_reason(result["notices"][0])
    assert title.startswith("Tracking cancelled at frame")
    assert kept[0] == 1 and 3 <= len(kept) < FRAMES - 1
    assert sorted(by_frame(annotations(ui, owner, job).shapes, "polygon")) == [0, *kept]


def test_the_store_failing_midway_keeps_the_frames_tracked_and_says_why(ui, owner, long_scene, long_video):
    job, _ = new_job(ui, owner, long_video, long_scene, "browser: store down")
    calls = ui.nuclio.trigger.calls
    first = len(calls)

    def take_the_store_away_after_4_calls() -> None:
        deadline = time.monotonic() + 600
        while len(calls) < first + 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        ui.function_store.stop()

    watcher = threading.Thread(target=take_the_store_away_after_4_calls, daemon=True)
    watcher.start()
    try:
        result = run_action(ui, owner, job, frame=0, select={"type": "POLYGON SHAPE"}, targetFrame=FRAMES - 1)
    finally:
        watcher.join(timeout=1)
        ui.function_store.start()
    title, kept = stop_reason(result["notices"][0])
    assert title.startswith("Tracking stopped at frame")
    assert "state store" in result["notices"][0]["description"]
    # the store went away as the 4th call (frame 3) began: that call may have finished or failed
    assert kept[0] == 1 and 2 <= len(kept) <= 3
    assert sorted(by_frame(annotations(ui, owner, job).shapes, "polygon")) == [0, *kept]
