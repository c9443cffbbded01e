"""Shared fixtures: random-weight checkpoints (see tests/support/synthetic.py), trackers built from them
through the normal loading path, a real redis-server, and one CVAT tracking session."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import TrackerConfig
from model_handler import Sam2Tracker
from tests.support.models import fastest_precision, make_tracker, track_frames
from tests.support.redis_server import RedisServer
from tests.support.synthetic import write_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """Objects stay present and masks depend on memory."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "present.pt", presence_bias=8.0)


@pytest.fixture(scope="session")
def absent_checkpoint(tmp_path_factory) -> Path:
    """SAM2 calls every tracked object absent."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "absent.pt", presence_bias=-8.0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free port; tests may stop and restart it."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def small_tracker(checkpoint) -> Sam2Tracker:
    return make_tracker(checkpoint, precision=fastest_precision())


# ---- one CVAT tracking session, shared by the function and local-server tests -----------------


@pytest.fixture(scope="session")
def scene():
    from tests.support.cvat import FRAMES
    from tests.support.synthetic import moving_objects_scene

    return moving_objects_scene(FRAMES, seed=5)


@pytest.fixture(scope="session")
def images(scene) -> list[bytes]:
    """The frames as the JPEG files CVAT would send."""
    from tests.support.cvat import encode_image

    return [encode_image(frame) for frame in scene.frames]


@pytest.fixture(scope="session")
def start_shapes(scene) -> list[dict]:
    """A mask and a polygon, as CVAT sends them."""
    from cvat_sdk.masks import encode_mask

    from shape_codecs import mask_to_polygon

    return [
        {"type": "mask", "points": encode_mask(scene.masks[0][0])},
        {"type": "polygon", "points": mask_to_polygon(scene.masks[0][1], tolerance=1.0)},
    ]


@pytest.fixture(scope="session")
def expected(checkpoint, images, start_shapes, scene) -> list[tuple[list, list]]:
    """The tracker core called directly on the same image files: per continue call, the RLE of
    object 0 and the polygon of object 1."""
    import io

    import numpy as np
    from cvat_sdk.masks import decode_mask, encode_mask
    from PIL import Image

    from shape_codecs import mask_to_polygon, polygon_to_mask
    from tests.support.cvat import function_env

    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint)))
    decoded = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images]
    height, width = scene.size
    masks = [
        decode_mask(start_shapes[0]["points"], image_width=width, image_height=height),
        polygon_to_mask(start_shapes[1]["points"], (height, width)),
    ]
    per_call = []
    for tracked in track_frames(tracker, decoded, masks)[1:]:
        assert all(t.result.present for t in tracked)
        per_call.append((encode_mask(tracked[0].result.mask), mask_to_polygon(tracked[1].result.mask)))
    return per_call


@pytest.fixture(scope="session")
def server_url(checkpoint, tmp_path_factory):
    """`python -m local_server` with two workers and the in-process store, as users run it."""
    from tests.support.cvat import function_env
    from tests.support.server_process import LocalServer

    log = tmp_path_factory.mktemp("server") / "local_server.log"
    with LocalServer(function_env(checkpoint), workers=2, log=log) as server:
        yield server.url
