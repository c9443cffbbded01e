"""How close the image encoder and a tracking step come to the machine's matrix-multiply peak.

    .venv/bin/python -m bench.throughput [--precision auto|fp32|bf16] [--fast-attention auto|on|off]
                                        [--repeats 3] [--json out.json]

Hiera tiny at 1024 input, random weights, a 640x480 frame, one object with a full memory bank (6
memory frames, 15 pointers). Prints:

- the peak: the best rate of square matrix products (1024 to 4096) in bf16 and in fp32 on this machine,
  with the threads the function uses;
- the image encoder and one tracking step: best time of --repeats, the FLOPs they execute (counted by
  torch's FlopCounterMode: matrix products, attention and convolutions) and the resulting TFLOP/s, as a
  share of the peak in the precision they run in. The step is also given in "official FLOPs", what
  sam2's own layers execute for the same result (the chunked attention mixes the 64-wide memory
  values before projecting them, so it executes fewer).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from model_loading import best_seconds
from tests.support.models import make_tracker
from tests.support.synthetic import moving_objects_scene, write_checkpoint

FULL_MEMORY_STEPS = 7


def matmul_peak(dtype: torch.dtype, repeats: int) -> float:
    """Best TFLOP/s of an (n x n) @ (n x n) product over a few sizes."""
    best = 0.0
    generator = torch.Generator().manual_seed(0)
    for n in (1024, 2048, 4096):
        a = torch.randn(n, n, generator=generator).to(dtype)
        b = torch.randn(n, n, generator=generator).to(dtype)
        best = max(best, 2 * n**3 / best_seconds(lambda a=a, b=b: a @ b, repeats) / 1e12)
    return best


def cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def onednn_linear_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(x_shape) * weight_shape[0]


def counted_flops(run: Callable[[], object]) -> int:
    # torch's counter knows the CUDA attention kernels but neither the CPU one nor oneDNN's linear
    mapping = {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention_flops,
        torch.ops.mkldnn._linear_pointwise: onednn_linear_flops,
    }
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    return counter.get_total_flops()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--fast-attention", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sam2-throughput-"))
    checkpoint = write_checkpoint(work / "random.pt")
    scene = moving_objects_scene(FULL_MEMORY_STEPS + 2, height=480, width=640, num_objects=1, seed=3)
    tracker = make_tracker(
        checkpoint, precision=args.precision, overrides=(), fast_attention=args.fast_attention
    )
    peak = {
        "bf16": matmul_peak(torch.bfloat16, args.repeats),
        "fp32": matmul_peak(torch.float32, args.repeats),
    }

    tracked = tracker.start(tracker.encode(scene.frames[0]), scene.masks[0])
    for image in scene.frames[1 : FULL_MEMORY_STEPS + 1]:
        tracked = tracker.step(tracker.encode(image), [t.state for t in tracked])
    image = scene.frames[FULL_MEMORY_STEPS + 1]
    # two frames taken in turn: a step on the frame of the previous step would reuse its first
    # self-attention (frame_shared.py), which only a second object on the same frame does
    frames = [tracker.encode(image), tracker.encode(scene.frames[FULL_MEMORY_STEPS])]
    states = [t.state for t in tracked]

    def encode() -> object:
        return tracker.encode(image)

    def step() -> object:
        frames.reverse()
        return tracker.step(frames[0], states)

    rows = {}
    for name, run in (("encoder", encode), ("step", step)):
        seconds = best_seconds(run, args.repeats)
        flops = counted_flops(run)
        rows[name] = {"seconds": round(seconds, 3), "gflop": round(flops / 1e9, 1)}
        rows[name]["tflops"] = round(flops / seconds / 1e12, 3)
        rows[name]["share_of_peak"] = round(rows[name]["tflops"] / peak[tracker.precision], 3)

    reference = make_tracker(checkpoint, precision=tracker.precision, overrides=(), fast_attention="off")
    reference_frame = reference.encode(image)
    official_flops = counted_flops(lambda: reference.step(reference_frame, states))
    rows["step"]["official_gflop"] = round(official_flops / 1e9, 1)
    rows["step"]["official_flops_tflops"] = round(official_flops / rows["step"]["seconds"] / 1e12, 3)

    print(
        f"peak: bf16 {peak['bf16']:.3f} TFLOP/s, fp32 {peak['fp32']:.3f} TFLOP/s "
        f"({torch.get_num_threads()} threads); ours in {tracker.precision}, "
        f"fast attention {tracker.fast_attention}"
    )
    for name, row in rows.items():
        print(
            f"{name:8s} {row['seconds'] * 1000:7.0f} ms  {row['gflop']:6.1f} GFLOP  "
            f"{row['tflops']:.3f} TFLOP/s = {100 * row['share_of_peak']:.0f}% of the {tracker.precision} peak"
        )
    print(
        f"step in official FLOPs: {rows['step']['official_gflop']} GFLOP -> "
        f"{rows['step']['official_flops_tflops']:.3f} TFLOP/s equivalent"
    )
    if args.json:
        args.json.write_text(json.dumps({"peak_tflops": peak, **rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
