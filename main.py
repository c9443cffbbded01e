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
from dataclasses import dataclass
from typing import Any

from call_budget import CallBudget, calibrate
from config import Settings
from devices import describe_gpu
from model_handler import Sam2Tracker
from process_settings import ProcessSettings, claim_process
from protocol import TrackRequest, parse_body, parse_request
from state_store import StateStore, store_from_config
from tracking_call import CallRefused, TrackingCall

logger = logging.getLogger("sam2-tracker")
MAX_LOGGED_ERROR = 400  # characters of an error sentence in the log line


@dataclass
class App:
    settings: Settings
    call: TrackingCall
    process: ProcessSettings | None = None

    @property
    def tracker(self) -> Sam2Tracker:
        return self.call.tracker

    @property
    def store(self) -> StateStore:
        return self.call.store

    @property
    def budget(self) -> CallBudget | None:
        return self.call.budget


def create_app(settings: Settings | None = None, store: StateStore | None = None, worker: int = 0) -> App:
    """The function for this process (worker `worker` of a Nuclio function): the process set up for
    its device, the tracker, the store, the call budget."""
    settings = settings or Settings.from_env()
    process = claim_process(settings.tracker, worker)
    tracker = Sam2Tracker.from_config(settings.tracker, process.device)
    budget_s = settings.limits.call_budget_s
    budget = calibrate(tracker, budget_s) if budget_s > 0 else None
    store = store or store_from_config(settings.store)
    call = TrackingCall(tracker, store, settings.shapes.polygon_tolerance, settings.limits, budget)
    return App(settings, call, process)


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
        feature_cache=app.tracker.feature_cache.describe(),
        process=app.process.describe(),
        init_s=round(time.perf_counter() - began, 1),
        **budget,
    )


def handler(context, event):
    app: App = context.user_data.app
    began = time.perf_counter()
    info: dict[str, Any] = {}
    status, body = serve(app, event.body, info)
    info["total_ms"] = round((time.perf_counter() - began) * 1000, 1)
    if status != 200:
        # CVAT shows the user only the status: this line is where an admin reads why
        info["error"] = body["error"][:MAX_LOGGED_ERROR]
    context.logger.info_with("track", status=status, **info)
    return context.Response(
        body=json.dumps(body), headers={}, content_type="application/json", status_code=status
    )


def serve(app: App, body: Any, info: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for one request, with what the log line should say added to `info`; never
    raises."""
    try:
        began = time.perf_counter()
        request = parse_request(parse_body(body, app.settings.limits), app.settings.limits)
        info.update(objects=len(request.objects), object_types=describe_objects(request))
        app.call.check(request.objects)
        decoded = app.call.decode(request.image)
        info.update(image=decoded.describe())
        answer = app.call.run(decoded.picture, request.objects, time.perf_counter() - began)
        info.update(answer.costs.log_fields())
        return 200, {"shapes": answer.shapes, "states": answer.states}
    except CallRefused as error:
        return error.status, {"error": error.message}
    except Exception:  # a bug, not bad input: keep the details in the log, not in the answer
        logger.error("internal error\n%s", traceback.format_exc())
        return 500, {"error": "internal error in the SAM2 tracker; the function's log has the details"}


def describe_objects(request: TrackRequest) -> str:
    """The request's objects by kind, e.g. "mask:1 polygon:2 state:3 correction:1", for the log line."""

    def kind(obj) -> str:
        if obj.token is None:
            return obj.shape.answer_form
        return "state" if obj.shape is None else "correction"

    kinds = Counter(kind(obj) for obj in request.objects)
    return " ".join(f"{kind}:{count}" for kind, count in sorted(kinds.items()))
