"""What the browser tests share (test_browser.py, test_browser_corrections.py; their fixtures are in
conftest.py): jobs made from the long scene's video, what CVAT then holds, the tracker's answers through
CVAT's API for the same frames, and corrections saved as CVAT's UI saves them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cvat_sdk.masks import decode_mask

from e2e.client import TrackingJob, User, create_task, put_shapes, run_session
from e2e.tests.test_tracking import start_shapes

ACTION = "Segment Anything 2: Tracker"
FRAMES = 20  # of the long scene (conftest.py)
MIDDLE = 10  # where the tests of both directions draw their objects


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
