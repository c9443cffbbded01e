"""What a CVAT user's script does against the stack, with cvat-sdk (the release of the CVAT it runs):
register, create tasks, put shapes, and call the tracker with the bodies CVAT's own UI sends."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvat_sdk import Client, make_client, models

FUNCTION_ID = "pth-facebookresearch-sam2-tracker"  # metadata.name in function.yaml
PASSWORD = "Sam2-tracker!e2e"


@dataclass(frozen=True)
class User:
    username: str
    password: str = PASSWORD

    def client(self, url: str) -> Client:
        return make_client(url, credentials=(self.username, self.password))


def register(url: str, username: str) -> User:
    """Self-registration, as on CVAT's sign-up page (a regular user, no organization)."""
    body = {
        "username": username,
        "email": f"{username}@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "first_name": username,
        "last_name": "e2e",
    }
    request = urllib.request.Request(
        f"{url}/api/auth/register",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201, response.status
    return User(username)


@dataclass(frozen=True)
class TrackingJob:
    task_id: int
    job_id: int
    label_id: int
    frames: int


def create_task(client: Client, name: str, files: Sequence[Path]) -> TrackingJob:
    """A task of one job from a video file or image files, with one label of any shape type."""
    task = client.tasks.create_from_data(
        spec={"name": name, "labels": [{"name": "object", "type": "any"}]},
        resources=[str(path) for path in files],
        data_params={"sorting_method": "natural"},
    )
    (job,) = task.get_jobs()
    (label,) = task.get_labels()
    return TrackingJob(task.id, job.id, label.id, task.size)


def put_shapes(client: Client, job: TrackingJob, frame: int, shapes: Sequence[dict[str, Any]]) -> list[dict]:
    """Save `shapes` ({type, points}) on `frame` of the job, as an annotator draws them; the shapes as
    CVAT keeps them come back ({type, points}, in the order given)."""
    requests = [
        models.LabeledShapeRequest(
            type=shape["type"], frame=frame, label_id=job.label_id, points=[float(p) for p in shape["points"]]
        )
        for shape in shapes
    ]
    api_job = client.jobs.retrieve(job.job_id)
    api_job.set_annotations(models.LabeledDataRequest(shapes=requests))
    saved = sorted(api_job.get_annotations().shapes, key=lambda shape: shape.id)
    return [{"type": shape.type.value, "points": list(shape.points)} for shape in saved]


def served_frame(client: Client, job: TrackingJob, frame: int) -> bytes:
    """The frame's file as CVAT's frame provider gives it to a function (the original quality)."""
    return client.tasks.retrieve(job.task_id).get_frame(frame, quality="original").getvalue()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the JSON CVAT answered (a dict on 200, CVAT's error string otherwise)

    @property
    def shapes(self) -> list[dict | None]:
        return self.body["shapes"]

    @property
    def states(self) -> list[str]:
        return self.body["states"]


def call_tracker(client: Client, body: dict[str, Any], function: str = FUNCTION_ID) -> Answer:
    """POST /api/lambda/functions/<id>, as cvat-core's lambda.call does (CVAT's UI)."""
    _, response = client.api_client.lambda_api.create_functions(
        function, online_function_call_request=body, _parse_response=False, _check_status=False
    )
    return Answer(response.status, json.loads(response.data))


def init_tracking(job: TrackingJob, frame: int, shapes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The body CVAT's UI sends to start tracking (tools-control.tsx, core.lambda.call adds the task)."""
    return {
        "type": "init_tracking",
        "frame": frame,
        "shapes": list(shapes),
        "job": job.job_id,
        "task": job.task_id,
    }


def placed(shapes: Sequence[dict[str, Any]], frame: int, direction: str = "forward") -> list[dict[str, Any]]:
    """The shapes as the CVAT UI plugin sends them: with the frame they lie on and the run's direction."""
    return [{**shape, "frame": frame, "direction": direction} for shape in shapes]


def correct_tracking(
    job: TrackingJob, frame: int, shapes: Sequence[dict[str, Any]], states: Sequence[str | None]
) -> dict[str, Any]:
    """The CVAT UI plugin's first call of a re-run from `frame`: the shapes there beside the states the
    objects' last run ended with (CVAT forwards both lists as sent, the states unsigned)."""
    return {**init_tracking(job, frame, shapes), "states": list(states)}


def track(job: TrackingJob, frame: int, states: Sequence[str]) -> dict[str, Any]:
    """The body CVAT's UI sends to track onto the next frame."""
    return {"type": "track", "frame": frame, "states": list(states), "job": job.job_id, "task": job.task_id}


def run_session(
    client: Client, job: TrackingJob, frames: Sequence[int], shapes: Sequence[dict]
) -> list[Answer]:
    """Start on frames[0] and track over the rest, one call per frame; stops at the first error."""
    answers = [call_tracker(client, init_tracking(job, frames[0], shapes))]
    for frame in frames[1:]:
        if answers[-1].status != 200:
            break
        answers.append(call_tracker(client, track(job, frame, answers[-1].states)))
    return answers
