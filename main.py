"""Nuclio entry point of the SAM2 tracker for CVAT: decode the request, track, encode the response.

`init_context` builds the tracker and the state store once per worker; `handler` serves one frame:
it starts objects from the shapes of the first call and continues every object from its state on
later calls (see protocol.py for the request, state_store.py for where states live).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from call_budget import CallBudget, calibrate
from config import Settings
from devices import describe_gpu
from images import decode_image
from model_handler import InputError, Prompt, Sam2Tracker
from object_state import ObjectState, StateError
from process_settings import ProcessSettings, claim_process
from protocol import (
    RERUN,
    RequestError,
    TrackRequest,
    bad_request,
    parse_body,
    parse_request,
    response_shape,
    shape_type_of,
)
from shape_codecs import ShapeError, mask_to_points, shape_to_prompt
from state_store import StateStore, StoredObject, UnknownState, Update, store_from_config
from store_client import StoreUnavailable

logger = logging.getLogger("sam2-tracker")
MAX_LOGGED_ERROR = 400  # characters of an error sentence in the log line


@dataclass
class App:
    settings: Settings
    tracker: Sam2Tracker
    store: StateStore
    budget: CallBudget | None = None  # None: no limit on a call's duration
    process: ProcessSettings | None = None


@dataclass
class Timings:
    """Milliseconds per stage of one call, for the log line."""

    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - start) * 1000


def create_app(settings: Settings | None = None, store: StateStore | None = None, worker: int = 0) -> App:
    """The function for this process (worker `worker` of a Nuclio function): the process set up for
    its device, the tracker, the store, the call budget."""
    settings = settings or Settings.from_env()
    process = claim_process(settings.tracker, worker)
    tracker = Sam2Tracker.from_config(settings.tracker, process.device)
    budget_s = settings.limits.call_budget_s
    budget = calibrate(tracker, budget_s) if budget_s > 0 else None
    return App(settings, tracker, store or store_from_config(settings.store), budget, process)


def worker_of(context) -> int:
    """This worker's index: Nuclio's Python wrapper passes it as a string ("0"), nuclio-sdk as an int."""
    return int(getattr(context, "worker_id", 0) or 0)


def init_context(context) -> None:
    began = time.perf_counter()
    app = create_app(worker=worker_of(context))
    context.user_data.app = app
    budget = {}
    if app.budget is not None:
        budget = {
            "call_budget_s": app.budget.budget_s,
            "per_frame_s": round(app.budget.per_frame_s, 3),
            "per_object_s": round(app.budget.per_object_s, 3),
            "objects_per_call": app.budget.estimate(0).fitting_objects,
        }
    context.logger.info_with(
        "SAM2 tracker ready",
        store=app.store.describe(),
        device=str(app.tracker.device),
        gpu=describe_gpu(app.tracker.device),
        precision=app.tracker.precision,
        model=app.tracker.preparation.describe(),
        process=app.process.describe(),
        init_s=round(time.perf_counter() - began, 1),
        **budget,
    )


def handler(context, event):
    app: App = context.user_data.app
    timings = Timings()
    info: dict[str, Any] = {}
    with timings.stage("total"):
        status, body = serve(app, event.body, timings, info)
    fields = {f"{name}_ms": round(ms, 1) for name, ms in timings.stages.items()}
    if status != 200:
        # CVAT shows the user only the status: this line is where an admin reads why
        info["error"] = body["error"][:MAX_LOGGED_ERROR]
    context.logger.info_with("track", status=status, **info, **fields)
    return context.Response(
        body=json.dumps(body), headers={}, content_type="application/json", status_code=status
    )


def serve(app: App, body: Any, timings: Timings, info: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for one request; never raises."""
    try:
        with timings.stage("decode"):
            request = parse_request(parse_body(body, app.settings.limits), app.settings.limits)
            info.update(objects=len(request.objects), object_types=describe_objects(request))
            check_budget(app, len(request.objects))
            decoded = decode_image(request.image, app.settings.limits)
        info.update(image=decoded.describe())
        return 200, track(app, request, decoded.picture, timings)
    except RequestError as error:
        return error.status, {"error": error.message}
    except Exception:  # a bug, not bad input: keep the details in the log, not in the answer
        logger.error("internal error\n%s", traceback.format_exc())
        return 500, {"error": "internal error in the SAM2 tracker; the function's log has the details"}


def describe_objects(request: TrackRequest) -> str:
    """The request's objects by kind, e.g. "mask:1 polygon:2 state:3", for the log line."""
    kinds = Counter("state" if obj.token is not None else obj.shape.answer_form for obj in request.objects)
    return " ".join(f"{kind}:{count}" for kind, count in sorted(kinds.items()))


def check_budget(app: App, objects: int) -> None:
    if app.budget is not None and not app.budget.fits(objects):
        raise RequestError(413, app.budget.refusal(objects))


def observe_costs(app: App, plans: list[ObjectPlan], timings: Timings) -> None:
    """Refine the cost estimates with a served call: the per-object cost only from calls where every
    object continued with a full memory bank (the most an object costs)."""
    if app.budget is None or not plans:
        return
    stages = timings.stages
    per_frame = (stages.get("decode", 0) + stages.get("load", 0) + stages.get("encode", 0)) / 1000
    per_object = None
    if all(plan.stored is not None and plan.stored.state.step >= app.tracker.keep_memories for plan in plans):
        objects_ms = stages.get("track", 0) + stages.get("store", 0) + stages.get("shapes", 0)
        per_object = objects_ms / 1000 / len(plans)
    app.budget.observe(per_frame, per_object)


@dataclass(frozen=True)
class ObjectPlan:
    """What this call does with one object of the request: start it from a prompt, or continue it
    from its stored state; and the form its answers take."""

    answer_form: str
    prompt: Prompt | None = None  # starts on this frame
    echo: Any = None  # the shape as sent, answered back on the start frame
    stored: StoredObject | None = None  # or continues from this state

    @property
    def source(self) -> Prompt | ObjectState:
        return self.stored.state if self.stored is not None else self.prompt


def track(app: App, request: TrackRequest, image: Image.Image, timings: Timings) -> dict[str, Any]:
    size = (image.height, image.width)
    with timings.stage("load"):
        plans = plan_objects(app, request, size)
    with timings.stage("encode"):
        frame = app.tracker.encode(image)
    with timings.stage("track"):
        try:
            tracked = app.tracker.track(frame, [plan.source for plan in plans])
        except InputError as error:
            raise bad_request(str(error)) from None
    updates = [Update(t.state, plan.answer_form, plan.stored) for plan, t in zip(plans, tracked, strict=True)]
    with timings.stage("store"):
        saved = store_call(app, lambda: app.store.save(updates))
    with timings.stage("shapes"):
        tolerance = app.settings.shapes.polygon_tolerance
        shapes = [
            answer_shape(plan, t.result.mask, tolerance) for plan, t in zip(plans, tracked, strict=True)
        ]
    observe_costs(app, plans, timings)
    return {"shapes": shapes, "states": [stored.token for stored in saved]}


def plan_objects(app: App, request: TrackRequest, size: tuple[int, int]) -> list[ObjectPlan]:
    """One plan per object, in request order; every state is loaded and checked against the model and
    the image before any model work, and every shape becomes its prompt."""
    continuing = [(i, obj.token) for i, obj in enumerate(request.objects) if obj.token is not None]
    loaded = dict(zip((i for i, _ in continuing), load_states(app, continuing, size), strict=True))
    plans = []
    for index, obj in enumerate(request.objects):
        if index in loaded:
            stored = loaded[index]
            plans.append(ObjectPlan(stored.answer_form, stored=stored))
            continue
        shape = obj.shape
        try:
            prompt = shape_to_prompt(shape.type, shape.points, size)
        except ShapeError as error:
            raise bad_request(f"shapes[{index}]: {error}") from None
        plans.append(ObjectPlan(shape.answer_form, prompt=prompt, echo=shape.sent))
    return plans


def load_states(app: App, continuing: list[tuple[int, str]], size: tuple[int, int]) -> list[StoredObject]:
    if not continuing:
        return []
    try:
        loaded = store_call(app, lambda: app.store.load([token for _, token in continuing]))
    except UnknownState:
        raise RequestError(404, f"the tracking state is unknown or has expired: {RERUN}") from None
    except StateError as error:
        raise bad_request(f"the tracking state is corrupt ({error}): {RERUN}") from None
    for (index, _), stored in zip(continuing, loaded, strict=True):
        try:
            app.tracker.check(stored.state, size)
        except StateError as error:
            raise bad_request(f"states[{index}]: {error}: {RERUN}") from None
    return loaded


def answer_shape(plan: ObjectPlan, mask, tolerance: float) -> Any:
    """The shape answered for an object: on its start frame the shape as sent, later the tracked mask
    in the object's answer form (None when SAM2 says it is absent)."""
    if plan.stored is None:
        return plan.echo
    points = mask_to_points(mask, shape_type_of(plan.answer_form), tolerance)
    return response_shape(plan.answer_form, points)


def store_call(app: App, action):
    try:
        return action()
    except StoreUnavailable as error:
        message = f"the tracking state store is unavailable, try again later: {error}"
        raise RequestError(503, message) from None
