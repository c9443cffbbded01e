"""Which device a worker runs SAM2 on, and why a GPU that was asked for is not there.

Nuclio's local platform gives a function that asks for `nvidia.com/gpu` every GPU of the host
(`docker run --gpus all`), and runs `maxWorkers` worker processes, each with its own id (0..n-1). With
`SAM2_DEVICE=cuda` worker i takes GPU i mod n, so one deployed tracker spreads its calls over all the
GPUs it was given (states are in the store: any worker continues any session); `cuda:N` pins GPU N.

When a GPU was asked for and torch sees none, the function stops at start with a sentence an admin can
act on: torch's CUDA version, the NVIDIA driver found in the container (or that none was), and the fix.
The usual cause is a torch built for a newer CUDA than the host's driver runs (PyPI's torch 2.13 is
the CUDA 13.0 build, which needs driver 580; deploy_gpu.sh picks the build that fits the driver).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from config import ConfigError

PROC_DRIVER_VERSION = Path("/proc/driver/nvidia/version")
# The oldest Linux driver that runs each CUDA major version (NVIDIA's minor-version compatibility).
MIN_DRIVER = {11: (450, "450.80.02"), 12: (525, "525.60.13"), 13: (580, "580.65.06")}
# What deploy_gpu.sh builds for a driver (SAM2_TORCH_CUDA): torch 2.13 publishes cu126, cu130, cu132.
OLD_DRIVER_BUILD = "cu126"


@dataclass(frozen=True)
class CudaHost:
    """What this process can tell about the GPUs: torch's build and the NVIDIA driver."""

    torch_version: str
    torch_cuda: str | None  # CUDA version torch was built for, None for a CPU build
    driver: str | None  # NVIDIA driver version found in the container, None when none is visible
    torch_said: str = ""  # torch's own warning when its CUDA initialisation failed

    @classmethod
    def probe(cls, read_driver: Callable[[], str | None] | None = None) -> CudaHost:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.is_available()
        said = " ".join(" ".join(str(warning.message).split()) for warning in caught)
        return cls(torch.__version__, torch.version.cuda, (read_driver or driver_version)(), said)

    def describe(self) -> str:
        cuda = f"CUDA {self.torch_cuda}" if self.torch_cuda else "CPU build"
        return f"torch {self.torch_version} ({cuda}), NVIDIA driver {self.driver or 'not found'}"


def driver_version() -> str | None:
    """The NVIDIA driver version as nvidia-smi (which the NVIDIA Container Toolkit mounts into the
    container) or the kernel module reports it, e.g. "550.54.15"; None when neither is there."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi:
        try:
            answer = subprocess.run(
                [nvidia_smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            first = answer.stdout.strip().splitlines()[:1]
            if answer.returncode == 0 and first and re.fullmatch(r"\d+(\.\d+)*", first[0].strip()):
                return first[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        match = re.search(r"Kernel Module\s+(\d+(?:\.\d+)+)", PROC_DRIVER_VERSION.read_text())
    except OSError:
        return None
    return match.group(1) if match else None


def driver_major(version: str) -> int:
    return int(version.split(".")[0])


def no_gpu_message(setting: str, host: CudaHost) -> str:
    """Why `setting` (cuda or cuda:N) cannot be honoured here, and what to do: the start-up error."""
    asked = f"SAM2_DEVICE={setting} but torch sees no GPU ({host.describe()})"
    if host.torch_cuda is None:
        return (
            f"{asked}: this torch is a CPU build. Build the GPU image (./deploy_gpu.sh, "
            "function-gpu.yaml), or set SAM2_DEVICE=cpu"
        )
    cuda_major = int(host.torch_cuda.split(".")[0])
    needed, needed_full = MIN_DRIVER.get(cuda_major, (0, ""))
    if host.driver is None:
        return (
            f"{asked}: no NVIDIA driver is visible in the container. Install the NVIDIA driver and the "
            "NVIDIA Container Toolkit on the host (check: `docker run --rm --gpus all ubuntu:22.04 "
            "nvidia-smi`), deploy with function-gpu.yaml (its nvidia.com/gpu limit gives the container "
            "the GPUs), or set SAM2_DEVICE=cpu"
        )
    if driver_major(host.driver) < needed:
        return (
            f"{asked}: torch built for CUDA {host.torch_cuda} needs NVIDIA driver {needed_full} or "
            f"newer. Redeploy with the build for older drivers: SAM2_TORCH_CUDA={OLD_DRIVER_BUILD} "
            f"./deploy_gpu.sh (CUDA 12.6, drivers from 525; no Blackwell GPUs), or update the host's "
            f"driver to {needed} or newer"
        )
    said = f" torch says: {host.torch_said}" if host.torch_said else ""
    return (
        f"{asked}: the driver is recent enough, so the container was probably not given the GPU "
        f"(NVIDIA_VISIBLE_DEVICES, `--gpus`, the nvidia.com/gpu limit), or the GPU is in a bad state "
        f"(run nvidia-smi on the host).{said}"
    )


def has_kernels_for(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a torch built for `arch_list` (torch.cuda.get_arch_list()) runs on a GPU of this compute
    capability: machine code for it or an older minor of the same major, or PTX it can compile."""
    major, minor = capability
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        if not number.isdigit():
            continue
        arch_major, arch_minor = divmod(int(number), 10)
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= capability:
            return True
    return False


def gpu_index(setting: str, worker: int, count: int) -> int:
    """The GPU a worker takes: `cuda:N` pins N, `cuda` (and `auto` with GPUs) spreads workers over
    all `count` GPUs, worker i on GPU i mod count."""
    if setting.startswith("cuda:"):
        index = int(setting.split(":", 1)[1])
        if index >= count:
            raise ConfigError(f"SAM2_DEVICE={setting} but this container has {count} GPU(s) (0..{count - 1})")
        return index
    return worker % count


def resolve_device(
    setting: str, worker: int = 0, probe: Callable[[], CudaHost] = CudaHost.probe
) -> torch.device:
    """The device worker `worker` runs on for SAM2_DEVICE=`setting` (auto, cpu, cuda, cuda:N)."""
    if setting == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if setting == "auto":
            return torch.device("cpu")
        raise ConfigError(no_gpu_message(setting, probe()))
    device = torch.device("cuda", gpu_index(setting, worker, torch.cuda.device_count()))
    capability = torch.cuda.get_device_capability(device)
    if not has_kernels_for(capability, torch.cuda.get_arch_list()):
        name = torch.cuda.get_device_name(device)
        raise ConfigError(
            f"SAM2_DEVICE={setting}: torch {torch.__version__} has no kernels for {name} (compute "
            f"capability {capability[0]}.{capability[1]}; it has {', '.join(torch.cuda.get_arch_list())}). "
            "Redeploy with the build for newer GPUs: SAM2_TORCH_CUDA=cu130 ./deploy_gpu.sh (driver 580 "
            "or newer)"
        )
    return device


def describe_gpu(device: torch.device) -> str:
    """For the start-up log line: the GPU, the driver and torch's CUDA, e.g. "NVIDIA H200, driver
    580.65.06, torch 2.13.0+cu130"."""
    if device.type != "cuda":
        return "none"
    driver = driver_version() or "unknown"
    return f"{torch.cuda.get_device_name(device)}, driver {driver}, torch {torch.__version__}"
