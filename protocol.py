"""CVAT's tracker protocol: what a request may hold, checked before any work is done.

CVAT's lambda manager posts ``{"image": <base64 file>, "shapes": [...], "states": [...]}`` (and maybe
``threshold``, ignored). The first call of a tracking run has shapes and no states; every later call has
the states we returned last time, in the same order, and shapes absent or all null. Each object is
treated on its own: a state continues it, a shape starts it on this frame, and both together correct it
here (the shape becomes one more anchor of the object's memory: anchors.py). CVAT forwards each shape
object as the client posted it, so a shape may say where it lies: ``"frame"`` (the video's frame
number) and ``"direction"`` (``"forward"`` or ``"backward"``, where the run goes from it).

This module turns that JSON into the call path's inputs (tracking_call.py) and refuses, with the same
`CallRefused` sentences, what cannot be one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from call_inputs import DIRECTIONS, RERUN, CallRefused, ObjectInput, StartShape, bad_input, check_start_shape
from config import Limits
from tokens import is_old_token, is_token

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")
FRAME_LIMIT = 1 << 31  # frame numbers a shape may name (CVAT's are 32-bit integers)


@dataclass(frozen=True)
class TrackRequest:
    image: bytes  # the encoded image file
    objects: list[ObjectInput]


def parse_body(body: Any, limits: Limits) -> dict[str, Any]:
    """The JSON object of the request, whether Nuclio already parsed it (application/json) or not."""
    if isinstance(body, bytes | bytearray | memoryview | str):
        raw = body.encode() if isinstance(body, str) else bytes(body)
        if len(raw) > limits.max_request_bytes:
            raise CallRefused(
                413,
                f"the request is {len(raw)} bytes; the limit is "
                f"{limits.max_request_bytes} (SAM2_MAX_REQUEST_BYTES)",
            )
        if not raw.strip():
            raise bad_input("the request body is empty: send a JSON object with image, shapes and states")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise bad_input("the request body is not valid JSON") from None
        except RecursionError:
            raise bad_input("the request body nests JSON too deeply") from None
    if not isinstance(body, dict):
        raise bad_input("the request body must be a JSON object with image, shapes and states")
    return body


def parse_request(payload: dict[str, Any], limits: Limits) -> TrackRequest:
    image = _image_bytes(payload.get("image"), limits)
    shapes = _list_or_empty(payload, "shapes")
    states = _list_or_empty(payload, "states")
    if states and shapes and len(shapes) != len(states):
        raise bad_input(
            f"shapes has {len(shapes)} items but states has {len(states)}: send the states "
            "returned by the last call, in the same order"
        )
    count = max(len(shapes), len(states))
    if count > limits.max_objects:
        raise bad_input(f"{count} objects in one call; the limit is {limits.max_objects} (SAM2_MAX_OBJECTS)")
    objects = []
    for index in range(count):
        state = states[index] if index < len(states) else None
        shape = shapes[index] if index < len(shapes) else None
        if state is None and shape is None:
            raise bad_input(f"shapes[{index}] and states[{index}] are both empty: nothing to track")
        token = None if state is None else _token(index, state)
        start = None if shape is None else _shape(index, shape, limits)
        objects.append(ObjectInput(token=token, shape=start))
    return TrackRequest(image=image, objects=objects)


def _token(index: int, state: Any) -> str:
    if is_old_token(state):
        raise CallRefused(404, f"states[{index}] was made by an earlier release of this tracker: {RERUN}")
    if not is_token(state):
        raise bad_input(f"states[{index}] is not a state of this tracker: {RERUN}")
    return state


def _list_or_empty(payload: dict[str, Any], name: str) -> list[Any]:
    value = payload.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_input(f"{name} must be a list")
    return value


def _image_bytes(value: Any, limits: Limits) -> bytes:
    if not isinstance(value, str) or not value:
        raise bad_input("image is missing: it must be the base64 of a JPEG or PNG file")
    if len(value) > limits.max_request_bytes:
        raise CallRefused(
            413,
            f"the image is {len(value)} bytes of base64; the limit is "
            f"{limits.max_request_bytes} (SAM2_MAX_REQUEST_BYTES)",
        )
    try:
        data = base64.b64decode(_DATA_URL.sub("", value, count=1), validate=True)
    except (binascii.Error, ValueError):
        raise bad_input("image is not valid base64") from None
    if not data:
        raise bad_input("image is empty")
    return data


def _shape(index: int, shape: Any, limits: Limits) -> StartShape:
    if isinstance(shape, list):
        # CVAT's legacy tracker interface (functions without supported_shape_types): a bare rectangle
        return StartShape(type="rectangle", points=shape, sent=shape, bare=True)
    if not isinstance(shape, dict):
        raise bad_input(f"shapes[{index}] must be an object with type and points")
    shape_type, points = shape.get("type"), shape.get("points")
    check_start_shape(index, shape_type, points, limits)
    frame, direction = shape.get("frame"), shape.get("direction")
    if frame is not None and (type(frame) is not int or not 0 <= frame < FRAME_LIMIT):
        raise bad_input(
            f"shapes[{index}].frame must be the frame number the shape is on (a whole number from 0)"
        )
    if direction is not None and direction not in DIRECTIONS:
        raise bad_input(f"shapes[{index}].direction must be one of {', '.join(map(repr, DIRECTIONS))}")
    return StartShape(type=shape_type, points=points, sent=shape, frame=frame, direction=direction)
