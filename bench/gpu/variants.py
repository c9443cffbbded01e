"""5. Variants that may cut the device time, each against the function as it is, on the same frames
in the same run, with its fidelity (how many mask pixels differ from the function's own).

- PNG decoded by OpenCV instead of Pillow (up to the encoder's input tensor, which must be equal);
- masks upsampled to the frame on the device (as the function does) or on the host;
- objects batched in one forward (`SAM2_BATCH_OBJECTS`) or one by one;
- the image encoder replayed from a captured CUDA graph (CUDA only);
- `torch.compile` of the image encoder and the memory attention (as sam2's `vos_optimized` compiles
  them), with the compile's seconds, which every cold start would pay. On the CPU smoke the backend is
  dynamo alone (`eager`): inductor needs minutes of C++ compiling there."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

from bench.gpu.context import Context
from bench.gpu.graphed import GraphedEncoder
from bench.gpu.output import Measurement
from bench.gpu.sizes import CONFIGS
from bench.gpu.timing import ModelRun, fidelity, median_ms, ms, run_model, timed
from config import Limits, TrackerConfig
from frame_pixels import preprocess, upscale_logits
from images import decode_image
from model_handler import Sam2Tracker

ORDER, NAME = 5, "variants"
TITLE = "Variants that may cut the device time, each with its fidelity against the function as it is"
REPEATS = 5
DECODED_FRAMES = 4  # frames the decoders are timed on, each REPEATS times


def measure(ctx: Context) -> str:
    measurement = ctx.measurement(ORDER, NAME, TITLE)
    sizes, estimates, budget = ctx.sizes, ctx.estimates, ctx.budget
    decode_s = 3 * DECODED_FRAMES * (REPEATS + 1) * 0.1 + 1
    measurement.attempt("opencv_decode", decode_s, budget, lambda: opencv_decode(ctx, measurement))
    with_tracker(ctx, measurement)
    for name in sizes.compile_configs:
        estimate = estimates.compile_s(name) + estimates.function_s(name)
        estimate += 2 * sizes.session_calls * estimates.call_s(name, 1)
        measurement.attempt(
            f"torch_compile, hiera {name}",
            estimate,
            budget,
            lambda name=name: compiled(ctx, measurement, name),
        )
    return measurement.finish()


def with_tracker(ctx: Context, measurement: Measurement) -> None:
    """The variants that share one tracker of the variant model: batching, upsampling, CUDA graph."""
    sizes, estimates, budget = ctx.sizes, ctx.estimates, ctx.budget
    config, frames = sizes.variant_config, sizes.session_calls
    tracker = measurement.attempt(
        f"hiera {config} tracker", estimates.function_s(config), budget, lambda: variant_tracker(ctx, config)
    )
    if tracker is None:
        for name in ("batch_objects", "masks_upsampled_on_device", "cuda_graph_encoder"):
            measurement.skip(name, f"needs the hiera {config} tracker, which did not run")
        return
    runs: dict[int, ModelRun] = {}
    for objects in sizes.batching_counts:
        measurement.attempt(
            f"batch_objects, {objects} objects",
            2 * frames * estimates.call_s(config, objects),
            budget,
            lambda objects=objects: batching(ctx, measurement, tracker, objects, runs),
        )
    if runs:
        measurement.attempt(
            "masks_upsampled_on_device", 5.0, budget, lambda: upsampling(ctx, measurement, tracker, runs)
        )
    else:
        measurement.skip("masks_upsampled_on_device", "needs tracked logits: batch_objects did not run")
    measurement.attempt(
        "cuda_graph_encoder",
        2 * frames * estimates.call_s(config, 1) + 5,
        budget,
        lambda: cuda_graph(ctx, measurement, tracker),
    )


def variant_tracker(ctx: Context, config: str) -> Sam2Tracker:
    """The function's tracker as deployed (precision, kernels, batching `auto`), without a feature
    cache: every frame is encoded."""
    cfg = TrackerConfig(
        sam2_config=CONFIGS[config],
        checkpoint=ctx.workspace.checkpoint(config),
        device=ctx.sizes.device,
        model_overrides=ctx.sizes.overrides,
        feature_cache_mb=0,
    )
    return Sam2Tracker.from_config(cfg)


def comparison(
    name: str, config: str, baseline: str, baseline_s: float, variant_s: float, **more: Any
) -> dict:
    return {
        "variant": name,
        "applicable": True,
        "config": config,
        "baseline": baseline,
        "baseline_ms": ms(baseline_s),
        "variant_ms": ms(variant_s),
        "speedup": round(baseline_s / variant_s, 3) if variant_s > 0 else None,
        **more,
    }


def median_of(action: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Median seconds of REPEATS runs after one untimed run, and the last result."""
    result = action()
    seconds = []
    for _ in range(REPEATS):
        spent, result = timed(device, action)
        seconds.append(spent)
    return float(np.median(seconds)), result


def opencv_decode(ctx: Context, measurement: Measurement) -> None:
    """A PNG frame to the encoder's input: the function's way (Pillow, images.py) against OpenCV's."""
    image_size = variant_image_size(ctx)
    limits, cpu = Limits(), torch.device("cpu")
    pillow_s, opencv_s, equal = [], [], True
    for data in ctx.session_pngs()[:DECODED_FRAMES]:
        spent, ours = median_of(
            lambda data=data: preprocess(decode_image(data, limits).picture, image_size), cpu
        )
        pillow_s.append(spent)
        spent, theirs = median_of(lambda data=data: preprocess(opencv_rgb(data), image_size), cpu)
        opencv_s.append(spent)
        equal = equal and torch.equal(ours, theirs)
    decode_only = [
        median_of(lambda data=data: decode_image(data, limits), cpu)[0]
        for data in ctx.session_pngs()[:DECODED_FRAMES]
    ]
    measurement.add(
        comparison(
            "opencv_decode",
            ctx.sizes.variant_config,
            "Pillow (images.decode_image), then the resize to the input",
            float(np.median(pillow_s)),
            float(np.median(opencv_s)),
            frame=f"{ctx.sizes.frame_size[1]}x{ctx.sizes.frame_size[0]} PNG",
            pillow_decode_only_ms=median_ms(decode_only),
            fidelity={"same_input_tensor": equal},
        )
    )


def opencv_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def variant_image_size(ctx: Context) -> int:
    sizes = [int(o.split("=", 1)[1]) for o in ctx.sizes.overrides if o.startswith("++model.image_size=")]
    return sizes[0] if sizes else 1024


def session(ctx: Context, tracker: Sam2Tracker, objects: int) -> ModelRun:
    video = ctx.session_video()
    return run_model(tracker, video.frames, video.start_masks[:objects], ctx.sizes.steady_from)


def batching(ctx: Context, measurement: Measurement, tracker: Sam2Tracker, objects: int, runs: dict) -> None:
    default = tracker.batch_objects
    try:
        tracker.batch_objects = False
        alone = session(ctx, tracker, objects)
        tracker.batch_objects = True
        together = session(ctx, tracker, objects)
    finally:
        tracker.batch_objects = default
    runs[objects] = together
    measurement.add(
        comparison(
            "batch_objects",
            ctx.sizes.variant_config,
            "one object at a time",
            np.median([e + t for e, t in zip(alone.encode_s, alone.track_s, strict=True)]),
            np.median([e + t for e, t in zip(together.encode_s, together.track_s, strict=True)]),
            objects=objects,
            function_default=default,
            track_ms={"one_by_one": alone.summary()["track_ms"], "batched": together.summary()["track_ms"]},
            fidelity=fidelity(alone.logits, together.logits),
        )
    )


def upsampling(
    ctx: Context, measurement: Measurement, tracker: Sam2Tracker, runs: dict[int, ModelRun]
) -> None:
    """The function's way (on the model's device, then one copy of the masks) against copying the
    low-resolution logits and upsampling on the host."""
    objects = max(runs)
    low = runs[objects].logits[-1][:, None].to(tracker.device)
    size = ctx.sizes.frame_size
    device_s, on_device = median_of(
        lambda: (upscale_logits(low, size)[:, 0] > 0).cpu().numpy(), tracker.device
    )
    host_s, on_host = median_of(lambda: (upscale_logits(low.cpu(), size)[:, 0] > 0).numpy(), tracker.device)
    flipped = int((on_device != on_host).sum())
    measurement.add(
        comparison(
            "masks_upsampled_on_device",
            ctx.sizes.variant_config,
            "upsampled on the host (low-resolution logits copied)",
            host_s,
            device_s,
            objects=objects,
            device=str(tracker.device),
            fidelity={"flipped_fraction": round(flipped / on_host.size, 6)},
        )
    )


def cuda_graph(ctx: Context, measurement: Measurement, tracker: Sam2Tracker) -> None:
    if tracker.device.type != "cuda":
        measurement.add(not_applicable("cuda_graph_encoder", "needs CUDA (the smoke runs on the CPU)"))
        return
    eager = session(ctx, tracker, 1)
    encoder = tracker.model.image_encoder
    example = preprocess(ctx.session_video().frames[0], tracker.image_size).to(tracker.device)
    began = time.perf_counter()
    tracker.model.image_encoder = GraphedEncoder(encoder, example, bf16=tracker.precision == "bf16")
    capture_s = time.perf_counter() - began
    try:
        graphed = session(ctx, tracker, 1)
    finally:
        tracker.model.image_encoder = encoder
    measurement.add(
        comparison(
            "cuda_graph_encoder",
            ctx.sizes.variant_config,
            "the encoder run eagerly",
            np.median(eager.encode_s),
            np.median(graphed.encode_s),
            objects=1,
            capture_s=round(capture_s, 2),
            model_ms={"eager": eager.summary()["model_ms"], "graphed": graphed.summary()["model_ms"]},
            fidelity=fidelity(eager.logits, graphed.logits),
        )
    )


def compiled(ctx: Context, measurement: Measurement, config: str) -> None:
    backend = ctx.sizes.compile_backend
    tracker = variant_tracker(ctx, config)
    eager = session(ctx, tracker, 1)
    torch._dynamo.reset()  # nothing compiled for another model counts against this one's recompiles
    model = tracker.model
    encoder, attention = model.image_encoder, model.memory_attention
    model.image_encoder = torch.compile(encoder, backend=backend)
    model.memory_attention = torch.compile(attention, backend=backend, dynamic=True)
    try:
        faster = session(ctx, tracker, 1)
    finally:
        model.image_encoder, model.memory_attention = encoder, attention
    measurement.add(
        comparison(
            "torch_compile",
            config,
            "eager",
            np.median([e + t for e, t in zip(eager.encode_s, eager.track_s, strict=True)]),
            np.median([e + t for e, t in zip(faster.encode_s, faster.track_s, strict=True)]),
            objects=1,
            backend=backend,
            compiled="image encoder; memory attention (dynamic shapes)",
            compile_s=round(faster.warmup_s - eager.warmup_s, 1),
            stages_ms={"eager": eager.summary(), "compiled": faster.summary()},
            fidelity=fidelity(eager.logits, faster.logits),
        )
    )


def not_applicable(name: str, why: str) -> dict[str, Any]:
    return {"variant": name, "applicable": False, "why": why}
