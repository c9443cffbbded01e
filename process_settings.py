"""What a tracker changes for its whole process: torch's thread count, glibc's malloc, the current GPU.

These settings belong to the process, not to a model, so the entry points that own the process make
them once, before they build the tracker (`claim_process`): the Nuclio worker (main.py), the offline
CLI (track_video.py) and the cvat-sdk agent function (cvat_sdk_function.py, in the agent's worker). A
tracker built without them (the tests, a library user) runs with torch's defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from config import TrackerConfig
from devices import resolve_device

CGROUP_ROOT = Path("/sys/fs/cgroup")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@dataclass(frozen=True)
class ProcessSettings:
    """What `claim_process` set, for the start-up log line."""

    device: torch.device
    cpu_threads: int | None = None  # on the CPU: torch's thread count
    heap_kept: bool = False  # on the CPU: glibc keeps freed large blocks (`keep_large_blocks_in_heap`)

    def describe(self) -> str:
        if self.device.type != "cpu":
            return f"current GPU {self.device}"
        return f"{self.cpu_threads} CPU threads, large blocks kept in the heap: {self.heap_kept}"


def claim_process(cfg: TrackerConfig, worker: int = 0) -> ProcessSettings:
    """Resolve the device worker `worker` runs on and set this process up for it: on a GPU, make it the
    current device; on the CPU, the thread count (SAM2_CPU_THREADS or the cores this process may use)
    and malloc's large blocks kept for reuse."""
    device = resolve_device(cfg.device, worker)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        return ProcessSettings(device)
    threads = cfg.cpu_threads or available_cpus()
    torch.set_num_threads(threads)
    return ProcessSettings(device, threads, keep_large_blocks_in_heap())


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit of this process's cgroup in cores (a Docker `--cpus` or Kubernetes CPU limit), or
    None when there is none. cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`)."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        with contextlib.suppress(OSError, ValueError):
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may really use: its CPU affinity, capped by its cgroup's CPU limit (rounded
    down, at least 1). torch sizes its thread pool by the machine's cores, and threads beyond a CPU
    limit only wait for their turn."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return cpus


def keep_large_blocks_in_heap() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    By default glibc serves every block over 32 MB with its own mmap and unmaps it on free. SAM2 at
    1024 input allocates dozens of such tensors per frame (a 65,536-token activation of 576 channels is
    75 MB), so each came back as fresh pages that the kernel zeroes and faults in one by one: a fifth of
    the image encoder's time on 2 CPU cores. With no mmap and no trimming, the heap grows over the
    first frames (glibc settles on reusing its free blocks after a few) and then stays: resident
    memory is higher (about 50 MB at 512 input) and flat. Returns False where the C library is not
    glibc (nothing is changed there)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
