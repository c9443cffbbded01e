"""The first memory-attention layer's self-attention runs once per frame, and an object's result is
the same bits whether it is tracked alone or with others."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from speedups.frame_shared import FrameSharedSelfAttentionLayer
from tests.support.models import fastest_precision, make_tracker
from tests.support.synthetic import moving_objects_scene


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_objects_tracked_together_equal_each_tracked_alone(checkpoint):
    scene = moving_objects_scene(4, seed=11)
    tracker = make_tracker(checkpoint, precision=fastest_precision(), fast_attention="on")
    first = tracker.model.memory_attention.layers[0]
    assert type(first) is FrameSharedSelfAttentionLayer
    assert all(
        type(layer) is not FrameSharedSelfAttentionLayer
        for layer in tracker.model.memory_attention.layers[1:]
    )
    self_attentions = count_calls(first.self_attn)

    frames = [tracker.encode(image) for image in scene.frames]
    together = tracker.start(frames[0], scene.masks[0])
    alone = [tracker.start(frames[0], [mask]) for mask in scene.masks[0]]
    for frame in frames[1:]:
        before = self_attentions[0]
        together = tracker.step(frame, [t.state for t in together])
        # three objects, one self-attention (the memo is from another frame: not reused across frames)
        assert self_attentions[0] == before + 1
        alone = [tracker.step(frame, [single[0].state]) for single in alone]
        for joint, (single,) in zip(together, alone, strict=True):
            assert torch.equal(joint.result.logits, single.result.logits)
            assert torch.equal(joint.state.memories[-1], single.state.memories[-1])
    assert self_attentions[0] == len(frames) - 1


def test_the_memo_belongs_to_the_frame_across_calls_and_threads(checkpoint):
    """cvat-sdk's agent tracks one object per call: the frame's objects still share one self-attention.
    Two threads stepping two frames at once each use their own frame's memo and get the serial bits."""
    scene = moving_objects_scene(4, seed=12)
    tracker = make_tracker(checkpoint, precision=fastest_precision(), fast_attention="on")
    frames = [tracker.encode(image) for image in scene.frames[:3]]
    started = tracker.start(frames[0], scene.masks[0])

    one_by_one = [tracker.step(frames[1], [t.state])[0] for t in started]
    assert frames[1].memo.computed == 1

    serial = [tracker.step(frame, [t.state for t in started]) for frame in (frames[1], frames[2])]
    fresh = [tracker.encode(image) for image in scene.frames[1:3]]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda f: tracker.step(f, [t.state for t in started]), fresh))
    assert [f.memo.computed for f in fresh] == [1, 1]
    for ours, theirs in zip(threaded, serial, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a.result.logits, b.result.logits)
    for alone, together in zip(one_by_one, serial[0], strict=True):
        assert torch.equal(alone.result.logits, together.result.logits)
