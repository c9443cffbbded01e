"""Building the SAM2 model a tracker runs: device, numeric precision, checkpoint and fingerprint.

The model comes from sam2's own builder and checkpoint loader (`build_sam2_video_predictor`), so a
checkpoint that loads here loads in the official predictor too. The fingerprint (config name, hydra
overrides and checkpoint content) is written into every state, so that a state is never resumed by
another model.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from config import ConfigError, TrackerConfig, checkpoint_url

logger = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
# bf16 on the CPU also rounds differently from the official fp32 run: worth it only when clearly faster
BF16_MIN_SPEEDUP = 1.3
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@dataclass(frozen=True)
class LoadedModel:
    """The model and the choices made for it, resolved from a `TrackerConfig`."""

    model: torch.nn.Module
    fingerprint: str
    precision: str  # "fp32" or "bf16"
    fast_attention: bool
    batch_objects: bool


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("SAM2_DEVICE=cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    with contextlib.suppress(Exception):
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return False


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


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA when supported; on a CPU, bf16 only where its matrix products are clearly
    faster than fp32 on this machine. Some CPUs announce bf16 instructions yet multiply bf16 slower
    than fp32, and fp32 is also the exact path."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if not cpu_has_native_bf16():
        return "fp32"
    return "bf16" if bf16_matmul_speedup() >= BF16_MIN_SPEEDUP else "fp32"


def bf16_matmul_speedup(size: int = 1024, repeats: int = 3) -> float:
    """How many times faster a (size x size) @ (size x size) product runs in bf16 than in fp32 here
    (best of `repeats`; about 0.1 s on 2 cores). SAM2's cost on the CPU is mostly such products."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    a16, b16 = a.bfloat16(), b.bfloat16()
    return best_seconds(lambda: a @ b, repeats) / best_seconds(lambda: a16 @ b16, repeats)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The shortest of `repeats` timed runs, after one untimed run (which sets kernels up)."""
    run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def load(cfg: TrackerConfig) -> LoadedModel:
    """The model on its device, with the precision, attention kernels and batching `cfg` asks for
    (`auto` resolved for the machine)."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads or available_cpus())
        keep_large_blocks_in_heap()
    model = load_model(cfg, device)
    precision = resolve_precision(cfg.precision, device)
    fast = cfg.fast_attention == "on" or (
        cfg.fast_attention == "auto" and device.type == "cpu" and precision == "bf16"
    )
    batch = cfg.batch_objects == "on" or (cfg.batch_objects == "auto" and device.type == "cuda")
    fingerprint = model_fingerprint(cfg)
    logger.info(
        "SAM2 %s on %s (%d CPU threads), %s, chunked attention %s, batched objects %s, fingerprint %s",
        cfg.sam2_config,
        device,
        torch.get_num_threads(),
        precision,
        fast,
        batch,
        fingerprint[:12],
    )
    return LoadedModel(model, fingerprint, precision, fast, batch)


def load_model(cfg: TrackerConfig, device: torch.device) -> torch.nn.Module:
    """The official video predictor model, through sam2's own builder and checkpoint loader."""
    if not cfg.checkpoint.is_file():
        url = checkpoint_url(cfg.sam2_config)
        how = f"download it from {url}" if url else "download the checkpoint that fits SAM2_CONFIG"
        raise ConfigError(
            f"SAM2_CHECKPOINT={cfg.checkpoint} does not exist: {how} "
            f"(e.g. `curl -L -o {cfg.checkpoint} {url or '<url>'}`) or set SAM2_CHECKPOINT"
        )
    from hydra.errors import HydraException
    from sam2.build_sam import build_sam2_video_predictor

    try:
        model = build_sam2_video_predictor(
            cfg.sam2_config,
            str(cfg.checkpoint),
            device=str(device),
            hydra_overrides_extra=list(cfg.model_overrides),
        )
    except HydraException as error:
        raise ConfigError(
            f"SAM2_CONFIG={cfg.sam2_config!r} is not a sam2 config "
            f"(e.g. configs/sam2.1/sam2.1_hiera_t.yaml): {error}"
        ) from None
    except RuntimeError as error:
        raise ConfigError(
            f"SAM2_CHECKPOINT={cfg.checkpoint} does not fit SAM2_CONFIG={cfg.sam2_config}: {error}"
        ) from None
    # We apply hole filling ourselves (fill_hole_area); the model's own path needs sam2's CUDA extension.
    model.fill_hole_area = 0
    return model


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(cfg: TrackerConfig) -> str:
    """Identifies the model a state belongs to: config name, overrides and checkpoint content."""
    digest = hashlib.sha256()
    digest.update(cfg.sam2_config.encode())
    for override in cfg.model_overrides:
        digest.update(b"\0" + override.encode())
    digest.update(b"\0" + file_sha256(cfg.checkpoint).encode())
    return digest.hexdigest()
