"""Many CVAT sessions at once through one local server with several workers: no state mixed between
sessions, no frame lost.

    .venv/bin/python -m bench.concurrent_sessions [--sessions 8] [--frames 20] [--workers 4] [--redis]

Each session tracks its own video; its answers must equal the tracker core run on that video alone.
SAM2 runs at 512 input with random weights (tests/synthetic.py) to keep the run short on a CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from config import TrackerConfig
from model_handler import Sam2Tracker
from shape_codecs import mask_to_polygon, mask_to_rle, polygon_to_mask
from tests.support.cvat import continue_body, encode_image, function_env, start_body
from tests.support.models import track_frames
from tests.support.redis_server import RedisServer
from tests.support.server_process import LocalServer, post
from tests.support.synthetic import moving_objects_scene, write_checkpoint


def session_inputs(seed: int, frames: int) -> tuple[list[bytes], list[dict]]:
    scene = moving_objects_scene(frames, seed=100 + seed, num_objects=2)
    images = [encode_image(frame) for frame in scene.frames]
    shapes = [
        {"type": "mask", "points": mask_to_rle(scene.masks[0][0])},
        {"type": "polygon", "points": mask_to_polygon(scene.masks[0][1])},
    ]
    return images, shapes


def expected_answers(tracker: Sam2Tracker, images: list[bytes], shapes: list[dict]) -> list[list]:
    from shape_codecs import rle_to_mask

    decoded = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images]
    size = decoded[0].shape[:2]
    masks = [rle_to_mask(shapes[0]["points"], size), polygon_to_mask(shapes[1]["points"], size)]
    answers = []
    for tracked in track_frames(tracker, decoded, masks)[1:]:
        mask, polygon = (t.result.mask for t in tracked)
        answers.append(
            [
                mask_to_rle(mask) if mask is not None else None,
                mask_to_polygon(polygon) if polygon is not None else None,
            ]
        )
    return answers


def _run_concurrently(url: str, inputs: list, expected: list, frames: int, report: dict) -> float:
    """Every session in its own thread, frames in order; counts go into `report`. Returns seconds."""
    lock = threading.Lock()

    def run(index: int) -> None:
        images, shapes = inputs[index]
        status, body = post(url, start_body(images[0], shapes))
        answered, mismatches, errors = int(status == 200), 0, int(status != 200)
        for frame in range(1, frames):
            if status != 200:
                break
            status, body = post(url, continue_body(images[frame], body["states"]))
            if status != 200:
                errors += 1
                continue
            answered += 1
            points = [None if s is None else s["points"] for s in body["shapes"]]
            mismatches += points != expected[index][frame - 1]
        with lock:
            report["frames_answered"] += answered
            report["mismatches"] += mismatches
            report["errors"] += errors

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(time.perf_counter() - started, 1)


def run_sessions(checkpoint: Path, sessions: int, frames: int, workers: int, redis: bool) -> dict:
    env = function_env(checkpoint)
    tracker = Sam2Tracker.from_config(TrackerConfig.from_env(env))
    inputs = [session_inputs(seed, frames) for seed in range(sessions)]
    expected = [expected_answers(tracker, images, shapes) for images, shapes in inputs]

    work = Path(tempfile.mkdtemp(prefix="sam2-sessions-"))
    redis_server = RedisServer(work).start() if redis else None
    server_env = {**env, **(redis_server.env() if redis_server else {})}
    report = {
        "sessions": sessions,
        "frames": frames,
        "workers": workers,
        "redis": redis,
        "frames_answered": 0,
        "mismatches": 0,
        "errors": 0,
    }
    try:
        with LocalServer(server_env, workers=workers) as server:
            report["seconds"] = _run_concurrently(server.url, inputs, expected, frames, report)
    finally:
        if redis_server:
            redis_server.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis", action="store_true", help="share states through a redis-server")
    args = parser.parse_args()
    checkpoint = write_checkpoint(Path(tempfile.mkdtemp(prefix="sam2-ckpt-")) / "random.pt")
    report = run_sessions(checkpoint, args.sessions, args.frames, args.workers, args.redis)
    print(json.dumps(report, indent=2))
    ok = report["mismatches"] == 0 and report["errors"] == 0
    ok = ok and report["frames_answered"] == args.sessions * args.frames
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
