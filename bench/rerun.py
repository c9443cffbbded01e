"""CVAT's re-run pattern through the real handler and a real redis-server: does a re-run skip the encoder?

    .venv/bin/python -m bench.rerun [--image-size 1024] [--size 640x480] [--json out.json]

One object. First pass: frames 0..15 tracked forward from a shape on frame 0. Then the annotator corrects
the shape on frame 4 and runs the tracker again: a fresh start on frame 4, re-run to frame 15. A re-run
call at step k (k frames after its start) is compared with the first pass's call at the same step (frame
k): same memory size, so the same tracking work; the difference is the encoder. Then a cold function
(no feature cache, nothing seen) runs the same re-run: its masks must be the re-run's.

Random weights (the encoder's cost does not depend on them), hiera tiny, on this machine's CPU in bf16
(the tests' function settings). Target: every re-run frame without an encoder pass, and re-run frames at
most 0.8x the first pass's frames at the same step (median). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shape_codecs import mask_to_rle
from tests.support.cvat import call_function, continue_body, encode_image, function_instance, start_body
from tests.support.redis_server import RedisServer
from tests.support.synthetic import moving_objects_scene, write_checkpoint

FRAMES = 16
CORRECTED_ON = 4
TARGET_RATIO = 0.8


class Function:
    """One function instance, its calls timed and its encoder passes counted."""

    def __init__(self, checkpoint: Path, env: dict[str, str]):
        self.platform = function_instance(checkpoint, **env)
        self.encodes = 0
        self.platform.app.tracker.model.image_encoder.register_forward_pre_hook(self._count)

    def _count(self, *_) -> None:
        self.encodes += 1

    def call(self, body: dict) -> tuple[dict, float, int]:
        """The answer, the call's seconds and the encoder passes it made."""
        encodes, began = self.encodes, time.perf_counter()
        status, answer = call_function(self.platform, body)
        seconds = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"the function answered {status}: {answer}")
        return answer, seconds, self.encodes - encodes

    def track(self, images: list[bytes], first: int, last: int, shape: dict) -> list[tuple[dict, float, int]]:
        """Calls for frames first..last, starting from `shape` on `first`."""
        calls = [self.call(start_body(images[first], [shape]))]
        for index in range(first + 1, last + 1):
            calls.append(self.call(continue_body(images[index], calls[-1][0]["states"])))
        return calls


def measure(image_size: int, size: tuple[int, int]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="sam2-rerun-"))
    checkpoint = write_checkpoint(work / "random.pt")
    height, width = size
    scene = moving_objects_scene(FRAMES, height=height, width=width, num_objects=1, seed=6)
    images = [encode_image(frame, "PNG") for frame in scene.frames]  # as CVAT sends video frames
    first_shape = {"type": "mask", "points": mask_to_rle(scene.masks[0][0])}
    corrected = {"type": "mask", "points": mask_to_rle(scene.masks[CORRECTED_ON][0])}
    redis = RedisServer(work).start()
    try:
        env = {
            **redis.env(),
            "SAM2_MODEL_OVERRIDES": f"++model.image_size={image_size} ++model.fill_hole_area=0",
        }
        warm = Function(checkpoint, env)
        first_pass = warm.track(images, 0, FRAMES - 1, first_shape)
        rerun = warm.track(images, CORRECTED_ON, FRAMES - 1, corrected)
        cold = Function(checkpoint, {**env, "SAM2_FEATURE_CACHE_MB": "0"})
        cold_rerun = cold.track(images, CORRECTED_ON, FRAMES - 1, corrected)
        cache = warm.platform.app.tracker.feature_cache
        precision = warm.platform.app.tracker.precision
    finally:
        redis.stop()
    steps = range(1, len(rerun))  # continue calls; step k of the re-run against frame k of the first pass
    ratios = [rerun[k][1] / first_pass[k][1] for k in steps]
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpu": _cpu_name(),
        "image_size": image_size,
        "precision": precision,
        "frame_size": f"{width}x{height}",
        "feature_cache": cache.describe(),
        "first_pass_ms_by_step": [round(first_pass[k][1] * 1000) for k in steps],
        "rerun_ms_by_step": [round(rerun[k][1] * 1000) for k in steps],
        "ratio_by_step": [round(r, 3) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
        "max_ratio": round(max(ratios), 3),
        "encoder_passes_first_pass": sum(c[2] for c in first_pass),
        "encoder_passes_rerun": sum(c[2] for c in rerun),
        "rerun_masks_equal_a_cold_function": [c[0]["shapes"] for c in rerun]
        == [c[0]["shapes"] for c in cold_rerun],
        "cached_frames": len(cache),
        "cache_bytes": cache.size_bytes,
    }
    report["target_met"] = (
        report["encoder_passes_rerun"] == 0
        and report["median_ratio"] <= TARGET_RATIO
        and report["rerun_masks_equal_a_cold_function"]
    )
    return report


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--image-size", type=int, default=1024, help="SAM2's input size (the model's default)"
    )
    parser.add_argument("--size", default="640x480", help="the video's frame size, WIDTHxHEIGHT")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    report = measure(args.image_size, (height, width))
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
