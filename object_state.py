"""One tracked object's SAM2 memory between calls: the state, its checks, and its bytes.

An `ObjectState` is what SAM2's memory attention reads for one object (see `ObjectState`). It leaves
the process as three kinds of pieces, each safetensors bytes (a JSON header and raw tensors: nothing is
ever unpickled or executed):

- an anchor piece per conditioning frame (the start and each correction kept): that frame's memory
  features, object pointer and presence score, written once by the call that made it;
- a memory piece per tracked frame: that frame's memory features (about 0.5 MB at 1024 input);
- the head: the frames of the anchors and of the recent memory, the recent object pointers, direction,
  image size, model fingerprint and capacities, plus whatever the store adds to find the pieces again.

The stores keep these pieces (state_store.py), so a step writes one memory piece and one head, never
the whole state; `to_pieces` / `from_pieces` are the whole round trip, for tests and tools. Heads of the
first format (`sam2-tracker-head/1`: one start frame, frames counted from it) still read, as a state
with one anchor on frame 0.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

METADATA_KEY = "sam2_tracker"
ANCHOR_FORMAT = "sam2-tracker-cond/1"
MEMORY_FORMAT = "sam2-tracker-memory/1"
HEAD_FORMAT = "sam2-tracker-head/2"
HEAD_FORMAT_1 = "sam2-tracker-head/1"  # before anchors: one start frame, frames counted from it
FORWARD, BACKWARD = 1, -1
MAX_STATE_ANCHORS = 64  # what a stored state may hold at most, whatever SAM2_MAX_ANCHORS says
FRAME_LIMIT = 1 << 31  # frame numbers are below this (the tracker tracks on a 2^30-frame video)


class StateError(ValueError):
    """A state that cannot be resumed here: corrupt, foreign, or from another model or image size."""


@dataclass(frozen=True, eq=False)
class Anchor:
    """A conditioning frame: where the object was given as a shape (its start or a correction). SAM2
    attends to every anchor's memory on every frame, and to the pointers of those behind it."""

    frame: int
    memory: torch.Tensor  # (1, mem_dim, h, w) memory features, bf16
    ptr: torch.Tensor  # (1, hidden_dim) object pointer
    score: torch.Tensor  # (1, 1) object-presence logit


@dataclass(frozen=True)
class ObjectState:
    """Everything the next call needs to track one object, and nothing else.

    Frames are the video's frame numbers when the client sent them (`frames_known`), otherwise counted
    calls from the start (frame 0, always forward): SAM2 only reads distances between frames. `memories`
    and `ptrs` are the recent (non-conditioning) frames', newest last: they belong to the last
    `len(memories)` and `len(ptrs)` of `recent_frames`. They hold at most
    `max_memories` and `max_ptrs` entries (SAM2's `num_maskmem - 1` and `max_obj_ptrs_in_encoder - 1`).
    Memory features are bf16, as the predictor stores them; pointers and scores keep the dtype the model
    produced them in, so a resumed state is bit-identical.
    """

    anchors: tuple[Anchor, ...]  # in the order given, on distinct frames
    memories: tuple[torch.Tensor, ...]  # the recent frames' memory features, each (1, mem_dim, h, w)
    ptrs: tuple[torch.Tensor, ...]  # the recent frames' object pointers, each (1, hidden_dim)
    recent_frames: tuple[int, ...]  # the recent frames, oldest first
    frame: int  # the last frame this state tracked or was given on
    direction: int  # FORWARD or BACKWARD: where the next call's frame lies
    frames_known: bool  # frames are the video's (the client sent them), not counted calls
    step: int  # calls since the object started
    max_memories: int
    max_ptrs: int
    video_size: tuple[int, int]  # (height, width) of the images this state tracks on
    fingerprint: str  # of the model (config + checkpoint) this state was made with

    @property
    def next_frame(self) -> int:
        return self.frame + self.direction

    @property
    def anchor_frames(self) -> tuple[int, ...]:
        return tuple(anchor.frame for anchor in self.anchors)

    def anchor_on(self, frame: int) -> Anchor | None:
        return next((anchor for anchor in self.anchors if anchor.frame == frame), None)

    def advanced(self, memory: torch.Tensor, ptr: torch.Tensor) -> ObjectState:
        """The state after tracking `next_frame`. A frame that holds an anchor adds no recent memory:
        its anchor already is its memory (as in the predictor, whose conditioning outputs win)."""
        frame = self.next_frame
        if frame in self.anchor_frames:
            return replace(self, frame=frame, step=self.step + 1)
        memories = (*self.memories, memory)[-self.max_memories :] if self.max_memories else ()
        ptrs = (*self.ptrs, ptr)[-self.max_ptrs :] if self.max_ptrs else ()
        kept = max(len(memories), len(ptrs))
        recent = (*self.recent_frames, frame)[len(self.recent_frames) + 1 - kept :]
        return replace(
            self, memories=memories, ptrs=ptrs, recent_frames=recent, frame=frame, step=self.step + 1
        )

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data once the recent memory is full: what a store holds for the object."""
        first = self.anchors[0]
        per_memory = first.memory.numel() * first.memory.element_size()
        per_ptr = first.ptr.numel() * first.ptr.element_size()
        score = first.score.numel() * first.score.element_size()
        anchors = len(self.anchors) * (per_memory + per_ptr + score)
        return anchors + self.max_memories * per_memory + self.max_ptrs * per_ptr


# ---- bytes ---------------------------------------------------------------------------------------


def pack(kind: str, tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> bytes:
    """Tensors plus JSON-able `info` as safetensors bytes, tagged with `kind`.

    The metadata goes in one entry: safetensors writes several in hash order, and equal values
    should give equal bytes.
    """
    from safetensors.torch import save

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata = json.dumps({**info, "format": kind}, sort_keys=True)
    return save(tensors, metadata={METADATA_KEY: metadata})


def unpack(kind: str | tuple[str, ...], data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The inverse of `pack` for bytes of `kind` (or of one of several kinds); anything else (another
    kind, corrupt or foreign bytes, pickles) raises `StateError`. Only JSON and raw tensor data are
    read: nothing is ever executed."""
    kinds = (kind,) if isinstance(kind, str) else kind
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 8:
        raise StateError("not a SAM2 tracker state")
    (header_size,) = struct.unpack("<Q", bytes(data[:8]))
    if header_size > min(len(data) - 8, 1 << 20):
        raise StateError("not a SAM2 tracker state")
    try:
        header = json.loads(bytes(data[8 : 8 + header_size]))
        info = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError):
        raise StateError("not a SAM2 tracker state") from None
    if not isinstance(info, dict) or info.get("format") not in kinds:
        raise StateError("not a SAM2 tracker state")
    try:
        tensors = load(bytes(data))
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise StateError(f"corrupt tracker state ({error})") from None
    return tensors, info


def _tensor(tensors: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in tensors:
        raise StateError(f"corrupt tracker state (no {name})")
    return tensors[name]


# ---- the pieces a store keeps --------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """A parsed head: the recent pointers, the state's fields and the store's own fields."""

    ptrs: torch.Tensor  # (n, hidden_dim), oldest first
    info: dict[str, Any]


def anchor_tensors(anchor: Anchor) -> dict[str, torch.Tensor]:
    """What an anchor piece holds, by name (as `read_anchor` gives it back)."""
    return {"memory": anchor.memory, "ptr": anchor.ptr, "score": anchor.score}


def anchor_bytes(anchor: Anchor) -> bytes:
    return pack(ANCHOR_FORMAT, anchor_tensors(anchor), {})


def memory_bytes(memory: torch.Tensor) -> bytes:
    return pack(MEMORY_FORMAT, {"memory": memory}, {})


def head_bytes(state: ObjectState, store_fields: Mapping[str, Any] | None = None) -> bytes:
    """The head of `state`; `store_fields` (JSON-able) travel with it and come back in `Head.info`."""
    # a continued state's pointers come from the store (CPU) and from the model (its device)
    first_ptr = state.anchors[0].ptr
    ptrs = (
        torch.cat([p.cpu() for p in state.ptrs])
        if state.ptrs
        else first_ptr.new_zeros((0, *first_ptr.shape[1:]))
    )
    fields = {
        "anchor_frames": list(state.anchor_frames),
        "recent_frames": list(state.recent_frames),
        "memories": len(state.memories),
        "frame": state.frame,
        "direction": state.direction,
        "frames_known": state.frames_known,
        "step": state.step,
        "video_size": list(state.video_size),
        "fingerprint": state.fingerprint,
        "max_memories": state.max_memories,
        "max_ptrs": state.max_ptrs,
    }
    return pack(HEAD_FORMAT, {"ptrs": ptrs}, {**(store_fields or {}), **fields})


def read_anchor(data: bytes) -> dict[str, torch.Tensor]:
    tensors, _ = unpack(ANCHOR_FORMAT, data)
    return {name: _tensor(tensors, name) for name in ("memory", "ptr", "score")}


def read_memory(data: bytes) -> torch.Tensor:
    return _tensor(unpack(MEMORY_FORMAT, data)[0], "memory")


def read_head(data: bytes) -> Head:
    tensors, info = unpack((HEAD_FORMAT, HEAD_FORMAT_1), data)
    if info["format"] == HEAD_FORMAT_1:
        info = _first_format_fields(info)
    return Head(_tensor(tensors, "ptrs"), info)


def _first_format_fields(info: dict[str, Any]) -> dict[str, Any]:
    """A first-format head's fields as the current format's: its start frame is an anchor on frame 0,
    its frames were counted forward, and its history is the `step` frames before (memories: the last
    of those)."""
    try:
        step, max_memories, max_ptrs = info["step"], info["max_memories"], info["max_ptrs"]
        recent = list(range(step - min(step, max(max_ptrs, max_memories)) + 1, step + 1))
        memories = min(step, max_memories)
    except (KeyError, TypeError, ValueError):
        raise StateError("corrupt tracker state (bad head)") from None
    return {
        **info,
        "anchor_frames": [0],
        "recent_frames": recent,
        "memories": memories,
        "frame": step,
        "direction": FORWARD,
        "frames_known": False,
    }


def _whole_number(value: Any) -> int:
    if type(value) is not int or not -FRAME_LIMIT < value < FRAME_LIMIT:
        raise ValueError("bad metadata")
    return value


def assemble(
    head: Head, anchors: Sequence[Mapping[str, torch.Tensor]], memories: Sequence[torch.Tensor]
) -> ObjectState:
    """The state from its parsed pieces (`anchors` in the head's order, `memories` oldest first),
    checked for consistency: the one place a state from outside the process is checked before a
    tracker's model-specific `check`."""
    info = head.info
    try:
        height, width = info["video_size"]
        numbers = (info["step"], height, width, info["max_memories"], info["max_ptrs"], info["memories"])
        if not all(type(v) is int and v >= 0 for v in numbers):
            raise ValueError("bad metadata")
        anchor_frames = [_whole_number(f) for f in info["anchor_frames"]]
        recent_frames = tuple(_whole_number(f) for f in info["recent_frames"])
        if len(anchor_frames) != len(anchors) or info["memories"] != len(memories):
            raise ValueError("pieces do not match the head")
        if info["direction"] not in (FORWARD, BACKWARD) or type(info["frames_known"]) is not bool:
            raise ValueError("bad metadata")
        if head.ptrs.dim() != 2:
            raise ValueError("bad pointers")
        state = ObjectState(
            anchors=tuple(
                Anchor(frame, piece["memory"], piece["ptr"], piece["score"])
                for frame, piece in zip(anchor_frames, anchors, strict=True)
            ),
            memories=tuple(memories),
            ptrs=tuple(p[None] for p in head.ptrs),
            recent_frames=recent_frames,
            frame=_whole_number(info["frame"]),
            direction=info["direction"],
            frames_known=info["frames_known"],
            step=info["step"],
            max_memories=info["max_memories"],
            max_ptrs=info["max_ptrs"],
            video_size=(height, width),
            fingerprint=str(info["fingerprint"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise StateError(f"corrupt tracker state ({error})") from None
    _check_structure(state)
    return state


def _check_structure(state: ObjectState) -> None:
    """Raise `StateError` unless the tensors are consistent and finite (any model)."""

    def fail(what: str) -> None:
        raise StateError(f"corrupt tracker state ({what})")

    if min(state.video_size) <= 0:
        fail("bad image size")
    if not 1 <= len(state.anchors) <= MAX_STATE_ANCHORS or len(set(state.anchor_frames)) != len(
        state.anchors
    ):
        fail("bad anchors")
    first = state.anchors[0]
    if first.memory.dim() != 4 or first.memory.shape[0] != 1:
        fail("bad memory shape")
    if first.ptr.dim() != 2:
        fail("bad pointer shape")
    if len(state.ptrs) > state.max_ptrs or len(state.memories) > state.max_memories:
        fail("history longer than the model keeps")
    recent = len(state.recent_frames)
    if recent != max(len(state.ptrs), len(state.memories)) or len(set(state.recent_frames)) != recent:
        fail("history does not match its frames")
    if set(state.recent_frames) & set(state.anchor_frames):
        fail("a frame is both an anchor and a recent frame")
    memories = (*(a.memory for a in state.anchors), *state.memories)
    if any(m.shape != first.memory.shape or m.dtype != first.memory.dtype for m in memories):
        fail("bad memory shape")
    if any(p.shape != first.ptr.shape for p in (*(a.ptr for a in state.anchors), *state.ptrs)):
        fail("bad pointer shape")
    if any(a.score.shape != (1, 1) for a in state.anchors):
        fail("bad score shape")
    tensors = (*memories, *(a.ptr for a in state.anchors), *(a.score for a in state.anchors), *state.ptrs)
    for tensor in tensors:
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            fail("non-finite values")


@dataclass(frozen=True)
class StatePieces:
    """A whole state as the stores write it: anchor pieces, memory pieces (oldest first), head."""

    anchors: tuple[bytes, ...]
    memories: tuple[bytes, ...]
    head: bytes

    @property
    def size(self) -> int:
        return sum(map(len, self.anchors)) + sum(map(len, self.memories)) + len(self.head)


def to_pieces(state: ObjectState) -> StatePieces:
    return StatePieces(
        tuple(anchor_bytes(a) for a in state.anchors),
        tuple(memory_bytes(m) for m in state.memories),
        head_bytes(state),
    )


def from_pieces(pieces: StatePieces) -> ObjectState:
    return assemble(
        read_head(pieces.head),
        [read_anchor(a) for a in pieces.anchors],
        [read_memory(m) for m in pieces.memories],
    )
