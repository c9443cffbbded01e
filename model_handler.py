"""SAM2 video tracking one frame at a time, with each object's memory as a small, portable state.

Why the tracker is stateful, and where the state lives: SAM2 segments an object on a new frame by
attending to a memory bank of what it saw before (the conditioning frame where the object was given,
the last few frames' memory features and the last object pointers). CVAT calls the function once per
frame and any replica may serve the next call, so the memory bank cannot stay in the process: after
every call each object's memory leaves as an `ObjectState` (bytes, via `ObjectState.to_bytes`), and
the next call brings it back. The `Sam2Tracker` itself holds only the model and model-wide constants.

The results equal the official `SAM2VideoPredictor` (sam2 1.1.0) run on the whole video: `start` is
`add_new_mask` + `propagate_in_video_preflight`, each `step` is the next frame of
`propagate_in_video`. We call the model's own building blocks (`forward_image`, `track_step`,
`_encode_new_memory`) and rebuild, for every step, the memory bank that the predictor would hold.

Frame indices are relative to the start frame: the start frame is 0 and the k-th step is frame k,
tracked forward. The predictor's memory selection only looks at distances from the current frame, so
tracking backward (`propagate_in_video(reverse=True)`) gives the same results with the same states:
nothing here depends on direction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from config import ConfigError, TrackerConfig, checkpoint_url
from shape_codecs import Box

logger = logging.getLogger(__name__)

STATE_FORMAT = "sam2-tracker-state/1"
METADATA_KEY = "sam2_tracker"
# The predictor caps object pointers (and scales their temporal positions) by min(num_frames, 16):
# a stream has no end, so we track as on a long video.
LONG_VIDEO = 1 << 30
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class StateError(ValueError):
    """A state that cannot be resumed here: corrupt, foreign, or from another model or image size."""


class InputError(ValueError):
    """Input the tracker cannot use (e.g. a mask whose size is not the image's)."""


@dataclass(frozen=True)
class Frame:
    """One image, encoded once and shared by every object tracked on it."""

    video_size: tuple[int, int]  # original (height, width)
    vision_feats: tuple[torch.Tensor, ...]  # per feature level, (H*W, 1, C)
    vision_pos: tuple[torch.Tensor, ...]  # per feature level, (H*W, 1, C)
    feat_sizes: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Result:
    """What SAM2 says about one object on one frame."""

    mask: np.ndarray | None  # bool (height, width) at the original image size; None when absent
    score: float  # object-presence logit: the object is present when > 0
    logits: torch.Tensor = field(repr=False)  # low-resolution mask logits (image_size/4 squared), CPU

    @property
    def present(self) -> bool:
        return self.mask is not None


@dataclass(frozen=True)
class ObjectState:
    """Everything the next step needs to track one object, and nothing else.

    `memories` and `ptrs` are newest last; the i-th newest of each belongs to frame `step - i + 1`.
    They hold at most `max_memories` and `max_ptrs` entries (SAM2's `num_maskmem - 1` and
    `max_obj_ptrs_in_encoder - 1`). Memory features are bf16, as the predictor stores them; pointers
    and scores keep the dtype the model produced them in, so a resumed state is bit-identical.
    """

    cond_memory: torch.Tensor  # (1, mem_dim, h, w) memory features of the start frame
    cond_ptr: torch.Tensor  # (1, hidden_dim) object pointer of the start frame
    cond_score: torch.Tensor  # (1, 1) object-presence logit of the start frame
    memories: tuple[torch.Tensor, ...]  # the last frames' memory features, each (1, mem_dim, h, w)
    ptrs: tuple[torch.Tensor, ...]  # the last frames' object pointers, each (1, hidden_dim)
    step: int  # frames tracked since the start frame
    max_memories: int
    max_ptrs: int
    video_size: tuple[int, int]  # (height, width) of the images this state tracks on
    fingerprint: str  # of the model (config + checkpoint) this state was made with

    def advanced(self, memory: torch.Tensor, ptr: torch.Tensor) -> ObjectState:
        memories = (*self.memories, memory)[-self.max_memories:] if self.max_memories else ()
        ptrs = (*self.ptrs, ptr)[-self.max_ptrs:] if self.max_ptrs else ()
        return replace(self, memories=memories, ptrs=ptrs, step=self.step + 1)

    def to_bytes(self) -> bytes:
        """safetensors: the tensors plus JSON metadata. No pickle, nothing executable.

        The history is padded to its full capacity, so a state's size never changes while it is
        tracked: what a store holds per object is known from the first frame on.
        """
        tensors = {
            "cond_memory": self.cond_memory,
            "cond_ptr": self.cond_ptr,
            "cond_score": self.cond_score,
            "memories": _padded(self.memories, self.max_memories, self.cond_memory),
            "ptrs": _padded(self.ptrs, self.max_ptrs, self.cond_ptr),
        }
        info = {"step": self.step, "video_size": list(self.video_size), "fingerprint": self.fingerprint}
        return pack(STATE_FORMAT, tensors, info)

    @classmethod
    def from_bytes(cls, data: bytes) -> ObjectState:
        """Parse and check a state; any malformed input raises `StateError`."""
        tensors, info = unpack(STATE_FORMAT, data)
        try:
            step = info["step"]
            height, width = info["video_size"]
            if not all(type(v) is int for v in (step, height, width)) or step < 0:
                raise ValueError("bad metadata")
            memories, ptrs = tensors["memories"], tensors["ptrs"]
            state = cls(
                cond_memory=tensors["cond_memory"],
                cond_ptr=tensors["cond_ptr"],
                cond_score=tensors["cond_score"],
                memories=tuple(m[None] for m in memories[: min(step, len(memories))]),
                ptrs=tuple(p[None] for p in ptrs[: min(step, len(ptrs))]),
                step=step,
                max_memories=len(memories),
                max_ptrs=len(ptrs),
                video_size=(height, width),
                fingerprint=str(info["fingerprint"]),
            )
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise StateError(f"corrupt tracker state ({error})") from None
        state.check_structure()
        return state

    def check_structure(self) -> None:
        """Raise `StateError` unless the tensors are consistent and finite (any model)."""
        def fail(what: str) -> None:
            raise StateError(f"corrupt tracker state ({what})")

        if min(self.video_size) <= 0:
            fail("bad image size")
        if self.cond_memory.dim() != 4 or self.cond_memory.shape[0] != 1:
            fail("bad memory shape")
        if self.cond_ptr.dim() != 2 or self.cond_score.shape != (1, 1):
            fail("bad pointer shape")
        if len(self.memories) != min(self.step, self.max_memories) or \
                len(self.ptrs) != min(self.step, self.max_ptrs):
            fail("history does not match the step count")
        if any(m.shape != self.cond_memory.shape or m.dtype != self.cond_memory.dtype
               for m in self.memories):
            fail("bad memory shape")
        if any(p.shape != self.cond_ptr.shape for p in self.ptrs):
            fail("bad pointer shape")
        for tensor in (self.cond_memory, self.cond_ptr, self.cond_score, *self.memories, *self.ptrs):
            if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
                fail("non-finite values")

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data at full capacity (what `to_bytes` writes, less its header)."""
        per_memory = self.cond_memory.numel() * self.cond_memory.element_size()
        per_ptr = self.cond_ptr.numel() * self.cond_ptr.element_size()
        score = self.cond_score.numel() * self.cond_score.element_size()
        return (1 + self.max_memories) * per_memory + (1 + self.max_ptrs) * per_ptr + score


@dataclass(frozen=True)
class Tracked:
    """An object's new state and its result on the frame just processed."""

    state: ObjectState
    result: Result


def _padded(tensors: tuple[torch.Tensor, ...], capacity: int, like: torch.Tensor) -> torch.Tensor:
    padding = [like.new_zeros(like.shape)] * (capacity - len(tensors))
    items = [t.to(like.device) for t in tensors] + padding
    return torch.cat(items) if items else like.new_zeros((0, *like.shape[1:]))


def pack(kind: str, tensors: dict[str, torch.Tensor], info: dict) -> bytes:
    """Tensors plus JSON-able `info` as safetensors bytes, tagged with `kind`.

    The metadata goes in one entry: safetensors writes several in hash order, and equal values
    should give equal bytes.
    """
    from safetensors.torch import save

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata = json.dumps({**info, "format": kind}, sort_keys=True)
    return save(tensors, metadata={METADATA_KEY: metadata})


def unpack(kind: str, data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """The inverse of `pack`; anything else (another kind, corrupt or foreign bytes, pickles)
    raises `StateError`. Only JSON and raw tensor data are read: nothing is ever executed."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 8:
        raise StateError("not a SAM2 tracker state")
    (header_size,) = struct.unpack("<Q", bytes(data[:8]))
    if header_size > min(len(data) - 8, 1 << 20):
        raise StateError("not a SAM2 tracker state")
    try:
        header = json.loads(bytes(data[8:8 + header_size]))
        info = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError):
        raise StateError("not a SAM2 tracker state") from None
    if not isinstance(info, dict) or info.get("format") != kind:
        raise StateError("not a SAM2 tracker state")
    try:
        tensors = load(bytes(data))
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise StateError(f"corrupt tracker state ({error})") from None
    return tensors, info


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("SAM2_DEVICE=cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    with contextlib.suppress(Exception):
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocess(image: np.ndarray | Image.Image, image_size: int) -> torch.Tensor:
    """Exactly sam2's ``load_video_frames``: PIL resize (its default filter) to a square, /255,
    ImageNet mean/std. OpenCV's resize would differ by up to 2 grey levels."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    resized = np.asarray(pil.convert("RGB").resize((image_size, image_size)))
    tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]
    return ((tensor - mean) / std)[None]


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill background components (8-connected) of at most `max_area` pixels with a small positive
    score, as sam2's ``fill_holes_in_mask_scores`` does with its CUDA extension."""
    if max_area <= 0:
        return logits
    filled = logits.clone()
    for index in range(logits.shape[0]):
        background = (logits[index, 0] <= 0).to("cpu", torch.uint8).numpy()
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
        small = np.zeros(count, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        hole = torch.from_numpy(small[labels]).to(logits.device)
        filled[index, 0] = torch.where(hole, 0.1, logits[index, 0])
    return filled


def store_matmul_weights_in_bf16(model: torch.nn.Module) -> None:
    """bf16 autocast casts every Linear and Conv2d weight to bf16 on each call (a copy of the
    encoder's weights per frame); holding them in bf16 gives the same products without the copies.
    Other parameters (norms, embeddings) stay fp32, as autocast uses them."""
    for module in model.modules():
        if type(module) in (torch.nn.Linear, torch.nn.Conv2d):
            module.to(torch.bfloat16)


def upscale_logits(low_res: torch.Tensor, video_size: tuple[int, int]) -> torch.Tensor:
    """Low-resolution logits to the original image size, as the predictor outputs them."""
    return F.interpolate(low_res, size=video_size, mode="bilinear", align_corners=False)


class Sam2Tracker:
    """Encode a frame once, start objects from masks, advance every object by one frame."""

    def __init__(self, model: torch.nn.Module, fingerprint: str, precision: str = "fp32",
                 fill_hole_area: int = 0, fast_attention: bool = False, batch_objects: bool = False):
        if getattr(model, "memory_temporal_stride_for_eval", 1) != 1:
            raise ConfigError("SAM2_CONFIG: memory_temporal_stride_for_eval must be 1")
        self.model = model
        self.fingerprint = fingerprint
        self.precision = precision
        self.fill_hole_area = fill_hole_area
        self.device = model.device
        self.image_size: int = model.image_size
        self.keep_memories = model.num_maskmem - 1
        self.keep_ptrs = model.max_obj_ptrs_in_encoder - 1 if model.use_obj_ptrs_in_encoder else 0
        self.fast_attention = fast_attention
        self.batch_objects = batch_objects
        if precision == "bf16":
            store_matmul_weights_in_bf16(model)
        if fast_attention:
            from fast_attention import use_chunked_attention

            use_chunked_attention(model.memory_attention)
            use_chunked_attention(model.image_encoder)
        with self._inference():
            self._maskmem_pos_enc = self._memory_position_encoding()

    @classmethod
    def from_config(cls, cfg: TrackerConfig) -> Sam2Tracker:
        device = resolve_device(cfg.device)
        model = load_model(cfg, device)
        precision = resolve_precision(cfg.precision, device)
        fast = cfg.fast_attention == "on" or (
            cfg.fast_attention == "auto" and device.type == "cpu" and precision == "bf16")
        fingerprint = model_fingerprint(cfg)
        batch = cfg.batch_objects == "on" or (cfg.batch_objects == "auto" and device.type == "cuda")
        logger.info("SAM2 %s on %s, %s, chunked attention %s, batched objects %s, fingerprint %s",
                    cfg.sam2_config, device, precision, fast, batch, fingerprint[:12])
        return cls(model, fingerprint, precision=precision, fill_hole_area=cfg.fill_hole_area,
                   fast_attention=fast, batch_objects=batch)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with torch.inference_mode(), torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            yield

    def _memory_position_encoding(self) -> list[torch.Tensor]:
        # A constant of the model (it depends only on the feature shape), so states never carry it;
        # computed through the memory encoder itself to get the dtype the predictor caches.
        stride = self.model.backbone_stride
        side = self.image_size // stride
        pix_feat = torch.zeros(1, self.model.hidden_dim, side, side, device=self.device)
        masks = torch.zeros(1, 1, self.image_size, self.image_size, device=self.device)
        out = self.model.memory_encoder(pix_feat, masks, skip_mask_sigmoid=True)
        return [out["vision_pos_enc"][-1]]

    # ---- the three operations -------------------------------------------------------------

    def encode(self, image: np.ndarray | Image.Image) -> Frame:
        """Run the image encoder once; the frame is then shared by all objects."""
        if isinstance(image, Image.Image):
            video_size = (image.height, image.width)
        else:
            video_size = (int(image.shape[0]), int(image.shape[1]))
        pixels = preprocess(image, self.image_size).to(self.device)
        with self._inference():
            backbone_out = self.model.forward_image(pixels)
            _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
        return Frame(video_size=video_size, vision_feats=tuple(feats), vision_pos=tuple(pos),
                     feat_sizes=tuple(sizes))

    def start(self, frame: Frame, prompts: Sequence[np.ndarray | Box]) -> list[Tracked]:
        """Start one object per prompt on this frame: a bool mask at the image size (SAM2's
        ``add_new_mask``) or a box (``add_new_points_or_box``)."""
        for prompt in prompts:
            if isinstance(prompt, Box):
                continue
            if prompt.shape != frame.video_size:
                raise InputError(f"mask size {prompt.shape[1]}x{prompt.shape[0]} differs from the image "
                                 f"size {frame.video_size[1]}x{frame.video_size[0]}")
        with self._inference():
            return [self._start_one(frame, prompt) for prompt in prompts]

    def step(self, frame: Frame, states: Sequence[ObjectState]) -> list[Tracked]:
        """Track every object onto the next frame."""
        for state in states:
            self.check(state, frame.video_size)
        results: list[Tracked | None] = [None] * len(states)
        with self._inference():
            for indices in self._batches(states):
                stepped = self._step_batch(frame, [states[i] for i in indices])
                for index, tracked in zip(indices, stepped, strict=True):
                    results[index] = tracked
        return results

    def _batches(self, states: Sequence[ObjectState]) -> list[list[int]]:
        """Objects stepped in one forward: those at the same step have memory banks of the same
        layout. One object at a time when batching is off (the official predictor's order)."""
        if not self.batch_objects:
            return [[index] for index in range(len(states))]
        groups: dict[int, list[int]] = {}
        for index, state in enumerate(states):
            groups.setdefault(state.step, []).append(index)
        return list(groups.values())

    def check(self, state: ObjectState, video_size: tuple[int, int] | None = None) -> None:
        """Refuse a state made by another model, on another image size, or of the wrong shape."""
        if state.fingerprint != self.fingerprint:
            raise StateError("the state was made by another SAM2 model or checkpoint (was the function "
                             "redeployed with another model?)")
        if video_size is not None and tuple(state.video_size) != tuple(video_size):
            raise StateError(
                f"the image is {video_size[1]}x{video_size[0]} but the object was started on a "
                f"{state.video_size[1]}x{state.video_size[0]} image")
        side = self.image_size // self.model.backbone_stride
        if state.cond_memory.shape != (1, self.model.mem_dim, side, side) or \
                state.cond_ptr.shape != (1, self.model.hidden_dim):
            raise StateError("corrupt tracker state (shapes do not fit the model)")
        if (state.max_memories, state.max_ptrs) != (self.keep_memories, self.keep_ptrs):
            raise StateError("corrupt tracker state (history does not fit the model)")

    # ---- internals --------------------------------------------------------------------------

    def _start_one(self, frame: Frame, prompt: np.ndarray | Box) -> Tracked:
        point_inputs, mask_inputs = None, None
        if isinstance(prompt, Box):
            point_inputs = self._box_points(prompt, frame.video_size)
        else:
            mask_inputs = self._mask_input(prompt)
        out = self.model.track_step(
            frame_idx=0, is_init_cond_frame=True, current_vision_feats=list(frame.vision_feats),
            current_vision_pos_embeds=list(frame.vision_pos), feat_sizes=list(frame.feat_sizes),
            point_inputs=point_inputs, mask_inputs=mask_inputs,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=LONG_VIDEO, run_mem_encoder=False,
        )
        low_res = fill_holes(out["pred_masks"], self.fill_hole_area)
        # propagate_in_video_preflight: encode the memory from the (hole-filled) low-res output,
        # binarized as for user input (binarize_mask_from_pts_for_mem_enc).
        high_res = F.interpolate(low_res, size=(self.image_size, self.image_size), mode="bilinear",
                                 align_corners=False)
        memory, _ = self.model._encode_new_memory(
            current_vision_feats=list(frame.vision_feats), feat_sizes=list(frame.feat_sizes),
            pred_masks_high_res=high_res, object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        state = ObjectState(
            cond_memory=memory.to(torch.bfloat16), cond_ptr=out["obj_ptr"],
            cond_score=out["object_score_logits"], memories=(), ptrs=(), step=0,
            max_memories=self.keep_memories, max_ptrs=self.keep_ptrs, video_size=frame.video_size,
            fingerprint=self.fingerprint,
        )
        return Tracked(state, self._result(low_res, out["object_score_logits"], frame.video_size))

    def _mask_input(self, mask: np.ndarray) -> torch.Tensor:
        # add_new_mask: resize the mask to the model input; track_step then uses it as the output
        # directly (use_mask_input_as_output_without_sam), with a pointer from the SAM decoder.
        mask_inputs = torch.from_numpy(mask.astype(bool))[None, None].float().to(self.device)
        if tuple(mask.shape) != (self.image_size, self.image_size):
            mask_inputs = F.interpolate(mask_inputs, size=(self.image_size, self.image_size),
                                        mode="bilinear", align_corners=False, antialias=True)
            mask_inputs = (mask_inputs >= 0.5).float()
        return mask_inputs

    def _box_points(self, box: Box, video_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        # add_new_points_or_box: the box as two points labelled 2 and 3, normalised by the image
        # size and scaled to the model input (same operations, same order, same dtypes).
        coords = torch.tensor([box.x0, box.y0, box.x1, box.y1], dtype=torch.float32).reshape(1, 2, 2)
        labels = torch.tensor([2, 3], dtype=torch.int32).reshape(1, 2)
        height, width = video_size
        coords = coords / torch.tensor([width, height])
        coords = coords * self.image_size
        return {"point_coords": coords.to(self.device), "point_labels": labels.to(self.device)}

    def _step_batch(self, frame: Frame, states: Sequence[ObjectState]) -> list[Tracked]:
        """One track_step for objects at the same step, batched as sam2 batches objects."""
        batch = len(states)
        out = self.model.track_step(
            frame_idx=states[0].step + 1, is_init_cond_frame=False,
            current_vision_feats=[f.expand(-1, batch, -1) for f in frame.vision_feats],
            current_vision_pos_embeds=[p.expand(-1, batch, -1) for p in frame.vision_pos],
            feat_sizes=list(frame.feat_sizes), point_inputs=None, mask_inputs=None,
            output_dict=self._memory_bank(states), num_frames=LONG_VIDEO, track_in_reverse=False,
            run_mem_encoder=True,
        )
        memories = out["maskmem_features"].to(torch.bfloat16)
        low_res = fill_holes(out["pred_masks"], self.fill_hole_area)
        return [
            Tracked(state.advanced(memories[i:i + 1], out["obj_ptr"][i:i + 1]),
                    self._result(low_res[i:i + 1], out["object_score_logits"][i:i + 1], frame.video_size))
            for i, state in enumerate(states)
        ]

    def _memory_bank(self, states: Sequence[ObjectState]) -> dict[str, dict[int, dict]]:
        """The predictor's output dict for these objects (stacked on the batch dimension), as it
        would be when tracking frame step+1. The objects must be at the same step."""
        step, device, batch = states[0].step, self.device, len(states)

        def stacked(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.cat([t.to(device) for t in tensors]) if batch > 1 else tensors[0].to(device)

        pos_enc = [p.expand(batch, -1, -1, -1) for p in self._maskmem_pos_enc]
        cond = {"maskmem_features": stacked([s.cond_memory for s in states]), "maskmem_pos_enc": pos_enc,
                "obj_ptr": stacked([s.cond_ptr for s in states])}
        non_cond: dict[int, dict] = {}
        for age in range(1, len(states[0].ptrs) + 1):
            non_cond[step + 1 - age] = {"obj_ptr": stacked([s.ptrs[-age] for s in states])}
        for age in range(1, len(states[0].memories) + 1):
            entry = non_cond.setdefault(step + 1 - age, {})
            entry["maskmem_features"] = stacked([s.memories[-age] for s in states])
            entry["maskmem_pos_enc"] = pos_enc
        return {"cond_frame_outputs": {0: cond}, "non_cond_frame_outputs": non_cond}

    def _result(self, low_res: torch.Tensor, score: torch.Tensor,
                video_size: tuple[int, int]) -> Result:
        score_value = float(score.float().reshape(-1)[0])
        mask = None
        if score_value > 0:
            mask = (upscale_logits(low_res, video_size)[0, 0] > 0).cpu().numpy()
        return Result(mask=mask, score=score_value, logits=low_res[0, 0].float().cpu())


def load_model(cfg: TrackerConfig, device: torch.device) -> torch.nn.Module:
    """The official video predictor model, through sam2's own builder and checkpoint loader."""
    if not cfg.checkpoint.is_file():
        url = checkpoint_url(cfg.sam2_config)
        how = f"download it from {url}" if url else "download the checkpoint that fits SAM2_CONFIG"
        raise ConfigError(
            f"SAM2_CHECKPOINT={cfg.checkpoint} does not exist: {how} "
            f"(e.g. `curl -L -o {cfg.checkpoint} {url or '<url>'}`) or set SAM2_CHECKPOINT")
    from hydra.errors import HydraException
    from sam2.build_sam import build_sam2_video_predictor

    try:
        model = build_sam2_video_predictor(cfg.sam2_config, str(cfg.checkpoint), device=str(device),
                                           hydra_overrides_extra=list(cfg.model_overrides))
    except HydraException as error:
        raise ConfigError(f"SAM2_CONFIG={cfg.sam2_config!r} is not a sam2 config "
                          f"(e.g. configs/sam2.1/sam2.1_hiera_t.yaml): {error}") from None
    except RuntimeError as error:
        raise ConfigError(f"SAM2_CHECKPOINT={cfg.checkpoint} does not fit SAM2_CONFIG="
                          f"{cfg.sam2_config}: {error}") from None
    # We apply hole filling ourselves (fill_hole_area); the model's own path needs sam2's CUDA extension.
    model.fill_hole_area = 0
    return model


def model_fingerprint(cfg: TrackerConfig) -> str:
    """Identifies the model a state belongs to: config name, overrides and checkpoint content."""
    digest = hashlib.sha256()
    digest.update(cfg.sam2_config.encode())
    for override in cfg.model_overrides:
        digest.update(b"\0" + override.encode())
    digest.update(b"\0" + file_sha256(cfg.checkpoint).encode())
    return digest.hexdigest()
