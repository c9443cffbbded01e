"""The CVAT UI plugin's action run in headless Chromium, in CVAT's own UI served by the stack, for the
browser tests (e2e/tests/test_browser.py) and the benchmark (bench/plugin_overhead.py)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from e2e.client import TrackingJob, User
from tests.support import ROOT

PLUGIN_TESTS = ROOT / "cvat-ui-plugin" / "tests"
ARTIFACTS = ROOT / "e2e" / "artifacts"  # screenshots: the one README shows, and of any failed step


def run_action(stack, user: User, job: TrackingJob, cpus: str | None = None, **params: Any) -> dict:
    """One run of the action through the browser (cvat-ui-plugin/tests/browser/run-action.mjs): what the
    user saw (see there); a step that failed raises, naming it. `cpus`: the CPUs the browser may use.
    `then=[{"correct": {"frame", "type", "dx", "dy"}}, {"frame", "select", "targetFrame", ...}]`: corrections
    and further runs afterwards in the same page (what the plugin keeps in the page's memory stays), each
    step's result in the result's "then"."""
    args = {
        "base": stack.url,
        "username": user.username,
        "password": user.password,
        "taskId": job.task_id,
        "jobId": job.job_id,
        "errorScreenshot": str(ARTIFACTS / f"failed-{job.job_id}.png"),
        **params,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    command = ["node", "browser/run-action.mjs", json.dumps(args)]
    runner = subprocess.Popen(
        ["taskset", "-c", cpus, *command] if cpus is not None else command,
        cwd=PLUGIN_TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = 1 + sum(1 for step in params.get("then", []) if "correct" not in step)
    out, err = runner.communicate(timeout=runs * (params.get("finishTimeoutMs", 600_000) / 1000 + 300))
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-3000:]}
    if runner.returncode != 0 or "error" in result:
        raise RuntimeError(f"the run in the browser failed: {result}")
    return result
