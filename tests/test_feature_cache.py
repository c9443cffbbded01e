"""Encoded frames kept for re-runs: a frame seen again skips the encoder and gives the same bits as a
function that never saw it; the cache is bounded, least recently used out first, and says so in the log."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from feature_cache import EncodedFeatures, FeatureCache, picture_key
from object_state import to_pieces
from tests.support.cvat import call_function, continue_body, function_instance, start_body


def rerun_session(platform, images, shapes, corrected) -> list[tuple[list, list]]:
    """CVAT's re-run pattern: frames 0..3 forward, then a fresh start on frame 1 with a corrected
    shape, re-run to frame 3. Per re-run call: the shapes and the stored states' bytes."""
    status, body = call_function(platform, start_body(images[0], shapes))
    assert status == 200
    for image in images[1:4]:
        status, body = call_function(platform, continue_body(image, body["states"]))
        assert status == 200
    answers = []
    status, body = call_function(platform, start_body(images[1], corrected))
    for image in images[2:4]:
        status, body = call_function(platform, continue_body(image, body["states"]))
        assert status == 200
        stored = platform.app.store.load(body["states"])
        answers.append((body["shapes"], [to_pieces(s.state) for s in stored]))
    return answers


def test_a_rerun_skips_the_encoder_and_gives_a_cold_functions_bits(
    checkpoint, redis_server, images, start_shapes, capsys
):
    corrected = [start_shapes[0]]
    warm = function_instance(checkpoint, SAM2_FEATURE_CACHE_MB="64", **redis_server.env())
    encodes = [0]
    warm.app.tracker.model.image_encoder.register_forward_pre_hook(
        lambda *_: encodes.__setitem__(0, encodes[0] + 1)
    )
    capsys.readouterr()
    rerun = rerun_session(warm, images, start_shapes[:1], corrected)
    assert encodes[0] == 4  # frames 0..3 once; the re-run of frames 1..3 encoded nothing
    assert warm.app.tracker.feature_cache.hits == 3
    output = capsys.readouterr().out
    logged = [row for row in output.splitlines() if "feature_cache" in row and "encode_ms" in row]
    assert sum("hit" in row for row in logged) == 3 and sum("miss" in row for row in logged) == 4

    cold = function_instance(checkpoint, SAM2_FEATURE_CACHE_MB="0", **redis_server.env())
    assert cold.app.tracker.feature_cache.describe() == "off"
    assert rerun == rerun_session(cold, images, start_shapes[:1], corrected)


def test_the_same_picture_in_another_file_is_a_hit_and_other_models_never_share(small_tracker, scene):
    picture = scene.frames[0]
    key = picture_key(picture, "model-a", 512)
    png = io.BytesIO()
    Image.fromarray(picture).save(png, format="PNG")
    assert picture_key(np.asarray(Image.open(png)), "model-a", 512) == key  # the same pixels from a file
    assert picture_key(picture.copy(order="F"), "model-a", 512) == key  # the layout in memory does not matter
    assert picture_key(picture, "model-b", 512) != key
    assert picture_key(picture, "model-a", 1024) != key
    changed = picture.copy()
    changed[0, 0, 0] ^= 1
    assert picture_key(changed, "model-a", 512) != key


def features(megabytes: float, seed: int) -> EncodedFeatures:
    values = torch.full((int(megabytes * 2**20) // 4,), float(seed))
    return EncodedFeatures(vision_feats=(values,), vision_pos=(), feat_sizes=((1, 1),))


def test_the_cache_is_bounded_least_recently_used_out_first():
    cache = FeatureCache(3 * 2**20)
    for index in range(3):
        cache.put(bytes([index]), features(1, index))
    assert len(cache) == 3 and cache.size_bytes == 3 * 2**20
    assert cache.get(bytes([0])) is not None  # 0 is now the most recently used
    cache.put(bytes([3]), features(1, 3))
    assert cache.get(bytes([1])) is None and cache.get(bytes([0])) is not None
    assert cache.size_bytes <= 3 * 2**20
    cache.put(bytes([9]), features(4, 9))  # larger than the whole bound: not kept
    assert cache.get(bytes([9])) is None and len(cache) == 3
    assert (cache.hits, cache.misses) == (2, 2)
    off = FeatureCache(0)
    off.put(b"k", features(0.001, 1))
    assert off.get(b"k") is None and len(off) == 0


def test_shared_tensors_count_once():
    shared = torch.zeros(2**18)
    both = EncodedFeatures(vision_feats=(shared,), vision_pos=(shared, shared[:10]), feat_sizes=())
    assert both.nbytes == shared.numel() * 4


@pytest.mark.parametrize("size", [0, 64])
def test_the_start_up_line_gives_the_cache_size(checkpoint, capsys, size):
    function_instance(checkpoint, SAM2_FEATURE_CACHE_MB=str(size))
    output = capsys.readouterr().out
    line = [row for row in output.splitlines() if "SAM2 tracker ready" in row][-1]
    assert ("off" if size == 0 else f"{size} MB") in line
    assert json.dumps("feature_cache")[1:-1] in line


def test_a_hit_is_the_same_frame_as_a_miss(small_tracker, scene):
    """On the tracker itself: the cached features are the very tensors a miss computed."""
    tracker = small_tracker
    saved = tracker.feature_cache
    try:
        tracker.feature_cache = FeatureCache(64 * 2**20)
        first = tracker.encode(scene.frames[2])
        again = tracker.encode(np.array(scene.frames[2]))
        assert not first.cached and again.cached
        for a, b in zip(
            first.vision_feats + first.vision_pos, again.vision_feats + again.vision_pos, strict=True
        ):
            assert torch.equal(a, b)
        assert again.memo is not first.memo  # each call gets its own per-frame memo
    finally:
        tracker.feature_cache = saved
