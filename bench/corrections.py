"""What a correction costs, through the real handler: a correction call against a start call, and a
tracked frame and the state per object by number of anchors.

    .venv/bin/python -m bench.corrections [--image-size 1024] [--size 640x480] [--json out.json]

One object, CVAT's bodies (the shape beside its state for a correction, with "frame" as the CVAT UI
plugin sends it), the in-process store (the bytes Redis would hold) and no feature cache, so that every
call encodes its image. The object is started on frame 0 and tracked; then, on the frame after the last
one tracked, a correction call (its state and a mask) and a start call (the mask alone) alternate,
`--repeats` times each: the correction call also loads the state and keeps its memory, the rest is the
same work. Then the object is corrected every 8 frames while tracking on (its recent memory stays full)
until it holds SAM2_MAX_ANCHORS anchors, and once more: per number of anchors, the median tracked frame
with a full recent memory and the state's bytes.

Random weights (the cost does not depend on them), hiera tiny, this machine's CPU in the tests' function
precision. Target: a correction call at most 1.2x a start call (median); the state grows by one anchor
piece (the memory features of one frame) per anchor, up to the cap and not beyond.
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

from cvat_sdk.masks import encode_mask

from object_state import to_pieces
from tests.support.cvat import call_function, continue_body, encode_image, function_instance, start_body
from tests.support.synthetic import moving_objects_scene, write_checkpoint

TRACKED = 8  # frames tracked before the correction-against-start comparison, and between corrections
TARGET_RATIO = 1.2


class Function:
    def __init__(self, checkpoint: Path, image_size: int):
        env = {"SAM2_FEATURE_CACHE_MB": "0", "SAM2_MODEL_OVERRIDES": f"++model.image_size={image_size}"}
        self.platform = function_instance(checkpoint, **env)

    def call(self, body: dict) -> tuple[dict, float]:
        began = time.perf_counter()
        status, answer = call_function(self.platform, body)
        seconds = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"the function answered {status}: {answer}")
        return answer, seconds

    def state_of(self, token: str):
        return self.platform.app.store.load([token])[0].state


def mask_shape(scene, frame: int) -> dict:
    """The start frame's mask, given on `frame` (the object may have left the image by then; what the
    mask holds does not change the cost)."""
    return {"type": "mask", "points": encode_mask(scene.masks[0][0]), "frame": frame, "direction": "forward"}


def measure(image_size: int, size: tuple[int, int], repeats: int) -> dict:
    function = Function(write_checkpoint(Path(tempfile.mkdtemp()) / "ckpt.pt", presence_bias=8.0), image_size)
    max_anchors = function.platform.app.tracker.max_anchors
    frames = TRACKED + 1 + TRACKED * max_anchors
    width, height = size
    scene = moving_objects_scene(frames, height=height, width=width, num_objects=1, seed=11)
    images = [encode_image(frame) for frame in scene.frames]

    answer, _ = function.call(start_body(images[0], [mask_shape(scene, 0)]))
    step_s = []
    for index in range(1, TRACKED + 1):
        answer, seconds = function.call(continue_body(images[index], answer["states"]))
        step_s.append(seconds)
    keep_memories = function.platform.app.tracker.keep_memories
    by_anchors = [anchors_row(function, answer, step_s[keep_memories:])]  # once the recent memory is full
    tracked = answer["states"]
    at = TRACKED + 1
    correction_s, start_s = [], []
    for _ in range(repeats):
        # the same state corrected again each time: a retried call, allowed (states never change)
        _, seconds = function.call({**start_body(images[at], [mask_shape(scene, at)]), "states": tracked})
        correction_s.append(seconds)
        _, seconds = function.call(start_body(images[at], [mask_shape(scene, at)]))
        start_s.append(seconds)

    for _ in range(max_anchors):  # up to the cap, then one correction beyond it
        answer, _ = function.call({**start_body(images[at], [mask_shape(scene, at)]), "states": tracked})
        step_s = []
        for index in range(at + 1, at + TRACKED):
            answer, seconds = function.call(continue_body(images[index], answer["states"]))
            step_s.append(seconds)
        by_anchors.append(anchors_row(function, answer, step_s))
        tracked = answer["states"]
        at += TRACKED
    ratio = statistics.median(correction_s) / statistics.median(start_s)
    sizes = [row["state_bytes"] for row in by_anchors]
    return {
        "machine": platform.processor() or platform.machine(),
        "image_size": image_size,
        "image": f"{width}x{height}",
        "precision": function.platform.app.tracker.precision,
        "max_anchors": max_anchors,
        "correction_call_ms_median": round(1000 * statistics.median(correction_s), 1),
        "start_call_ms_median": round(1000 * statistics.median(start_s), 1),
        "correction_to_start_ratio": round(ratio, 3),
        "by_anchors": by_anchors,
        "bytes_per_anchor": sizes[2] - sizes[1],  # both with a full recent memory
        "capped": by_anchors[-1]["anchors"] == by_anchors[-2]["anchors"] == max_anchors,
    }


def anchors_row(function: Function, answer: dict, step_s: list[float]) -> dict:
    state = function.state_of(answer["states"][0])
    return {
        "anchors": len(state.anchors),
        "step_ms_median": round(1000 * statistics.median(step_s), 1),
        "state_bytes": to_pieces(state).size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--size", default="640x480", help="the video's frame size, WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    report = measure(args.image_size, (width, height), args.repeats)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["correction_to_start_ratio"] <= TARGET_RATIO and report["capped"] else 1


if __name__ == "__main__":
    sys.exit(main())
