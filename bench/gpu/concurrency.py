"""2. Annotators at once against worker processes sharing the device, as a GPU server is loaded.

Each annotator is its own CVAT session (its own video, `annotator_objects` objects), sending its next
frame when the last answer is back, as CVAT's UI does; latency is what the client measures from
sending a call to reading its answer (HTTP, JSON, PNG and everything the function does). The workers
are processes (`python -m local_server --workers 1`, each its own model and CUDA context, as Nuclio's
`maxWorkers`); each call goes to a free worker (Nuclio's worker allocator), and states go through one
redis-server, so any worker continues any session. Only calls with a full memory bank are counted.

The workers' feature caches are off (SAM2_FEATURE_CACHE_MB=0): the cells reuse the annotators'
videos, and a worker that kept a frame from the cell before would skip its encoder, which annotators
tracking new frames never do. The cache's memory at its bound is measured by step 3."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.gpu.context import Context
from bench.gpu.function import FreeWorkers, WorkerProcess, gpu_memory_of, request_bytes, worker_processes
from bench.gpu.output import Measurement
from bench.gpu.timing import median_ms, percentile_ms

ORDER, NAME = 2, "concurrency"
TITLE = "Annotators at once against worker processes sharing the device: latency, calls/s, memory"


@dataclass(frozen=True)
class Timing:
    index: int  # the call's place in its session (0: the start call)
    began: float
    ended: float
    status: int

    @property
    def seconds(self) -> float:
        return self.ended - self.began


def measure(ctx: Context) -> str:
    measurement = ctx.measurement(ORDER, NAME, TITLE)
    sizes, estimates = ctx.sizes, ctx.estimates
    config = sizes.concurrency_config
    calls = sizes.warmup_calls + sizes.annotator_calls
    most = max(sizes.annotators)
    setup_s = estimates.function_s(config) * 1.5 + estimates.pngs_s(most * calls, os.cpu_count() or 1)
    with contextlib.ExitStack() as stack:
        workers = measurement.attempt(
            f"{max(sizes.workers)} worker processes of hiera {config}",
            setup_s,
            ctx.budget,
            lambda: start_workers(ctx, measurement, stack),
        )
        for count in sizes.workers if workers else ():
            for annotators in sizes.annotators:
                estimate = annotators * calls * estimates.call_s(config, sizes.annotator_objects) + 1
                cell = measurement.attempt(
                    f"{count} workers, {annotators} annotators",
                    estimate,
                    ctx.budget,
                    lambda count=count, annotators=annotators: run_cell(ctx, workers[:count], annotators),
                )
                if cell is not None:
                    measurement.add(cell)
    return measurement.finish()


def start_workers(ctx: Context, measurement: Measurement, stack: contextlib.ExitStack) -> list[WorkerProcess]:
    sizes = ctx.sizes
    for index in range(max(sizes.annotators)):  # the inputs first: they do not hold the device
        annotator_inputs(ctx, index)
    env = ctx.workspace.function_env(sizes.concurrency_config, SAM2_FEATURE_CACHE_MB="0")
    began = time.perf_counter()
    workers = stack.enter_context(worker_processes(env, max(sizes.workers), ctx.workspace.folder))
    ctx.estimates.learn_load(sizes.concurrency_config, time.perf_counter() - began)
    measurement.note(
        "workers",
        {
            "config": sizes.concurrency_config,
            "processes": len(workers),
            "ready_s": [worker.ready_s for worker in workers],
            "init_context_s": [worker.init_s() for worker in workers],
            "started": "at once, each `python -m local_server --workers 1`",
            "feature_cache": "off (SAM2_FEATURE_CACHE_MB=0): see the module docstring",
            "objects_per_annotator": sizes.annotator_objects,
            "warmup_calls_per_annotator": sizes.warmup_calls,
            "counted_calls_per_annotator": sizes.annotator_calls,
        },
    )
    return workers


def annotator_inputs(ctx: Context, index: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Annotator `index`'s own video (its own pixels) and its start shapes."""
    sizes = ctx.sizes
    frames = sizes.warmup_calls + sizes.annotator_calls
    seed = 100 + index
    shapes = ctx.video(frames, sizes.annotator_objects, seed).start_shapes(sizes.annotator_objects)
    return ctx.pngs(frames, sizes.annotator_objects, seed), shapes


def annotate(
    pool: FreeWorkers, pngs: list[bytes], shapes: list[dict[str, Any]], go: threading.Barrier
) -> list[Timing]:
    """One annotator's session: each call sent once the answer to the last is back."""
    timings: list[Timing] = []
    states = None
    go.wait()
    for index, image in enumerate(pngs):
        payload = request_bytes(image, shapes if states is None else None, states)
        began = time.perf_counter()
        status, answer = pool.call(payload)
        timings.append(Timing(index, began, time.perf_counter(), status))
        if status != 200:
            break
        states = answer["states"]
    return timings


def run_cell(ctx: Context, workers: list[WorkerProcess], annotators: int) -> dict[str, Any]:
    sizes = ctx.sizes
    pool = FreeWorkers([worker.server.url for worker in workers])
    go = threading.Barrier(annotators, timeout=120)
    sessions: list[list[Timing]] = [[] for _ in range(annotators)]
    broken: list[str] = []  # sessions the client could not carry on (no answer at all)

    def session(index: int) -> None:
        pngs, shapes = annotator_inputs(ctx, index)
        try:
            sessions[index] = annotate(pool, pngs, shapes, go)
        except Exception as error:
            broken.append(f"annotator {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=session, args=(i,)) for i in range(annotators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ctx.workspace.store().client().flushall()  # the next cell starts from an empty store
    every = [timing for timings in sessions for timing in timings]
    counted = [t for t in every if t.index >= sizes.warmup_calls and t.status == 200]
    if not counted:
        raise RuntimeError(f"no call was counted: statuses {sorted({t.status for t in every})}; {broken}")
    seconds = [t.seconds for t in counted]
    window = max(t.ended for t in counted) - min(t.began for t in counted)
    return {
        "config": sizes.concurrency_config,
        "workers": len(workers),
        "annotators": annotators,
        "objects_per_annotator": sizes.annotator_objects,
        "calls": len(counted),
        "errors": sum(t.status != 200 for t in every) + len(broken),
        "broken_sessions": broken,
        "calls_per_s": round(len(counted) / window, 2),
        "p50_ms": percentile_ms(seconds, 0.5),
        "p95_ms": percentile_ms(seconds, 0.95),
        "max_ms": percentile_ms(seconds, 1.0),
        "median_ms": median_ms(seconds),
        "gpu_memory": gpu_memory_of([worker.pid for worker in workers]),
        "worker_rss_mb": [worker.rss_mb() for worker in workers],
    }
