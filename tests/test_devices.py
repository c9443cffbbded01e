"""The device a worker runs on: the start-up error when a GPU was asked for and is not there, and the
spreading of Nuclio's workers over the GPUs of a host."""

from __future__ import annotations

import json
import stat

import nuclio_sdk
import pytest
import torch
from nuclio_sdk.test import Platform

import main
from config import ConfigError
from devices import CudaHost, driver_version, gpu_index, has_kernels_for, no_gpu_message, resolve_device
from tests.support.cvat import function_environment

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="tests the start-up of a machine without a GPU"
)

NVIDIA_SMI_550 = """#!/bin/sh
case "$*" in *--query-gpu=driver_version*) echo 550.54.15; exit 0;; esac
exit 9
"""


def start_function(checkpoint, **extra: str) -> Platform:
    """Nuclio calls init_context before the first event: that first call is where start-up fails."""
    platform = Platform()
    with function_environment(checkpoint, **extra):
        platform.call_handler(main.handler, nuclio_sdk.Event(body=json.dumps({}).encode()))
    return platform


def test_asking_for_a_gpu_on_a_machine_without_one_stops_with_what_to_do(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr("devices.PROC_DRIVER_VERSION", tmp_path / "absent")
    with pytest.raises(ConfigError) as stopped:
        start_function(checkpoint, SAM2_DEVICE="cuda")
    message = str(stopped.value)
    assert message.startswith("SAM2_DEVICE=cuda but torch sees no GPU")
    assert f"torch {torch.__version__} (CPU build)" in message
    assert "NVIDIA driver not found" in message
    assert "./deploy_gpu.sh" in message and "SAM2_DEVICE=cpu" in message


def test_the_start_up_error_names_the_driver_it_found(checkpoint, monkeypatch, tmp_path):
    stub = tmp_path / "nvidia-smi"
    stub.write_text(NVIDIA_SMI_550)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert driver_version() == "550.54.15"
    with pytest.raises(ConfigError, match=r"NVIDIA driver 550\.54\.15"):
        start_function(checkpoint, SAM2_DEVICE="cuda:1")


def test_the_driver_is_read_from_the_kernel_module_without_nvidia_smi(monkeypatch, tmp_path):
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("devices.PROC_DRIVER_VERSION", version)
    assert driver_version() == "535.183.01"


@pytest.mark.parametrize(
    "host, says",
    [
        # PyPI's torch (CUDA 13.0) on a host with driver 550: the CUDA 12.6 build is the way
        (
            CudaHost("2.13.0", "13.0", "550.54.15"),
            ["CUDA 13.0 needs NVIDIA driver 580.65.06", "SAM2_TORCH_CUDA=cu126"],
        ),
        (CudaHost("2.13.0", "12.6", "470.256.02"), ["CUDA 12.6 needs NVIDIA driver 525.60.13", "update"]),
        (CudaHost("2.13.0", "13.0", None), ["no NVIDIA driver is visible", "NVIDIA Container Toolkit"]),
        (
            CudaHost("2.13.0", "13.0", "580.65.06", "CUDA initialization: unknown error"),
            ["probably not given the GPU", "torch says: CUDA initialization: unknown error"],
        ),
        (CudaHost("2.13.0", None, "580.65.06"), ["CPU build", "./deploy_gpu.sh"]),
    ],
)
def test_the_start_up_error_says_the_fix_for_each_cause(host, says):
    message = no_gpu_message("cuda", host)
    assert host.describe() in message
    for words in says:
        assert words in message


def test_a_gpu_asked_for_is_an_error_and_auto_falls_back_to_the_cpu():
    host = CudaHost("2.13.0", "13.0", "550.54.15")
    assert resolve_device("auto", probe=lambda: host) == torch.device("cpu")
    assert resolve_device("cpu", worker=3) == torch.device("cpu")
    with pytest.raises(ConfigError, match="SAM2_TORCH_CUDA=cu126"):
        resolve_device("cuda", probe=lambda: host)


@pytest.mark.parametrize(
    "setting, count, gpus_of_workers",
    [
        ("cuda", 4, [0, 1, 2, 3, 0, 1, 2, 3]),  # maxWorkers 8 on 4 GPUs: two workers per GPU
        ("cuda", 1, [0, 0, 0]),
        ("cuda:2", 4, [2, 2, 2]),  # pinned
    ],
)
def test_workers_are_spread_over_the_gpus(setting, count, gpus_of_workers):
    assert [gpu_index(setting, worker, count) for worker in range(len(gpus_of_workers))] == gpus_of_workers


def test_a_pinned_gpu_that_is_not_there_is_named():
    with pytest.raises(ConfigError, match=r"SAM2_DEVICE=cuda:2 but this container has 2 GPU\(s\)"):
        gpu_index("cuda:2", 0, 2)


def test_nuclio_s_worker_id_becomes_the_worker_index():
    logger = nuclio_sdk.Logger(10)
    # Nuclio's Python wrapper passes --worker-id on as a string; nuclio-sdk's own default is None
    assert main.worker_of(nuclio_sdk.Context(logger, worker_id="3")) == 3
    assert main.worker_of(nuclio_sdk.Context(logger)) == 0


@pytest.mark.parametrize(
    "capability, arch_list, runs",
    [
        ((9, 0), ["sm_80", "sm_86", "sm_90"], True),
        ((8, 9), ["sm_80", "sm_86", "sm_90"], True),  # sm_86 code runs on 8.9
        ((10, 0), ["sm_80", "sm_90", "compute_90"], True),  # PTX compiled by the driver
        ((12, 0), ["sm_75", "sm_80", "sm_90"], False),  # Blackwell on a CUDA 12.6 build
        ((7, 0), ["sm_75", "sm_80", "sm_90", "sm_100", "sm_120"], False),  # Volta on a CUDA 13 build
    ],
)
def test_a_torch_build_runs_on_the_gpus_it_has_kernels_for(capability, arch_list, runs):
    assert has_kernels_for(capability, arch_list) is runs
