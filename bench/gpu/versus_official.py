"""1. Ours against the official predictor, per frame, in one process.

The official `SAM2VideoPredictor.propagate_in_video` (frames preloaded by `init_state`, bf16 autocast,
as sam2's README times it; each frame waited for) against our whole call through the Nuclio handler
and a real redis-server (JSON, base64, PNG decode, Redis, tracking, shapes), for each object count, on
the frames after the memory bank is full. Our stages come from the handler's log line; on a GPU the
encode stage returns before the GPU has finished, so only encode + track (the model) is exact there."""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from typing import Any

import torch

from bench.gpu.context import Context
from bench.gpu.function import Call, InProcessFunction, request_bytes
from bench.gpu.output import Measurement
from bench.gpu.sizes import CONFIGS
from bench.gpu.timing import NO_GPU, fit_line, gpu_memory_mb, median_ms, ms, rss_mb, sync

ORDER, NAME = 1, "versus-official"
TITLE = "Ours (whole call: handler, Redis, shapes) against the official predictor, per frame, full memory"
STAGES = ("decode", "load", "encode", "track", "store", "shapes")
BUDGET_S = 100.0  # SAM2_CALL_BUDGET_S: objects per call are sized against it


def measure(ctx: Context) -> str:
    measurement = ctx.measurement(ORDER, NAME, TITLE)
    for config in ctx.sizes.configs:
        first = ctx.estimates.function_s(config) * 2 + count_s(ctx, config, ctx.sizes.object_counts[0])
        reason = ctx.budget.refusal(first)
        if reason:
            measurement.skip(f"hiera {config}", reason)
            continue
        try:
            compare_config(ctx, measurement, config)
        except Exception as error:
            measurement.fail(f"hiera {config}", error)
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return measurement.finish()


def count_s(ctx: Context, config: str, objects: int) -> float:
    """One object count: its frames made, the official run and our session."""
    calls = ctx.sizes.session_calls
    each = ctx.estimates.official_s(config, objects) + ctx.estimates.call_s(config, objects)
    return ctx.estimates.pngs_s(calls, os.cpu_count() or 1) + calls * (each + 0.05)


def compare_config(ctx: Context, measurement: Measurement, config: str) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    sizes, device, workspace = ctx.sizes, ctx.device, ctx.workspace
    checkpoint = workspace.checkpoint(config)
    began = time.perf_counter()
    predictor = build_sam2_video_predictor(
        CONFIGS[config], str(checkpoint), device=str(device), hydra_overrides_extra=list(sizes.overrides)
    )
    predictor.fill_hole_area = 0  # needs sam2's CUDA extension, which is not built
    function = InProcessFunction.start(checkpoint, workspace.function_env(config), workspace.function_log)
    ctx.estimates.learn_load(config, (time.perf_counter() - began) / 2)
    tracker = function.app.tracker
    rows: list[dict[str, Any]] = []
    try:
        warm_up(ctx, predictor, function)
        for objects in sizes.object_counts:
            row = measurement.attempt(
                f"hiera {config}, {objects} objects",
                count_s(ctx, config, objects),
                ctx.budget,
                lambda objects=objects: compare_count(ctx, predictor, function, config, objects),
            )
            if row is not None:
                rows.append(row)
                measurement.add(row)
                learn(ctx, config, rows)
    finally:
        summary = {
            "precision": tracker.precision,
            "batch_objects": tracker.batch_objects,
            "model": tracker.preparation.describe(),
            "image_size": tracker.image_size,
            "init_context_s": function.init_s,
            **fit(rows),
        }
        measurement.note(config, summary)
        function.close()


def warm_up(ctx: Context, predictor: Any, function: InProcessFunction, frames: int = 3) -> None:
    """A few untimed frames of both, so that neither pays the process's first kernels, handles and
    allocations in the figures (the first object count's frames; frames never measured)."""
    objects = ctx.sizes.object_counts[0]
    video = ctx.count_video(objects)
    state = predictor.init_state(str(ctx.workspace.jpeg_folder(video, f"jpeg-{objects}")))
    official_frames(predictor, state, video.start_masks[:objects], frames, ctx.device)
    our_session(function, ctx.count_pngs(objects)[:frames], video.start_shapes(objects))


def compare_count(
    ctx: Context, predictor: Any, function: InProcessFunction, config: str, objects: int
) -> dict[str, Any]:
    sizes, device = ctx.sizes, ctx.device
    video = ctx.count_video(objects)
    pngs = ctx.count_pngs(objects)
    state = predictor.init_state(str(ctx.workspace.jpeg_folder(video, f"jpeg-{objects}")))
    steady = slice(sizes.steady_from, sizes.session_calls)
    official = official_frames(predictor, state, video.start_masks, sizes.session_calls, device)
    del state
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = gpu_memory_mb(device)
    cache = function.app.tracker.feature_cache
    cached = cache.size_bytes
    calls = our_session(function, pngs, video.start_shapes(objects))
    after = gpu_memory_mb(device)
    cache_growth_mb = (cache.size_bytes - cached) / 2**20
    ours = [call.seconds for call in calls[steady]]
    model = [(call.fields["encode_ms"] + call.fields["track_ms"]) / 1000 for call in calls[steady]]
    outside = [total - inside for total, inside in zip(ours, model, strict=True)]
    row = {
        "config": config,
        "objects": objects,
        "frames": len(ours),
        "official_ms": median_ms(official[steady]),
        "ours_ms": median_ms(ours),
        "model_ms": median_ms(model),
        "outside_model_ms": median_ms(outside),
        "handler_total_ms": round(statistics.median(c.fields["total_ms"] for c in calls[steady]), 2),
        "stages_ms": {name: stage_ms(calls[steady], name) for name in STAGES},
        "official_frames_ms": [ms(s) for s in official[steady]],
        "ours_calls_ms": [ms(s) for s in ours],
        "image": calls[-1].fields.get("image"),
        "feature_cache": calls[-1].fields.get("feature_cache"),
    }
    row["ratio_ours_to_official"] = round(row["ours_ms"] / row["official_ms"], 3)
    row["ratio_model_to_official"] = round(row["model_ms"] / row["official_ms"], 3)
    if before is not None and after is not None:
        # the feature cache keeps growing until its bound: its growth is not a call's working memory
        row["gpu_peak_mb"] = round(after["peak_mb"] - before["allocated_mb"] - cache_growth_mb, 1)
        row["gpu_kept_mb"] = round(after["allocated_mb"] - before["allocated_mb"] - cache_growth_mb, 1)
        row["feature_cache_growth_mb"] = round(cache_growth_mb, 1)
    else:
        row["gpu_peak_mb"] = row["gpu_kept_mb"] = None
        row["gpu_memory_why_none"] = NO_GPU
    row["rss_mb"] = rss_mb()
    return row


def stage_ms(calls: list[Call], name: str) -> float:
    return round(statistics.median(call.fields[f"{name}_ms"] for call in calls), 2)


def official_frames(
    predictor: Any, state: dict, masks: list, frames: int, device: torch.device
) -> list[float]:
    """Seconds per frame of `propagate_in_video` from the masks on frame 0 (index k: frame k; frame 0
    includes the preflight), each frame's work finished before the next clock reading."""
    predictor.reset_state(state)
    state["num_frames"] = 1 << 30  # a stream has no end: pointers capped as on a long video, as ours
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for obj_id, mask in enumerate(masks):
            predictor.add_new_mask(state, 0, obj_id, mask)
        sync(device)
        last = time.perf_counter()
        for _ in predictor.propagate_in_video(state, max_frame_num_to_track=frames - 1):
            sync(device)
            now = time.perf_counter()
            times.append(now - last)
            last = now
    return times


def our_session(function: InProcessFunction, pngs: list[bytes], shapes: list[dict]) -> list[Call]:
    """A CVAT session: the start call with the shapes, then one call per frame with the last states."""
    calls = [function.call(request_bytes(pngs[0], shapes, None))]
    for image in pngs[1:]:
        if calls[-1].status != 200:
            break
        calls.append(function.call(request_bytes(image, None, calls[-1].answer["states"])))
    failed = [call for call in calls if call.status != 200]
    if failed:
        raise RuntimeError(f"a call answered {failed[0].status}: {failed[0].answer}")
    return calls


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Our whole call and the official frame as `per frame + objects x per object`, and the objects
    that fit in a call of SAM2_CALL_BUDGET_S (100 s)."""
    if not rows:
        return {}
    counts = [row["objects"] for row in rows]
    per_frame, per_object = fit_line(counts, [row["ours_ms"] / 1000 for row in rows])
    official = fit_line(counts, [row["official_ms"] / 1000 for row in rows])
    fitted = {
        "per_frame_ms": ms(per_frame),
        "per_object_ms": ms(per_object),
        "objects_per_call_in_100_s": math.floor((BUDGET_S - per_frame) / per_object)
        if per_object > 0
        else None,
        "official_per_frame_ms": ms(official[0]),
        "official_per_object_ms": ms(official[1]),
    }
    peaks = [row["gpu_peak_mb"] for row in rows]
    if None not in peaks:
        fitted["gpu_peak_mb_per_object"] = round(fit_line(counts, peaks)[1], 2)
    return fitted


def learn(ctx: Context, config: str, rows: list[dict[str, Any]]) -> None:
    fitted = fit(rows)
    if len(rows) >= 2:
        per_object = fitted["per_object_ms"] / 1000
        ctx.estimates.learn("call", config, fitted["per_frame_ms"] / 1000, per_object)
        official = fitted["official_per_object_ms"] / 1000
        ctx.estimates.learn("official", config, fitted["official_per_frame_ms"] / 1000, official)
    else:
        row = rows[0]
        guess = ctx.estimates.guesses
        ctx.estimates.learn("call", config, row["ours_ms"] / 1000, guess.call[config][1])
        ctx.estimates.learn("official", config, row["official_ms"] / 1000, guess.official[config][1])
