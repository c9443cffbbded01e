"""The per-object state: bounded size, lossless bytes, refusal of anything that is not ours."""

from __future__ import annotations

import dataclasses
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save

from model_handler import InputError
from object_state import Anchor, ObjectState, StateError, StatePieces, from_pieces, to_pieces
from tests.support.models import fastest_precision, make_tracker
from tests.support.synthetic import moving_objects_scene

MB = 1_000_000


@pytest.fixture(scope="module")
def scene():
    return moving_objects_scene(6, seed=3)


@pytest.fixture(scope="module")
def started(small_tracker, scene):
    frame = small_tracker.encode(scene.frames[0])
    return small_tracker.start(frame, scene.masks[0][:2])


def test_state_size_at_1024_is_bounded_and_flat(checkpoint, scene):
    # this machine's faster precision and its faster attention (chunked in bf16; in fp32 the official
    # kernel is the faster) for speed: the state does not depend on them (SAM2 keeps memory features
    # in bf16 in either precision)
    precision = fastest_precision()
    fast = "on" if precision == "bf16" else "off"
    tracker = make_tracker(checkpoint, precision=precision, overrides=(), fast_attention=fast)
    frames = [tracker.encode(image) for image in scene.frames[:2]]
    state = tracker.start(frames[0], scene.masks[0][:1])[0].state
    sizes = {}
    for step in range(1, 17):
        state = tracker.step(frames[step % 2], [state])[0].state
        sizes[step] = to_pieces(state).size
    print(
        f"state bytes per object at 1024, {precision}: after 3 steps {sizes[3]}, after 16 steps {sizes[16]}"
    )
    assert max(sizes.values()) <= 3.8 * MB
    # flat once the history is full (6 memory frames, 15 pointers)
    assert sizes[3] < sizes[15] == sizes[16]
    assert (len(state.memories), len(state.ptrs), state.step) == (6, 15, 16)
    # the memory features dominate: 7 frames of (64, 64, 64) bf16
    assert state.memories[0].dtype == torch.bfloat16
    assert state.nbytes >= 7 * 64 * 64 * 64 * 2


def assert_same_values(mine, theirs) -> None:
    if isinstance(mine, torch.Tensor):
        assert mine.dtype == theirs.dtype
        assert torch.equal(mine, theirs)
    elif isinstance(mine, Anchor):
        for field in dataclasses.fields(Anchor):
            assert_same_values(getattr(mine, field.name), getattr(theirs, field.name))
    elif isinstance(mine, tuple):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            assert_same_values(a, b)
    else:
        assert mine == theirs


def test_bytes_round_trip_is_lossless(small_tracker, started, scene):
    state = small_tracker.step(small_tracker.encode(scene.frames[1]), [started[0].state])[0].state
    copy = from_pieces(to_pieces(state))
    for field in dataclasses.fields(ObjectState):
        assert_same_values(getattr(state, field.name), getattr(copy, field.name))
    assert to_pieces(copy) == to_pieces(state)
    assert state.anchors[0].memory.dtype == torch.bfloat16
    assert (state.recent_frames, state.frame, state.frames_known) == ((1,), 1, False)


def test_lost_object_is_absent_and_its_state_advances(absent_checkpoint, scene):
    tracker = make_tracker(absent_checkpoint, precision=fastest_precision())
    frame = tracker.encode(scene.frames[0])
    started = tracker.start(frame, scene.masks[0][:1])[0]
    # the start frame is the user's mask, present by definition
    assert started.result.present and started.result.score > 0
    state = started.state
    for index in range(1, 4):
        tracked = tracker.step(tracker.encode(scene.frames[index]), [state])[0]
        assert not tracked.result.present
        assert tracked.result.mask is None
        assert tracked.result.score < 0
        assert tracked.state.step == state.step + 1
        assert len(tracked.state.memories) == index
        state = from_pieces(to_pieces(tracked.state))


def test_state_from_another_model_is_refused(small_tracker, started, scene):
    foreign = dataclasses.replace(started[0].state, fingerprint="0" * 64)
    small_tracker.check(started[0].state, scene.size)
    with pytest.raises(StateError, match="another SAM2 model"):
        small_tracker.check(from_pieces(to_pieces(foreign)), scene.size)


def test_state_on_another_image_size_is_refused(small_tracker, started):
    with pytest.raises(StateError, match="300x200 but the object was started on a 320x240"):
        small_tracker.check(started[0].state, (200, 300))


def test_mask_of_another_size_is_refused(small_tracker, scene):
    frame = small_tracker.encode(scene.frames[0])
    with pytest.raises(InputError, match="differs from the image size"):
        small_tracker.start(frame, [np.zeros((10, 10), bool)])


def _with_info(blob: bytes, **changes) -> bytes:
    """The piece with its tracker metadata changed, rewritten with safetensors' own reader and writer."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "piece.safetensors")
        path.write_bytes(blob)
        with safe_open(str(path), "pt") as reader:
            metadata = reader.metadata()
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}  # noqa: SIM118
    (key,) = metadata
    info = json.loads(metadata[key])
    info.update(changes)
    return save(tensors, metadata={key: json.dumps(info)})


MANGLES = {
    "empty": lambda blob: b"",
    "text": lambda blob: b"hello",
    "truncated": lambda blob: blob[: len(blob) // 2],
    "bad-header": lambda blob: blob[:8] + b"[" + blob[9:],
    "pickle": lambda blob: pickle.dumps({"cond_memory": 1}),
    "format": lambda blob: _with_info(blob, format="other/1"),
    "trailing-bytes": lambda blob: blob + b"x",
}
HEAD_MANGLES = {
    "negative-step": lambda blob: _with_info(blob, step=-1),
    "string-step": lambda blob: _with_info(blob, step="3"),
    "history-beyond-its-frames": lambda blob: _with_info(blob, recent_frames=[2]),
    "more-anchors-than-pieces": lambda blob: _with_info(blob, anchor_frames=[0, 9]),
    "anchor-on-a-recent-frame": lambda blob: _with_info(blob, anchor_frames=[2]),
    "no-direction": lambda blob: _with_info(blob, direction=0),
    "string-frame": lambda blob: _with_info(blob, frame="2"),
    "zero-size": lambda blob: _with_info(blob, video_size=[0, 10]),
    "bad-size": lambda blob: _with_info(blob, video_size=[10]),
    "bad-capacity": lambda blob: _with_info(blob, max_ptrs="x"),
}
CASES = [(piece, name) for piece in ("head", "anchors", "memories") for name in MANGLES]
CASES += [("head", name) for name in HEAD_MANGLES]


def _mangled(pieces: StatePieces, piece: str, name: str) -> StatePieces:
    mangle = {**MANGLES, **HEAD_MANGLES}[name]
    if piece in ("memories", "anchors"):
        first, *rest = getattr(pieces, piece)
        return dataclasses.replace(pieces, **{piece: (mangle(first), *rest)})
    return dataclasses.replace(pieces, **{piece: mangle(getattr(pieces, piece))})


@pytest.mark.parametrize("piece, name", CASES, ids=[f"{piece}-{name}" for piece, name in CASES])
def test_corrupt_state_pieces_raise_state_error(small_tracker, started, scene, piece, name):
    frame = small_tracker.encode(scene.frames[1])
    tracked = small_tracker.step(frame, [started[0].state])[0].state
    tracked = small_tracker.step(frame, [tracked])[0].state  # two memory frames
    pieces = to_pieces(tracked)
    from_pieces(pieces)  # the pieces as they are load
    with pytest.raises(StateError):
        from_pieces(_mangled(pieces, piece, name))


def test_state_with_shapes_that_do_not_fit_the_model_is_refused(small_tracker, started, scene):
    state = started[0].state
    first = state.anchors[0]
    small = dataclasses.replace(first, memory=first.memory[:, :, :8, :8].contiguous())
    wrong = dataclasses.replace(state, anchors=(small,))
    with pytest.raises(StateError, match="shapes do not fit"):
        small_tracker.check(from_pieces(to_pieces(wrong)), scene.size)


def test_batched_objects_equal_one_by_one_within_float_rounding(checkpoint, scene):
    """SAM2_BATCH_OBJECTS: objects with the same memory layout go through one forward; an object
    started later forms its own batch. In fp32 the results equal the official one-by-one order up to
    rounding."""
    one_by_one = make_tracker(checkpoint, precision="fp32")
    batched = make_tracker(checkpoint, precision="fp32", batch_objects="on")
    results = {}
    for name, tracker in (("one", one_by_one), ("batched", batched)):
        frames = [tracker.encode(image) for image in scene.frames[:4]]
        states = [t.state for t in tracker.start(frames[0], scene.masks[0][:2])]
        late = tracker.start(frames[1], scene.masks[1][2:3])[0].state
        for frame in frames[2:]:
            tracked = tracker.step(frame, [*states, late])
            states, late = [t.state for t in tracked[:2]], tracked[2].state
        results[name] = tracked
    for one, many in zip(results["one"], results["batched"], strict=True):
        assert one.state.step == many.state.step
        torch.testing.assert_close(many.result.logits, one.result.logits, rtol=0, atol=1e-3)
        assert (one.result.mask != many.result.mask).mean() < 1e-4
