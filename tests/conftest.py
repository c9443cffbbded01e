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
                 fill_hole_area: int = 0) -> Sam2Tracker:
    cfg = TrackerConfig(checkpoint=checkpoint, device="cpu", precision=precision,
                        fill_hole_area=fill_hole_area, model_overrides=overrides)
    return Sam2Tracker.from_config(cfg)


@pytest.fixture(scope="session")
def small_tracker(checkpoint) -> Sam2Tracker:
    return make_tracker(checkpoint, precision="bf16")
