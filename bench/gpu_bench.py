"""The GPU figures a CVAT admin sizes a GPU server by (issue 21), in one run of a few minutes.

    python -m bench.gpu_bench --out DIR [--budget-s 300] [--steps 1,2,3,4,5]   # on a GPU
    python -m bench.gpu_bench --smoke --out DIR          # the same code on the CPU, small (CI)

(On a lent GPU machine: `bench/device_check.sh bench`, docs/performance.md#gpu.)

In the order of importance, each written to DIR the moment it is known (one JSON file per
measurement, rewritten as its results come; a run cut off at any point keeps what it had):

1. ours against the official predictor, per frame, hiera large and tiny, 1, 3, 10 and 30 objects on
   1920x1080 PNG frames, our whole call through the Nuclio handler and a real redis-server, our stages;
2. 1, 2, 4 and 8 annotators at once against 1, 2 and 4 worker processes sharing the GPU;
3. GPU memory of a worker: resident, peak, per object, over 300 calls of one session;
4. the cold start of a worker process (init_context);
5. variants that may cut GPU time (OpenCV decode, masks upsampled on the GPU, objects batched, a CUDA
   graph of the encoder, torch.compile), each with its fidelity.

Every part is estimated before it starts and skipped (recorded as skipped) when it would not fit in
what is left of --budget-s, counted from the process's start. Random-weight checkpoints (the cost of
SAM2 does not depend on the weights) are made here, with the presence bias that keeps objects present.
`python -m bench.gpu_report DIR` turns DIR into the GPU rows of docs/performance.md and README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.gpu import concurrency, memory, variants, versus_official
from bench.gpu.budget import Budget, Estimates
from bench.gpu.context import Context
from bench.gpu.inputs import Workspace
from bench.gpu.output import LOG_FILE, RUN_FILE, log, log_to, machine, write_json
from bench.gpu.sizes import GPU, SMOKE

STEPS: tuple[tuple[str, Callable[[Context], str]], ...] = (
    ("1 ours against the official predictor", versus_official.measure),
    ("2 concurrency", concurrency.measure),
    ("3 memory over a long session", memory.measure_memory),
    ("4 cold start", memory.measure_cold_start),
    ("5 variants", variants.measure),
)


def process_age_s() -> float:
    """Seconds since this process started (its imports included); 0 where /proc cannot tell."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    return 0.0


def stop_on_sigterm() -> None:
    """A `timeout` that sends SIGTERM ends the run through its `finally` blocks (worker processes and
    the redis-server stopped, the files as last written)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the output folder (made if absent)")
    parser.add_argument("--smoke", action="store_true", help="the same code on the CPU with tiny sizes")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run (default 300; smoke 600)")
    parser.add_argument(
        "--steps",
        default="1,2,3,4,5",
        help="the measurements to run, by number (e.g. 5 for a rerun of the variants)",
    )
    args = parser.parse_args(argv)
    steps = [STEPS[int(number) - 1] for number in args.steps.split(",")]
    sizes = SMOKE if args.smoke else GPU
    if not args.smoke and not torch.cuda.is_available():
        print("error: torch sees no CUDA device; on a CPU run --smoke", file=sys.stderr)
        return 2
    budget_s = args.budget_s if args.budget_s is not None else 600.0 if args.smoke else 300.0
    budget = Budget(budget_s, began=time.monotonic() - process_age_s())
    if sizes.cpu_threads:
        torch.set_num_threads(sizes.cpu_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m bench.gpu_bench", *(argv if argv is not None else sys.argv[1:])])
    with (args.out / LOG_FILE).open("a", buffering=1) as stream:
        log_to(stream)
        run = machine(command, sizes.mode, budget_s)
        run["steps_asked"] = [int(number) for number in args.steps.split(",")]
        write_json(args.out / RUN_FILE, run)
        stop_on_sigterm()
        log.info("%s on %s, torch %s, budget %.0f s", command, run["device"], run["torch"], budget_s)
        estimates = Estimates(sizes.guesses)
        workspace = Workspace(sizes, estimates, stream)
        try:
            run_steps(Context(sizes, budget, estimates, workspace, args.out), run, steps)
        finally:
            workspace.close()
            run["elapsed_s"] = round(budget.elapsed(), 1)
            write_json(args.out / RUN_FILE, run)
        for step in run["steps"]:
            log.info("%-40s %-10s %6.1f s", step["step"], step["status"], step["seconds"])
        log.info("elapsed %.1f s of %.0f s; results in %s", run["elapsed_s"], budget_s, args.out)
    return 0


def run_steps(context: Context, run: dict, steps: list[tuple[str, Callable[[Context], str]]]) -> None:
    """Each step in turn, its status and seconds added to the run's file as soon as it ends."""
    for name, step in steps:
        began = time.monotonic()
        try:
            status = step(context)
        except Exception as error:  # a step records its parts' failures itself: this is a bug
            log.exception("step %s failed", name)
            status = f"failed: {type(error).__name__}: {error}"
        seconds = round(time.monotonic() - began, 1)
        run["steps"].append({"step": name, "status": status, "seconds": seconds})
        write_json(context.folder / RUN_FILE, run)


if __name__ == "__main__":
    sys.exit(main())
