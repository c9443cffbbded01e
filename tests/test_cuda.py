"""On a CUDA device (skipped without one): our per-call tracker against the official predictor on the
same GPU, with the same encoder and memory-attention rewrites that the CPU path runs (encoder_overheads,
frame_shared: both are on for every device), and a CVAT session through the Nuclio handler and a real
redis-server with the GPU defaults. `bench/device_check.sh` runs this file on a lent GPU.

fp32 with TF32 off must be exact; bf16 and batched objects are reported (printed) and bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from config import TrackerConfig
from frame_pixels import fill_holes
from model_handler import Sam2Tracker
from shape_codecs import mask_to_polygon, polygon_to_mask
from tests.support.cvat import (
    call_function,
    continue_body,
    encode_image,
    function_env,
    function_environment,
    start_body,
)
from tests.support.models import SMALL, make_tracker, track_frames
from tests.support.oracle import compare, official_logits, our_logits
from tests.support.redis_server import RedisServer
from tests.support.synthetic import moving_objects_scene, write_jpeg_folder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FRAMES = 10  # 3 objects; at 512 input, past the 6 memory frames SAM2 keeps


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    scene = moving_objects_scene(FRAMES, seed=2)
    return scene, write_jpeg_folder(scene.frames, tmp_path_factory.mktemp("cuda"))


def run_both(checkpoint, video, precision: str, batch_objects: str = "off"):
    scene, paths = video
    official = official_logits(
        checkpoint, paths[0].parent, scene.masks[0], FRAMES, precision, SMALL, device="cuda"
    )
    tracker = make_tracker(checkpoint, precision=precision, batch_objects=batch_objects, device="cuda")
    assert tracker.device.type == "cuda"
    ours, history = our_logits(tracker, paths, scene.masks[0])
    return official, ours, history


def test_fp32_on_cuda_equals_official_predictor(checkpoint, video):
    official, ours, history = run_both(checkpoint, video, "fp32")
    max_diff, flipped = compare(official, ours)
    print(
        f"CUDA fp32 vs official fp32, {FRAMES} frames x 3 objects: max |logit diff| {max_diff}, {flipped} px"
    )
    assert flipped == 0 and max_diff <= 1e-4
    assert all(t.result.mask is not None and t.result.mask.any() for t in history[-1])


def test_bf16_on_cuda_stays_with_official_bf16(checkpoint, video):
    official, ours, _ = run_both(checkpoint, video, "bf16")
    max_diff, flipped = compare(official, ours)
    total = sum(o.numel() for o in official)
    print(f"CUDA bf16 vs official bf16: max |logit diff| {max_diff:.4f}, {flipped} of {total} px")
    assert flipped <= 0.01 * total


def test_batched_objects_on_cuda_stay_with_one_by_one(checkpoint, video):
    scene, paths = video
    single = make_tracker(checkpoint, precision="bf16", device="cuda")
    batched = make_tracker(checkpoint, precision="bf16", batch_objects="on", device="cuda")
    one_by_one, _ = our_logits(single, paths, scene.masks[0])
    together, _ = our_logits(batched, paths, scene.masks[0])
    max_diff, flipped = compare(one_by_one, together)
    total = sum(o.numel() for o in one_by_one)
    print(f"CUDA bf16 batched vs one by one: max |logit diff| {max_diff:.4f}, {flipped} of {total} px")
    assert flipped <= 0.01 * total


def test_hole_filling_on_cuda_equals_the_cpu():
    generator = np.random.default_rng(0)
    logits = torch.from_numpy(generator.normal(size=(3, 1, 64, 64)).astype(np.float32))
    on_gpu = fill_holes(logits.cuda(), 8)
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), fill_holes(logits, 8))


def test_a_cvat_session_on_cuda_through_redis_equals_the_tracker_core(checkpoint, tmp_path):
    """Precision and batching left to `auto`, as function-gpu.yaml leaves them (bf16, batched objects);
    video frames as CVAT sends them (PNG); every state through Redis between calls."""
    from nuclio_sdk.test import Platform

    scene = moving_objects_scene(6, seed=5)
    images = [encode_image(frame, "PNG") for frame in scene.frames]
    polygons = [mask_to_polygon(mask) for mask in scene.masks[0]]
    server = RedisServer(tmp_path).start()
    try:
        extra = {"SAM2_DEVICE": "cuda", "SAM2_PRECISION": "auto", **server.env()}
        with function_environment(checkpoint, **extra):
            platform = Platform()

            def call(body: dict) -> dict:
                status, answer = call_function(platform, body)
                assert status == 200, answer
                return answer

            answer = call(start_body(images[0], [{"type": "polygon", "points": p} for p in polygons]))
            answers = []
            for image in images[1:]:
                answer = call(continue_body(image, answer["states"]))
                answers.append([shape["points"] for shape in answer["shapes"]])
        assert server.client().keys("sam2-tracker:*")
    finally:
        server.stop()

    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(function_env(checkpoint, **extra)))
    assert (tracker.device.type, tracker.precision, tracker.batch_objects) == ("cuda", "bf16", True)
    height, width = scene.size
    prompts = [polygon_to_mask(p, (height, width)) for p in polygons]
    core = [
        [mask_to_polygon(t.result.mask) for t in tracked]
        for tracked in track_frames(tracker, scene.frames, prompts)[1:]
    ]
    assert answers == core


def test_a_cached_frame_on_cuda_tracks_to_the_same_bits(checkpoint, video):
    """The feature cache on the GPU: a re-run whose frames come from the cache gives the masks and logits
    of a tracker that encodes every frame."""
    from feature_cache import FeatureCache

    scene, _ = video
    cached = make_tracker(checkpoint, precision="bf16", device="cuda")
    cached.feature_cache = FeatureCache(256 * 2**20)
    fresh = make_tracker(checkpoint, precision="bf16", device="cuda")
    for frame in scene.frames[:4]:
        cached.encode(frame)  # the first pass
    results = {}
    for name, tracker in (("cached", cached), ("fresh", fresh)):
        frames = [tracker.encode(frame) for frame in scene.frames[1:4]]
        (tracked,) = tracker.start(frames[0], scene.masks[1][:1])
        for frame in frames[1:]:
            (tracked,) = tracker.step(frame, [tracked.state])
        results[name] = tracked.result
    assert cached.feature_cache.hits == 3
    assert torch.equal(results["cached"].logits, results["fresh"].logits)
    assert np.array_equal(results["cached"].mask, results["fresh"].mask)
