"""CVAT shape codecs, with cvat-sdk's own mask codec as the oracle."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask

from shape_codecs import (
    Box,
    ShapeError,
    mask_to_points,
    mask_to_polygon,
    mask_to_rle,
    polygon_to_mask,
    rectangle_to_box,
    rectangle_to_mask,
    rle_to_mask,
    shape_area_mask,
    shape_to_mask,
    shape_to_prompt,
)

H, W = 37, 53


def _masks():
    rng = np.random.default_rng(0)
    empty = np.zeros((H, W), bool)
    full = np.ones((H, W), bool)
    one = empty.copy()
    one[17, 23] = True
    corner = empty.copy()
    corner[0, 0] = True
    last = empty.copy()
    last[-1, -1] = True
    borders = empty.copy()
    borders[0, :] = borders[-1, :] = borders[:, 0] = borders[:, -1] = True
    ring = empty.copy()
    cv2.circle(ring.view(np.uint8), (26, 18), 12, 1, -1)
    cv2.circle(ring.view(np.uint8), (26, 18), 5, 0, -1)
    noise = rng.random((H, W)) > 0.6
    return {
        "empty": empty,
        "full": full,
        "one-pixel": one,
        "top-left": corner,
        "bottom-right": last,
        "borders": borders,
        "hole": ring,
        "noise": noise,
    }


MASKS = _masks()


@pytest.mark.parametrize("name", MASKS)
def test_rle_encoding_equals_cvat_sdk(name):
    mask = MASKS[name]
    assert mask_to_rle(mask) == encode_mask(mask)


@pytest.mark.parametrize("name", MASKS)
def test_rle_decoding_equals_cvat_sdk(name):
    points = encode_mask(MASKS[name])
    decoded = rle_to_mask(points, (H, W))
    np.testing.assert_array_equal(decoded, decode_mask(points, image_width=W, image_height=H))
    if MASKS[name].any():
        np.testing.assert_array_equal(decoded, MASKS[name])


def test_rle_accepts_whole_floats_and_a_leading_zero_run():
    mask = MASKS["top-left"]
    points = [float(v) for v in encode_mask(mask)]
    assert points[0] == 0.0
    np.testing.assert_array_equal(rle_to_mask(points, (H, W)), mask)


@pytest.mark.parametrize(
    "points, message",
    [
        ([1, 0, 0], "run lengths followed by"),
        ([1, 0, 0, 0, W], "not inside"),
        ([1, -1, 0, 0, 0], "not inside"),
        ([2, 0, 0, 0, 0], "add up to 2 pixels but the box has 1"),
        ([1.5, 0, 0, 0, 0], "whole numbers"),
        (["1", 0, 0, 0, 0], "only numbers"),
        ([3, -2, 0, 0, 0, 0], "negative"),
        ([1, 0, 0, 5, 0], "add up to 1 pixels but the box has 6"),
    ],
)
def test_bad_rle_is_refused_with_a_reason(points, message):
    with pytest.raises(ShapeError, match=message):
        rle_to_mask(points, (H, W))


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize(
    "polygon",
    [
        [10, 10, 40, 10, 40, 30, 10, 30],  # rectangle
        [5, 30, 25, 3, 48, 33],  # triangle
        [10, 5, 30, 5, 45, 18, 30, 33, 10, 33, 4, 18],  # hexagon
    ],
)
def test_polygon_round_trip_keeps_the_shape(polygon):
    mask = polygon_to_mask(polygon, (H, W))
    assert mask.sum() > 100
    back = mask_to_polygon(mask, tolerance=1.0)
    assert back is not None and len(back) >= 6 and len(back) % 2 == 0
    assert _iou(polygon_to_mask(back, (H, W)), mask) >= 0.9


def test_polygon_from_mask_takes_the_largest_outer_contour():
    mask = np.zeros((H, W), bool)
    mask[2:6, 2:6] = True
    mask[10:30, 20:45] = True
    mask[15:20, 25:35] = False  # a hole: outer contour only
    points = mask_to_polygon(mask, tolerance=0.0)
    xs, ys = points[0::2], points[1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (20, 10, 44, 29)


def test_tiny_masks_give_no_polygon():
    single = np.zeros((H, W), bool)
    single[5, 5] = True
    assert mask_to_polygon(single) is None
    assert mask_to_points(np.zeros((H, W), bool), "polygon") is None
    assert mask_to_points(None, "mask") is None


def test_output_type_follows_input_type():
    mask = polygon_to_mask([10, 10, 40, 10, 40, 30, 10, 30], (H, W))
    assert mask_to_points(mask, "mask") == encode_mask(mask)
    assert len(mask_to_points(mask, "polygon")) == 8


@pytest.mark.parametrize(
    "points", [[1, 2, 3, 4], [1, 2, 3, 4, 5], [0, 0, float("nan"), 1, 2, 2], [0, 0, "x", 1, 2, 2]]
)
def test_bad_polygons_are_refused(points):
    with pytest.raises(ShapeError):
        polygon_to_mask(points, (H, W))


def test_polygon_far_outside_the_image_is_clipped_not_crashing():
    mask = polygon_to_mask([-1e12, -1e12, 1e12, -1e12, 1e12, 1e12, -1e12, 1e12], (H, W))
    assert mask.all()


def test_unsupported_shape_type_is_named():
    with pytest.raises(ShapeError, match="'ellipse' has no mask"):
        shape_to_mask("ellipse", [1, 2, 3, 4], (H, W))


def test_rectangles_are_checked_and_masks_give_their_box():
    assert rectangle_to_box([1, 2, 10.5, 20], (H, W)) == (1.0, 2.0, 10.5, 20.0)
    for points, message in [
        ([1, 2, 3], "4 numbers"),
        ([5, 5, 5, 9], "empty"),
        ([9, 1, 3, 4], "empty"),
        ([W, 0, W + 5, 5], "outside"),
        ([-9, -9, 0, 0], "outside"),
        ([0, 0, float("inf"), 5], "finite"),
        ([0, 0, True, 5], "finite"),
    ]:
        with pytest.raises(ShapeError, match=message):
            rectangle_to_box(points, (H, W))
    mask = np.zeros((H, W), bool)
    mask[3:7, 10:12] = True
    assert mask_to_points(mask, "rectangle") == [10.0, 3.0, 12.0, 7.0]
    assert mask_to_points(np.zeros((H, W), bool), "rectangle") is None


def picture(rows: str) -> np.ndarray:
    """A bool mask drawn as rows of 0 and 1 separated by spaces."""
    return np.array([[c == "1" for c in row] for row in rows.split()], bool)


@pytest.mark.parametrize(
    "points, expected",
    [
        # fractional corners take the pixels they reach into; a rectangle partly outside is clipped
        ([1.5, -0.7, 3.2, 2.0], "011100 011100 000000 000000 000000"),
        ([4.2, 3.9, 9, 7.5], "000000 000000 000000 000011 000011"),
        ([-1e300, -5, 1e300, 0.5], "111111 000000 000000 000000 000000"),
    ],
)
def test_rectangle_masks_cover_every_pixel_the_rectangle_touches(points, expected):
    np.testing.assert_array_equal(rectangle_to_mask(points, (5, 6)), picture(expected))


def test_rectangle_masks_outside_the_image_are_empty_and_a_masks_box_round_trips():
    for outside in ([6, 0, 9, 3], [0, -3, 4, 0], [-9, -9, -1, -1]):
        assert not rectangle_to_mask(outside, (5, 6)).any()
    box = np.zeros((H, W), bool)
    box[3:7, 10:12] = True
    np.testing.assert_array_equal(rectangle_to_mask(mask_to_points(box, "rectangle"), (H, W)), box)
    for points in ([1, 2, 3], [0, 0, float("nan"), 2]):
        with pytest.raises(ShapeError):
            rectangle_to_mask(points, (H, W))


def test_shape_area_masks_include_rectangles_that_prompts_keep_as_boxes():
    rectangle = [10.5, 3, 40, 20.2]
    np.testing.assert_array_equal(
        shape_area_mask("rectangle", rectangle, (H, W)), rectangle_to_mask(rectangle, (H, W))
    )
    assert shape_to_prompt("rectangle", rectangle, (H, W)) == Box(10.5, 3.0, 40.0, 20.2)
    polygon = [5, 30, 25, 3, 48, 33]
    np.testing.assert_array_equal(
        shape_area_mask("polygon", polygon, (H, W)), polygon_to_mask(polygon, (H, W))
    )
    points = encode_mask(MASKS["hole"])
    np.testing.assert_array_equal(shape_area_mask("mask", points, (H, W)), MASKS["hole"])
    with pytest.raises(ShapeError, match="'ellipse' has no mask"):
        shape_area_mask("ellipse", [1, 2, 3, 4], (H, W))
