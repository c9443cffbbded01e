"""One tracking call on decoded inputs: what every front end runs.

The Nuclio handler (main.py, and local_server.py through it), the offline CLI (track_video.py) and the
cvat-sdk agent function (cvat_sdk_function.py) each translate their own input into a picture and
`ObjectInput`s, call `TrackingCall`, and translate its `CallAnswer` back. So every front end plans its
objects, checks stored states, encodes the image once, tracks, stores the new states and shapes the
answers the same way, and refuses bad input with the same sentences: `CallRefused`, which carries the
HTTP status the handler answers with. The typed errors of the layers below (images, shapes, the
tracker, the store) become statuses here and nowhere else.

A call reports what it cost (`CallCosts`): the call budget reads those figures, not the log's stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from anchors import Placement, PlacementError, correction_placement
from call_budget import CallBudget
from call_inputs import RERUN, CallRefused, ObjectInput, bad_input, check_start_shape
from config import Limits
from frame_pixels import picture_size
from images import DecodedImage, ImageError, decode_image
from model_handler import Correction, Frame, InputError, Prompt, Sam2Tracker, Start, TrackInput
from object_state import BACKWARD, FORWARD, StateError
from shape_codecs import BARE_RECTANGLE, ShapeError, mask_to_points, shape_to_prompt
from state_store import StateStore, StoredObject, UnknownState, Update
from store_client import StoreUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class CallCosts:
    """Seconds a call spent, by what it did, as the call measured them."""

    objects: int
    decode_s: float = 0.0  # the front end's image decoding, when it had to decode
    load_s: float = 0.0  # reading and checking stored states
    encode_s: float = 0.0
    track_s: float = 0.0
    store_s: float = 0.0
    shapes_s: float = 0.0
    full_memory: bool = False  # every object continued with a full memory bank (the most it costs)
    feature_cache: str = "off"  # "hit": the encoder did not run (feature_cache.py), "miss", or "off"

    @property
    def per_frame_s(self) -> float | None:
        """What the frame cost before any object, or None when the encoder did not run (a cache hit
        says nothing about the next new frame)."""
        if self.feature_cache == "hit":
            return None
        return self.decode_s + self.load_s + self.encode_s

    @property
    def per_object_s(self) -> float | None:
        """What one object cost, from calls where every object had a full memory bank; else None."""
        if not self.full_memory or self.objects == 0:
            return None
        return (self.track_s + self.store_s + self.shapes_s) / self.objects

    def log_fields(self) -> dict[str, float | str]:
        """Whether the frame's features were cached, and milliseconds per stage, for the log line."""
        stages = ("decode", "load", "encode", "track", "store", "shapes")
        timings = {f"{name}_ms": round(getattr(self, f"{name}_s") * 1000, 1) for name in stages}
        return {"feature_cache": self.feature_cache, **timings}


@dataclass(frozen=True)
class CallAnswer:
    """Per object, in input order: its shape on this frame (None where SAM2 says it is absent) and the
    token of its new state; and what the call cost."""

    shapes: list[Any]
    states: list[str]
    costs: CallCosts


@dataclass(frozen=True)
class _Plan:
    """What the call does with one object: start it from a prompt, continue its stored state, or both:
    correct it (continue the state with the prompt as a new anchor)."""

    answer_form: str
    prompt: Prompt | None = None
    placement: Placement = field(default_factory=Placement)
    echo: Any = None
    stored: StoredObject | None = None

    @property
    def corrects(self) -> bool:
        return self.prompt is not None and self.stored is not None

    @property
    def source(self) -> TrackInput:
        if self.stored is None:
            return Start(self.prompt, self.placement)
        if self.prompt is None:
            return self.stored.state
        return Correction(self.stored.state, self.prompt, self.placement)


@dataclass
class _Clock:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


class TrackingCall:
    """Runs calls for one tracker and one store; shared by the threads of a front end."""

    def __init__(
        self,
        tracker: Sam2Tracker,
        store: StateStore,
        polygon_tolerance: float = 1.0,
        limits: Limits | None = None,
        budget: CallBudget | None = None,
    ):
        self.tracker = tracker
        self.store = store
        self.polygon_tolerance = polygon_tolerance
        self.limits = limits or Limits()
        self.budget = budget  # None: no limit on a call's duration

    def check(self, objects: Sequence[ObjectInput]) -> None:
        """Refuse at once, before any image work, what the limits refuse: a shape this tracker cannot
        start from (400), or more objects than the budget says fit in CVAT's deadline (413)."""
        for index, obj in enumerate(objects):
            if obj.shape is not None:
                check_start_shape(index, obj.shape.type, obj.shape.points, self.limits)
        if self.budget is not None and not self.budget.fits(len(objects)):
            raise CallRefused(413, self.budget.refusal(len(objects)))

    def decode(self, data: bytes) -> DecodedImage:
        """The image file as the picture the annotator sees."""
        try:
            return decode_image(data, self.limits)
        except ImageError as error:
            raise CallRefused(503 if error.retry else 400, str(error)) from None

    def run(
        self, picture: Image.Image | np.ndarray, objects: Sequence[ObjectInput], decode_s: float = 0.0
    ) -> CallAnswer:
        """Track `objects` onto this picture (8-bit RGB): every state is loaded and checked before the
        image is encoded."""
        self.check(objects)
        clock = _Clock({"decode": decode_s})
        size = picture_size(picture)
        with clock.stage("load"):
            plans = self._plans(objects, size)
        with clock.stage("encode"):
            frame = self.tracker.encode(picture)
        return self._track(frame, plans, clock)

    def run_on_frame(self, frame: Frame, objects: Sequence[ObjectInput]) -> CallAnswer:
        """As `run`, on a frame already encoded (cvat-sdk's agent encodes once for all objects)."""
        self.check(objects)
        clock = _Clock()
        with clock.stage("load"):
            plans = self._plans(objects, frame.video_size)
        return self._track(frame, plans, clock)

    def _track(self, frame: Frame, plans: list[_Plan], clock: _Clock) -> CallAnswer:
        with clock.stage("track"):
            try:
                tracked = self.tracker.track(frame, [plan.source for plan in plans])
            except InputError as error:
                raise bad_input(str(error)) from None
        updates = [
            Update(t.state, plan.answer_form, plan.stored, anchored=plan.corrects)
            for plan, t in zip(plans, tracked, strict=True)
        ]
        with clock.stage("store"):
            saved = store_call(lambda: self.store.save(updates))
        with clock.stage("shapes"):
            shapes = [self._answer(plan, t.result.mask) for plan, t in zip(plans, tracked, strict=True)]
        full = bool(plans) and all(
            plan.prompt is None and len(plan.stored.state.memories) >= self.tracker.keep_memories
            for plan in plans
        )
        cache = "off" if self.tracker.feature_cache.capacity_bytes == 0 else "hit" if frame.cached else "miss"
        costs = CallCosts(
            len(plans),
            **{f"{k}_s": v for k, v in clock.seconds.items()},
            full_memory=full,
            feature_cache=cache,
        )
        if self.budget is not None and plans:
            self.budget.observe(costs.per_frame_s, costs.per_object_s)
        return CallAnswer(shapes, [stored.token for stored in saved], costs)

    def _plans(self, objects: Sequence[ObjectInput], size: tuple[int, int]) -> list[_Plan]:
        """One plan per object, in order; every state loaded and checked against the model and the
        image, every shape turned into its prompt."""
        continuing = [(i, obj.token) for i, obj in enumerate(objects) if obj.token is not None]
        loaded = dict(zip((i for i, _ in continuing), self._load(continuing, size), strict=True))
        plans = []
        for index, obj in enumerate(objects):
            stored = loaded.get(index)
            shape = obj.shape  # checked by `check`
            if shape is None:
                plans.append(_Plan(stored.answer_form, stored=stored))
                continue
            try:
                prompt = shape_to_prompt(shape.type, shape.points, size)
            except ShapeError as error:
                raise bad_input(f"shapes[{index}]: {error}") from None
            direction = {"forward": FORWARD, "backward": BACKWARD}.get(shape.direction)
            placement = Placement(shape.frame, direction)
            if stored is not None:
                try:
                    correction_placement(stored.state, placement)
                except PlacementError as error:
                    raise bad_input(f"shapes[{index}]: {error}") from None
            plans.append(_Plan(shape.answer_form, prompt, placement, echo=shape.sent, stored=stored))
        return plans

    def _load(self, continuing: list[tuple[int, str]], size: tuple[int, int]) -> list[StoredObject]:
        if not continuing:
            return []
        try:
            loaded = store_call(lambda: self.store.load([token for _, token in continuing]))
        except UnknownState:
            raise CallRefused(404, f"the tracking state is unknown or has expired: {RERUN}") from None
        except StateError as error:
            raise bad_input(f"the tracking state is corrupt ({error}): {RERUN}") from None
        for (index, _), stored in zip(continuing, loaded, strict=True):
            try:
                self.tracker.check(stored.state, size)
            except StateError as error:
                raise bad_input(f"states[{index}]: {error}: {RERUN}") from None
        return loaded

    def _answer(self, plan: _Plan, mask: np.ndarray | None) -> Any:
        """On the frame a shape was given (a start or a correction) the shape as sent; later the tracked
        mask in the object's answer form (None when SAM2 says the object is absent)."""
        if plan.prompt is not None:
            return plan.echo
        return answer_shape(plan.answer_form, mask, self.polygon_tolerance)


def answer_shape(answer_form: str, mask: np.ndarray | None, tolerance: float) -> Any:
    """A tracked mask as CVAT expects it back: ``{"type", "points"}``, a bare box for a legacy
    rectangle, or None."""
    shape_type = "rectangle" if answer_form == BARE_RECTANGLE else answer_form
    points = mask_to_points(mask, shape_type, tolerance)
    if points is None:
        return None
    if answer_form == BARE_RECTANGLE:
        return list(points)
    return {"type": answer_form, "points": list(points)}


def store_call(action: Callable[[], T]) -> T:
    try:
        return action()
    except StoreUnavailable as error:
        raise CallRefused(503, f"the tracking state store is unavailable, try again later: {error}") from None
