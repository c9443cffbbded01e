"""CVAT's tracker protocol: what a request may hold, checked before any work is done.

CVAT's lambda manager posts ``{"image": <base64 file>, "shapes": [...], "states": [...]}`` (and maybe
``threshold``, ignored). The first call of a tracking run has shapes and no states; every later call has
the states we returned last time, in the same order, and shapes absent or all null. Each object is
treated on its own: a state continues it, otherwise its shape starts it on this frame.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config import Limits
from shape_codecs import SHAPE_TYPES
from tokens import is_old_token, is_token

RERUN = "re-run the tracker from the current frame"
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")


class RequestError(Exception):
    """A request we answer with a 4xx (or 503) status and a sentence the user can act on."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


BARE_RECTANGLE = "bare-rectangle"


@dataclass(frozen=True)
class ShapeRequest:
    type: str
    points: list[Any]
    sent: Any  # the shape exactly as it came, echoed back on the start frame
    bare: bool = False  # a legacy ``[xtl, ytl, xbr, ybr]``, answered in the same form

    @property
    def answer_form(self) -> str:
        """How the object's answers are shaped (its shape type, or a bare rectangle), kept with its
        state."""
        return BARE_RECTANGLE if self.bare else self.type


@dataclass(frozen=True)
class ObjectRequest:
    token: str | None = None  # continue this state
    shape: ShapeRequest | None = None  # or start from this shape


@dataclass(frozen=True)
class TrackRequest:
    image: bytes  # the encoded image file
    objects: list[ObjectRequest]


def parse_body(body: Any, limits: Limits) -> dict[str, Any]:
    """The JSON object of the request, whether Nuclio already parsed it (application/json) or not."""
    if isinstance(body, bytes | bytearray | memoryview | str):
        raw = body.encode() if isinstance(body, str) else bytes(body)
        if len(raw) > limits.max_request_bytes:
            raise RequestError(
                413,
                f"the request is {len(raw)} bytes; the limit is "
                f"{limits.max_request_bytes} (SAM2_MAX_REQUEST_BYTES)",
            )
        if not raw.strip():
            raise bad_request("the request body is empty: send a JSON object with image, shapes and states")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise bad_request("the request body is not valid JSON") from None
        except RecursionError:
            raise bad_request("the request body nests JSON too deeply") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object with image, shapes and states")
    return body


def parse_request(payload: dict[str, Any], limits: Limits) -> TrackRequest:
    image = _image_bytes(payload.get("image"), limits)
    shapes = _list_or_empty(payload, "shapes")
    states = _list_or_empty(payload, "states")
    if states and shapes and len(shapes) != len(states):
        raise bad_request(
            f"shapes has {len(shapes)} items but states has {len(states)}: send the states "
            "returned by the last call, in the same order"
        )
    count = max(len(shapes), len(states))
    if count > limits.max_objects:
        raise bad_request(
            f"{count} objects in one call; the limit is {limits.max_objects} (SAM2_MAX_OBJECTS)"
        )
    objects = []
    for index in range(count):
        state = states[index] if index < len(states) else None
        shape = shapes[index] if index < len(shapes) else None
        if state is not None:
            if is_old_token(state):
                raise RequestError(
                    404, f"states[{index}] was made by an earlier release of this tracker: {RERUN}"
                )
            if not is_token(state):
                raise bad_request(f"states[{index}] is not a state of this tracker: {RERUN}")
            objects.append(ObjectRequest(token=state))
        elif shape is not None:
            objects.append(ObjectRequest(shape=_shape(index, shape, limits)))
        else:
            raise bad_request(f"shapes[{index}] and states[{index}] are both empty: nothing to track")
    return TrackRequest(image=image, objects=objects)


def _list_or_empty(payload: dict[str, Any], name: str) -> list[Any]:
    value = payload.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"{name} must be a list")
    return value


def _image_bytes(value: Any, limits: Limits) -> bytes:
    if not isinstance(value, str) or not value:
        raise bad_request("image is missing: it must be the base64 of a JPEG or PNG file")
    if len(value) > limits.max_request_bytes:
        raise RequestError(
            413,
            f"the image is {len(value)} bytes of base64; the limit is "
            f"{limits.max_request_bytes} (SAM2_MAX_REQUEST_BYTES)",
        )
    try:
        data = base64.b64decode(_DATA_URL.sub("", value, count=1), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("image is not valid base64") from None
    if not data:
        raise bad_request("image is empty")
    return data


def _shape(index: int, shape: Any, limits: Limits) -> ShapeRequest:
    where = f"shapes[{index}]"
    if isinstance(shape, list):
        # CVAT's legacy tracker interface (functions without supported_shape_types): a bare rectangle
        return ShapeRequest(type="rectangle", points=shape, sent=shape, bare=True)
    if not isinstance(shape, dict):
        raise bad_request(f"{where} must be an object with type and points")
    shape_type, points = shape.get("type"), shape.get("points")
    if shape_type not in SHAPE_TYPES:
        raise bad_request(f"{where} has type {shape_type!r}; this tracker supports {', '.join(SHAPE_TYPES)}")
    if not isinstance(points, list):
        raise bad_request(f"{where}.points must be a list of numbers")
    if shape_type == "polygon" and len(points) > 2 * limits.max_polygon_points:
        raise bad_request(
            f"{where} has {len(points) // 2} vertices; the limit is "
            f"{limits.max_polygon_points} (SAM2_MAX_POLYGON_POINTS)"
        )
    return ShapeRequest(type=shape_type, points=points, sent=shape)


def response_shape(answer_form: str, points: Sequence[float] | None) -> dict[str, Any] | list[float] | None:
    """A tracked shape as CVAT expects it back: typed, or a bare box for a legacy rectangle."""
    if points is None:
        return None
    if answer_form == BARE_RECTANGLE:
        return list(points)
    return {"type": answer_form, "points": list(points)}


def shape_type_of(answer_form: str) -> str:
    return "rectangle" if answer_form == BARE_RECTANGLE else answer_form
