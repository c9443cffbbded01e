"""State size and process memory over a long session: 1,000 calls through the real handler and a real
redis-server.

    .venv/bin/python -m bench.soak [--frames 1000] [--image-size 512] [--objects 1] [--every 100]
                                   [--fresh-frames] [--feature-cache-mb N]

Random weights; SAM2 at --image-size input (512 by default to fit 1,000 frames in minutes on 2 CPU
cores; the state layout is the same as at 1024, a quarter of the bytes). Frames cycle through a short
synthetic video, or, with --fresh-frames, every call gets a picture never seen (one pixel changed), so
that the feature cache fills to its bound and evicts. Prints RSS, state bytes, Redis memory and the
feature cache's bytes every --every calls; state bytes must not grow once the memory bank is full, and
RSS must grow by at most the feature cache's bound + 50 MB from the first sample on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from object_state import to_pieces
from shape_codecs import mask_to_rle
from tests.support.cvat import continue_body, encode_image, start_body
from tests.support.redis_server import RedisServer
from tests.support.synthetic import moving_objects_scene, write_checkpoint


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--fresh-frames", action="store_true", help="a picture never seen on every call")
    parser.add_argument(
        "--feature-cache-mb", type=int, help="SAM2_FEATURE_CACHE_MB (default: the function's)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sam2-soak-"))
    checkpoint = write_checkpoint(work / "random.pt")
    scene = moving_objects_scene(16, num_objects=max(args.objects, 1), seed=4)
    images = [encode_image(frame) for frame in scene.frames]
    images += images[-2:0:-1]  # forth and back, so the objects stay in view
    scene_frames = scene.frames + scene.frames[-2:0:-1]
    redis_server = RedisServer(work).start()
    os.environ.update(
        SAM2_CHECKPOINT=str(checkpoint),
        SAM2_DEVICE="cpu",
        SAM2_MODEL_OVERRIDES=f"++model.image_size={args.image_size}",
        **redis_server.env(),
    )
    if args.feature_cache_mb is not None:
        os.environ["SAM2_FEATURE_CACHE_MB"] = str(args.feature_cache_mb)
    import main as function

    app = function.create_app()
    shapes = [{"type": "mask", "points": mask_to_rle(m)} for m in scene.masks[0][: args.objects]]
    status, answer = function.serve(app, start_body(images[0], shapes), {})
    assert status == 200, answer
    samples = []
    started = time.perf_counter()
    for call in range(1, args.frames + 1):
        frame = scene_frames[call % len(scene_frames)]
        if args.fresh_frames:
            frame = frame.copy()
            frame.flat[call % frame.size] ^= 1 + call % 255  # a picture this session has not sent before
            image = encode_image(frame, "PNG")
        else:
            image = images[call % len(images)]
        body = continue_body(image, answer["states"])
        status, answer = function.serve(app, body, {})
        assert status == 200, answer
        if call % args.every == 0 or call == 10:
            state = app.store.load(answer["states"][:1])[0].state
            sample = {
                "call": call,
                "rss_mb": round(rss_mb(), 1),
                "state_bytes": to_pieces(state).size,
                "redis_used_bytes": int(redis_server.client().info("memory")["used_memory"]),
                "cached_chunks": len(app.store.cache),
                "feature_cache_mb": round(app.tracker.feature_cache.size_bytes / 2**20, 1),
                "cached_frames": len(app.tracker.feature_cache),
                "seconds": round(time.perf_counter() - started),
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    redis_server.stop()
    after_warmup = [s for s in samples if s["call"] >= args.every]
    growth = after_warmup[-1]["rss_mb"] - after_warmup[0]["rss_mb"]
    flat_state = len({s["state_bytes"] for s in after_warmup}) == 1  # the history is full by then
    bound_mb = app.tracker.feature_cache.capacity_bytes / 2**20
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "first_call": after_warmup[0]["call"],
        "last_call": after_warmup[-1]["call"],
        "rss_growth_mb": round(growth, 1),
        "feature_cache_bound_mb": round(bound_mb),
        "state_size_constant": flat_state,
        "target_met": flat_state and growth <= bound_mb + 50,
    }
    if args.json:
        args.json.write_text(json.dumps({**report, "samples": samples}, indent=2))
    print(json.dumps(report))
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
