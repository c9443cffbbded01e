"""Our whole function call against the official SAM2VideoPredictor, per frame, in one run.

    .venv/bin/python -m bench.bench_tracking [--objects 1,3,8] [--frames 10] [--warmup 7]
                                             [--size 640x480] [--config ...] [--official fp32,bf16]
                                             [--json out.json]

Same synthetic video (JPEG frames), same random-init weights (SAM2's cost does not depend on them),
same model (hiera tiny, 1024 input by default). For each object count it times:

- official fp32 and official bf16 (under ``torch.autocast(bfloat16)``; by default only where bf16 is
  native: emulated, on an AVX2-only CPU, it takes about 7x the fp32 time, 47.6 s a frame): each frame of
  ``propagate_in_video`` after ``init_state`` + ``add_new_mask`` per object (frames are loaded by
  ``init_state`` beforehand, so decoding is not in these figures);
- ours: the whole call through the real handler and a real redis-server: JSON + base64 decode, image
  decode, Redis read, tracking, Redis write, shape encoding, in the default precision.

The official runs come first, then ours (our function's start-up changes process-wide settings: CPU
threads, malloc). A machine whose speed drifts over the minutes of a run moves the ratios: run it
twice. (Running the three frame by frame in lockstep, ours in its own server process, was tried: the
two processes' idle OpenMP threads and caches then slow each other, ours by 10-20%.)

Only steady-state frames count (from --warmup on: the 6 memory frames are full; the 15 pointers add
under 0.3% of the memory tokens). Prints medians, ratios ours/official, peak RSS, state bytes per object
and Redis bytes read and written per object per frame.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from object_state import to_pieces
from shape_codecs import mask_to_rle
from speedups import cpu_support
from tests.support.cvat import continue_body, start_body
from tests.support.redis_server import RedisServer
from tests.support.synthetic import moving_objects_scene, write_checkpoint, write_jpeg_folder


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def official_frame_times(
    config: str, checkpoint: Path, frames_dir: Path, masks, frames: int, precision: str, device: str
) -> list[float]:
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(config, str(checkpoint), device=device)
    predictor.fill_hole_area = 0  # its CUDA extension is not built here
    autocast = (
        torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    times = []
    with autocast:
        state = predictor.init_state(str(frames_dir))
        state["num_frames"] = 1 << 30  # a long video, as a stream is
        for obj_id, mask in enumerate(masks):
            predictor.add_new_mask(state, 0, obj_id, mask)
        last = time.perf_counter()
        for _ in predictor.propagate_in_video(state, max_frame_num_to_track=frames - 1):
            now = time.perf_counter()
            times.append(now - last)
            last = now
    return times[1:]  # frame 0 is the given masks


def our_frame_times(app, images: list[bytes], masks, redis_client) -> dict:
    import main as function

    shapes = [{"type": "mask", "points": mask_to_rle(mask)} for mask in masks]
    totals, stages, traffic = [], [], []
    status, answer = function.serve(app, start_body(images[0], shapes), {})
    assert status == 200, answer
    for image in images[1:]:
        stats = redis_client.info("stats")
        info: dict = {}
        started = time.perf_counter()
        status, answer = function.serve(app, continue_body(image, answer["states"]), info)
        totals.append(time.perf_counter() - started)
        assert status == 200, answer
        after = redis_client.info("stats")
        traffic.append(
            (
                after["total_net_output_bytes"] - stats["total_net_output_bytes"],
                after["total_net_input_bytes"] - stats["total_net_input_bytes"],
            )
        )
        stages.append({k.removesuffix("_ms"): v for k, v in info.items() if k.endswith("_ms")})
    return {"totals": totals, "stages": stages, "traffic": traffic, "states": answer["states"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", default="1,3,8")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=7)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--official", help="official precisions (default fp32, and bf16 where native)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.objects.split(",")]
    cpu = cpu_support.detect()
    native = args.device != "cpu" or cpu.native_bf16.runs
    official_precisions = (args.official or ("fp32,bf16" if native else "fp32")).split(",")
    width, height = (int(v) for v in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="sam2-bench-"))
    checkpoint = write_checkpoint(work / "random.pt", config=args.config)
    scene = moving_objects_scene(args.frames, height=height, width=width, num_objects=max(counts), seed=3)
    paths = write_jpeg_folder(scene.frames, work / "frames")
    images = [path.read_bytes() for path in paths]

    redis_server = RedisServer(work).start()
    os.environ.update(
        SAM2_CONFIG=args.config,
        SAM2_CHECKPOINT=str(checkpoint),
        SAM2_DEVICE=args.device,
        # every object count runs over the same frames: a cache would skip the encoder after the first
        SAM2_FEATURE_CACHE_MB="0",
        **redis_server.env(),
    )
    steady = slice(args.warmup - 1, None)  # frame k is index k-1 of the per-frame lists
    rows = [{"objects": count} for count in counts]
    # The official runs come first: our function's start-up changes process-wide settings (threads,
    # malloc) that a user of the official predictor would not have.
    for row in rows if not args.skip_official else []:
        for precision in official_precisions:
            times = official_frame_times(
                args.config,
                checkpoint,
                paths[0].parent,
                scene.masks[0][: row["objects"]],
                args.frames,
                precision,
                args.device,
            )
            row[f"official_{precision}_ms"] = median_ms(times[steady])
    import main as function

    app = function.create_app()
    for row in rows:
        count = row["objects"]
        masks = scene.masks[0][:count]
        ours = our_frame_times(app, images, masks, redis_server.client())
        row["ours_ms"] = median_ms(ours["totals"][steady])
        stage_names = ours["stages"][0].keys()
        row["ours_stages_ms"] = {
            name: median_ms([s[name] / 1000 for s in ours["stages"][steady]]) for name in stage_names
        }
        read, written = zip(*ours["traffic"][steady], strict=True)
        row["redis_read_bytes_per_object_frame"] = int(statistics.median(read) / count)
        row["redis_written_bytes_per_object_frame"] = int(statistics.median(written) / count)
        stored = app.store.load(ours["states"][:1])[0].state
        row["state_bytes_per_object"] = to_pieces(stored).size
        for precision in ("fp32", "bf16"):
            official = row.get(f"official_{precision}_ms")
            if official:
                row[f"ratio_vs_official_{precision}"] = round(row["ours_ms"] / official, 3)
        print(json.dumps(row), flush=True)
    redis_server.stop()

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{args.config}, {args.size} JPEG frames, device {args.device}, our precision "
        f"{app.tracker.precision}, steady frames {args.warmup}..{args.frames - 1}, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    )
    print(f"this CPU: {cpu}; our model: {app.tracker.preparation.describe()}")
    print("objects  official fp32  official bf16      ours  ours/fp32  ours/bf16  Redis read/written per obj")
    for row in rows:
        print(
            f"{row['objects']:7d}  {row.get('official_fp32_ms', float('nan')):11.0f}ms  "
            f"{row.get('official_bf16_ms', float('nan')):11.0f}ms  {row['ours_ms']:7.0f}ms  "
            f"{row.get('ratio_vs_official_fp32', float('nan')):9.2f}  "
            f"{row.get('ratio_vs_official_bf16', float('nan')):9.2f}  "
            f"{row['redis_read_bytes_per_object_frame'] / 1e6:.2f} / "
            f"{row['redis_written_bytes_per_object_frame'] / 1e6:.2f} MB"
        )
    print(f"peak RSS {peak_rss_mb:.0f} MB; state {rows[0]['state_bytes_per_object']} bytes per object")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": rows,
                    "peak_rss_mb": peak_rss_mb,
                    "model": app.tracker.preparation.describe(),
                    "cpu": repr(cpu),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
