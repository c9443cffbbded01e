"""Synthetic videos and random-weight SAM2 checkpoints for tests and benchmarks.

No real SAM2 checkpoint can be downloaded in CI, so the tests build the real model from the real sam2
config with a fixed seed and save it as an official checkpoint (``{"model": state_dict}``). Random
weights need two adjustments to be a useful oracle:

- the object-presence head must be biased, else SAM2 calls every object absent (a negative bias gives
  the lost-object path on purpose);
- a few weights are scaled up so that the masks depend on the memory bank: with default random weights
  the logits barely move when memory is dropped, and a fidelity test could not tell a broken memory
  from a correct one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
PRESENCE_BIAS_KEY = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"
# Scaling these makes the masks depend on memory (see the module docstring).
MEMORY_SENSITIVE_SCALES = {
    "sam_mask_decoder.output_hypernetworks_mlps.": 3.0,
    "memory_attention.": 1.5,
    "obj_ptr_proj.": 3.0,
}


def random_state_dict(
    config: str = DEFAULT_CONFIG, seed: int = 0, presence_bias: float = 8.0, memory_sensitive: bool = True
) -> dict[str, torch.Tensor]:
    """The real SAM2 model from `config`, randomly initialised with `seed`, as a state dict."""
    import sam2  # noqa: F401  (registers sam2's configs with hydra)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=config)
    OmegaConf.resolve(cfg)
    torch.manual_seed(seed)
    model = instantiate(cfg.model, _recursive_=True)
    state_dict = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    state_dict[PRESENCE_BIAS_KEY] += presence_bias
    if memory_sensitive:
        for name, tensor in state_dict.items():
            for prefix, scale in MEMORY_SENSITIVE_SCALES.items():
                if name.startswith(prefix) and name.endswith(".weight"):
                    tensor *= scale
    return state_dict


def write_checkpoint(path: Path, **kwargs) -> Path:
    """Save a random-weight model as an official checkpoint file (``{"model": state_dict}``)."""
    torch.save({"model": random_state_dict(**kwargs)}, path)
    return path


@dataclass(frozen=True)
class Scene:
    frames: list[np.ndarray]  # RGB uint8, H x W x 3
    masks: list[list[np.ndarray]]  # per frame, per object: bool H x W

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[0], self.frames[0].shape[1]


def _texture(rng: np.random.Generator, height: int, width: int, blur: int) -> np.ndarray:
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), blur)


def moving_objects_scene(
    num_frames: int, height: int = 240, width: int = 320, num_objects: int = 3, seed: int = 0
) -> Scene:
    """A textured background with `num_objects` textured shapes (ellipse, rectangle, triangle...)
    moving in straight lines; shapes may overlap and leave the image."""
    rng = np.random.default_rng(seed)
    background = (_texture(rng, height, width, 3) // 2 + 64).astype(np.uint8)
    objects = []
    for index in range(num_objects):
        size = rng.uniform(0.12, 0.22) * min(height, width)
        objects.append(
            {
                "kind": index % 3,
                "size": size,
                "start": np.array([rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height]),
                "velocity": rng.uniform(-0.02, 0.02, size=2) * np.array([width, height]),
                "texture": _texture(rng, height, width, 1),
                "angle": rng.uniform(0, 180),
            }
        )
    frames, masks = [], []
    for t in range(num_frames):
        image = background.copy()
        frame_masks = []
        for obj in objects:
            center = obj["start"] + t * obj["velocity"]
            mask = np.zeros((height, width), np.uint8)
            cx, cy, s = int(center[0]), int(center[1]), obj["size"]
            if obj["kind"] == 0:
                cv2.ellipse(mask, (cx, cy), (int(s), int(s * 0.6)), obj["angle"] + 3 * t, 0, 360, 1, -1)
            elif obj["kind"] == 1:
                box = cv2.boxPoints(((cx, cy), (s * 1.4, s), obj["angle"] + 2 * t))
                cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
            else:
                angles = np.deg2rad(obj["angle"] + 4 * t + np.array([0, 120, 240]))
                tri = np.stack([cx + s * np.cos(angles), cy + s * np.sin(angles)], axis=1)
                cv2.fillPoly(mask, [np.round(tri).astype(np.int32)], 1)
            inside = mask.astype(bool)
            image[inside] = obj["texture"][inside]
            frame_masks.append(inside)
        # later objects occlude earlier ones
        for i in range(len(frame_masks)):
            for later in frame_masks[i + 1 :]:
                frame_masks[i] = frame_masks[i] & ~later
        frames.append(image)
        masks.append(frame_masks)
    return Scene(frames=frames, masks=masks)


def write_video(scene: Scene, path: Path) -> Path:
    """An MPEG-4 video of the scene, as a camera or an editor would save it."""
    height, width = scene.size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    for frame in scene.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"OpenCV wrote no video to {path}")
    return path


def write_jpeg_folder(frames: list[np.ndarray], folder: Path, quality: int = 95) -> list[Path]:
    """Frames as ``00000.jpg``, ``00001.jpg``... (the layout sam2's ``init_state`` reads)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(frame).save(path, quality=quality)
        paths.append(path)
    return paths


def random_object_state(seed: int = 0, side: int = 64, video_size: tuple[int, int] = (480, 640)):
    """A started ObjectState with random tensors: `side` 64 is the real size at 1024 input. For tests and
    benchmarks of the state stores, which need no model."""
    from object_state import FORWARD, ObjectState

    generator = torch.Generator().manual_seed(seed)
    return ObjectState(
        anchors=(_random_anchor(0, side, generator),),
        memories=(),
        ptrs=(),
        recent_frames=(),
        frame=0,
        direction=FORWARD,
        frames_known=True,
        step=0,
        max_memories=6,
        max_ptrs=15,
        video_size=video_size,
        fingerprint="f" * 64,
    )


def _random_anchor(frame: int, side: int, generator: torch.Generator):
    from object_state import Anchor

    memory = torch.randn(1, 64, side, side, generator=generator).to(torch.bfloat16)
    return Anchor(frame, memory, torch.randn(1, 256, generator=generator), torch.tensor([[10.0]]))


def random_correction(state, seed: int, max_anchors: int = 4):
    """`state` corrected on the frame after its last (its recent memory kept), with a random anchor."""
    from anchors import corrected

    generator = torch.Generator().manual_seed(2000 + seed)
    anchor = _random_anchor(state.next_frame, state.anchors[0].memory.shape[-1], generator)
    return corrected(state, anchor, state.direction, max_anchors)


def random_step(state, seed: int):
    """`state` advanced by one frame of random memory (same size as its start memory)."""
    generator = torch.Generator().manual_seed(1000 + seed)
    first = state.anchors[0]
    memory = torch.randn(*first.memory.shape, generator=generator).to(torch.bfloat16)
    return state.advanced(memory, torch.randn(1, first.ptr.shape[1], generator=generator))
