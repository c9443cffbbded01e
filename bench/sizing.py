"""How many objects one call can track inside CVAT's deadline on this machine.

    .venv/bin/python -m bench.sizing [--config configs/sam2.1/sam2.1_hiera_t.yaml] [--budget 100]
                                     [--frames 9] [--objects 3]

Builds the function as Nuclio does (random weights of the real model: the cost does not depend on
them), prints the start-up calibration (per-frame and per-object seconds, objects that fit in the
budget), then serves a session of --objects objects for --frames frames through the handler and prints
the running estimates after the memory bank is full, with the measured seconds per call.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from shape_codecs import mask_to_rle
from tests.support.cvat import continue_body, encode_image, start_body
from tests.support.synthetic import moving_objects_scene, write_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--budget", type=float, default=100.0)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--objects", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sam2-sizing-"))
    checkpoint = write_checkpoint(work / "random.pt", config=args.config)
    os.environ.update(
        SAM2_CONFIG=args.config,
        SAM2_CHECKPOINT=str(checkpoint),
        SAM2_CALL_BUDGET_S=str(args.budget),
        SAM2_MAX_OBJECTS="1000",
    )
    import main as function

    began = time.perf_counter()
    app = function.create_app()
    report = {
        "config": args.config,
        "device": str(app.tracker.device),
        "precision": app.tracker.precision,
        "budget_s": args.budget,
        "create_app_s": round(time.perf_counter() - began, 1),
        "calibrated_per_frame_s": round(app.budget.per_frame_s, 3),
        "calibrated_per_object_s": round(app.budget.per_object_s, 3),
        "calibrated_objects_per_call": app.budget.estimate(0).fitting_objects,
    }

    scene = moving_objects_scene(args.frames, height=480, width=640, num_objects=args.objects, seed=7)
    images = [encode_image(frame) for frame in scene.frames]
    shapes = [{"type": "mask", "points": mask_to_rle(mask)} for mask in scene.masks[0]]
    status, answer = function.serve(app, start_body(images[0], shapes), {})
    assert status == 200, answer
    seconds = []
    for image in images[1:]:
        began = time.perf_counter()
        status, answer = function.serve(app, continue_body(image, answer["states"]), {})
        assert status == 200, answer
        seconds.append(time.perf_counter() - began)
    report.update(
        objects=args.objects,
        last_call_s=round(seconds[-1], 2),
        running_per_frame_s=round(app.budget.per_frame_s, 3),
        running_per_object_s=round(app.budget.per_object_s, 3),
        running_objects_per_call=app.budget.estimate(0).fitting_objects,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
