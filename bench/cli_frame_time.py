"""The offline CLI's time per frame on a 1080p video, as a user runs it.

    .venv/bin/python -m bench.cli_frame_time [--frames 8] [--size 1920x1080] [--image-size 1024]

Writes a synthetic 1080p video as a folder of PNG files and a random-weight checkpoint of the real
model, then runs the CLI (`track_video.main`, as `python -m track_video` does) on it with one box, and
times the gap between the CLI's requests for consecutive frames: one frame's whole cost in the CLI
(reading the file, the tracker's call path, the answer's shapes). Reports the median over the continued
frames, which leaves out the model's loading and the start frame.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from tests.support.synthetic import moving_objects_scene, write_checkpoint


def frame_request_times(frames_dir: Path, target: int) -> list[float]:
    """Run the CLI in this process; the time at which it asked for each frame."""
    import track_video

    times: list[float] = []
    frames = track_video.FrameSource.frames

    def timed(self, first, last):
        for item in frames(self, first, last):
            times.append(time.perf_counter())
            yield item

    track_video.FrameSource.frames = timed
    try:
        argv = [
            str(frames_dir),
            "--start",
            "0",
            "--target",
            str(target),
            "--box",
            "700,300,1100,700",
            "--quiet",
        ]
        assert track_video.main(argv) == 0
    finally:
        track_video.FrameSource.frames = frames
    return times[: target + 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--image-size", type=int, default=1024, help="SAM2's input size")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="sam2-cli-"))
    scene = moving_objects_scene(args.frames + 1, height=height, width=width, num_objects=1, seed=3)
    frames_dir = work / "frames"
    frames_dir.mkdir()
    for index, frame in enumerate(scene.frames):
        Image.fromarray(frame).save(frames_dir / f"{index:05d}.png")
    for name in [n for n in os.environ if n.startswith(("SAM2_", "CVAT_FUNCTIONS_REDIS"))]:
        del os.environ[name]
    os.environ["SAM2_CHECKPOINT"] = str(write_checkpoint(work / "random.pt"))
    os.environ["SAM2_MODEL_OVERRIDES"] = f"++model.image_size={args.image_size}"
    times = frame_request_times(frames_dir, args.frames)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[1:])]
    print(
        json.dumps(
            {
                "video": f"{width}x{height}",
                "image_size": args.image_size,
                "frames": args.frames,
                "per_frame_s": [round(g, 3) for g in gaps],
                "median_per_frame_s": round(statistics.median(gaps), 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
