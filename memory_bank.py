"""The predictor's memory bank for objects continuing from their states.

SAM2's `track_step` reads an object's memory from the predictor's output dict: conditioning frames
(`cond_frame_outputs`: the anchors) and recent frames (`non_cond_frame_outputs`), each keyed by its
frame. It picks what it attends to by distance from the frame it tracks (memory features of the
last 6 frames, pointers of the last 15, every anchor's memory, the pointers of anchors behind it), so
a state that keeps each entry with its frame gives it exactly the dict the predictor holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from object_state import ObjectState


def layout(state: ObjectState) -> tuple:
    """What the bank's shape depends on: objects with equal layouts are tracked in one forward."""
    return (
        state.next_frame,
        state.direction,
        state.anchor_frames,
        state.recent_frames,
        len(state.memories),
        len(state.ptrs),
    )


def memory_bank(
    states: Sequence[ObjectState], pos_enc: Sequence[torch.Tensor], device: torch.device
) -> dict[str, dict[int, dict]]:
    """The predictor's output dict for these objects (stacked on the batch dimension) as it is when it
    tracks their next frame. The objects must have the same `layout`; `pos_enc` is the model's memory
    position encoding (a constant of the model)."""
    batch = len(states)

    def stacked(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.to(device) for t in tensors]) if batch > 1 else tensors[0].to(device)

    pos = [p.expand(batch, -1, -1, -1) for p in pos_enc]
    first = states[0]
    cond = {
        anchor.frame: {
            "maskmem_features": stacked([s.anchors[index].memory for s in states]),
            "maskmem_pos_enc": pos,
            "obj_ptr": stacked([s.anchors[index].ptr for s in states]),
        }
        for index, anchor in enumerate(first.anchors)
    }
    non_cond: dict[int, dict] = {}
    for age in range(1, len(first.ptrs) + 1):
        non_cond[first.recent_frames[-age]] = {"obj_ptr": stacked([s.ptrs[-age] for s in states])}
    for age in range(1, len(first.memories) + 1):
        entry = non_cond.setdefault(first.recent_frames[-age], {})
        entry["maskmem_features"] = stacked([s.memories[-age] for s in states])
        entry["maskmem_pos_enc"] = pos
    return {"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond}
