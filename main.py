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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from config import Settings
from model_handler import InputError, Sam2Tracker, StateError
from protocol import (
    RERUN,
    RequestError,
    TrackRequest,
    bad_request,
    decode_image,
    parse_body,
    parse_request,
    response_shape,
    shape_type_of,
)
from shape_codecs import ShapeError, mask_to_points, shape_to_prompt
from state_store import StateStore, StoredState, StoreUnavailable, UnknownState, store_from_config

logger = logging.getLogger("sam2-tracker")


@dataclass
class App:
    settings: Settings
    tracker: Sam2Tracker
    store: StateStore


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


def create_app(settings: Settings | None = None, store: StateStore | None = None) -> App:
    settings = settings or Settings.from_env()
    tracker = Sam2Tracker.from_config(settings.tracker)
    return App(settings, tracker, store or store_from_config(settings.store))


def init_context(context) -> None:
    context.user_data.app = create_app()
    context.logger.info_with("SAM2 tracker ready", store=context.user_data.app.store.describe(),
                             device=str(context.user_data.app.tracker.device),
                             precision=context.user_data.app.tracker.precision)


def handler(context, event):
    app: App = context.user_data.app
    timings = Timings()
    info: dict[str, Any] = {}
    with timings.stage("total"):
        status, body = serve(app, event.body, timings, info)
    fields = {f"{name}_ms": round(ms, 1) for name, ms in timings.stages.items()}
    context.logger.info_with("track", status=status, **info, **fields)
    return context.Response(body=json.dumps(body), headers={}, content_type="application/json",
                            status_code=status)


def serve(app: App, body: Any, timings: Timings, info: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for one request; never raises."""
    try:
        with timings.stage("decode"):
            request = parse_request(parse_body(body, app.settings.limits), app.settings.limits)
            image = decode_image(request.image, app.settings.limits)
        info.update(objects=len(request.objects), image=f"{image.width}x{image.height}")
        return 200, track(app, request, image, timings)
    except RequestError as error:
        return error.status, {"error": error.message}
    except Exception:  # a bug, not bad input: keep the details in the log, not in the answer
        logger.error("internal error\n%s", traceback.format_exc())
        return 500, {"error": "internal error in the SAM2 tracker; the function's log has the details"}


def track(app: App, request: TrackRequest, image: Image.Image, timings: Timings) -> dict[str, Any]:
    size = (image.height, image.width)
    continuing = [i for i, obj in enumerate(request.objects) if obj.token is not None]
    starting = [i for i, obj in enumerate(request.objects) if obj.shape is not None]

    with timings.stage("load"):
        parents = load_states(app, [request.objects[i].token for i in continuing], continuing, size)
    prompts = start_prompts(request, starting, size)

    with timings.stage("encode"):
        frame = app.tracker.encode(image)
    with timings.stage("track"):
        try:
            started = app.tracker.start(frame, prompts)
            stepped = app.tracker.step(frame, [parent.state for parent in parents])
        except (StateError, InputError) as error:
            raise bad_request(str(error)) from None

    tags = [request.objects[i].shape.tag for i in starting] + [p.tag for p in parents]
    with timings.stage("store"):
        saved = store_call(app, lambda: app.store.save(
            [t.state for t in started + stepped], tags, [None] * len(started) + parents))

    with timings.stage("shapes"):
        shapes: list[Any] = [None] * len(request.objects)
        states: list[Any] = [None] * len(request.objects)
        for index, stored in zip(starting + continuing, saved, strict=True):
            states[index] = stored.token
        for index in starting:
            shapes[index] = request.objects[index].shape.sent
        tolerance = app.settings.shapes.polygon_tolerance
        for index, parent, tracked in zip(continuing, parents, stepped, strict=True):
            points = mask_to_points(tracked.result.mask, shape_type_of(parent.tag), tolerance)
            shapes[index] = response_shape(parent.tag, points)
    return {"shapes": shapes, "states": states}


def load_states(app: App, tokens: list[str], indices: list[int],
                size: tuple[int, int]) -> list[StoredState]:
    if not tokens:
        return []
    try:
        loaded = store_call(app, lambda: app.store.load(tokens))
    except UnknownState:
        raise RequestError(404, f"the tracking state is unknown or has expired: {RERUN}") from None
    except StateError as error:
        raise bad_request(f"the tracking state is corrupt ({error}): {RERUN}") from None
    for index, stored in zip(indices, loaded, strict=True):
        try:
            app.tracker.check(stored.state, size)
        except StateError as error:  # checked before the image is encoded, to fail fast
            raise bad_request(f"states[{index}]: {error}: {RERUN}") from None
    return loaded


def start_prompts(request: TrackRequest, indices: list[int], size: tuple[int, int]) -> list:
    """SAM2 prompts for the objects that start on this frame: a box for a rectangle, else a mask."""
    prompts = []
    for index in indices:
        shape = request.objects[index].shape
        try:
            prompts.append(shape_to_prompt(shape.type, shape.points, size))
        except ShapeError as error:
            raise bad_request(f"shapes[{index}]: {error}") from None
    return prompts


def store_call(app: App, action):
    try:
        return action()
    except StoreUnavailable as error:
        message = f"the tracking state store is unavailable, try again later: {error}"
        raise RequestError(503, message) from None
