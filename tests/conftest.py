"""Shared fixtures: random-weight checkpoints (see tests/synthetic.py) and trackers built from them
through the normal loading path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config import TrackerConfig  # noqa: E402
from model_handler import Sam2Tracker  # noqa: E402
from tests.synthetic import write_checkpoint  # noqa: E402

# Most model tests run SAM2 at 512 input: the same code path as 1024, about 10x cheaper on 2 cores.
SMALL = ("++model.image_size=512",)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """Objects stay present and masks depend on memory."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "present.pt", presence_bias=8.0)


@pytest.fixture(scope="session")
def absent_checkpoint(tmp_path_factory) -> Path:
    """SAM2 calls every tracked object absent."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "absent.pt", presence_bias=-8.0)


def make_tracker(checkpoint: Path, precision: str = "fp32", overrides: tuple[str, ...] = SMALL,
                 fill_hole_area: int = 0, fast_attention: str = "off",
                 batch_objects: str = "off") -> Sam2Tracker:
    """The exact path by default (official attention kernel, one object at a time): what the fidelity
    tests compare."""
    cfg = TrackerConfig(checkpoint=checkpoint, device="cpu", precision=precision,
                        fill_hole_area=fill_hole_area, model_overrides=overrides,
                        fast_attention=fast_attention, batch_objects=batch_objects)
    return Sam2Tracker.from_config(cfg)


@pytest.fixture(scope="session")
def small_tracker(checkpoint) -> Sam2Tracker:
    return make_tracker(checkpoint, precision="bf16")


# ---- one CVAT tracking session, shared by the function and local-server tests -----------------

@pytest.fixture(scope="session")
def scene():
    from tests.cvat_requests import FRAMES
    from tests.synthetic import moving_objects_scene

    return moving_objects_scene(FRAMES, seed=5)


@pytest.fixture(scope="session")
def images(scene) -> list[bytes]:
    """The frames as the JPEG files CVAT would send."""
    from tests.cvat_requests import encode_image

    return [encode_image(frame) for frame in scene.frames]


@pytest.fixture(scope="session")
def start_shapes(scene) -> list[dict]:
    """A mask and a polygon, as CVAT sends them."""
    from cvat_sdk.masks import encode_mask

    from shape_codecs import mask_to_polygon

    return [{"type": "mask", "points": encode_mask(scene.masks[0][0])},
            {"type": "polygon", "points": mask_to_polygon(scene.masks[0][1], tolerance=1.0)}]


@pytest.fixture(scope="session")
def expected(checkpoint, images, start_shapes, scene) -> list[tuple[list, list]]:
    """The tracker core called directly on the same image files: per continue call, the RLE of
    object 0 and the polygon of object 1."""
    import io

    import numpy as np
    from cvat_sdk.masks import decode_mask, encode_mask
    from PIL import Image

    from shape_codecs import mask_to_polygon, polygon_to_mask
    from tests.cvat_requests import function_env

    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint)))
    decoded = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images]
    height, width = scene.size
    masks = [decode_mask(start_shapes[0]["points"], image_width=width, image_height=height),
             polygon_to_mask(start_shapes[1]["points"], (height, width))]
    tracked = tracker.start(tracker.encode(decoded[0]), masks)
    per_call = []
    for image in decoded[1:]:
        tracked = tracker.step(tracker.encode(image), [t.state for t in tracked])
        assert all(t.result.present for t in tracked)
        per_call.append((encode_mask(tracked[0].result.mask), mask_to_polygon(tracked[1].result.mask)))
    return per_call


@pytest.fixture(scope="session")
def server_url(checkpoint, tmp_path_factory):
    """`python -m local_server` with two workers and the in-process store, as users run it."""
    from tests.cvat_requests import function_env
    from tests.local_server_process import LocalServer

    log = tmp_path_factory.mktemp("server") / "local_server.log"
    with LocalServer(function_env(checkpoint), workers=2, log=log) as server:
        yield server.url
