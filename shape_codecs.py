"""CVAT shapes to and from boolean masks.

- polygon: flat ``[x1, y1, x2, y2, ...]`` in pixels.
- mask: CVAT's RLE, as ``cvat_sdk.masks.encode_mask`` writes it: run lengths over the inclusive bounding
  box crop, row-major, alternating background/foreground and starting with background (a 0 run when the
  first pixel is set), followed by ``[left, top, right, bottom]`` (inclusive).
- rectangle: ``[xtl, ytl, xbr, ybr]`` in continuous pixel coordinates (a mask's box covers its pixels:
  ``[left, top, right + 1, bottom + 1]``). It starts SAM2 as a box prompt, not as a mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SHAPE_TYPES = ("mask", "polygon", "rectangle")
# CVAT's legacy tracker interface sends and expects a rectangle as a bare [xtl, ytl, xbr, ybr]; an
# object started that way is answered the same way, so its answer form is kept with its state.
BARE_RECTANGLE = "bare-rectangle"
ANSWER_FORMS = (*SHAPE_TYPES, BARE_RECTANGLE)


class ShapeError(ValueError):
    """A shape that cannot be turned into a mask; the message says why."""


@dataclass(frozen=True)
class Box:
    """A box prompt in image pixels: (x0, y0) top left, (x1, y1) bottom right."""

    x0: float
    y0: float
    x1: float
    y1: float


def _integers(values: Sequence[object], what: str) -> list[int]:
    result = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ShapeError(f"{what} must contain only numbers")
        if isinstance(value, float) and not value.is_integer():
            raise ShapeError(f"{what} must contain only whole numbers, got {value!r}")
        result.append(int(value))
    return result


def rle_to_mask(points: Sequence[object], size: tuple[int, int]) -> np.ndarray:
    """Decode CVAT mask points into a bool (height, width) mask."""
    height, width = size
    if len(points) < 5:
        raise ShapeError("a mask needs run lengths followed by [left, top, right, bottom]")
    *runs, left, top, right, bottom = _integers(points, "mask points")
    if not (0 <= left <= right < width and 0 <= top <= bottom < height):
        raise ShapeError(
            f"the mask box [{left}, {top}, {right}, {bottom}] is not inside the {width}x{height} image"
        )
    box_height, box_width = bottom - top + 1, right - left + 1
    if any(run < 0 for run in runs):
        raise ShapeError("mask run lengths must not be negative")
    if sum(runs) != box_height * box_width:
        raise ShapeError(
            f"mask run lengths add up to {sum(runs)} pixels but the box has {box_height * box_width}"
        )
    values = np.arange(len(runs)) % 2 == 1
    crop = np.repeat(values, runs).reshape(box_height, box_width)
    mask = np.zeros((height, width), dtype=bool)
    mask[top : bottom + 1, left : right + 1] = crop
    return mask


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Encode a bool mask as CVAT mask points (tight box; an empty mask encodes the pixel (0, 0))."""
    ys, xs = np.nonzero(mask)
    if xs.size:
        left, top, right, bottom = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    else:
        left = top = right = bottom = 0
    return [*run_lengths(mask[top : bottom + 1, left : right + 1].ravel()), left, top, right, bottom]


def run_lengths(flat: np.ndarray) -> list[int]:
    """Alternating background/foreground run lengths of a flat bool array, starting with background
    (a 0 run when the first value is set): CVAT's and COCO's uncompressed RLE."""
    values = flat.astype(np.int8)
    changes = np.flatnonzero(np.diff(values)) + 1
    runs = np.diff(np.concatenate(([0], changes, [values.size]))).tolist()
    return [0, *runs] if values.size and values[0] else runs


def polygon_to_mask(points: Sequence[object], size: tuple[int, int]) -> np.ndarray:
    """Rasterize a flat polygon ``[x1, y1, x2, y2, ...]`` with cv2.fillPoly."""
    if len(points) < 6 or len(points) % 2:
        raise ShapeError("a polygon needs at least 3 points as [x1, y1, x2, y2, x3, y3, ...]")
    coords = []
    for value in points:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ShapeError("polygon points must be finite numbers")
        coords.append(value)
    height, width = size
    vertices = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    # Far-away vertices only need to stay outside the image; clipping keeps cv2 in int32 range.
    vertices = np.clip(np.round(vertices), -4 * max(size), 4 * max(size)).astype(np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [vertices], 1)
    return mask.astype(bool)


def mask_to_polygon(mask: np.ndarray, tolerance: float = 1.0) -> list[float] | None:
    """The largest outer contour, simplified with `tolerance` pixels; None below 3 points."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    if tolerance > 0:
        largest = cv2.approxPolyDP(largest, tolerance, True)
    if len(largest) < 3:
        return None
    return [float(v) for v in largest.reshape(-1)]


def _rectangle_numbers(points: Sequence[object]) -> tuple[float, float, float, float]:
    if len(points) != 4:
        raise ShapeError("a rectangle needs 4 numbers: [xtl, ytl, xbr, ybr]")
    if not all(not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) for v in points):
        raise ShapeError("rectangle points must be finite numbers")
    x0, y0, x1, y1 = (float(v) for v in points)
    return x0, y0, x1, y1


def rectangle_to_box(points: Sequence[object], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Check a rectangle ``[xtl, ytl, xbr, ybr]``: finite, not empty, and overlapping the image."""
    x0, y0, x1, y1 = _rectangle_numbers(points)
    height, width = size
    if not (x0 < x1 and y0 < y1):
        raise ShapeError(
            f"the rectangle [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is empty: it needs xtl < xbr and ytl < ybr"
        )
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise ShapeError(
            f"the rectangle [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is outside the {width}x{height} image"
        )
    return x0, y0, x1, y1


def rectangle_to_mask(points: Sequence[object], size: tuple[int, int]) -> np.ndarray:
    """The pixels a rectangle ``[xtl, ytl, xbr, ybr]`` touches, clipped to the image: rows
    floor(ytl)..ceil(ybr) - 1 and columns floor(xtl)..ceil(xbr) - 1 (empty when it misses the image).
    Inverse of `mask_to_rectangle` for box-shaped masks."""
    x0, y0, x1, y1 = _rectangle_numbers(points)
    height, width = size
    top, bottom = (min(max(0, v), height) for v in (math.floor(y0), math.ceil(y1)))
    left, right = (min(max(0, v), width) for v in (math.floor(x0), math.ceil(x1)))
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def mask_to_rectangle(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if not xs.size:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def shape_to_mask(shape_type: str, points: Sequence[object], size: tuple[int, int]) -> np.ndarray:
    if shape_type == "mask":
        return rle_to_mask(points, size)
    if shape_type == "polygon":
        return polygon_to_mask(points, size)
    raise ShapeError(f"shape type {shape_type!r} has no mask (use mask or polygon)")


def shape_area_mask(shape_type: str, points: Sequence[object], size: tuple[int, int]) -> np.ndarray:
    """The pixels any shape covers, a rectangle's included (`rectangle_to_mask`): for drawing and
    writing shapes. SAM2 starts from `shape_to_prompt`, where a rectangle is a box."""
    if shape_type == "rectangle":
        return rectangle_to_mask(points, size)
    return shape_to_mask(shape_type, points, size)


def shape_to_prompt(shape_type: str, points: Sequence[object], size: tuple[int, int]) -> np.ndarray | Box:
    """What starts SAM2 on a shape: a box for a rectangle, else the shape's mask (never empty)."""
    if shape_type == "rectangle":
        return Box(*rectangle_to_box(points, size))
    mask = shape_to_mask(shape_type, points, size)
    if not mask.any():
        raise ShapeError(f"the {shape_type} covers no pixel of the {size[1]}x{size[0]} image")
    return mask


def mask_to_points(
    mask: np.ndarray | None, shape_type: str, polygon_tolerance: float = 1.0
) -> list[float] | list[int] | None:
    """The shape's points for a tracked mask, in the type it came in; None when nothing is left."""
    if mask is None or not mask.any():
        return None
    if shape_type == "mask":
        return mask_to_rle(mask)
    if shape_type == "rectangle":
        return mask_to_rectangle(mask)
    return mask_to_polygon(mask, polygon_tolerance)
