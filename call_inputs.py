"""What a tracking call is asked (`ObjectInput`: a state to continue or a `StartShape`) and how it refuses
(`CallRefused`, with the HTTP status the handler answers with), for every front end. Light on purpose:
the request layer (protocol.py) checks requests with these before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import Limits
from shape_codecs import BARE_RECTANGLE, SHAPE_TYPES

RERUN = "re-run the tracker from the current frame"
DIRECTIONS = ("forward", "backward")


class CallRefused(Exception):
    """A call refused with a sentence the user can act on, and the HTTP status (4xx, or 503 for what a
    retry may fix) that the handler answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_input(message: str) -> CallRefused:
    return CallRefused(400, message)


@dataclass(frozen=True)
class StartShape:
    """A shape that starts an object on this frame (or, beside its state, corrects it here): a CVAT
    shape type and its points, and where the client says it lies."""

    type: str
    points: list[Any]
    sent: Any = None  # the shape as it came, answered back on the start frame
    bare: bool = False  # CVAT's legacy bare ``[xtl, ytl, xbr, ybr]``, answered in the same form
    frame: int | None = None  # the video's frame number, when the client sent it
    direction: str | None = None  # one of DIRECTIONS, when the client sent it

    @property
    def answer_form(self) -> str:
        """How the object's answers are shaped, kept with its state: its shape type or a bare rectangle."""
        return BARE_RECTANGLE if self.bare else self.type


@dataclass(frozen=True)
class ObjectInput:
    """One object of a call: continue the state `token`, start from `shape`, or both: continue the
    state corrected by the shape on this frame."""

    token: str | None = None
    shape: StartShape | None = None


def check_start_shape(index: int, shape_type: Any, points: Any, limits: Limits) -> None:
    """Refuse (400) a shape no front end may start an object from: an unknown type, points that are
    not a list, a polygon over SAM2_MAX_POLYGON_POINTS."""
    where = f"shapes[{index}]"
    if shape_type not in SHAPE_TYPES:
        raise bad_input(f"{where} has type {shape_type!r}; this tracker supports {', '.join(SHAPE_TYPES)}")
    if not isinstance(points, list):
        raise bad_input(f"{where}.points must be a list of numbers")
    if shape_type == "polygon" and len(points) > 2 * limits.max_polygon_points:
        raise bad_input(
            f"{where} has {len(points) // 2} vertices; the limit is "
            f"{limits.max_polygon_points} (SAM2_MAX_POLYGON_POINTS)"
        )
