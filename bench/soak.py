"""State size and process memory over a long session: 1,000 calls through the real handler and a real
redis-server.

    .venv/bin/python -m bench.soak [--frames 1000] [--image-size 512] [--objects 1]

Random weights; SAM2 at --image-size input (512 by default to fit 1,000 frames in minutes on 2 CPU
cores; the state layout is the same as at 1024, a quarter of the bytes). Frames cycle through a short
synthetic video. Prints RSS, state bytes and Redis memory every --every calls; they must not grow once
the memory bank is full.
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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sam2-soak-"))
    checkpoint = write_checkpoint(work / "random.pt")
    scene = moving_objects_scene(16, num_objects=max(args.objects, 1), seed=4)
    images = [encode_image(frame) for frame in scene.frames]
    images += images[-2:0:-1]  # forth and back, so the objects stay in view
    redis_server = RedisServer(work).start()
    os.environ.update(
        SAM2_CHECKPOINT=str(checkpoint),
        SAM2_DEVICE="cpu",
        SAM2_MODEL_OVERRIDES=f"++model.image_size={args.image_size}",
        **redis_server.env(),
    )
    import main as function

    app = function.create_app()
    shapes = [{"type": "mask", "points": mask_to_rle(m)} for m in scene.masks[0][: args.objects]]
    status, answer = function.serve(app, start_body(images[0], shapes), function.Timings(), {})
    assert status == 200, answer
    samples = []
    started = time.perf_counter()
    for call in range(1, args.frames + 1):
        body = continue_body(images[call % len(images)], answer["states"])
        status, answer = function.serve(app, body, function.Timings(), {})
        assert status == 200, answer
        if call % args.every == 0 or call == 10:
            state = app.store.load(answer["states"][:1])[0].state
            sample = {
                "call": call,
                "rss_mb": round(rss_mb(), 1),
                "state_bytes": to_pieces(state).size,
                "redis_used_bytes": int(redis_server.client().info("memory")["used_memory"]),
                "cached_chunks": len(app.store.cache),
                "seconds": round(time.perf_counter() - started),
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    redis_server.stop()
    after_warmup = [s for s in samples if s["call"] >= args.every]
    growth = after_warmup[-1]["rss_mb"] - after_warmup[0]["rss_mb"]
    flat_state = len({s["state_bytes"] for s in samples}) == 1
    print(
        f"RSS {after_warmup[0]['rss_mb']} MB at call {after_warmup[0]['call']} -> "
        f"{after_warmup[-1]['rss_mb']} MB at call {after_warmup[-1]['call']} ({growth:+.1f} MB); "
        f"state size constant: {flat_state}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "samples": samples}, indent=2)
        )
    return 0 if flat_state else 1


if __name__ == "__main__":
    sys.exit(main())
