"""What the measurements run on: random-weight checkpoints, a real redis-server, and synthetic videos
as CVAT sends their frames (PNG), with the shapes that start their objects.

The videos are made for speed at 1080p with up to 30 objects: each object moves on a small circle in
its own cell of a grid (no object hides another, every object stays in view however long the session,
and a video of `period` frames loops without a jump)."""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from bench.gpu.budget import Estimates
from bench.gpu.sizes import CONFIGS, Sizes
from shape_codecs import mask_to_polygon, mask_to_rle
from tests.support.redis_server import RedisServer
from tests.support.synthetic import write_checkpoint, write_jpeg_folder


@dataclass(frozen=True)
class Video:
    frames: list[np.ndarray]  # RGB uint8, (height, width, 3)
    start_masks: list[np.ndarray]  # per object, bool (height, width), on frame 0

    def pngs(self) -> list[bytes]:
        """The frames as the PNG files CVAT sends for a video task (Pillow's defaults), written in
        parallel: Pillow lets go of the GIL while it compresses."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return list(pool.map(png, self.frames))

    def start_shapes(self, objects: int) -> list[dict[str, Any]]:
        """Shapes for the first `objects` objects, as CVAT sends them: masks (CVAT's RLE) and polygons
        in turn."""
        shapes = []
        for index, mask in enumerate(self.start_masks[:objects]):
            if index % 2 == 0:
                shapes.append({"type": "mask", "points": mask_to_rle(mask)})
            else:
                shapes.append({"type": "polygon", "points": mask_to_polygon(mask)})
        return shapes


def png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def _blurred_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), sigma)


def grid_video(frames: int, size: tuple[int, int], objects: int, seed: int, period: int = 0) -> Video:
    """`frames` frames of `size` (height, width) with `objects` textured shapes, one per grid cell,
    each going once round its circle in `period` frames (default: `frames`)."""
    height, width = size
    rng = np.random.default_rng(seed)
    background = (_blurred_noise(rng, height, width, 3) // 2 + 64).astype(np.uint8)
    columns = max(1, round(math.sqrt(objects * width / height)))
    rows = math.ceil(objects / columns)
    cell_h, cell_w = height // rows, width // columns
    period = period or frames
    shapes = []
    for index in range(objects):
        top, left = (index // columns) * cell_h, (index % columns) * cell_w
        shapes.append(
            {
                "cell": (top, left),
                "texture": _blurred_noise(rng, cell_h, cell_w, 1),
                "phase": rng.uniform(0, 2 * math.pi),
                "angle": rng.uniform(0, 180),
            }
        )
    pictures, start_masks = [], []
    for t in range(frames):
        image = background.copy()
        for index, shape in enumerate(shapes):
            mask = _shape_mask(index % 3, (cell_h, cell_w), shape, 2 * math.pi * t / period)
            top, left = shape["cell"]
            window = image[top : top + cell_h, left : left + cell_w]
            window[mask] = shape["texture"][mask]
            if t == 0:
                full = np.zeros((height, width), dtype=bool)
                full[top : top + cell_h, left : left + cell_w] = mask
                start_masks.append(full)
        pictures.append(image)
    return Video(pictures, start_masks)


def _shape_mask(kind: int, cell: tuple[int, int], shape: dict[str, Any], turn: float) -> np.ndarray:
    """An ellipse, a rectangle or a triangle in its cell, moved `turn` radians round its circle."""
    cell_h, cell_w = cell
    radius = 0.28 * min(cell_h, cell_w)
    orbit = 0.12 * min(cell_h, cell_w)
    cx = cell_w / 2 + orbit * math.cos(shape["phase"] + turn)
    cy = cell_h / 2 + orbit * math.sin(shape["phase"] + turn)
    angle = shape["angle"] + math.degrees(turn)
    mask = np.zeros(cell, dtype=np.uint8)
    center = (round(cx), round(cy))
    if kind == 0:
        axes = (max(1, round(radius)), max(1, round(radius * 0.6)))
        cv2.ellipse(mask, center, axes, angle, 0, 360, 1, -1)
    else:
        corners = 4 if kind == 1 else 3
        turns = np.deg2rad(angle + np.arange(corners) * 360 / corners)
        points = np.stack([cx + radius * np.cos(turns), cy + radius * np.sin(turns)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


@dataclass
class Workspace:
    """A temporary folder with the run's checkpoints (made on first use), its redis-server and the
    function's log stream."""

    sizes: Sizes
    estimates: Estimates
    function_log: Any  # a text stream for the function's own log lines
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sam2-gpu-bench-")))
    redis: RedisServer | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)

    def checkpoint(self, config: str) -> Path:
        """Random weights of the real model with the presence bias that keeps objects present."""
        if config not in self.checkpoints:
            path = self.folder / f"{config}.pt"
            self.checkpoints[config] = write_checkpoint(path, config=CONFIGS[config], presence_bias=8.0)
            self.estimates.made.add(config)
        return self.checkpoints[config]

    def store(self) -> RedisServer:
        if self.redis is None:
            self.redis = RedisServer(self.folder).start()
        return self.redis

    def function_env(self, config: str, **extra: str) -> dict[str, str]:
        """The function's settings as deployed (precision and batching `auto`), on this run's device,
        model sizes and redis-server."""
        return {
            "SAM2_CONFIG": CONFIGS[config],
            "SAM2_CHECKPOINT": str(self.checkpoint(config)),
            "SAM2_DEVICE": self.sizes.device,
            "SAM2_PRECISION": "auto",
            "SAM2_MODEL_OVERRIDES": " ".join(self.sizes.overrides),
            **self.store().env(),
            **({"SAM2_CPU_THREADS": str(self.sizes.cpu_threads)} if self.sizes.cpu_threads else {}),
            **extra,
        }

    def jpeg_folder(self, video: Video, name: str) -> Path:
        """The frames as the JPEG folder the official predictor's `init_state` reads."""
        folder = self.folder / name
        if not folder.is_dir():
            write_jpeg_folder(video.frames, folder)
        return folder

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
