"""Where a start or a correction puts an object's conditioning frame (anchor), and which anchors stay.

SAM2's video predictor keeps every frame the user prompted as a conditioning frame: every later frame
attends to all of them. A correction here is the same: the object's memory continues from its state
and the corrected frame becomes one more anchor (`corrected`). Two choices keep it exact and bounded:

- The recent memory (the last frames tracked) stays only when the corrected frame directly follows the
  state's last frame in its direction: a correction while tracking on, as when the predictor is
  propagated to t-1, given a mask on t, and propagated on. A re-run from another frame drops it, as a
  predictor session holding only the anchors would: an earlier frame must not attend to later ones.
- At most `max_anchors` anchors, chosen as the predictor chooses among more conditioning frames than
  `max_cond_frames_in_attn` (sam2's `select_closest_cond_frames`): the nearest before and after the
  next frame, then the nearest. The new anchor always stays.

Frames are the video's frame numbers when the client sends them (`Placement.frame`); without them a
state counts calls from its start (frame 0) forward, as before anchors existed: then a correction is
placed on the frame after the state's last one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from object_state import FORWARD, Anchor, ObjectState


class PlacementError(ValueError):
    """A frame number a state cannot take (it counted its frames, so it has no frame numbers)."""


@dataclass(frozen=True)
class Placement:
    """Where a shape was given: the video's frame number and the direction tracking goes from it
    (None: not said; frames are then counted, the direction is the state's or forward)."""

    frame: int | None = None
    direction: int | None = None


def start_placement(placement: Placement) -> tuple[int, int, bool]:
    """(frame, direction, frames_known) of an object started as `placement` says."""
    if placement.frame is None:
        return 0, FORWARD, False
    return placement.frame, placement.direction or FORWARD, True


def correction_placement(state: ObjectState, placement: Placement) -> tuple[int, int]:
    """(frame, direction) of a correction of `state` given as `placement` says."""
    if not state.frames_known:
        if placement.frame is not None:
            raise PlacementError(
                "the object was tracked without frame numbers, so a correction cannot name its frame: "
                'send the shape without "frame" (it corrects the frame after the last one tracked), '
                "or without the state to start the object afresh"
            )
        return state.frame + 1, FORWARD
    direction = placement.direction or state.direction
    frame = state.frame + state.direction if placement.frame is None else placement.frame
    return frame, direction


def corrected(state: ObjectState, anchor: Anchor, direction: int, max_anchors: int) -> ObjectState:
    """`state` continued by a correction: `anchor` (on its frame, replacing an anchor there) added, the
    anchors capped, and the recent memory kept only for a correction right after the last frame."""
    follows = anchor.frame == state.next_frame and direction == state.direction
    others = tuple(a for a in state.anchors if a.frame != anchor.frame)
    anchors = kept_anchors((*others, anchor), anchor.frame + direction, max_anchors)
    recent = dict(memories=state.memories, ptrs=state.ptrs, recent_frames=state.recent_frames)
    if not follows:
        recent = dict(memories=(), ptrs=(), recent_frames=())
    return replace(
        state, anchors=anchors, frame=anchor.frame, direction=direction, step=state.step + 1, **recent
    )


def kept_anchors(anchors: tuple[Anchor, ...], next_frame: int, max_anchors: int) -> tuple[Anchor, ...]:
    """At most `max_anchors` of `anchors` (the last one, the newest, always): the predictor's choice of
    conditioning frames for `next_frame`, in the order it attends to them (all of them in the order
    given; a choice in the order chosen)."""
    if len(anchors) <= max_anchors:
        return anchors
    newest = anchors[-1]
    if max_anchors == 1:
        return (newest,)
    frames = [a.frame for a in anchors]
    chosen: list[int] = []
    before = [f for f in frames if f < next_frame]
    after = [f for f in frames if f >= next_frame]
    if before:
        chosen.append(max(before))
    if after:
        chosen.append(min(after))
    rest = sorted((f for f in frames if f not in chosen), key=lambda f: abs(f - next_frame))
    chosen += rest[: max_anchors - len(chosen)]
    if newest.frame not in chosen:
        chosen[-1] = newest.frame
    by_frame = {a.frame: a for a in anchors}
    return tuple(by_frame[frame] for frame in chosen)
