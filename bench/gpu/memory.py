"""3. Memory of one worker over a long session, and 4. the cold start of a worker process.

Memory: one function instance (in this process, through the handler and Redis) serves one session of
`memory_calls` calls cycling through more distinct frames than its feature cache holds, so the cache
fills to its bound and then evicts; PyTorch's allocated and peak GPU memory (the process's RSS on the
CPU) are sampled every `memory_every` calls. Resident: what the worker holds once started (model,
constants); flat: no growth over the second half of the session. Per object: step 1's fit of the peak
over the object counts.

Cold start: a fresh `python -m local_server` process per model: seconds from its start to its first
answer, `init_context`'s own seconds from its start-up line (model load and the call budget's
calibration), and what the process holds on the device."""

from __future__ import annotations

import gc
from typing import Any

import torch

from bench.gpu.context import Context
from bench.gpu.function import InProcessFunction, gpu_memory_of, request_bytes, worker_processes
from bench.gpu.timing import NO_GPU, gpu_memory_mb, rss_mb
from object_state import to_pieces

MEMORY = (3, "memory", "Memory of one worker over a long session: resident, peak, per object, flat")
COLD_START = (4, "cold-start", "Cold start of a worker process: to its first answer, and init_context")
FLAT_MB = 16.0  # growth over the second half of the session that still counts as flat (GPU)
FLAT_RSS_MB = 64.0  # the same for the process's RSS (the CPU smoke): the heap moves more


def measure_memory(ctx: Context) -> str:
    measurement = ctx.measurement(*MEMORY)
    sizes, estimates = ctx.sizes, ctx.estimates
    config = sizes.memory_config
    estimate = (
        estimates.function_s(config)
        + estimates.pngs_s(sizes.distinct_frames, 1)
        + sizes.memory_calls * estimates.call_s(config, sizes.memory_objects)
    )
    what = f"hiera {config}, {sizes.memory_objects} objects, {sizes.memory_calls} calls"
    result = measurement.attempt(what, estimate, ctx.budget, lambda: long_session(ctx))
    if result is not None:
        measurement.add(result)
    return measurement.finish()


def long_session(ctx: Context) -> dict[str, Any]:
    sizes, device = ctx.sizes, ctx.device
    config, objects, frames = sizes.memory_config, sizes.memory_objects, sizes.distinct_frames
    pngs = ctx.pngs(frames, objects, seed=7, period=frames)
    shapes = ctx.video(frames, objects, seed=7, period=frames).start_shapes(objects)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    base = gpu_memory_mb(device)
    extra = {} if sizes.feature_cache_mb is None else {"SAM2_FEATURE_CACHE_MB": str(sizes.feature_cache_mb)}
    env = ctx.workspace.function_env(config, **extra)
    function = InProcessFunction.start(ctx.workspace.checkpoint(config), env, ctx.workspace.function_log)
    try:
        started = gpu_memory_mb(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        samples, states = [], None
        for index in range(sizes.memory_calls):
            image = pngs[index % frames]
            call = function.call(request_bytes(image, shapes if states is None else None, states))
            if call.status != 200:
                raise RuntimeError(f"call {index} answered {call.status}: {call.answer}")
            states = call.answer["states"]
            if (index + 1) % sizes.memory_every == 0:
                samples.append(sample(index + 1, function, base, call.seconds))
        stored = function.app.store.load(states[:1])[0].state
        cache = function.app.tracker.feature_cache
        result = {
            "config": config,
            "objects": objects,
            "calls": sizes.memory_calls,
            "distinct_frames": frames,
            "feature_cache_bound_mb": round(cache.capacity_bytes / 2**20, 1),
            "state_bytes_per_object": to_pieces(stored).size,
            "samples": samples,
            **resident(base, started),
            **flatness(samples),
        }
    finally:
        function.close()
    return result


def sample(
    call: int, function: InProcessFunction, base: dict[str, float] | None, seconds: float
) -> dict[str, Any]:
    cache = function.app.tracker.feature_cache
    now: dict[str, Any] = {
        "call": call,
        "call_ms": round(seconds * 1000, 1),
        "rss_mb": rss_mb(),
        "feature_cache_mb": round(cache.size_bytes / 2**20, 1),
        "feature_cache_frames": len(cache),
    }
    memory = gpu_memory_mb(function.app.tracker.device)
    if memory is not None and base is not None:
        now["gpu_allocated_mb"] = round(memory["allocated_mb"] - base["allocated_mb"], 1)
        now["gpu_peak_mb"] = round(memory["peak_mb"] - base["allocated_mb"], 1)
        now["gpu_reserved_mb"] = memory["reserved_mb"]
    return now


def resident(base: dict[str, float] | None, started: dict[str, float] | None) -> dict[str, Any]:
    if base is None or started is None:
        return {"gpu_resident_mb": None, "gpu_memory_why_none": NO_GPU}
    return {"gpu_resident_mb": round(started["allocated_mb"] - base["allocated_mb"], 1)}


def flatness(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth from the session's middle sample to its last, in PyTorch's allocated GPU memory (the
    RSS on the CPU), against what counts as flat; the largest peak and RSS seen."""
    on_gpu = "gpu_allocated_mb" in samples[0]
    key, limit = ("gpu_allocated_mb", FLAT_MB) if on_gpu else ("rss_mb", FLAT_RSS_MB)
    middle, last = samples[len(samples) // 2], samples[-1]
    growth = round(last[key] - middle[key], 1)
    return {
        "flat_by": key,
        "flat_limit_mb": limit,
        "growth_second_half_mb": growth,
        "growth_from_first_sample_mb": round(last[key] - samples[0][key], 1),
        "flat": growth <= limit,
        "gpu_peak_mb": max(s["gpu_peak_mb"] for s in samples) if on_gpu else None,
        "rss_peak_mb": max(s["rss_mb"] for s in samples),
    }


def measure_cold_start(ctx: Context) -> str:
    measurement = ctx.measurement(*COLD_START)
    for config in ctx.sizes.cold_start_configs:
        row = measurement.attempt(
            f"hiera {config}",
            ctx.estimates.function_s(config) * 1.2,
            ctx.budget,
            lambda c=config: cold_start(ctx, c),
        )
        if row is not None:
            measurement.add(row)
    return measurement.finish()


def cold_start(ctx: Context, config: str) -> dict[str, Any]:
    env = ctx.workspace.function_env(config)
    with worker_processes(env, 1, ctx.workspace.folder) as (worker,):
        memory = gpu_memory_of([worker.pid])
        return {
            "config": config,
            "process_ready_s": worker.ready_s,
            "init_context_s": worker.init_s(),
            "gpu_memory_mb": (memory.get("per_process_mb") or [None])[0],
            "gpu_memory": memory,
            "rss_mb": worker.rss_mb(),
        }
