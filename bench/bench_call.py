"""Time the whole function call, frame by frame, through the real handler (and a real redis-server).

    .venv/bin/python bench/bench_call.py [--objects 1] [--frames 12] [--warmup 7] [--precision bf16]
                                         [--store redis|memory] [--json out.json]

Random weights (SAM2 cost does not depend on them), hiera tiny at 1024 input, 640x480 JPEG frames of a
synthetic scene. Prints the median milliseconds per stage over the frames after `--warmup`, when the
memory bank holds its 6 frames.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nuclio_sdk.test import Platform  # noqa: E402

from tests.cvat_requests import continue_body, encode_image, start_body  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.synthetic import moving_objects_scene, write_checkpoint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=7)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--store", default="redis", choices=["redis", "memory"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sam2-bench-"))
    checkpoint = write_checkpoint(work / "random.pt")
    scene = moving_objects_scene(args.frames, height=480, width=640, num_objects=max(3, args.objects))
    images = [encode_image(frame) for frame in scene.frames]
    os.environ.update(SAM2_CHECKPOINT=str(checkpoint), SAM2_DEVICE="cpu", SAM2_PRECISION=args.precision)
    redis_server = None
    if args.store == "redis":
        redis_server = RedisServer(work).start()
        os.environ.update(redis_server.env())
    else:
        os.environ.pop("CVAT_FUNCTIONS_REDIS_HOST", None)

    import main as function

    platform = Platform()
    context = platform._get_handler_context(function.handler)
    stages: dict[str, list[float]] = {}

    def call(body):
        timings = function.Timings()
        with timings.stage("total"):
            status, answer = function.serve(context.user_data.app, body, timings, {})
        assert status == 200, answer
        return answer, timings.stages

    from shape_codecs import mask_to_rle

    shapes = [{"type": "mask", "points": mask_to_rle(mask)} for mask in scene.masks[0][: args.objects]]
    started = time.perf_counter()
    answer, _ = call(start_body(images[0], shapes))
    for index in range(1, args.frames):
        answer, timings = call(continue_body(images[index], answer["states"]))
        if index >= args.warmup:
            for name, ms in timings.items():
                stages.setdefault(name, []).append(ms)
    if redis_server:
        redis_server.stop()

    medians = {name: statistics.median(values) for name, values in stages.items()}
    wall = time.perf_counter() - started
    print(f"{args.objects} object(s), {args.precision}, {args.store} store, "
          f"{len(stages['total'])} steady frames (after {args.warmup}); wall {wall:.0f}s")
    for name, value in medians.items():
        print(f"  {name:8s} {value:9.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "median_ms": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
