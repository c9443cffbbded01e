"""Trackers built from random-weight checkpoints through the normal loading path, and the
start-then-step loop the tests and benchmarks run them through."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from config import TrackerConfig
from model_handler import Sam2Tracker, Tracked
from model_loading import resolve_precision
from shape_codecs import Box
from speedups import cpu_support
from speedups.cpu_support import CpuSupport

# Most model tests run SAM2 at 512 input: the same code path as 1024, about 10x cheaper on 2 cores.
SMALL = ("++model.image_size=512",)

# Where bf16 is emulated (AVX2-only CPUs, or oneDNN capped by ONEDNN_MAX_CPU_ISA) a bf16 frame costs
# about 10x an fp32 one: the bf16 tests keep their point on fewer frames there, and the tests of the
# memory's depth (19 frames) run at fp32.
NATIVE_BF16 = cpu_support.detect().native_bf16.runs
MEMORY_PRECISION = "bf16" if NATIVE_BF16 else "fp32"
# the bf16 comparisons' input size: where bf16 is emulated, 256 (the same code path, 4x cheaper)
BF16_OVERRIDES = SMALL if NATIVE_BF16 else ("++model.image_size=256",)
_ONEDNN_BF16 = cpu_support.detect().onednn_bf16_linear
needs_onednn_bf16 = pytest.mark.skipif(not _ONEDNN_BF16.runs, reason=_ONEDNN_BF16.reason)


def bf16_budget(native: int, emulated: int) -> int:
    """Frames or objects a bf16 test runs: `native` where bf16 is native, `emulated` where it is not."""
    return native if NATIVE_BF16 else emulated


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
    cpu: CpuSupport | None = None,
    max_anchors: int = TrackerConfig.max_anchors,
) -> Sam2Tracker:
    """The exact path by default (official attention kernel, one object at a time): what the fidelity
    tests compare. `cpu`: what the CPU runs of the fast paths (default: detected)."""
    cfg = TrackerConfig(
        checkpoint=checkpoint,
        device=device,
        precision=precision,
        fill_hole_area=fill_hole_area,
        model_overrides=overrides,
        fast_attention=fast_attention,
        batch_objects=batch_objects,
        cpu_threads=cpu_threads,
        max_anchors=max_anchors,
    )
    return Sam2Tracker.from_config(cfg, cpu=cpu)


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
