"""One tracked object's SAM2 memory between calls: the state, its checks, and its bytes.

An `ObjectState` is what SAM2's memory attention reads for one object (see `ObjectState`). It leaves
the process as three kinds of pieces, each safetensors bytes (a JSON header and raw tensors: nothing is
ever unpickled or executed):

- the start piece: the start frame's memory features, object pointer and presence score, written once;
- a memory piece per tracked frame: that frame's memory features (about 0.5 MB at 1024 input);
- the head: step, the recent object pointers, image size, model fingerprint and capacities, plus
  whatever the store adds to find the pieces again.

The stores keep these pieces (state_store.py), so a step writes one memory piece and one head, never
the whole state; `to_pieces` / `from_pieces` are the whole round trip, for tests and tools.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

METADATA_KEY = "sam2_tracker"
START_FORMAT = "sam2-tracker-cond/1"
MEMORY_FORMAT = "sam2-tracker-memory/1"
HEAD_FORMAT = "sam2-tracker-head/1"
# the head's own fields; a store adds its fields beside them
HEAD_FIELDS = ("step", "video_size", "fingerprint", "max_memories", "max_ptrs")


class StateError(ValueError):
    """A state that cannot be resumed here: corrupt, foreign, or from another model or image size."""


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
        memories = (*self.memories, memory)[-self.max_memories :] if self.max_memories else ()
        ptrs = (*self.ptrs, ptr)[-self.max_ptrs :] if self.max_ptrs else ()
        return replace(self, memories=memories, ptrs=ptrs, step=self.step + 1)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data once the history is full: what a store holds for the object."""
        per_memory = self.cond_memory.numel() * self.cond_memory.element_size()
        per_ptr = self.cond_ptr.numel() * self.cond_ptr.element_size()
        score = self.cond_score.numel() * self.cond_score.element_size()
        return (1 + self.max_memories) * per_memory + (1 + self.max_ptrs) * per_ptr + score


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


def unpack(kind: str, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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
        header = json.loads(bytes(data[8 : 8 + header_size]))
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


def start_tensors(state: ObjectState) -> dict[str, torch.Tensor]:
    """What the start piece holds, by name (as `read_start` gives it back)."""
    return {"memory": state.cond_memory, "ptr": state.cond_ptr, "score": state.cond_score}


def start_bytes(state: ObjectState) -> bytes:
    return pack(START_FORMAT, start_tensors(state), {})


def memory_bytes(memory: torch.Tensor) -> bytes:
    return pack(MEMORY_FORMAT, {"memory": memory}, {})


def head_bytes(state: ObjectState, store_fields: Mapping[str, Any] | None = None) -> bytes:
    """The head of `state`; `store_fields` (JSON-able) travel with it and come back in `Head.info`."""
    # a continued state's pointers come from the store (CPU) and from the model (its device)
    ptrs = (
        torch.cat([p.cpu() for p in state.ptrs])
        if state.ptrs
        else state.cond_ptr.new_zeros((0, *state.cond_ptr.shape[1:]))
    )
    fields = {
        "step": state.step,
        "video_size": list(state.video_size),
        "fingerprint": state.fingerprint,
        "max_memories": state.max_memories,
        "max_ptrs": state.max_ptrs,
    }
    return pack(HEAD_FORMAT, {"ptrs": ptrs}, {**(store_fields or {}), **fields})


def read_start(data: bytes) -> dict[str, torch.Tensor]:
    tensors, _ = unpack(START_FORMAT, data)
    return {name: _tensor(tensors, name) for name in ("memory", "ptr", "score")}


def read_memory(data: bytes) -> torch.Tensor:
    return _tensor(unpack(MEMORY_FORMAT, data)[0], "memory")


def read_head(data: bytes) -> Head:
    tensors, info = unpack(HEAD_FORMAT, data)
    return Head(_tensor(tensors, "ptrs"), info)


def assemble(head: Head, start: Mapping[str, torch.Tensor], memories: Sequence[torch.Tensor]) -> ObjectState:
    """The state from its parsed pieces (`memories` oldest first), checked for consistency: the one
    place a state from outside the process is checked before a tracker's model-specific `check`."""
    info = head.info
    try:
        height, width = info["video_size"]
        numbers = (info["step"], height, width, info["max_memories"], info["max_ptrs"])
        if not all(type(v) is int and v >= 0 for v in numbers):
            raise ValueError("bad metadata")
        if head.ptrs.dim() != 2:
            raise ValueError("bad pointers")
        state = ObjectState(
            cond_memory=start["memory"],
            cond_ptr=start["ptr"],
            cond_score=start["score"],
            memories=tuple(memories),
            ptrs=tuple(p[None] for p in head.ptrs),
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
    if state.cond_memory.dim() != 4 or state.cond_memory.shape[0] != 1:
        fail("bad memory shape")
    if state.cond_ptr.dim() != 2 or state.cond_score.shape != (1, 1):
        fail("bad pointer shape")
    if len(state.memories) != min(state.step, state.max_memories) or len(state.ptrs) != min(
        state.step, state.max_ptrs
    ):
        fail("history does not match the step count")
    if any(m.shape != state.cond_memory.shape or m.dtype != state.cond_memory.dtype for m in state.memories):
        fail("bad memory shape")
    if any(p.shape != state.cond_ptr.shape for p in state.ptrs):
        fail("bad pointer shape")
    for tensor in (state.cond_memory, state.cond_ptr, state.cond_score, *state.memories, *state.ptrs):
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            fail("non-finite values")


@dataclass(frozen=True)
class StatePieces:
    """A whole state as the stores write it: start piece, memory pieces (oldest first), head."""

    start: bytes
    memories: tuple[bytes, ...]
    head: bytes

    @property
    def size(self) -> int:
        return len(self.start) + sum(map(len, self.memories)) + len(self.head)


def to_pieces(state: ObjectState) -> StatePieces:
    return StatePieces(start_bytes(state), tuple(memory_bytes(m) for m in state.memories), head_bytes(state))


def from_pieces(pieces: StatePieces) -> ObjectState:
    return assemble(
        read_head(pieces.head), read_start(pieces.start), [read_memory(m) for m in pieces.memories]
    )
