"""The "Segment Anything 2: Tracker" action of our CVAT UI plugin, driven in headless Chromium in CVAT's own
UI (built with the plugin, served by the stack's nginx): what it saves is what the tracker answers through
CVAT's API for the same frames, forward and backward; a cancel or a failed call keeps the frames tracked;
an object ends after N frames absent. Re-runs after corrections: test_browser_corrections.py."""

from __future__ import annotations

import re
import threading
import time

import pytest

from e2e.browser import ARTIFACTS, run_action
from e2e.tests.browser_support import (
    ACTION,
    FRAMES,
    MIDDLE,
    annotations,
    by_frame,
    correct,
    move,
    new_job,
    reference,
    same_mask,
)


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
