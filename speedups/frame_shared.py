"""Work that is the same for every object on a frame, done once per frame.

Each object is tracked by its own pass through SAM2's memory attention. The first layer starts with a
self-attention over the current frame's image tokens (4,096 at 1024 input): it reads no memory, so it
gives the same result for every object on the frame, about 60 ms of a 1.6 s step on 2 CPU cores. The
first layer here keeps that result in the frame's `FrameMemo` and returns it again for the frame's
other objects when their inputs are equal (compared value by value, which costs well under a
millisecond). Nothing is approximated: an object's result is the same bits whether it is tracked alone
or with others.

Where the memo lives and who shares it: each encoded frame owns one (model_handler.Frame), so it lives
exactly as long as the frame. The tracker makes it the current memo (`on_frame`, a context variable:
per thread) while it steps objects on that frame, so threads tracking other frames at the same time
never see it, and every object of one frame shares it, in one call or over several (cvat-sdk's agent
tracks one object per call). Outside `on_frame` the layer computes its self-attention every time.

The same layer also lays the residual stream out contiguously: sam2 hands the memory attention a
transposed view of the image features (channels 4,096 elements apart), and every layer norm and
residual addition of the four layers kept that layout, each 5-8x slower than on contiguous memory
(about 35 ms per object and frame on 2 CPU cores). Layer norms and additions give the same bits in any
layout.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from sam2.modeling.memory_attention import MemoryAttentionLayer

from speedups.module_classes import switch_classes


@dataclass(frozen=True)
class _SelfAttention:
    tgt: torch.Tensor  # our own copy: the caller's tensor is never held
    query_pos: torch.Tensor | None
    output: torch.Tensor

    def matches(self, tgt: torch.Tensor, query_pos: torch.Tensor | None) -> bool:
        return same_values(self.tgt, tgt) and same_values(self.query_pos, query_pos)


class FrameMemo:
    """The first memory-attention layer's last self-attention on one frame. Threads that track the
    same frame at once may share it: an entry is replaced whole (one assignment), never changed, and
    is used only where its inputs equal the caller's."""

    __slots__ = ("_entry", "computed")

    def __init__(self) -> None:
        self._entry: _SelfAttention | None = None
        self.computed = 0  # self-attentions run for this frame (the others were shared)

    def lookup(self, tgt: torch.Tensor, query_pos: torch.Tensor | None) -> torch.Tensor | None:
        entry = self._entry
        return entry.output if entry is not None and entry.matches(tgt, query_pos) else None

    def keep(self, tgt: torch.Tensor, query_pos: torch.Tensor | None, output: torch.Tensor) -> None:
        self.computed += 1
        self._entry = _SelfAttention(tgt.clone(), None if query_pos is None else query_pos.clone(), output)


_current: ContextVar[FrameMemo | None] = ContextVar("sam2_frame_memo", default=None)


@contextmanager
def on_frame(memo: FrameMemo):
    """Within this block, in this thread, the frame-shared layer uses `memo`."""
    token = _current.set(memo)
    try:
        yield
    finally:
        _current.reset(token)


def same_values(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


class FrameSharedSelfAttentionLayer(MemoryAttentionLayer):
    """A memory-attention layer whose self-attention result is shared by the objects of a frame (see
    the module docstring), and whose output is contiguous. Meant for the first layer only: later
    layers' inputs already depend on the object's memory, so they would never match."""

    def _forward_sa(self, tgt: torch.Tensor, query_pos: torch.Tensor | None) -> torch.Tensor:
        memo = _current.get()
        if memo is not None:
            shared = memo.lookup(tgt, query_pos)
            if shared is not None:
                return shared
        output = super()._forward_sa(tgt.contiguous(), query_pos)
        if memo is not None:
            memo.keep(tgt, query_pos, output)
        return output


FRAME_SHARED = {MemoryAttentionLayer: FrameSharedSelfAttentionLayer}


def share_first_self_attention(memory_attention: torch.nn.Module) -> int:
    """Switch the first layer of SAM2's memory attention to the frame-shared version; returns how many
    layers were switched (1)."""
    return switch_classes(memory_attention.layers[0], FRAME_SHARED)
