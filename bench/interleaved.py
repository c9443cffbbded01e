"""Our tracker and the official predictor frame by frame in one process, for a machine whose speed drifts.

    .venv/bin/python -m bench.interleaved [--objects 1] [--frames 10] [--warmup 7] [--precision fp32]
                                          [--config configs/sam2.1/sam2.1_hiera_t.yaml]

A shared 2-core VM can change speed by 15-30% from one frame to the next, more than the differences being
measured, and bench_tracking times the official run before ours. Here each frame is first taken from the
official ``propagate_in_video`` (all frames loaded by ``init_state`` beforehand), then encoded and stepped
by our tracker (the tracker alone: no handler, no Redis), so both see the same machine speed. Prints one
line per frame and the medians of the steady frames (from --warmup on: the memory bank is full).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support.models import make_tracker
from tests.support.oracle import LONG_VIDEO, load_rgb, precision_context
from tests.support.synthetic import moving_objects_scene, write_checkpoint, write_jpeg_folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=7)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    args = parser.parse_args()
    from sam2.build_sam import build_sam2_video_predictor

    work = Path(tempfile.mkdtemp(prefix="sam2-interleaved-"))
    checkpoint = write_checkpoint(work / "random.pt", config=args.config)
    scene = moving_objects_scene(args.frames, num_objects=max(args.objects, 1), seed=3)
    paths = write_jpeg_folder(scene.frames, work / "frames")
    masks = scene.masks[0][: args.objects]

    predictor = build_sam2_video_predictor(args.config, str(checkpoint), device="cpu")
    predictor.fill_hole_area = 0  # its CUDA extension is not built here
    tracker = make_tracker(checkpoint, precision=args.precision, overrides=())
    images = [load_rgb(path) for path in paths]
    rows = []
    with precision_context(args.precision):
        state = predictor.init_state(str(paths[0].parent))
        state["num_frames"] = LONG_VIDEO
        for obj_id, mask in enumerate(masks):
            predictor.add_new_mask(state, 0, obj_id, mask)
        official = predictor.propagate_in_video(state, max_frame_num_to_track=args.frames - 1)
        next(official)  # frame 0: the given masks
    tracked = tracker.start(tracker.encode(images[0]), masks)
    for index in range(1, args.frames):
        began = time.perf_counter()
        with precision_context(args.precision):
            next(official)
        theirs = time.perf_counter() - began
        began = time.perf_counter()
        tracked = tracker.step(tracker.encode(images[index]), [t.state for t in tracked])
        ours = time.perf_counter() - began
        rows.append({"frame": index, "official_ms": round(theirs * 1000), "ours_ms": round(ours * 1000)})
        print(json.dumps(rows[-1]), flush=True)
    steady = [row for row in rows if row["frame"] >= args.warmup]
    official_ms = statistics.median(row["official_ms"] for row in steady)
    ours_ms = statistics.median(row["ours_ms"] for row in steady)
    print(
        json.dumps(
            {
                "objects": args.objects,
                "precision": args.precision,
                "model": tracker.preparation.describe(),
                "official_ms": official_ms,
                "ours_ms": ours_ms,
                "ratio": round(ours_ms / official_ms, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
