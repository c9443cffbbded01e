"""Hypothesis strategies for hostile and broken CVAT tracker requests (tests and bench/fuzz_requests.py).

Most generated requests are wrong somewhere; some are valid, so the fuzzing also runs the model. Images
are small so that valid cases stay cheap.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from hypothesis import strategies as st
from PIL import Image

WIDTH, HEIGHT = 48, 32


def png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares `width` x `height` (a decompression bomb, or a zero-size image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


VALID_IMAGE = png(WIDTH, HEIGHT)
OTHER_SIZE_IMAGE = png(WIDTH + 8, HEIGHT)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
numbers = (
    st.integers(-2 * WIDTH, 2 * WIDTH)
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(-100, 100)
)

images = st.one_of(
    st.just(b64(VALID_IMAGE)),
    st.just(b64(VALID_IMAGE)),
    st.just(b64(OTHER_SIZE_IMAGE)),
    st.just(b64(VALID_IMAGE)[: len(b64(VALID_IMAGE)) // 2]),  # truncated
    st.just(b64(VALID_IMAGE[: len(VALID_IMAGE) // 2])),  # a truncated file
    st.just(b64(png_header_only(100_000, 100_000))),  # decompression bomb
    st.just(b64(png_header_only(0, 10))),  # zero-size image
    st.just(b64(b"GIF89a not really")),
    st.binary(max_size=64).map(b64),  # bytes that are not an image
    st.text(max_size=40),  # not base64
    json_values,
)

in_image = st.tuples(st.integers(-5, WIDTH + 5), st.integers(-5, HEIGHT + 5))
polygon_points = st.one_of(
    st.lists(in_image, min_size=3, max_size=12).map(lambda ps: [float(c) for p in ps for c in p]),
    st.lists(in_image, min_size=0, max_size=2).map(lambda ps: [c for p in ps for c in p]),  # < 3 points
    st.just([0, 0, WIDTH, HEIGHT, WIDTH, 0, 0, HEIGHT]),  # self-intersecting (a bow tie)
    st.lists(numbers, max_size=14),
    json_values,
)


def _rle(mask: np.ndarray) -> list[int]:
    from shape_codecs import mask_to_rle

    return mask_to_rle(mask)


masks = st.lists(st.booleans(), min_size=WIDTH * HEIGHT, max_size=WIDTH * HEIGHT).map(
    lambda bits: np.array(bits, dtype=bool).reshape(HEIGHT, WIDTH)
)
mask_points = st.one_of(
    masks.map(_rle),
    masks.map(_rle).map(lambda p: [p[0] + 1, *p[1:]]),  # runs do not add up to the box
    masks.map(_rle).map(lambda p: [*p[:-2], p[-2] + WIDTH, p[-1]]),  # box leaves the image
    st.lists(st.integers(-3, 50), min_size=0, max_size=12),
    st.lists(numbers, max_size=10),
    json_values,
)

shapes = st.one_of(
    st.fixed_dictionaries({"type": st.just("polygon"), "points": polygon_points}),
    st.fixed_dictionaries({"type": st.just("mask"), "points": mask_points}),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["rectangle", "ellipse", "points", "skeleton", "MASK"]) | json_values,
            "points": st.lists(numbers, max_size=8),
        }
    ),
    st.lists(numbers, max_size=6),  # a legacy bare point list
    json_values,
)

states = st.one_of(
    st.just("v2." + "A" * 11 + "." + "A" * 22),  # well-formed, unknown
    st.just("v1." + "A" * 22),  # an earlier release's
    st.text(max_size=30),
    st.just("v1.../../../etc/passwd"),
    json_values,
)

bodies = st.one_of(
    st.fixed_dictionaries(
        {"image": images},
        optional={
            "shapes": st.lists(shapes, max_size=4) | json_values,
            "states": st.lists(states, max_size=4) | json_values,
            "threshold": json_values,
        },
    ),
    json_values,
)

raw_bodies = st.one_of(
    bodies.map(lambda body: ("json", body)),
    bodies.map(lambda body: ("bytes", _dumps(body))),
    st.binary(max_size=200).map(lambda data: ("bytes", data)),
    st.integers(1, 5000).map(lambda depth: ("bytes", b"[" * depth * 20 + b"]" * depth * 20)),
)


def _dumps(body) -> bytes:
    import json

    return json.dumps(body, allow_nan=True).encode()
