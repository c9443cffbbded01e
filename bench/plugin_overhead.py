"""What the CVAT UI plugin's action adds per frame to the function's own time, through a real browser.

    .venv-e2e/bin/python -m bench.plugin_overhead [--frames 30] [--objects 1,10] [--size 640x480]

(.venv-e2e: `./dev.sh e2e` or `VENV=.venv-e2e ./dev.sh setup e2e`; CVAT's requirements and UI build as there.)

Brings up the real-CVAT stack (e2e/stack.py) with CVAT's UI built with the plugin, and for each object count
makes a task of a video of `--frames` + 1 frames with that many objects (polygons and masks) on frame 0, then
runs "Segment Anything 2: Tracker" from Menu → Run actions to the last frame in headless Chromium. Per frame:
the browser's time from one frame's progress step to the next (one call's whole round trip: the plugin,
cvat-core, CVAT's server with its frame, policies and signing, the Nuclio stand-in, the function) against the
function's own time for that call (`total_ms` in its log line). The difference is what the action and CVAT
add; the target is at most 0.1 s. Also the whole run, Run to the notice, commit of the results included.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from cvat_sdk.masks import encode_mask

from e2e.browser import run_action
from e2e.client import create_task, put_shapes, register
from e2e.stack import TEST_FUNCTION_SETTINGS, Stack, StackConfig, prepare_environment
from e2e.stack_folders import clean_stale_stacks
from shape_codecs import mask_to_polygon
from tests.support import ROOT
from tests.support.synthetic import moving_objects_scene, write_video

FRAME_STEP = re.compile(r"frame (\d+) of (\d+)")
TOTAL_MS = re.compile(r"'total_ms': ([\d.]+)")
LAMBDA_CALL = re.compile(r'"POST /api/lambda/functions/\S+ [^"]*" 200 \d+ request_time=([\d.]+)')


def cvat_times(stack: Stack) -> list[float]:
    """Milliseconds CVAT took for every tracker call, as nginx in front of it logged them."""
    log = (stack.logs / "nginx_access.log").read_text()
    return [float(found) * 1000 for found in LAMBDA_CALL.findall(log)]


def function_times(log: str) -> list[float]:
    """total_ms of every call in the function's log, in order."""
    return [float(found) for found in TOTAL_MS.findall(log)]


def step_intervals_ms(progress: list[dict]) -> list[float]:
    """Milliseconds between consecutive "frame k of n" progress steps: each is one frame's call."""
    steps = [
        (int(m.group(1)), entry["ms"]) for entry in progress if (m := FRAME_STEP.search(entry["message"]))
    ]
    return [later - earlier for (k, earlier), (j, later) in itertools.pairwise(steps) if j == k + 1]


def shapes_for(scene, objects: int) -> list[dict]:
    """Polygons and masks, alternating, on frame 0."""
    shapes = []
    for index, mask in enumerate(scene.masks[0][:objects]):
        if index % 2:
            shapes.append({"type": "mask", "points": encode_mask(mask)})
        else:
            shapes.append({"type": "polygon", "points": mask_to_polygon(mask)})
    return shapes


def measure(
    stack: Stack, user, objects: int, frames: int, size: tuple[int, int], work: Path, cpus: str | None
) -> dict:
    height, width = size
    scene = moving_objects_scene(frames + 1, height=height, width=width, num_objects=objects, seed=11)
    assert all(mask.any() for mask in scene.masks[0][:objects]), "an object starts outside the picture"
    video = write_video(scene, work / f"video-{objects}.mp4")
    with user.client(stack.url) as client:
        job = create_task(client, f"overhead, {objects} objects", [video])
        put_shapes(client, job, 0, shapes_for(scene, objects))
    before = len(function_times(stack.nuclio.function_log()))
    cvat_before = len(cvat_times(stack))
    result = run_action(
        stack,
        user,
        job,
        cpus,
        frame=0,
        select="all",
        targetFrame=frames,
        convertToTracks=False,
        finishTimeoutMs=1800_000,
    )
    calls = function_times(stack.nuclio.function_log())[before:]
    cvat = cvat_times(stack)[cvat_before:]
    intervals = step_intervals_ms(result["progress"])
    # the first call starts the objects; medians over the calls that track
    per_frame, function, in_cvat = (statistics.median(values[1:]) for values in (intervals, calls, cvat))
    return {
        "objects": objects,
        "frames": frames,
        "calls": len(calls),
        "run_s": round(result["elapsedMs"] / 1000, 2),
        "function_s": round(sum(calls) / 1000, 2),
        "per_frame_ms": round(per_frame, 1),
        "function_per_frame_ms": round(function, 1),
        "cvat_per_frame_ms": round(in_cvat, 1),
        "added_per_frame_ms": round(per_frame - function, 1),
        "added_by_cvat_ms": round(in_cvat - function, 1),
        "added_by_browser_ms": round(per_frame - in_cvat, 1),
        "added_per_frame_whole_run_ms": round((result["elapsedMs"] - sum(calls)) / frames, 1),
        "notice": result["notices"][0]["title"] if result["notices"] else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--objects", default="1,10")
    parser.add_argument("--size", default="640x480", help="frame size, WIDTHxHEIGHT")
    parser.add_argument(
        "--model-input", type=int, default=256, help="SAM2's input size: the function's own time is taken out"
    )
    parser.add_argument(
        "--split-cpus",
        action="store_true",
        help="the function's workers on CPU 0, the browser on CPU 1 (as on separate machines)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plugin_overhead.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(v) for v in args.objects.split(",")]

    prepare_environment(ui=True)
    clean_stale_stacks()
    work = Path(tempfile.mkdtemp(prefix="sam2-plugin-bench-"))
    rows = []
    # the function's own time is subtracted, so a small input keeps 10 objects x 30 frames to minutes
    settings = {**TEST_FUNCTION_SETTINGS, "SAM2_MODEL_OVERRIDES": f"++model.image_size={args.model_input}"}
    config = replace(
        StackConfig.from_env(), function_settings=settings, function_cpus="0" if args.split_cpus else None
    )
    with Stack(config) as stack:
        if stack.config.ui_dist is None:
            raise SystemExit(
                "set SAM2_E2E_UI_DIST to CVAT's UI built with the plugin (cvat-ui-plugin/build-ui.sh)"
            )
        user = register(stack.url, "benchmark")
        for objects in counts:
            browser_cpus = "1" if args.split_cpus else None
            rows.append(measure(stack, user, objects, args.frames, (height, width), work, browser_cpus))
            print(json.dumps(rows[-1]), flush=True)
    report = {"size": args.size, "model_input": args.model_input, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    columns = [
        ("objects", "objects"),
        ("per frame", "per_frame_ms"),
        ("function", "function_per_frame_ms"),
        ("added", "added_per_frame_ms"),
        ("by CVAT", "added_by_cvat_ms"),
        ("by the browser", "added_by_browser_ms"),
        ("added, whole run", "added_per_frame_whole_run_ms"),
    ]
    print(" | ".join(title for title, _ in columns))
    for row in rows:
        print(" | ".join(f"{row[key]:.0f}" for _, key in columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
