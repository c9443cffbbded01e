"""How long a call may take, known before any model work: CVAT stops waiting after its deadline.

CVAT's server waits `CVAT_NUCLIO_DEFAULT_TIMEOUT` seconds (120 by default) for the function's answer,
then answers the user 504 while the function goes on working; a retry waits again for nothing. So a
call whose work cannot fit in `SAM2_CALL_BUDGET_S` is refused at once, with the number of objects that
do fit.

A call costs about `per_frame + objects * per_object` seconds: reading the request, loading states and
encoding the image once, then tracking and storing each object. Both costs are measured on this
function itself: once at start-up (`calibrate`: an image encoded and an object with a full memory bank
stepped, the most an object costs), then from every served call (a running average), so a busier
machine or a slower device raises them by itself.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from anchors import Placement
from model_handler import Sam2Tracker, Start
from shape_codecs import Box

# weight of the newest call in the running averages
SMOOTHING = 0.3
# the calibration image: the size of a common video frame (the encoder's cost does not depend on it)
CALIBRATION_SIZE = (480, 640)
CALIBRATION_FRAME = 10_000  # far enough from frame 0 for every anchor to lie behind it


@dataclass(frozen=True)
class Estimate:
    seconds: float
    fitting_objects: int  # objects that fit in the budget with this call's per-frame cost


class CallBudget:
    """Running estimates of a call's per-frame and per-object costs, and the decision whether a call
    with a given number of objects fits in `budget_s`."""

    def __init__(self, budget_s: float, per_frame_s: float, per_object_s: float):
        self.budget_s = budget_s
        self.per_frame_s = per_frame_s
        self.per_object_s = per_object_s
        self._lock = threading.Lock()

    def estimate(self, objects: int) -> Estimate:
        seconds = self.per_frame_s + objects * self.per_object_s
        spare = self.budget_s - self.per_frame_s
        fitting = max(0, math.floor(spare / self.per_object_s)) if self.per_object_s > 0 else objects
        return Estimate(seconds, fitting)

    def fits(self, objects: int) -> bool:
        return self.estimate(objects).seconds <= self.budget_s

    def observe(self, per_frame_s: float | None, per_object_s: float | None) -> None:
        """Fold a served call into the averages; `per_frame_s` is None when the call tells nothing
        about encoding a new frame (its features were cached), `per_object_s` when it tells nothing
        about a full object (no object was continued with a full memory bank)."""
        with self._lock:
            if per_frame_s is not None:
                self.per_frame_s += SMOOTHING * (per_frame_s - self.per_frame_s)
            if per_object_s is not None:
                self.per_object_s += SMOOTHING * (per_object_s - self.per_object_s)

    def refusal(self, objects: int) -> str:
        estimate = self.estimate(objects)
        return (
            f"tracking {objects} objects in one call would take about {estimate.seconds:.0f} s, more than "
            f"this function's budget of {self.budget_s:g} s per call (SAM2_CALL_BUDGET_S, kept under CVAT's "
            f"deadline); about {estimate.fitting_objects} objects fit. Track fewer objects at once, or raise "
            "CVAT's CVAT_NUCLIO_DEFAULT_TIMEOUT and this function's SAM2_CALL_BUDGET_S together"
        )


def calibrate(tracker: Sam2Tracker, budget_s: float) -> CallBudget:
    """Measure the costs on this machine: one image encoded (the per-frame cost) and one object with
    a full memory bank stepped (the per-object cost). The first encode also pays one-time start-up
    costs, which errs on the safe side until real calls refine the figures."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*CALIBRATION_SIZE, 3), dtype=np.uint8)
    began = time.perf_counter()
    frame = tracker.encode(image)
    per_frame = time.perf_counter() - began
    height, width = CALIBRATION_SIZE
    box = Box(width * 0.25, height * 0.25, width * 0.75, height * 0.75)
    (started,) = tracker.start(frame, [Start(box, Placement(frame=CALIBRATION_FRAME))])
    first = started.state.anchors[0]
    # the most an object's memory holds: every anchor it may keep, and a full recent memory
    anchors = tuple(replace(first, frame=CALIBRATION_FRAME - 100 * k) for k in range(tracker.max_anchors))
    state = replace(started.state, anchors=anchors[::-1])
    for _ in range(max(tracker.keep_memories, tracker.keep_ptrs)):
        state = state.advanced(first.memory, first.ptr)
    began = time.perf_counter()
    tracker.step(frame, [state])
    per_object = time.perf_counter() - began
    return CallBudget(budget_s, per_frame, per_object)
