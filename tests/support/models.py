"""Trackers built from random-weight checkpoints through the normal loading path, and the
start-then-step loop the tests and benchmarks run them through."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from config import TrackerConfig
from model_handler import Sam2Tracker, Tracked
from model_loading import resolve_precision
from shape_codecs import Box

# Most model tests run SAM2 at 512 input: the same code path as 1024, about 10x cheaper on 2 cores.
SMALL = ("++model.image_size=512",)


@functools.cache
def fastest_precision() -> str:
    """What `SAM2_PRECISION=auto` picks on this CPU, decided once per test run: bf16 where its matrix
    products are clearly faster (the AMD machines), fp32 where they are slower (the Intel ones, 2.7x
    slower in bf16 through the function). Tests of the function's calls, stores and clients run at it;
    the tests of each precision's fidelity name theirs."""
    return resolve_precision("auto", torch.device("cpu"))


def make_tracker(
    checkpoint: Path,
    precision: str = "fp32",
    overrides: tuple[str, ...] = SMALL,
    fill_hole_area: int = 0,
    fast_attention: str = "off",
    batch_objects: str = "off",
    cpu_threads: int = 0,
    device: str = "cpu",
) -> Sam2Tracker:
    """The exact path by default (official attention kernel, one object at a time): what the fidelity
    tests compare."""
    cfg = TrackerConfig(
        checkpoint=checkpoint,
        device=device,
        precision=precision,
        fill_hole_area=fill_hole_area,
        model_overrides=overrides,
        fast_attention=fast_attention,
        batch_objects=batch_objects,
        cpu_threads=cpu_threads,
    )
    return Sam2Tracker.from_config(cfg)


def track_frames(
    tracker: Sam2Tracker,
    frames: Sequence[np.ndarray],
    prompts: Sequence[np.ndarray | Box],
    between: Callable[[list[Tracked]], list] | None = None,
) -> list[list[Tracked]]:
    """Start the objects on the first frame and step them over the others; per frame, the tracked
    objects. `between` turns each frame's results into the states of the next step (default: the
    states as they are)."""
    tracked = tracker.start(tracker.encode(frames[0]), prompts)
    history = [tracked]
    for frame in frames[1:]:
        states = between(tracked) if between else [t.state for t in tracked]
        tracked = tracker.step(tracker.encode(frame), states)
        history.append(tracked)
    return history
