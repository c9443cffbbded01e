"""The action run again after a correction, in CVAT's own UI (headless Chromium): a re-run replaces what
an earlier run made on its frames, forward and backward; in one page, the re-run continues the object's SAM2
memory (the plugin sends the state the last run ended with beside the corrected shape) and saves what the
same flow answers through CVAT's API."""

from __future__ import annotations

from e2e.browser import run_action
from e2e.client import (
    call_tracker,
    correct_tracking,
    init_tracking,
    placed,
    track,
)
from e2e.tests.browser_support import (
    MIDDLE,
    annotations,
    by_frame,
    correct,
    move,
    new_job,
    reference,
)
from e2e.tests.test_tracking import signed_tokens


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
