"""The stack leaves no process behind: when it fails to come up, and when the run that holds it is killed.
(When the tests pass or fail, the session fixture in conftest.py checks the same after taking it down.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from e2e.processes import leftovers, stop_leftovers
from e2e.stack import Stack, StackConfig
from tests.support import ROOT


def test_a_stack_that_fails_to_come_up_leaves_nothing_behind(checkpoint, tmp_path):
    config = replace(StackConfig.from_env(checkpoint), cvat_python=tmp_path / "no-such-python", keep=False)
    stack = Stack(config)
    with pytest.raises(OSError):  # PostgreSQL, Redis and the function's workers are up by then
        stack.up()
    assert stack.services.started == []
    assert leftovers(stack.work) == []
    assert not stack.work.exists()


def test_a_killed_run_takes_its_stack_with_it():
    """`python -m e2e.stack` killed with SIGKILL (as a CI timeout does): every service it started gets
    the kernel's parent-death signal and ends, with what it started."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SAM2_E2E_KEEP": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "e2e.stack", "--function-workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    work = None
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if found := re.search(r"^logs: (\S+)/logs", line):
                work = Path(found.group(1))
                break
        assert work is not None, "".join(output)
        assert len(leftovers(work)) >= 10  # PostgreSQL, two Redis, CVAT's servers and workers, nginx...
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while leftovers(work) and time.monotonic() < deadline:
            time.sleep(0.5)
        remaining = leftovers(work)
        assert remaining == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in remaining]
    finally:
        process.kill()
        if work is not None:
            stop_leftovers(work)
            shutil.rmtree(work, ignore_errors=True)
