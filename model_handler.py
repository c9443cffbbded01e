"""SAM2 video tracking one frame at a time, with each object's memory as a small, portable state.

Why the tracker is stateful, and where the state lives: SAM2 segments an object on a new frame by
attending to a memory bank of what it saw before (the conditioning frame where the object was given,
the last few frames' memory features and the last object pointers). CVAT calls the function once per
frame and any replica may serve the next call, so the memory bank cannot stay in the process: after
every call each object's memory leaves as an `ObjectState` (object_state.py, kept by a store between
calls), and the next call brings it back. The `Sam2Tracker` itself holds only the model and model-wide
constants.

The results equal the official `SAM2VideoPredictor` (sam2 1.1.0) run on the whole video: `start` is
`add_new_mask` + `propagate_in_video_preflight`, each `step` is the next frame of
`propagate_in_video` (either way), and `correct` is `add_new_mask` on one more frame of an object
whose memory the predictor holds (anchors.py says which memory stays). We call the model's own
building blocks (`forward_image`, `track_step`, `_encode_new_memory`) and rebuild, for every step, the
memory bank that the predictor would hold (memory_bank.py).

Frames are the video's frame numbers when the client gives them, else counted from the start (frame
0, forward): the predictor's memory selection only looks at distances between frames, so counted
frames give the same results as frame numbers while an object has one anchor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from anchors import Placement, PlacementError, corrected, correction_placement, start_placement
from config import TrackerConfig
from feature_cache import EncodedFeatures, FeatureCache, picture_key
from frame_pixels import fill_holes, picture_size, preprocess, upscale_logits
from memory_bank import layout, memory_bank
from model_loading import LoadedModel, load
from object_state import BACKWARD, Anchor, ObjectState, StateError
from shape_codecs import Box
from speedups.cpu_support import CpuSupport
from speedups.frame_shared import FrameMemo, on_frame

# The predictor caps object pointers (and scales their temporal positions) by min(num_frames, 16):
# a stream has no end, so we track as on a long video.
LONG_VIDEO = 1 << 30


Prompt = np.ndarray | Box  # what starts an object: a bool mask at the image size, or a box


class InputError(ValueError):
    """Input the tracker cannot use (e.g. a mask whose size is not the image's)."""


@dataclass(frozen=True)
class Start:
    """Start an object from `prompt` on this frame, placed as `placement` says."""

    prompt: Prompt
    placement: Placement = field(default_factory=Placement)


@dataclass(frozen=True)
class Correction:
    """Continue `state` with `prompt` on this frame as one more anchor (SAM2's ``add_new_mask`` on a
    later frame of the same object), placed as `placement` says."""

    state: ObjectState
    prompt: Prompt
    placement: Placement = field(default_factory=Placement)


TrackInput = Prompt | Start | ObjectState | Correction


@dataclass(frozen=True)
class Frame:
    """One image, encoded once and shared by every object tracked on it."""

    video_size: tuple[int, int]  # original (height, width)
    vision_feats: tuple[torch.Tensor, ...]  # per feature level, (H*W, 1, C)
    vision_pos: tuple[torch.Tensor, ...]  # the lowest-resolution level's only (all track_step reads)
    feat_sizes: tuple[tuple[int, int], ...]
    # work the frame's objects share (speedups/frame_shared.py), for as long as the frame lives
    memo: FrameMemo = field(default_factory=FrameMemo, compare=False, repr=False)
    # the encoder's output came from the feature cache (feature_cache.py): the encoder did not run
    cached: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Result:
    """What SAM2 says about one object on one frame.

    Only `mask` leaves the device on every call; the logits and the presence score stay where the
    model made them (on a GPU, copying them would cost a sync per object and frame) until read.
    """

    mask: np.ndarray | None  # bool (height, width) at the original image size; None when absent
    score_logit: torch.Tensor = field(repr=False)  # (1, 1) object-presence logit, on the model's device
    logits: torch.Tensor = field(repr=False)  # low-resolution mask logits (image_size/4 squared)

    @property
    def present(self) -> bool:
        return self.mask is not None

    @property
    def score(self) -> float:
        """The object-presence logit: the object is present when > 0."""
        return float(self.score_logit.float().reshape(-1)[0])


@dataclass(frozen=True)
class Tracked:
    """An object's new state and its result on the frame just processed."""

    state: ObjectState
    result: Result


def _operation_for(item: TrackInput) -> str:
    if isinstance(item, ObjectState):
        return "step"
    return "correct" if isinstance(item, Correction) else "start"


class Sam2Tracker:
    """Encode a frame once, start objects from masks or boxes, advance every object by one frame,
    correct objects with a shape on a later frame."""

    def __init__(
        self, loaded: LoadedModel, fill_hole_area: int = 0, feature_cache_bytes: int = 0, max_anchors: int = 4
    ):
        """A tracker on a model that `model_loading.load` prepared; the tracker never changes it. Up to
        `feature_cache_bytes` of encoded frames are kept for frames seen again (0: none); an object keeps
        at most `max_anchors` conditioning frames (anchors.py)."""
        model = loaded.model
        self.feature_cache = FeatureCache(feature_cache_bytes)
        self.model = model
        self.fingerprint = loaded.fingerprint
        self.preparation = loaded.preparation
        self.precision = loaded.preparation.precision
        self.batch_objects = loaded.preparation.batch_objects
        self.fill_hole_area = fill_hole_area
        self.max_anchors = max_anchors
        self.device = model.device
        self.image_size: int = model.image_size
        self.keep_memories = model.num_maskmem - 1
        self.keep_ptrs = model.max_obj_ptrs_in_encoder - 1 if model.use_obj_ptrs_in_encoder else 0
        with self._inference():
            self._maskmem_pos_enc = self._memory_position_encoding()

    @classmethod
    def from_config(
        cls, cfg: TrackerConfig, device: torch.device | None = None, cpu: CpuSupport | None = None
    ) -> Sam2Tracker:
        """The tracker `cfg` describes, on `device` (default: resolved from `cfg.device`); `cpu`: what
        this CPU runs of the fast paths (default: detected)."""
        cache_bytes = cfg.feature_cache_mb * 2**20
        loaded = load(cfg, device, cpu)
        return cls(
            loaded,
            fill_hole_area=cfg.fill_hole_area,
            feature_cache_bytes=cache_bytes,
            max_anchors=cfg.max_anchors,
        )

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"),
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

    # ---- the operations ----------------------------------------------------------------------

    def encode(self, image: np.ndarray | Image.Image) -> Frame:
        """Run the image encoder once (or take its output from the feature cache); the frame is then
        shared by all objects."""
        video_size = picture_size(image)
        key = None
        if self.feature_cache.capacity_bytes > 0:
            key = picture_key(np.asarray(image), self.fingerprint, self.image_size)
            found = self.feature_cache.get(key)
            if found is not None:
                return self._frame(video_size, found, cached=True)
        features = self._run_encoder(image)
        if key is not None:
            self.feature_cache.put(key, features)
        return self._frame(video_size, features, cached=False)

    def _run_encoder(self, image: np.ndarray | Image.Image) -> EncodedFeatures:
        pixels = preprocess(image, self.image_size).to(self.device)
        with self._inference():
            backbone_out = self.model.forward_image(pixels)
            _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
        # track_step reads only the lowest-resolution level's position encoding (sam2_base passes
        # current_vision_pos_embeds[-1:] on); the others are 40 MB at 1024 input, worth not keeping.
        return EncodedFeatures(vision_feats=tuple(feats), vision_pos=(pos[-1],), feat_sizes=tuple(sizes))

    @staticmethod
    def _frame(video_size: tuple[int, int], features: EncodedFeatures, cached: bool) -> Frame:
        return Frame(
            video_size=video_size,
            vision_feats=features.vision_feats,
            vision_pos=features.vision_pos,
            feat_sizes=features.feat_sizes,
            cached=cached,
        )

    def track(self, frame: Frame, inputs: Sequence[TrackInput]) -> list[Tracked]:
        """Each input onto this frame, in order: a prompt or `Start` starts an object here, a state
        continues one, a `Correction` continues one from a shape on this frame (states checked with
        `check`)."""
        operations = {"start": self.start, "step": self.step, "correct": self.correct}
        kinds = [_operation_for(item) for item in inputs]
        results: list[Tracked | None] = [None] * len(inputs)
        for kind, operation in operations.items():
            indices = [i for i, k in enumerate(kinds) if k == kind]
            for index, tracked in zip(indices, operation(frame, [inputs[i] for i in indices]), strict=True):
                results[index] = tracked
        return results

    def start(self, frame: Frame, prompts: Sequence[Prompt | Start]) -> list[Tracked]:
        """Start one object per prompt on this frame: a bool mask at the image size (SAM2's
        ``add_new_mask``) or a box (``add_new_points_or_box``)."""
        starts = [p if isinstance(p, Start) else Start(p) for p in prompts]
        self._check_prompts(frame, [s.prompt for s in starts])
        tracked = []
        with self._inference():
            for start in starts:
                at, direction, known = start_placement(start.placement)
                anchor, result = self._anchor_on(frame, start.prompt, at)
                state = ObjectState(
                    anchors=(anchor,),
                    memories=(),
                    ptrs=(),
                    recent_frames=(),
                    frame=at,
                    direction=direction,
                    frames_known=known,
                    step=0,
                    max_memories=self.keep_memories,
                    max_ptrs=self.keep_ptrs,
                    video_size=frame.video_size,
                    fingerprint=self.fingerprint,
                )
                tracked.append(Tracked(state, result))
        return tracked

    def correct(self, frame: Frame, corrections: Sequence[Correction]) -> list[Tracked]:
        """Continue each object's state with its shape on this frame as a new anchor; the answer on
        this frame is the shape, as for a start. States must have passed `check`."""
        self._check_prompts(frame, [c.prompt for c in corrections])
        tracked = []
        with self._inference():
            for correction in corrections:
                try:
                    at, direction = correction_placement(correction.state, correction.placement)
                except PlacementError as error:
                    raise InputError(str(error)) from None
                anchor, result = self._anchor_on(frame, correction.prompt, at)
                state = corrected(correction.state, anchor, direction, self.max_anchors)
                tracked.append(Tracked(state, result))
        return tracked

    def step(self, frame: Frame, states: Sequence[ObjectState]) -> list[Tracked]:
        """Track every object onto the next frame. States from outside the process must have passed
        `check` (made by this model, on images of this size)."""
        results: list[Tracked | None] = [None] * len(states)
        with self._inference(), on_frame(frame.memo):
            for indices in self._batches(states):
                stepped = self._step_batch(frame, [states[i] for i in indices])
                for index, tracked in zip(indices, stepped, strict=True):
                    results[index] = tracked
        return results

    def _batches(self, states: Sequence[ObjectState]) -> list[list[int]]:
        """Objects stepped in one forward: those whose memory banks have the same layout. One object at
        a time when batching is off (the official predictor's order)."""
        if not self.batch_objects:
            return [[index] for index in range(len(states))]
        groups: dict[tuple, list[int]] = {}
        for index, state in enumerate(states):
            groups.setdefault(layout(state), []).append(index)
        return list(groups.values())

    def check(self, state: ObjectState, video_size: tuple[int, int] | None = None) -> None:
        """Refuse a state made by another model, on another image size, or of the wrong shape."""
        if state.fingerprint != self.fingerprint:
            raise StateError(
                "the state was made by another SAM2 model or checkpoint (was the function "
                "redeployed with another model?)"
            )
        if video_size is not None and tuple(state.video_size) != tuple(video_size):
            raise StateError(
                f"the image is {video_size[1]}x{video_size[0]} but the object was started on a "
                f"{state.video_size[1]}x{state.video_size[0]} image"
            )
        side = self.image_size // self.model.backbone_stride
        first = state.anchors[0]  # the others have the same shapes (object_state checks)
        if first.memory.shape != (1, self.model.mem_dim, side, side) or first.ptr.shape != (
            1,
            self.model.hidden_dim,
        ):
            raise StateError("corrupt tracker state (shapes do not fit the model)")
        if (state.max_memories, state.max_ptrs) != (self.keep_memories, self.keep_ptrs):
            raise StateError("corrupt tracker state (history does not fit the model)")

    # ---- internals --------------------------------------------------------------------------

    def _check_prompts(self, frame: Frame, prompts: Sequence[Prompt]) -> None:
        for prompt in prompts:
            if not isinstance(prompt, Box) and prompt.shape != frame.video_size:
                raise InputError(
                    f"mask size {prompt.shape[1]}x{prompt.shape[0]} differs from the image "
                    f"size {frame.video_size[1]}x{frame.video_size[0]}"
                )

    def _anchor_on(self, frame: Frame, prompt: Prompt, at: int) -> tuple[Anchor, Result]:
        """The anchor a prompt makes on this frame (numbered `at`), and the answer there. A prompt on a
        frame the predictor has not tracked for the object is an initial conditioning frame: its output
        does not depend on the memory, so a start and a correction compute it alike."""
        point_inputs, mask_inputs = None, None
        if isinstance(prompt, Box):
            point_inputs = self._box_points(prompt, frame.video_size)
        else:
            mask_inputs = self._mask_input(prompt)
        out = self.model.track_step(
            frame_idx=at,
            is_init_cond_frame=True,
            current_vision_feats=list(frame.vision_feats),
            current_vision_pos_embeds=list(frame.vision_pos),
            feat_sizes=list(frame.feat_sizes),
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=LONG_VIDEO,
            run_mem_encoder=False,
        )
        low_res = fill_holes(out["pred_masks"], self.fill_hole_area)
        # propagate_in_video_preflight: encode the memory from the (hole-filled) low-res output,
        # binarized as for user input (binarize_mask_from_pts_for_mem_enc).
        high_res = F.interpolate(
            low_res, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        memory, _ = self.model._encode_new_memory(
            current_vision_feats=list(frame.vision_feats),
            feat_sizes=list(frame.feat_sizes),
            pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        anchor = Anchor(at, memory.to(torch.bfloat16), out["obj_ptr"], out["object_score_logits"])
        (result,) = self._results(low_res, out["object_score_logits"], frame.video_size)
        return anchor, result

    def _mask_input(self, mask: np.ndarray) -> torch.Tensor:
        # add_new_mask: resize the mask to the model input; track_step then uses it as the output
        # directly (use_mask_input_as_output_without_sam), with a pointer from the SAM decoder.
        mask_inputs = torch.from_numpy(mask.astype(bool))[None, None].float().to(self.device)
        if tuple(mask.shape) != (self.image_size, self.image_size):
            mask_inputs = F.interpolate(
                mask_inputs,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
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
        """One track_step for objects with the same memory layout, batched as sam2 batches objects."""
        batch = len(states)
        out = self.model.track_step(
            frame_idx=states[0].next_frame,
            is_init_cond_frame=False,
            current_vision_feats=[f.expand(-1, batch, -1) for f in frame.vision_feats],
            current_vision_pos_embeds=[p.expand(-1, batch, -1) for p in frame.vision_pos],
            feat_sizes=list(frame.feat_sizes),
            point_inputs=None,
            mask_inputs=None,
            output_dict=memory_bank(states, self._maskmem_pos_enc, self.device),
            num_frames=LONG_VIDEO,
            track_in_reverse=states[0].direction == BACKWARD,
            run_mem_encoder=True,
        )
        memories = out["maskmem_features"].to(torch.bfloat16)
        low_res = fill_holes(out["pred_masks"], self.fill_hole_area)
        results = self._results(low_res, out["object_score_logits"], frame.video_size)
        return [
            Tracked(state.advanced(memories[i : i + 1], out["obj_ptr"][i : i + 1]), results[i])
            for i, state in enumerate(states)
        ]

    def _results(
        self, low_res: torch.Tensor, scores: torch.Tensor, video_size: tuple[int, int]
    ) -> list[Result]:
        """Results of a batch of objects: one device-to-host copy of the presence decisions and one of
        the present objects' masks."""
        present = (scores[:, 0] > 0).tolist()
        rows = [index for index, yes in enumerate(present) if yes]
        masks: list[np.ndarray | None] = [None] * len(present)
        if rows:
            upscaled = upscale_logits(low_res[rows], video_size)[:, 0] > 0
            for row, mask in zip(rows, upscaled.cpu().numpy(), strict=True):
                masks[row] = mask
        return [
            Result(mask=masks[i], score_logit=scores[i : i + 1], logits=low_res[i, 0])
            for i in range(len(present))
        ]
