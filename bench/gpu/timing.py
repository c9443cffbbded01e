"""Timing on a device that runs asynchronously, summaries of timings, and the fidelity of a variant
(masks against the baseline's)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_handler import Sam2Tracker


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def median_ms(seconds: Sequence[float]) -> float:
    return ms(statistics.median(seconds))


def percentile_ms(seconds: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank) of `seconds`, in ms."""
    ordered = sorted(seconds)
    return ms(ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))])


def timed(device: torch.device, action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds `action` takes with the device's queued work finished on both ends."""
    sync(device)
    began = time.perf_counter()
    result = action()
    sync(device)
    return time.perf_counter() - began, result


def fit_line(counts: Sequence[int], seconds: Sequence[float]) -> tuple[float, float]:
    """Least squares `seconds = per_frame + count * per_object`; one point gives no slope."""
    if len(set(counts)) < 2:
        return seconds[0], 0.0
    slope, intercept = np.polyfit(np.asarray(counts, float), np.asarray(seconds, float), 1)
    return float(intercept), float(slope)


def rss_mb(pid: str = "self") -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def gpu_memory_mb(device: torch.device) -> dict[str, float] | None:
    """PyTorch's figures for this process: allocated now, the peak since the last reset, reserved."""
    if device.type != "cuda":
        return None
    mb = 2**20
    return {
        "allocated_mb": round(torch.cuda.memory_allocated(device) / mb, 1),
        "peak_mb": round(torch.cuda.max_memory_allocated(device) / mb, 1),
        "reserved_mb": round(torch.cuda.memory_reserved(device) / mb, 1),
    }


NO_GPU = "no GPU: the smoke runs on the CPU, where the process's RSS stands in"


@dataclass(frozen=True)
class ModelRun:
    """The model alone over a session (no request, no store): per steady frame, encode and track
    seconds; the low-resolution logits of the steady frames; the seconds of the warm-up frames."""

    encode_s: list[float]
    track_s: list[float]
    logits: list[torch.Tensor]  # per steady frame, (objects, H/4, W/4) on the CPU
    warmup_s: float

    def summary(self) -> dict[str, float]:
        return {
            "encode_ms": median_ms(self.encode_s),
            "track_ms": median_ms(self.track_s),
            "model_ms": median_ms([e + t for e, t in zip(self.encode_s, self.track_s, strict=True)]),
            "warmup_s": round(self.warmup_s, 2),
        }


def run_model(
    tracker: Sam2Tracker, pictures: Sequence[Any], masks: Sequence[np.ndarray], warmup: int
) -> ModelRun:
    """Start `masks` on the first picture and step them over the others, timing each frame."""
    device = tracker.device
    began = time.perf_counter()
    _, frame = timed(device, lambda: tracker.encode(pictures[0]))
    _, tracked = timed(device, lambda: tracker.start(frame, list(masks)))
    encode_s, track_s, logits = [], [], []
    warmup_s = 0.0
    for index, picture in enumerate(pictures[1:], start=1):
        if index == warmup:
            warmup_s = time.perf_counter() - began
        states = [t.state for t in tracked]
        seconds, frame = timed(device, lambda picture=picture: tracker.encode(picture))
        stepped, tracked = timed(device, lambda frame=frame, states=states: tracker.step(frame, states))
        if index >= warmup:
            encode_s.append(seconds)
            track_s.append(stepped)
            logits.append(torch.stack([t.result.logits.float().cpu() for t in tracked]))
    return ModelRun(encode_s, track_s, logits, warmup_s)


def fidelity(baseline: Sequence[torch.Tensor], variant: Sequence[torch.Tensor]) -> dict[str, float]:
    """How far a variant's logits are from the baseline's: mask pixels that differ (fraction), and the
    largest logit difference."""
    flipped = sum(int(((b > 0) != (v > 0)).sum()) for b, v in zip(baseline, variant, strict=True))
    total = sum(b.numel() for b in baseline)
    largest = max(float((b - v).abs().max()) for b, v in zip(baseline, variant, strict=True))
    return {"flipped_fraction": round(flipped / total, 6), "max_logit_diff": round(largest, 4)}
