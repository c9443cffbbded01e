"""The output folder: one JSON file per measurement, rewritten whole (write, then rename) each time a
result is known, so a run cut off at any point leaves every finished result readable; the run's
description (`0-run.json`) and its log (`log.txt`). Seven files: the device tool brings back at most
eight from its output folder."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch

from bench.gpu.budget import Budget

log = logging.getLogger("gpu-bench")
T = TypeVar("T")
RUN_FILE = "0-run.json"
LOG_FILE = "log.txt"


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(temporary, path)


def log_to(stream: TextIO) -> None:
    """The run's log lines to `stream` (the output folder's log.txt) and to stdout."""
    formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    for handler in (logging.StreamHandler(stream), logging.StreamHandler(sys.stdout)):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class Measurement:
    """One measurement's file: its results, the parts skipped for the budget, the parts that failed."""

    def __init__(self, folder: Path, order: int, name: str, title: str, mode: str):
        self.path = folder / f"{order}-{name}.json"
        self.data: dict[str, Any] = {
            "measurement": name,
            "order": order,
            "title": title,
            "mode": mode,
            "status": "running",
            "notes": {},
            "results": [],
            "skipped": [],
            "errors": [],
            "seconds": None,
        }
        self.began = time.monotonic()
        self.write()

    def write(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self.began, 1)
        write_json(self.path, self.data)

    def note(self, key: str, value: Any) -> None:
        self.data["notes"][key] = value
        self.write()

    def add(self, result: dict[str, Any]) -> None:
        self.data["results"].append(result)
        self.write()
        log.info("%s: %s", self.data["measurement"], json.dumps(result)[:600])

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"].append({"what": what, "reason": reason})
        self.write()
        log.info("%s: skipped %s (%s)", self.data["measurement"], what, reason)

    def fail(self, what: str, error: BaseException) -> None:
        tail = traceback.format_exception(type(error), error, error.__traceback__)[-6:]
        self.data["errors"].append({"what": what, "error": f"{type(error).__name__}: {error}", "trace": tail})
        self.write()
        log.info("%s: %s failed: %s: %s", self.data["measurement"], what, type(error).__name__, error)

    def attempt(self, what: str, estimate_s: float, budget: Budget, action: Callable[[], T]) -> T | None:
        """`action()` when `estimate_s` fits in the budget (else recorded as skipped); an exception
        is recorded as this part's failure, and the run goes on."""
        reason = budget.refusal(estimate_s)
        if reason is not None:
            self.skip(what, reason)
            return None
        log.info(
            "%s: %s (about %.0f s, %.0f s left)", self.data["measurement"], what, estimate_s, budget.left()
        )
        try:
            return action()
        except Exception as error:
            self.fail(what, error)
            return None

    def finish(self) -> str:
        data = self.data
        if data["results"]:
            data["status"] = "partial" if data["skipped"] or data["errors"] else "complete"
        else:
            data["status"] = "failed" if data["errors"] else "skipped"
        self.write()
        return data["status"]


def nvidia_smi(*query: str) -> list[list[str]] | None:
    """Rows of `nvidia-smi --query-...` as CSV fields, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["nvidia-smi", *query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if result.returncode == 0:
            return [
                [field.strip() for field in line.split(",")] for line in result.stdout.splitlines() if line
            ]
    return None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(command: str, mode: str, budget_s: float) -> dict[str, Any]:
    """What the figures were measured on and with: the card, its driver, torch, sam2, the command."""
    gpu = nvidia_smi("--query-gpu=name,driver_version,memory.total")
    cuda = torch.cuda.is_available()
    return {
        "command": command,
        "mode": mode,
        "budget_s": budget_s,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if cuda else "CPU",
        "driver": gpu[0][1] if gpu else None,
        "gpu_memory_mb": int(float(gpu[0][2])) if gpu else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "sam2": _version("sam2"),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "c_compiler": shutil.which("cc") or shutil.which("gcc"),
        "steps": [],
    }


def _version(package: str) -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(package)
    return None
