"""`python -m local_server` in a subprocess, as users run it, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import ROOT
from tests.support.cvat import FUNCTION_SETTINGS
from tests.support.redis_server import free_port


class LocalServer:
    """The server on a free port with exactly `env` for its SAM2 and Redis settings; a context
    manager that returns once the server answers its health check."""

    def __init__(self, env: dict[str, str], workers: int = 2, log: Path | None = None):
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(FUNCTION_SETTINGS)}
        self.env = {**inherited, **env}
        self.workers = workers
        self.log = log
        self.url = f"http://127.0.0.1:{free_port()}/"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalServer:
        port = self.url.rsplit(":", 1)[1].strip("/")
        output = open(self.log, "w") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local_server", "--port", port, "--workers", str(self.workers)],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                details = self.log.read_text() if self.log else "run it with a log to see why"
                raise RuntimeError(f"local server exited: {details}")
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"local server at {self.url} did not answer in 120 s")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def post(
    url: str, body: dict[str, Any] | bytes, content_type: str = "application/json", timeout: float = 600
) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) of a POST; a JSON body is sent as JSON, bytes as they are."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def run_benchmark(name: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """`python -m bench.<name> args...` as a user runs it; its JSON report (the last JSON object it
    prints). A benchmark that misses its own target exits 1 and still reports."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith(FUNCTION_SETTINGS)},
    )
    start = result.stdout.rfind("\n{")
    if result.returncode not in (0, 1) or "{" not in result.stdout:
        raise RuntimeError(f"bench.{name} failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout[start + 1 if start >= 0 else result.stdout.index("{") :])
