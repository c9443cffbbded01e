"""Which anchors and recent memory a correction keeps (anchors.py), on synthetic states (no model); the
choice under the cap against sam2's own `select_closest_cond_frames`."""

from __future__ import annotations

import dataclasses
import random

import pytest
from sam2.modeling.sam2_utils import select_closest_cond_frames

from anchors import Placement, PlacementError, corrected, correction_placement, kept_anchors
from object_state import BACKWARD, FORWARD, Anchor
from tests.support.synthetic import random_object_state, random_step


def anchor(frame: int, like: Anchor) -> Anchor:
    return dataclasses.replace(like, frame=frame)


@pytest.fixture
def tracked():
    """Started on frame 0 (frame numbers known), tracked forward to frame 8."""
    state = random_object_state(0, side=8)
    for step in range(1, 9):
        state = random_step(state, step)
    return state


def test_a_correction_right_after_the_last_frame_keeps_the_recent_memory(tracked):
    state = corrected(tracked, anchor(9, tracked.anchors[0]), FORWARD, max_anchors=4)
    assert state.anchor_frames == (0, 9)
    assert state.recent_frames == tracked.recent_frames and state.memories == tracked.memories
    assert (state.frame, state.next_frame) == (9, 10)
    # the next frame skips the anchor's frame in its recent memory: the anchor is that frame's memory
    stepped = random_step(state, 10)
    assert stepped.recent_frames[-2:] == (8, 10)


@pytest.mark.parametrize("frame, direction", [(3, FORWARD), (12, FORWARD), (9, BACKWARD), (8, FORWARD)])
def test_a_correction_elsewhere_or_the_other_way_drops_the_recent_memory(tracked, frame, direction):
    state = corrected(tracked, anchor(frame, tracked.anchors[0]), direction, max_anchors=4)
    assert (state.memories, state.ptrs, state.recent_frames) == ((), (), ())
    assert state.anchor_frames == (0, frame) and state.direction == direction


def test_a_correction_on_an_anchor_replaces_it(tracked):
    state = corrected(tracked, anchor(4, tracked.anchors[0]), FORWARD, max_anchors=4)
    again = anchor(4, tracked.anchors[0])
    state = corrected(state, again, BACKWARD, max_anchors=4)
    assert state.anchor_frames == (0, 4) and state.anchors[1] is again


def test_the_cap_keeps_what_sam2_attends_to_for_the_next_frame():
    """Random anchor frames and corrections: the anchors kept, in their order, are sam2's choice of
    conditioning frames for the frame after the correction, whenever that choice holds the new one (else
    the new one replaces sam2's last pick)."""
    rng = random.Random(0)
    like = random_object_state(0, side=4).anchors[0]
    compared = 0
    for _ in range(200):
        cap = rng.randint(2, 5)
        frames = rng.sample(range(60), cap + 1)
        given = tuple(anchor(f, like) for f in frames)
        next_frame = frames[-1] + rng.choice((FORWARD, BACKWARD))
        kept = kept_anchors(given, next_frame, cap)
        selected, _ = select_closest_cond_frames(next_frame, {a.frame: a for a in given}, cap)
        assert len(kept) == cap and given[-1] in kept
        if frames[-1] in selected:
            assert [a.frame for a in kept] == list(selected)
            compared += 1
        else:
            assert [a.frame for a in kept] == [*list(selected)[:-1], frames[-1]]
    assert compared > 150


def test_every_anchor_stays_under_the_cap(tracked):
    given = tuple(anchor(f, tracked.anchors[0]) for f in (0, 30, 10))
    assert kept_anchors(given, 11, 4) == given
    assert kept_anchors(given, 11, 1) == given[-1:]


def test_frames_without_numbers_count_on_and_refuse_a_frame_number(tracked):
    counted = dataclasses.replace(tracked, frames_known=False)
    assert correction_placement(counted, Placement()) == (9, FORWARD)
    assert correction_placement(counted, Placement(direction=BACKWARD)) == (9, FORWARD)
    with pytest.raises(PlacementError, match="without frame numbers"):
        correction_placement(counted, Placement(frame=3))
    assert correction_placement(tracked, Placement()) == (9, FORWARD)
    assert correction_placement(tracked, Placement(frame=3, direction=BACKWARD)) == (3, BACKWARD)
