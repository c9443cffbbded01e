"""The "Segment Anything 2: Tracker" action of our CVAT UI plugin, driven in headless Chromium in CVAT's own
UI (built with the plugin, served by the stack's nginx): what it saves is what the tracker answers through
CVAT's API for the same frames, forward and backward; a re-run replaces; a cancel or a failed call keeps the
frames tracked."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask

from e2e.browser import ARTIFACTS, run_action
from e2e.client import (
    TrackingJob,
    User,
    call_tracker,
    correct_tracking,
    create_task,
    init_tracking,
    placed,
    put_shapes,
    run_session,
    track,
)
from e2e.tests.test_tracking import signed_tokens, start_shapes
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


def new_job(
    stack, user: User, video: Path, scene, name: str, frame: int = 0
) -> tuple[TrackingJob, list[dict]]:
    """A task from the video with a mask, a polygon and a rectangle on `frame`; the shapes as saved."""
    ys, xs = np.nonzero(scene.masks[frame][2])
    rectangle = {
        "type": "rectangle",
        "points": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
    }
    with user.client(stack.url) as client:
        job = create_task(client, name, [video])
        shapes = put_shapes(client, job, frame, [*start_shapes(scene, frame), rectangle])
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
    assert result["parameters"] == {"targetFrame": 5, "convertToTracks": False, "stopAfterAbsent": 0}
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


def test_a_correction_then_a_rerun_in_the_same_page_sends_the_kept_state(ui, owner, long_scene, long_video):
    """Corrections as anchors, in one page (no reload: the plugin keeps the states in the page's memory): a
    run 0..5 on the polygon, its result on frame 3 moved in the page and saved, a run again from there to 7.
    The re-run's first call sends the state the first run ended with beside the corrected shape; what it saves
    is what the same flow answers through CVAT's API."""
    job, shapes = new_job(ui, owner, long_video, long_scene, "browser: correction as anchor")
    polygon = {"type": "POLYGON SHAPE"}
    calls = len(ui.nuclio.trigger.calls)
    result = run_action(
        ui, owner, job, frame=0, select=polygon, targetFrame=5, convertToTracks=False,
        then=[
            {"correct": {"frame": 3, "type": "POLYGON SHAPE", "dx": 6, "dy": 4}},
            {"frame": 3, "select": polygon, "targetFrame": 7},
        ],
    )  # fmt: skip
    moved, rerun = result["then"]
    saved = annotations(ui, owner, job)
    polygons = by_frame(saved.shapes, "polygon")
    assert {frame: len(found) for frame, found in polygons.items()} == dict.fromkeys(range(8), 1)
    corrected = {"type": "polygon", "points": list(polygons[3][0].points)}
    # moved in the page as the view's state showed it after the save, as CVAT keeps it: fitted into the frame
    height, width = long_scene.size
    shifted = move(moved["before"], 6, 4)
    fitted = [min(max(v, 0), width if i % 2 == 0 else height) for i, v in enumerate(shifted)]
    assert corrected["points"] == moved["after"] == fitted != moved["before"]

    # the first run: a plain start (no states) with the drawn polygon, then one track call per frame
    first_calls = result["calls"]
    assert [(c["body"]["type"], c["body"]["frame"], c["status"]) for c in first_calls] == [
        ("init_tracking", 0, 200),
        *(("track", frame, 200) for frame in range(1, 6)),
    ]
    assert "states" not in first_calls[0]["body"]
    assert first_calls[0]["body"]["shapes"] == placed([shapes[1]], 0)
    # the re-run: the corrected shape beside the state the first run's last call answered, signed by CVAT
    (start, *later) = rerun["calls"]
    assert start["body"]["type"] == "init_tracking" and start["body"]["frame"] == 3 and start["status"] == 200
    assert start["body"]["shapes"] == placed([corrected], 3)
    assert start["body"]["states"] == first_calls[-1]["states"]
    (kept,) = start["body"]["states"]
    assert isinstance(kept, str)
    steps = [(c["body"]["type"], c["body"]["frame"], len(c["body"]["states"]), c["status"]) for c in later]
    assert steps == [("track", frame, 1, 200) for frame in range(4, 8)]
    assert "1 object continued its earlier memory." in rerun["notices"][0]["description"]
    # the function got the correction as sent, the state unsigned (CVAT's signature checked and taken off,
    # "<token>":<time>:<signature>); 6 calls then 5, nothing repeated
    bodies = ui.nuclio.trigger.bodies[calls:]
    assert len(bodies) == 11
    assert bodies[6]["shapes"] == placed([corrected], 3) and bodies[6]["states"] == signed_tokens([kept])

    # the same flow through CVAT's API: 0..5 from the drawn polygon, then the correction on 3 beside the
    # state that run ended with, 4..7
    with owner.client(ui.url) as client:
        before = [call_tracker(client, init_tracking(job, 0, placed([shapes[1]], 0)))]
        for frame in range(1, 6):
            before.append(call_tracker(client, track(job, frame, before[-1].states)))
        after = [call_tracker(client, correct_tracking(job, 3, placed([corrected], 3), before[-1].states))]
        for frame in range(4, 8):
            after.append(call_tracker(client, track(job, frame, after[-1].states)))
    assert [a.status for a in (*before, *after)] == [200] * 11
    assert after[0].shapes[0]["points"] == corrected["points"]  # the correction answered as sent
    for frame in (1, 2):  # the first run's, untouched
        assert list(polygons[frame][0].points) == before[frame].shapes[0]["points"], frame
    for frame in range(4, 8):
        assert list(polygons[frame][0].points) == after[frame - 3].shapes[0]["points"], frame
    # which a fresh start from the corrected shape does not give: the re-run continued the object's memory
    fresh = reference(ui, owner, job, [corrected], list(range(3, 8)))
    rerun_points = [list(polygons[frame][0].points) for frame in range(4, 8)]
    assert rerun_points != [answer.shapes[0]["points"] for answer in fresh[1:]]


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
    """The notice's title, and the frames it says were kept, in the order tracked ("Frames 1–4 (4 of 19) were
    tracked and kept"; backward "Frames 18–15 ...")."""

    found = re.search(
        r"Frames? (\d+)(?:–(\d+))? \(\d+ of \d+\) (?:was|were) tracked and kept", notice["description"]
    )
    assert found, notice
    first, last = int(found.group(1)), int(found.group(2) or found.group(1))
    step = -1 if last < first else 1
    return notice["title"], list(range(first, last + step, step))


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


MIDDLE = 10  # where the tests of both directions draw their objects


def test_backward_then_forward_from_a_middle_frame_make_one_track(ui, owner, long_scene, long_video):
    """Conversion on: a backward run from the middle frame makes the polygon a track beginning at the target,
    a forward run from the same frame extends that track, with nothing doubled on the start frame."""
    job, shapes = new_job(ui, owner, long_video, long_scene, "browser: both ways", frame=MIDDLE)
    back = run_action(
        ui, owner, job, frame=MIDDLE, select="all", targetFrame=MIDDLE - 5, convertToTracks=True
    )
    assert back["notices"][0]["title"] == f"Tracked 2 objects back to frame {MIDDLE - 5}"
    assert any(f"frame 5 of 5 (frame {MIDDLE - 5})" in step["message"] for step in back["progress"])
    backward_frames = list(range(MIDDLE, MIDDLE - 6, -1))
    expected_back = reference(ui, owner, job, shapes[:2], backward_frames)
    # the drawn polygon was on the start frame only: the track is outside from the next frame on
    (track,) = annotations(ui, owner, job).tracks
    ends = [(shape.frame, shape.outside) for shape in track.shapes][-2:]
    assert ends == [(MIDDLE, False), (MIDDLE + 1, True)]
    calls = len(ui.nuclio.trigger.calls)
    run_action(ui, owner, job, frame=MIDDLE, select="all", targetFrame=MIDDLE + 4, convertToTracks=True)
    assert len(ui.nuclio.trigger.calls) - calls == 5  # one call per frame for both objects
    forward_frames = list(range(MIDDLE, MIDDLE + 5))
    expected_forward = reference(ui, owner, job, shapes[:2], forward_frames)

    saved = annotations(ui, owner, job)
    (track,) = saved.tracks
    assert track.frame == MIDDLE - 5
    keyframes = {shape.frame: shape for shape in track.shapes}
    assert sorted(keyframes) == list(range(MIDDLE - 5, MIDDLE + 5))
    assert list(keyframes[MIDDLE].points) == shapes[1]["points"]
    masks = by_frame(saved.shapes, "mask")
    assert {frame: len(found) for frame, found in masks.items()} == dict.fromkeys(
        range(MIDDLE - 5, MIDDLE + 5), 1
    )
    assert by_frame(saved.shapes, "polygon") == {}
    for frames, expected in ((backward_frames, expected_back), (forward_frames, expected_forward)):
        for index, frame in enumerate(frames[1:], start=1):
            assert list(keyframes[frame].points) == expected[index].shapes[1]["points"], frame
            assert same_mask(masks[frame][0].points, expected[index].shapes[0], long_scene.size), frame


def test_a_backward_rerun_after_a_correction_replaces_only_that_side(ui, owner, long_scene, long_video):
    job, shapes = new_job(ui, owner, long_video, long_scene, "browser: backward re-run", frame=MIDDLE)
    polygon = {"type": "POLYGON SHAPE"}
    run_action(ui, owner, job, frame=MIDDLE, select=polygon, targetFrame=MIDDLE + 3, convertToTracks=False)
    run_action(ui, owner, job, frame=MIDDLE, select=polygon, targetFrame=MIDDLE - 4, convertToTracks=False)
    first = by_frame(annotations(ui, owner, job).shapes, "polygon")
    assert sorted(first) == list(range(MIDDLE - 4, MIDDLE + 4))

    corrected_frame = MIDDLE - 2
    (shape,) = first[corrected_frame]
    shape.points = move(shape.points, -6, 4)
    correct(ui, owner, job, shape=shape)
    result = run_action(ui, owner, job, frame=corrected_frame, select=polygon, targetFrame=MIDDLE - 5)
    assert "replaced" in result["notices"][0]["description"]

    polygons = by_frame(annotations(ui, owner, job).shapes, "polygon")
    counts = {frame: len(found) for frame, found in polygons.items()}
    assert counts == dict.fromkeys(range(MIDDLE - 5, MIDDLE + 4), 1)
    corrected = {"type": "polygon", "points": list(shape.points)}
    frames = list(range(corrected_frame, MIDDLE - 6, -1))
    expected = reference(ui, owner, job, [corrected], frames)
    for index, frame in enumerate(frames[1:], start=1):
        assert list(polygons[frame][0].points) == expected[index].shapes[0]["points"]
    # the other side of the corrected frame is the first runs' work, untouched
    for frame in range(corrected_frame + 1, MIDDLE + 4):
        assert list(polygons[frame][0].points) == list(first[frame][0].points)
    assert list(polygons[MIDDLE][0].points) == shapes[1]["points"]


def test_cancel_in_a_backward_run_keeps_the_frames_tracked(ui, owner, long_scene, long_video):
    last = FRAMES - 1
    job, _ = new_job(ui, owner, long_video, long_scene, "browser: cancel backward", frame=last)
    result = run_action(
        ui, owner, job, frame=last, select={"type": "POLYGON SHAPE"}, targetFrame=0, cancelAtPercent=20,
    )  # fmt: skip
    assert result["cancelled"]
    title, kept = stop_reason(result["notices"][0])
    assert title.startswith("Tracking cancelled at frame")
    assert kept[0] == last - 1 and 3 <= len(kept) < last
    assert f"run the action again from frame {kept[-1]}" in result["notices"][0]["description"]
    assert sorted(by_frame(annotations(ui, owner, job).shapes, "polygon")) == sorted([last, *kept])


@pytest.fixture
def a_tracker_that_loses_every_object(ui, checkpoint, tmp_path):
    """The function deployed again (as `nuctl deploy` with another SAM2_CHECKPOINT) with a model that calls
    every object absent after its start frame, SAM2's lost-object path (a random model sees no object leave
    the frame: its presence logit is the same on every frame); the stack's model again afterwards."""
    from tests.support.synthetic import write_checkpoint

    lost = write_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt", presence_bias=-8.0)
    ui.nuclio.redeploy({"SAM2_CHECKPOINT": str(lost)})
    try:
        yield
    finally:
        ui.nuclio.redeploy({"SAM2_CHECKPOINT": str(checkpoint)})


def test_objects_absent_n_frames_in_a_row_end_and_the_run_ends_early(
    ui, owner, long_scene, long_video, a_tracker_that_loses_every_object
):
    job, _ = new_job(ui, owner, long_video, long_scene, "browser: stop when absent")
    calls = len(ui.nuclio.trigger.calls)
    result = run_action(
        ui, owner, job, frame=0, select="all", targetFrame=FRAMES - 1, convertToTracks=True,
        stopAfterAbsent=3,
    )  # fmt: skip
    assert result["parameters"]["stopAfterAbsent"] == 3
    # the start and three frames, each with both objects' states; then every object had ended
    bodies = ui.nuclio.trigger.bodies[calls:]
    assert [len(body["states"]) for body in bodies] == [0, 2, 2, 2]
    (notice,) = result["notices"]
    assert notice["title"] == "Tracked 2 objects to frame 3"
    for kind in ("mask", "polygon"):
        assert re.search(
            rf'Object \d \("[^"]+" {kind}\) ended on frame 3 \(absent on frames 1–3\)\.',
            notice["description"],
        )
    assert (
        f"Every object had ended, so the run stopped after 3 frames of {FRAMES - 1}." in notice["description"]
    )
    saved = annotations(ui, owner, job)
    (track,) = saved.tracks
    assert [(shape.frame, shape.outside) for shape in track.shapes] == [
        (0, False),
        (1, True),
        (2, True),
        (3, True),
    ]
    assert sorted(by_frame(saved.shapes, "mask")) == [0]
