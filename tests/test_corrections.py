"""Corrections as anchors (anchors.py) against the official SAM2VideoPredictor, at fp32: 0 pixels differ.

(a) A correction while tracking on: one predictor session propagated to frame t-1, given a mask (or a
box) on t, propagated on from t. (b) A re-run from an earlier frame: a session holding the masks of
every kept anchor, propagated from the new one. Both ways. Every state goes through the bytes the
stores keep between calls. The checkpoint makes masks depend on memory, and each test checks that the
comparison fails when the earlier anchors are dropped (SAM2_MAX_ANCHORS=1).

At 256 input: the same code path as 1024, 16x cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from anchors import Placement
from model_handler import Correction, Sam2Tracker, Start
from object_state import BACKWARD, FORWARD
from shape_codecs import Box
from tests.support.models import make_tracker
from tests.support.oracle import (
    Prompts,
    Propagate,
    compare,
    load_rgb,
    official_session,
    through_store_bytes,
    video_logits,
)
from tests.support.synthetic import moving_objects_scene, write_jpeg_folder

TINY = ("++model.image_size=256",)
FRAMES = 24  # the cap test's anchors lie more than 15 frames (SAM2's pointer reach) from the last
OBJECTS = 2


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    scene = moving_objects_scene(FRAMES, seed=7)
    paths = write_jpeg_folder(scene.frames, tmp_path_factory.mktemp("corrections"))
    return scene, paths


@dataclass(frozen=True)
class Given:
    """Our side of a `Prompts` step: start the objects there, or correct them (they have states)."""

    frame: int
    direction: int = FORWARD


@dataclass(frozen=True)
class Track:
    """Our side of a `Propagate` step past its first frame: step the objects over these frames."""

    frames: tuple[int, ...]


def prompts_on(scene, frame: int, kind: str = "mask") -> list[np.ndarray | Box]:
    masks = scene.masks[frame][:OBJECTS]
    if kind == "mask":
        return list(masks)
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append(Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
    return boxes


def ours(tracker: Sam2Tracker, scene, paths, script, kind: str = "mask"):
    """Our tracker driven by `script`; the logits of every frame it answers, in order, and the last
    states."""
    states, logits = None, []
    for item in script:
        frames = (item.frame,) if isinstance(item, Given) else item.frames
        for index in frames:
            frame = tracker.encode(load_rgb(paths[index]))
            if isinstance(item, Track):
                tracked = tracker.step(frame, states)
            else:
                placement = Placement(item.frame, item.direction)
                prompts = prompts_on(scene, item.frame, kind)
                if states is None:
                    inputs = [Start(p, placement) for p in prompts]
                else:
                    inputs = [Correction(s, p, placement) for s, p in zip(states, prompts, strict=True)]
                tracked = tracker.track(frame, inputs)
            logits.append(video_logits(tracked, scene.size))
            states = through_store_bytes(tracked)
    return logits, states


def official(checkpoint, scene, paths, script, kind: str = "mask", overrides=()):
    steps = [
        Prompts(item.frame, prompts_on(scene, item.frame, kind)) if isinstance(item, Given) else item
        for item in script
    ]
    return official_session(checkpoint, paths[0].parent, steps, overrides=(*TINY, *overrides))


def assert_exact_and_sensitive(checkpoint, scene, paths, script, theirs, kind="mask", compared=None):
    """Ours equals `theirs` over the last `compared` frames (default all), and the same run keeping only
    the newest anchor does not."""
    for max_anchors, exact in ((4, True), (1, False)):
        tracker = make_tracker(checkpoint, precision="fp32", overrides=TINY, max_anchors=max_anchors)
        logits, states = ours(tracker, scene, paths, script, kind)
        logits = logits[-(compared or len(theirs)) :]
        max_diff, flipped = compare(theirs[-len(logits) :], logits)
        print(f"SAM2_MAX_ANCHORS={max_anchors}: max |logit diff| {max_diff:.4g}, {flipped} pixels differ")
        if exact:
            assert (max_diff, flipped) == (0.0, 0)
            assert all(len(state.anchors) == 2 for state in states)
        else:
            assert flipped > 0


@pytest.mark.parametrize(
    "direction, kind",
    [(FORWARD, "mask"), (BACKWARD, "mask"), (FORWARD, "rectangle")],
    ids=["forward", "backward", "forward-rectangle"],
)
def test_a_correction_while_tracking_on_equals_the_official_session(checkpoint, video, direction, kind):
    """(a): tracked from 8 (forward: 0) for 3 frames, corrected on the next, tracked 2 frames on."""
    scene, paths = video
    reverse = direction == BACKWARD
    start = 8 if reverse else 0
    at = [start + direction * k for k in range(7)]
    script = [Given(start, direction), Track(tuple(at[1:4])), Given(at[4], direction), Track(tuple(at[5:]))]
    theirs = official(
        checkpoint,
        scene,
        paths,
        [Given(start), Propagate(start, 3, reverse), Given(at[4]), Propagate(at[4], 2, reverse)],
        kind,
    )
    assert_exact_and_sensitive(checkpoint, scene, paths, script, theirs, kind)


@pytest.mark.parametrize("direction", [FORWARD, BACKWARD], ids=["forward", "backward"])
def test_a_rerun_from_another_frame_equals_a_session_holding_the_anchors(checkpoint, video, direction):
    """(b): tracked forward from 0 to 5, then re-run from 3 (forward) or from 7 (backward) with a
    correction there: the recent memory goes, the start frame stays an anchor."""
    scene, paths = video
    rerun = 3 if direction == FORWARD else 7
    after = (rerun + direction, rerun + 2 * direction)
    script = [Given(0), Track((1, 2, 3, 4, 5)), Given(rerun, direction), Track(after)]
    theirs = official(
        checkpoint, scene, paths, [Given(0), Given(rerun), Propagate(rerun, 2, direction == BACKWARD)]
    )
    assert_exact_and_sensitive(checkpoint, scene, paths, script, theirs, compared=3)


def test_the_cap_keeps_the_anchors_sam2_would_attend_to(checkpoint, video):
    """Three anchors under SAM2_MAX_ANCHORS=2: the state keeps the two nearest, as the predictor with
    max_cond_frames_in_attn=2 attends to them (the far one is out of the pointers' reach too)."""
    scene, paths = video
    script = [Given(0), Given(20), Given(21), Track((22, 23))]
    theirs = official(
        checkpoint,
        scene,
        paths,
        [Given(0), Given(20), Given(21), Propagate(21, 2)],
        overrides=("++model.max_cond_frames_in_attn=2",),
    )
    for max_anchors, exact in ((2, True), (3, False)):
        tracker = make_tracker(checkpoint, precision="fp32", overrides=TINY, max_anchors=max_anchors)
        logits, states = ours(tracker, scene, paths, script)
        max_diff, flipped = compare(theirs, logits[-3:])
        print(f"SAM2_MAX_ANCHORS={max_anchors}: max |logit diff| {max_diff:.4g}, {flipped} pixels differ")
        assert states[0].anchor_frames == ((21, 20) if exact else (0, 20, 21))
        assert (flipped == 0 and max_diff == 0.0) is exact
