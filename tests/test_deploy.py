"""function.yaml / function-gpu.yaml parsed and checked; deploy scripts run with a stub nuctl."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import CHECKPOINT_FILES, Limits, Settings
from tests.support import ROOT

YAMLS = {"cpu": ROOT / "function.yaml", "gpu": ROOT / "function-gpu.yaml"}


def load(kind: str) -> dict:
    return yaml.safe_load(YAMLS[kind].read_text())


def env_of(spec: dict) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in spec["env"]}


def directives(spec: dict) -> list[str]:
    build = spec["build"]["directives"]
    return [d["value"] for phase in ("preCopy", "postCopy") for d in build.get(phase, [])]


@pytest.mark.parametrize("kind", YAMLS)
def test_function_yaml_follows_cvat_serverless_conventions(kind):
    function = load(kind)
    meta, spec = function["metadata"], function["spec"]
    assert meta["name"] == "pth-facebookresearch-sam2-tracker"
    assert meta["namespace"] == "cvat"
    annotations = meta["annotations"]
    assert annotations["name"] == "Segment Anything 2: Tracker"
    assert annotations["type"] == "tracker"
    assert annotations["spec"] == ""
    assert [t.strip() for t in annotations["supported_shape_types"].split(",")] == [
        "mask",
        "polygon",
        "rectangle",
    ]
    assert spec["runtime"].startswith("python:3.")
    assert spec["handler"] == "main:handler"
    assert spec["eventTimeout"].endswith("s") and int(spec["eventTimeout"][:-1]) >= 60
    trigger = spec["triggers"]["myHttpTrigger"]
    assert trigger["kind"] == "http" and trigger["maxWorkers"] >= 1
    body_limit = trigger["attributes"]["maxRequestBodySize"]
    assert body_limit >= 4 * 3840 * 2160 * 3 // 3  # base64 of an uncompressed 4K RGB PNG
    # the function's own request limit is the trigger's
    settings = Settings.from_env(env_of(spec))
    assert settings.limits.max_request_bytes == body_limit
    platform = spec["platform"]["attributes"]
    assert platform["restartPolicy"]["name"] == "always"
    assert platform["mountMode"] == "volume"


@pytest.mark.parametrize("kind", YAMLS)
def test_function_yaml_builds_an_image_with_requirements_and_checkpoint(kind):
    spec = load(kind)["spec"]
    steps = " && ".join(directives(spec))
    env = env_of(spec)
    assert "torch==2.13.0" in steps and "sam2==1.1.0" in steps
    assert "-r /opt/nuclio/requirements.txt" in steps
    checkpoint = env["SAM2_CHECKPOINT"]
    assert (
        f"-o {checkpoint} https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
        f"{Path(checkpoint).name}" in steps
    )
    settings = Settings.from_env(env)
    assert settings.tracker.checkpoint == Path(checkpoint)
    assert CHECKPOINT_FILES[settings.tracker.sam2_config] == Path(checkpoint).name
    assert settings.store.ttl_seconds == 28800


def test_cpu_and_gpu_files_differ_where_they_should():
    cpu, gpu = load("cpu")["spec"], load("gpu")["spec"]
    assert "resources" not in cpu
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env_of(cpu)["SAM2_DEVICE"] == "cpu" and env_of(gpu)["SAM2_DEVICE"] == "cuda"
    assert "whl/cpu" in " ".join(directives(cpu)) and "whl/cpu" not in " ".join(directives(gpu))
    assert cpu["build"]["image"] != gpu["build"]["image"]


def test_gpu_image_has_no_cuda_toolkit_layer_and_a_torch_for_older_drivers_by_default():
    """torch's wheels bring their CUDA libraries: the base image is plain Ubuntu, as CVAT's own GPU
    functions, and nothing installs a CUDA toolkit or cuDNN. Deployed as it is, the YAML builds the
    CUDA 12.6 torch (drivers from 525), which its header names."""
    gpu = load("gpu")["spec"]
    base = gpu["build"]["baseImage"]
    assert base == "ubuntu:22.04" and gpu["runtime"] == "python:3.10"  # Ubuntu 22.04's Python
    steps = " ".join(directives(gpu)).lower()
    for toolkit in ("cuda-toolkit", "cudnn", "nvidia/cuda", "cuda-runtime", "libcudnn"):
        assert toolkit not in steps and toolkit not in base
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" in " ".join(directives(gpu))
    header = YAMLS["gpu"].read_text().split("metadata:")[0]
    assert "cu126" in header and "525.60.13" in header and "cu130" in header and "580.65.06" in header


def test_requirements_cover_what_the_function_imports():
    requirements = (ROOT / "requirements.txt").read_text()
    for package in (
        "numpy",
        "pillow",
        "opencv-python-headless",
        "safetensors",
        "redis",
        "hydra-core",
        "iopath",
        "tqdm",
    ):
        assert f"\n{package}" in requirements
    assert Limits().max_request_bytes == 64 * 1024 * 1024


STUB = """#!/usr/bin/env bash
printf '%s\\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")" >> "$NUCTL_LOG"
if [ "$1 $2" = "get project" ] && [ -n "${NUCTL_NO_PROJECT:-}" ]; then exit 1; fi
if [ "$1" = deploy ]; then  # keep the function file it was handed (a temporary copy for the GPU build)
    while [ $# -gt 0 ]; do [ "$1" = --file ] && cp "$2" "$NUCTL_LOG.yaml"; shift; done
fi
exit 0
"""
# nvidia-smi as the NVIDIA driver installs it, answering the two queries deploy_gpu.sh makes: one line
# per GPU of STUB_CAPS (compute capabilities), with driver STUB_DRIVER; STUB_OLD_SMI: a version that
# knows no compute_cap field.
NVIDIA_SMI = """#!/usr/bin/env bash
case "$*" in
    *compute_cap*) [ -n "${STUB_OLD_SMI:-}" ] && { echo 'Field "compute_cap" is not a valid field.'; exit 2; }
                   for cap in ${STUB_CAPS//,/ }; do echo "$STUB_DRIVER, $cap"; done ;;
    *driver_version*) for cap in ${STUB_CAPS//,/ }; do echo "$STUB_DRIVER"; done ;;
    *) exit 9 ;;
esac
"""


@pytest.fixture
def stub_nuctl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nuctl = bin_dir / "nuctl"
    nuctl.write_text(STUB)
    nuctl.chmod(nuctl.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "nuctl.log"

    def run(script: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        full_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CVAT_FUNCTIONS_REDIS", "CVAT_NETWORK", "SAM2_"))
        }
        full_env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", NUCTL_LOG=str(log), **env)
        result = subprocess.run([str(ROOT / script), *args], env=full_env, capture_output=True, text=True)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return result, calls

    return run


@pytest.fixture
def deployed_yaml(tmp_path):
    """The function file the stub nuctl was handed by the last deploy."""
    return lambda: yaml.safe_load((tmp_path / "nuctl.log.yaml").read_text())


@pytest.fixture
def nvidia_smi(tmp_path):
    """Puts a stub nvidia-smi beside the stub nuctl; without this fixture there is none on the PATH."""
    assert shutil.which("nvidia-smi") is None, "this machine has a real nvidia-smi on the PATH"
    stub = tmp_path / "bin" / "nvidia-smi"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text(NVIDIA_SMI)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)


def deploy_call(calls: list[list[str]]) -> list[str]:
    (call,) = [c for c in calls if c[0] == "deploy"]
    return call


def env_args(call: list[str]) -> dict[str, str]:
    values = [call[i + 1] for i, arg in enumerate(call) if arg == "--env"]
    return dict(value.split("=", 1) for value in values)


@pytest.mark.parametrize("script, kind", [("deploy_cpu.sh", "cpu"), ("deploy_gpu.sh", "gpu")])
def test_deploy_with_cvat_defaults(stub_nuctl, deployed_yaml, script, kind):
    result, calls = stub_nuctl(script, NUCTL_NO_PROJECT="1", SAM2_TORCH_CUDA="cu126")
    assert result.returncode == 0, result.stderr
    assert ["create", "project", "cvat", "--platform", "local"] in calls
    call = deploy_call(calls)
    root = str(ROOT)
    assert call[:5] == ["deploy", "--project-name", "cvat", "--path", root]
    assert call[7:9] == ["--platform", "local"]
    if kind == "cpu":
        assert call[5:7] == ["--file", f"{root}/function.yaml"]
    assert deployed_yaml() == load(kind)  # the GPU build's copy differs only where the host asks
    assert env_args(call) == {
        "CVAT_FUNCTIONS_REDIS_HOST": "cvat_redis_ondisk",
        "CVAT_FUNCTIONS_REDIS_PORT": "6666",
    }
    config = json.loads(call[call.index("--platform-config") + 1])
    assert config == {"attributes": {"network": "cvat_cvat"}}
    assert calls[-1] == ["get", "function", "--platform", "local"]


def test_deploy_with_redis_from_the_environment_and_another_folder(stub_nuctl, tmp_path):
    function_dir = tmp_path / "copy"
    function_dir.mkdir()
    shutil.copy(ROOT / "function-gpu.yaml", function_dir)
    result, calls = stub_nuctl(
        "deploy_gpu.sh",
        str(function_dir),
        SAM2_TORCH_CUDA="cu130",
        CVAT_FUNCTIONS_REDIS_HOST="redis.internal",
        CVAT_FUNCTIONS_REDIS_PORT="6380",
        CVAT_FUNCTIONS_REDIS_PASSWORD="s3cret pass",
        CVAT_FUNCTIONS_REDIS_CLUSTER="1",
    )
    assert result.returncode == 0, result.stderr
    assert ["create", "project", "cvat", "--platform", "local"] not in calls  # the project exists
    call = deploy_call(calls)
    assert call[call.index("--path") + 1] == str(function_dir)
    assert env_args(call) == {
        "CVAT_FUNCTIONS_REDIS_HOST": "redis.internal",
        "CVAT_FUNCTIONS_REDIS_PORT": "6380",
        "CVAT_FUNCTIONS_REDIS_PASSWORD": "s3cret pass",
        "CVAT_FUNCTIONS_REDIS_CLUSTER": "1",
    }
    assert "s3cret" not in result.stdout + result.stderr


def test_deploy_without_nuctl_says_how_to_get_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([str(ROOT / "deploy_cpu.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "nuctl is not installed" in result.stderr and "nuclio/releases" in result.stderr


def test_deploy_of_a_folder_without_the_function_fails_clearly(stub_nuctl, tmp_path):
    result, calls = stub_nuctl("deploy_cpu.sh", str(tmp_path))
    assert result.returncode == 1
    assert "function.yaml not found" in result.stderr
    assert not any(c[0] == "deploy" for c in calls)


def test_scripts_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    tracked = subprocess.run(["git", "ls-files", "*.sh"], cwd=ROOT, capture_output=True, text=True).stdout
    scripts = [".ci/run", *tracked.split()]
    assert {"deploy_cpu.sh", "deploy_gpu.sh", "dev.sh", "e2e/setup.sh"} <= set(scripts)
    # -x: follow what a script sources
    result = subprocess.run([shellcheck, "-x", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# ---- the GPU build for the host's driver ---------------------------------------------------------


def torch_index(spec: dict) -> str:
    (line,) = [d for d in directives(spec) if "torch==" in d]
    return line.split("--index-url ")[1]


@pytest.mark.parametrize(
    "driver, caps, build, workers",
    [
        ("580.65.06", "9.0", "cu130", 1),
        ("580.95.05", "9.0,9.0,9.0,9.0", "cu130", 4),  # a 4-GPU host: one worker per GPU
        ("590.44.01", "12.0", "cu130", 1),  # Blackwell
        ("550.54.15", "8.6", "cu126", 1),
        ("535.183.01", "8.0,8.0", "cu126", 2),
        ("570.133.07", "8.9", "cu126", 1),
        ("580.65.06", "7.0", "cu126", 1),  # Volta: CUDA 13 builds no longer carry it
    ],
)
def test_gpu_build_fits_the_hosts_driver(stub_nuctl, nvidia_smi, deployed_yaml, driver, caps, build, workers):
    result, _ = stub_nuctl("deploy_gpu.sh", STUB_DRIVER=driver, STUB_CAPS=caps)
    assert result.returncode == 0, result.stderr
    spec = deployed_yaml()["spec"]
    assert torch_index(spec) == f"https://download.pytorch.org/whl/{build}"
    assert spec["triggers"]["myHttpTrigger"]["maxWorkers"] == workers
    assert spec["resources"] == load("gpu")["spec"]["resources"]
    assert f"torch 2.13.0+{build}" in result.stdout


def test_gpu_build_from_a_driver_that_nvidia_smi_reports_without_compute_capability(
    stub_nuctl, nvidia_smi, deployed_yaml
):
    result, _ = stub_nuctl("deploy_gpu.sh", STUB_DRIVER="550.54.15", STUB_CAPS="x,x", STUB_OLD_SMI="1")
    assert result.returncode == 0, result.stderr
    spec = deployed_yaml()["spec"]
    assert torch_index(spec).endswith("/cu126") and spec["triggers"]["myHttpTrigger"]["maxWorkers"] == 2


@pytest.mark.parametrize(
    "env, build, workers",
    [
        ({"SAM2_TORCH_CUDA": "cu130"}, "cu130", 1),  # no nvidia-smi here: a remote Docker host
        ({"SAM2_TORCH_CUDA": "cu126", "SAM2_WORKERS": "3"}, "cu126", 3),
    ],
)
def test_gpu_build_chosen_by_override_without_nvidia_smi(stub_nuctl, deployed_yaml, env, build, workers):
    result, _ = stub_nuctl("deploy_gpu.sh", **env)
    assert result.returncode == 0, result.stderr
    spec = deployed_yaml()["spec"]
    assert (
        torch_index(spec).endswith(f"/{build}") and spec["triggers"]["myHttpTrigger"]["maxWorkers"] == workers
    )


def test_override_wins_over_the_driver(stub_nuctl, nvidia_smi, deployed_yaml):
    result, _ = stub_nuctl("deploy_gpu.sh", STUB_DRIVER="550.54.15", STUB_CAPS="8.6", SAM2_TORCH_CUDA="cu130")
    assert result.returncode == 0, result.stderr
    assert torch_index(deployed_yaml()["spec"]).endswith("/cu130")


def test_gpu_build_without_nvidia_smi_or_override_stops_before_building(stub_nuctl):
    result, calls = stub_nuctl("deploy_gpu.sh")
    assert result.returncode == 1
    assert "nvidia-smi" in result.stderr
    assert "SAM2_TORCH_CUDA=cu130" in result.stderr and "SAM2_TORCH_CUDA=cu126" in result.stderr
    assert calls == []  # nothing was built or deployed


@pytest.mark.parametrize(
    "driver, caps, words",
    [
        ("470.256.02", "8.6", ["470.256.02", "older than 525"]),
        ("570.133.07", "12.0", ["Blackwell", "580", "570.133.07"]),
        ("580.65.06", "7.0,10.0", ["7.0", "10.0"]),
    ],
)
def test_gpu_build_that_no_torch_fits_stops_with_the_reason(stub_nuctl, nvidia_smi, driver, caps, words):
    result, calls = stub_nuctl("deploy_gpu.sh", STUB_DRIVER=driver, STUB_CAPS=caps)
    assert result.returncode == 1
    assert all(word in result.stderr for word in words), result.stderr
    assert calls == []


@pytest.mark.parametrize(
    "env, named",
    [
        ({"SAM2_TORCH_CUDA": "12.6"}, "SAM2_TORCH_CUDA=12.6"),
        ({"SAM2_TORCH_CUDA": "cu126", "SAM2_WORKERS": "0"}, "SAM2_WORKERS=0"),
    ],
)
def test_bad_gpu_build_settings_are_refused(stub_nuctl, env, named):
    result, calls = stub_nuctl("deploy_gpu.sh", **env)
    assert result.returncode == 1 and named in result.stderr
    assert calls == []
