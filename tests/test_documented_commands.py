"""The commands README.md and docs/ give run as written, where they can run here.

Every command of a ```bash block is either run (`./dev.sh serve` with the README's curl session
against it, `./dev.sh lint`, each `python -m` entry point with `--help`) or listed in EXEMPT with the
reason it cannot run here. A command that is neither fails the test, so a new one gets a decision.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import ROOT
from tests.support.cvat import FUNCTION_SETTINGS, function_env
from tests.support.redis_server import free_port

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_URL = "http://127.0.0.1:8080"

# command prefix -> why it does not run here (the first that matches a command decides)
EXEMPT = {
    "./dev.sh test": "the test suite itself, which is running this test",
    "./dev.sh setup": "the first step of ./dev.sh serve and ./dev.sh lint, which run here",
    "./deploy_cpu.sh": "needs nuctl and a Docker host running CVAT (tests/test_deploy.py: stub nuctl)",
    "./deploy_gpu.sh": "needs nuctl, a GPU host, CUDA wheels (tests/test_deploy.py: stub nuctl, nvidia-smi)",
    "SAM2_TORCH_CUDA=": "deploy_gpu.sh with a chosen build: as above",
    "docker ": "needs a Docker host running CVAT or Nuclio's containers (and GPUs for --gpus all)",
    "nuctl ": "Nuclio's CLI and a Nuclio dashboard are not here",
    "kubectl ": "needs a Kubernetes cluster",
    "cvat-cli ": "needs a CVAT server and an account (tests/test_cvat_cli_agent.py: cvat-cli's own code)",
    ".venv/bin/pip install cvat-cli": "installs from PyPI what requirements-dev.txt already installed",
    ". .venv/bin/activate": "changes only the calling shell",
    "bench/device_check.sh": "prepares for and runs on the lent GPU machine",
    "./dev.sh e2e": "the real-CVAT tests, which CI runs after this suite (.ci/run)",
    "./dev.sh plugin-check": "the CVAT UI plugin's checks, which CI runs after this suite (.ci/run)",
    "CVAT_SOURCE=": "./dev.sh e2e against another CVAT checkout: as above",
    "mkdir -p ~/cvat/": "a folder in the user's CVAT checkout (./dev.sh e2e builds the UI with the plugin)",
    "cd ~/cvat": "the user's CVAT checkout",
    "cp -r cvat-ui-plugin/src ~/cvat/": "copies the plugin into the user's CVAT checkout: as above",
}


@dataclass(frozen=True)
class Block:
    document: str
    text: str

    def commands(self) -> list[str]:
        """The block's commands: continuation lines joined, comments dropped, `a && b` split."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        commands = []
        for line in joined.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
        return commands


def documented_blocks() -> list[Block]:
    blocks = []
    for document in DOCUMENTS:
        # fences may be indented (a block inside a list item)
        fenced = r"^[ \t]*```(?:bash|sh|shell)\n(.*?)^[ \t]*```"
        found = re.findall(fenced, document.read_text(), flags=re.S | re.M)
        blocks += [Block(document.name, textwrap.dedent(text)) for text in found]
    return blocks


def is_curl_session(block: Block) -> bool:
    return f"{DOCUMENTED_URL}" in block.text and "curl " in block.text


def python_module(command: str) -> str | None:
    match = re.match(r"(?:\.venv(?:-e2e)?/bin/)?python3? -m ([\w.]+)", command)
    return match.group(1) if match else None


def exemption(command: str) -> str | None:
    return next((reason for prefix, reason in EXEMPT.items() if command.startswith(prefix)), None)


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(FUNCTION_SETTINGS)}, **extra}


def test_every_documented_command_is_run_here_or_exempt_with_a_reason():
    blocks = documented_blocks()
    assert any(is_curl_session(block) for block in blocks), "README lost its curl session"
    undecided, used = [], set()
    for block in blocks:
        if is_curl_session(block):
            continue
        for command in block.commands():
            if command in ("./dev.sh serve", "./dev.sh lint") or python_module(command):
                continue
            reason = exemption(command)
            if reason is None:
                undecided.append(f"{block.document}: {command}")
            used |= {prefix for prefix in EXEMPT if command.startswith(prefix)}
    assert not undecided, "run these here or add them to EXEMPT with the reason: " + "; ".join(undecided)
    assert used == set(EXEMPT), f"exemptions no document needs any more: {set(EXEMPT) - used}"


def documented_modules() -> list[str]:
    commands = [command for block in documented_blocks() for command in block.commands()]
    return sorted({module for command in commands if (module := python_module(command))})


@pytest.mark.parametrize("module", documented_modules())
def test_documented_entry_point_answers_help(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:"), result.stdout[:500]


def test_dev_sh_lint_passes():
    result = subprocess.run(
        [str(ROOT / "dev.sh"), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def write_frames(folder: Path) -> None:
    rng = np.random.default_rng(3)
    for index in range(2):
        picture = rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8)
        Image.fromarray(picture).save(folder / f"frame{index}.jpg", quality=90)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300  # ./dev.sh serve first checks .venv with pip
    while time.monotonic() < deadline:
        assert process.poll() is None, f"./dev.sh serve exited: {log.read_text()[-3000:]}"
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"./dev.sh serve did not answer in 300 s: {log.read_text()[-3000:]}")


def test_readme_curl_session_against_dev_sh_serve(checkpoint, tmp_path):
    """`./dev.sh serve` (its checkpoint set, so nothing is downloaded) and the README's curl lines,
    run by bash in a folder holding frame0.jpg and frame1.jpg."""
    (session,) = [block for block in documented_blocks() if is_curl_session(block)]
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    env = clean_env(**function_env(checkpoint))
    with open(log, "w") as output:
        server = subprocess.Popen(
            [str(ROOT / "dev.sh"), "serve", "--port", url.rsplit(":", 1)[1]],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(url, server, log)
        write_frames(tmp_path)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", session.text.replace(DOCUMENTED_URL, url)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    first = json.loads((tmp_path / "answer.json").read_text())
    last = json.loads(result.stdout)
    for answer in (first, last):
        assert [shape["type"] for shape in answer["shapes"]] == ["polygon"], answer
        assert len(answer["states"]) == 1
    assert last["states"] != first["states"]
