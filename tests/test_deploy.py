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
    assert "cuda" in gpu["build"]["baseImage"]
    assert env_of(cpu)["SAM2_DEVICE"] == "cpu" and env_of(gpu)["SAM2_DEVICE"] == "cuda"
    assert "whl/cpu" in " ".join(directives(cpu)) and "whl/cpu" not in " ".join(directives(gpu))
    assert cpu["build"]["image"] != gpu["build"]["image"]


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
exit 0
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
            if not key.startswith(("CVAT_FUNCTIONS_REDIS", "CVAT_NETWORK"))
        }
        full_env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", NUCTL_LOG=str(log), **env)
        result = subprocess.run([str(ROOT / script), *args], env=full_env, capture_output=True, text=True)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return result, calls

    return run


def deploy_call(calls: list[list[str]]) -> list[str]:
    (call,) = [c for c in calls if c[0] == "deploy"]
    return call


def env_args(call: list[str]) -> dict[str, str]:
    values = [call[i + 1] for i, arg in enumerate(call) if arg == "--env"]
    return dict(value.split("=", 1) for value in values)


@pytest.mark.parametrize(
    "script, file", [("deploy_cpu.sh", "function.yaml"), ("deploy_gpu.sh", "function-gpu.yaml")]
)
def test_deploy_with_cvat_defaults(stub_nuctl, script, file):
    result, calls = stub_nuctl(script, NUCTL_NO_PROJECT="1")
    assert result.returncode == 0, result.stderr
    assert ["create", "project", "cvat", "--platform", "local"] in calls
    call = deploy_call(calls)
    root = str(ROOT)
    assert call[:9] == [
        "deploy",
        "--project-name",
        "cvat",
        "--path",
        root,
        "--file",
        f"{root}/{file}",
        "--platform",
        "local",
    ]
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
        CVAT_FUNCTIONS_REDIS_HOST="redis.internal",
        CVAT_FUNCTIONS_REDIS_PORT="6380",
        CVAT_FUNCTIONS_REDIS_PASSWORD="s3cret pass",
        CVAT_FUNCTIONS_REDIS_CLUSTER="1",
    )
    assert result.returncode == 0, result.stderr
    assert ["create", "project", "cvat", "--platform", "local"] not in calls  # the project exists
    call = deploy_call(calls)
    assert call[call.index("--path") + 1] == str(function_dir)
    assert call[call.index("--file") + 1] == str(function_dir / "function-gpu.yaml")
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
    scripts = ["deploy_cpu.sh", "deploy_gpu.sh", "dev.sh", ".ci/run"]
    result = subprocess.run([shellcheck, *scripts], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
