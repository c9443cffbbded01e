"""The official SAM2VideoPredictor as the tracking oracle, and our tracker driven the same way."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from frame_pixels import upscale_logits
from model_handler import Sam2Tracker, Tracked
from object_state import from_pieces, to_pieces
from shape_codecs import Box
from tests.support.models import track_frames

# propagate_in_video caps pointers by min(num_frames, 16); a stream is a long video.
LONG_VIDEO = 1 << 30


def precision_context(precision: str, device: str = "cpu"):
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def official_logits(
    checkpoint: Path,
    frames_dir: Path,
    start_prompts: Sequence[np.ndarray | Box],
    num_frames: int,
    precision: str = "fp32",
    overrides: Sequence[str] = (),
    start_frame: int = 0,
    reverse: bool = False,
    device: str = "cpu",
) -> list[torch.Tensor]:
    """Video-resolution logits (objects, 1, H, W) per frame, in processing order, from
    ``init_state`` + ``add_new_mask`` (or ``add_new_points_or_box``) per object + ``propagate_in_video``."""
    steps = [Prompts(start_frame, start_prompts), Propagate(start_frame, num_frames - 1, reverse)]
    return official_session(checkpoint, frames_dir, steps, precision, overrides, device)


@dataclass(frozen=True)
class Prompts:
    """``add_new_mask`` (or ``add_new_points_or_box``) for each object on `frame`."""

    frame: int
    prompts: Sequence[np.ndarray | Box]


@dataclass(frozen=True)
class Propagate:
    """``propagate_in_video`` from `start` over `frames` more frames."""

    start: int
    frames: int
    reverse: bool = False


def official_session(
    checkpoint: Path,
    frames_dir: Path,
    steps: Sequence[Prompts | Propagate],
    precision: str = "fp32",
    overrides: Sequence[str] = (),
    device: str = "cpu",
) -> list[torch.Tensor]:
    """One predictor session over the video in `frames_dir`, driven by `steps` in order; the logits of
    every frame its propagations yield, in order."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        str(checkpoint),
        device=device,
        hydra_overrides_extra=list(overrides),
    )
    predictor.fill_hole_area = 0  # needs sam2's CUDA extension
    logits: list[torch.Tensor] = []
    with precision_context(precision, device):
        state = predictor.init_state(str(frames_dir))
        state["num_frames"] = LONG_VIDEO
        for step in steps:
            if isinstance(step, Prompts):
                _add_prompts(predictor, state, step)
                continue
            propagation = predictor.propagate_in_video(
                state, start_frame_idx=step.start, max_frame_num_to_track=step.frames, reverse=step.reverse
            )
            logits += [frame_logits.to("cpu", copy=True) for _, _, frame_logits in propagation]
    return logits


def _add_prompts(predictor, state, step: Prompts) -> None:
    for obj_id, prompt in enumerate(step.prompts):
        if isinstance(prompt, Box):
            box = [prompt.x0, prompt.y0, prompt.x1, prompt.y1]
            predictor.add_new_points_or_box(state, step.frame, obj_id, box=box)
        else:
            predictor.add_new_mask(state, step.frame, obj_id, prompt)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def our_logits(
    tracker: Sam2Tracker, frame_paths: Sequence[Path], start_prompts: Sequence[np.ndarray | Box]
) -> tuple[list[torch.Tensor], list[list[Tracked]]]:
    """Our tracker over the frames in the given order. Between steps every state goes through the
    bytes the stores keep (object_state's pieces) and comes back parsed and checked, as a state
    loaded from Redis does."""
    frames = [load_rgb(path) for path in frame_paths]
    history = track_frames(tracker, frames, start_prompts, between=through_store_bytes)
    size = frames[0].shape[:2]
    return [video_logits(tracked, size) for tracked in history], history


def through_store_bytes(tracked: Sequence[Tracked]) -> list:
    return [from_pieces(to_pieces(t.state)) for t in tracked]


def video_logits(tracked: Sequence[Tracked], video_size: tuple[int, int]) -> torch.Tensor:
    # upscaled where the model ran, as the predictor does
    return torch.cat([upscale_logits(t.result.logits[None, None], video_size).cpu() for t in tracked])


def compare(official: Sequence[torch.Tensor], ours: Sequence[torch.Tensor]) -> tuple[float, int]:
    """(max |logit difference|, number of mask pixels that differ) over all frames and objects."""
    assert len(official) == len(ours)
    max_diff, flipped = 0.0, 0
    for theirs, mine in zip(official, ours, strict=True):
        assert theirs.shape == mine.shape
        max_diff = max(max_diff, float((theirs - mine).abs().max()))
        flipped += int(((theirs > 0) != (mine > 0)).sum())
    return max_diff, flipped
