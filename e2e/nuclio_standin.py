"""The smallest stand-in for what CVAT's lambda manager uses of Nuclio, with our function deployed in it.

Nuclio's dashboard cannot run here (it deploys functions as Docker containers). CVAT's lambda manager
(cvat/apps/lambda_manager/views.py, LambdaGateway) uses three things of it:

- ``GET /api/functions`` and ``GET /api/functions/<name>``: the function's config as Nuclio reports it,
  of which CVAT reads ``metadata.name``, ``metadata.annotations``, ``spec.description`` and
  ``status.httpPort``. Served from our real function.yaml, with the port this stand-in opened.
- ``POST /api/function_invocations`` (CVAT_NUCLIO_INVOKE_METHOD=dashboard, the default on Kubernetes):
  the body forwarded to the function named by ``x-nuclio-function-name``, at ``x-nuclio-path``; the
  function's status and body come back as they are.
- The function's own HTTP port (``direct``, the default on Docker): CVAT posts to
  ``http://localhost:<status.httpPort>``.

Behind that port the function runs as deployed: the YAML's environment, plus what the deploy command adds
(the Redis store), in `workers` worker processes, each with its own `init_context` and model, as
Nuclio's Python runtime runs ``maxWorkers``. A request goes to a free worker, or waits for one up to the
trigger's ``workerAvailabilityTimeoutMilliseconds`` and is then refused with 503, as Nuclio does. Each
worker is ``python -m local_server --workers 1 --worker-id i``, which builds Nuclio's event the way the
HTTP trigger does and calls ``main.handler`` with a nuclio-sdk context.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from e2e.processes import Service, Services, free_port, http_ok, wait_until

FUNCTION_SETTINGS = ("SAM2_", "CVAT_FUNCTIONS_REDIS")  # the function's own; never inherited from ours


@dataclass(frozen=True)
class Deployment:
    function_dir: Path  # the folder with main.py
    function_file: Path  # function.yaml
    env: dict[str, str]  # what the deploy command adds (--env), over the YAML's
    workers: int | None = None  # None: the YAML's maxWorkers
    cpus: str | None = None  # the CPUs the workers may use (taskset's list, e.g. "0"); None: all


class Worker:
    def __init__(self, index: int, service: Service, port: int):
        self.index = index
        self.service = service
        self.url = f"http://127.0.0.1:{port}/"


class FunctionTrigger:
    """The function's HTTP trigger: one request per worker at a time."""

    def __init__(self, workers: list[Worker], availability_timeout_s: float, event_timeout_s: float):
        self.idle = list(workers)
        self.available = threading.Condition()
        self.availability_timeout_s = availability_timeout_s
        self.event_timeout_s = event_timeout_s
        self.calls: list[int] = []  # the worker index of every call, in order
        self.bodies: list[dict[str, Any]] = []  # what each call carried (see `received`)
        self.content_types: list[str] = []
        self.worker_ms: list[float] = []  # each call's time at the worker, as the trigger sees it

    def add(self, worker: Worker) -> None:
        with self.available:
            self.idle.append(worker)
            self.available.notify()

    def invoke(self, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        with self.available:
            if not self.available.wait_for(lambda: self.idle, timeout=self.availability_timeout_s):
                return 503, "text/plain", b"no worker became available in time"
            worker = self.idle.pop(0)
        try:
            self.calls.append(worker.index)
            self.bodies.append(received(body))
            self.content_types.append(content_type)
            began = time.perf_counter()
            answer = forward(worker.url.rstrip("/") + path, body, content_type, self.event_timeout_s)
            self.worker_ms.append((time.perf_counter() - began) * 1000)
            return answer
        finally:
            self.add(worker)


def received(body: bytes) -> dict[str, Any]:
    """A request as the function got it, its image as the SHA-256 of the decoded file (the bodies are
    kept for the tests, which compare them with what CVAT serves)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return {"unparsed": len(body)}
    if isinstance(payload, dict) and isinstance(payload.get("image"), str):
        image = base64.b64decode(payload["image"])
        payload["image"] = {"sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image)}
    return payload


def forward(url: str, body: bytes, content_type: str, timeout_s: float) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()
    except (urllib.error.URLError, ConnectionError) as error:
        return 502, "text/plain", f"the function is unreachable: {error}".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def reply_json(self, status: int, value: Any) -> None:
        self.reply(status, "application/json", json.dumps(value).encode())

    def log_message(self, format: str, *args) -> None:
        log = self.server.log  # type: ignore[attr-defined]
        log.write(f"{time.strftime('%H:%M:%S')} :{self.server.server_address[1]} {format % args}\n")
        log.flush()


class _TriggerHandler(_Handler):
    def do_POST(self) -> None:
        trigger: FunctionTrigger = self.server.trigger  # type: ignore[attr-defined]
        self.reply(*trigger.invoke(self.path, self.body(), self.headers.get("Content-Type", "")))


class _DashboardHandler(_Handler):
    def do_GET(self) -> None:
        nuclio: NuclioStandIn = self.server.nuclio  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0].rstrip("/")
        name = nuclio.config["metadata"]["name"]
        if path == "/api/functions":
            self.reply_json(200, {name: nuclio.config})
        elif path == f"/api/functions/{name}":
            self.reply_json(200, nuclio.config)
        elif path.startswith("/api/functions/"):
            self.reply_json(404, {"error": f"function {path.rsplit('/', 1)[1]} not found"})
        else:
            self.reply_json(404, {"error": f"{path} is not served by this stand-in"})

    def do_POST(self) -> None:
        nuclio: NuclioStandIn = self.server.nuclio  # type: ignore[attr-defined]
        if self.path.rstrip("/") != "/api/function_invocations":
            self.reply_json(404, {"error": f"{self.path} is not served by this stand-in"})
            return
        wanted = self.headers.get("x-nuclio-function-name")
        body = self.body()
        if wanted != nuclio.config["metadata"]["name"]:
            self.reply_json(404, {"error": f"function {wanted} not found"})
            return
        nuclio.invocations.append(dict(self.headers))
        path = self.headers.get("x-nuclio-path") or "/"
        self.reply(*nuclio.trigger.invoke(path, body, self.headers.get("Content-Type", "")))


class NuclioStandIn:
    """Deploys the function (its worker processes) and serves the dashboard's API and the function's port."""

    def __init__(self, deployment: Deployment, services: Services, python: str = sys.executable):
        self.deployment = deployment
        self.services = services
        self.python = python
        self.spec = yaml.safe_load(deployment.function_file.read_text())
        trigger = next(iter(self.spec["spec"]["triggers"].values()))
        self.max_workers = deployment.workers or int(trigger.get("maxWorkers", 1))
        self.availability_timeout_s = int(trigger.get("workerAvailabilityTimeoutMilliseconds", 10000)) / 1000
        self.event_timeout_s = parse_seconds(self.spec["spec"].get("eventTimeout", "120s"))
        self.workers: list[Worker] = []
        self.invocations: list[dict[str, str]] = []  # the headers of every dashboard invocation
        self.http_port = free_port()
        self.dashboard_port = free_port()
        self.config = self._reported_config()
        self._servers: list[ThreadingHTTPServer] = []
        self.log = open(services.logs / "nuclio.log", "a")  # noqa: SIM115 (open while the stand-in serves)

    def _reported_config(self) -> dict[str, Any]:
        metadata = dict(self.spec["metadata"])
        metadata["namespace"] = "nuclio"
        metadata["labels"] = {"nuclio.io/project-name": "cvat"}
        spec = dict(self.spec["spec"])
        spec["env"] = [
            *spec.get("env", []),
            *({"name": k, "value": v} for k, v in self.deployment.env.items()),
        ]
        return {"metadata": metadata, "spec": spec, "status": {"state": "ready", "httpPort": self.http_port}}

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FUNCTION_SETTINGS)}
        env.update({item["name"]: str(item["value"]) for item in self.spec["spec"].get("env", [])})
        env.update(self.deployment.env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _start_worker_processes(self) -> None:
        env = self.worker_env()
        for index in range(self.max_workers):
            port = free_port()
            args = [self.python, "-m", "local_server", "--port", str(port), "--workers", "1"]
            if self.deployment.cpus is not None:
                args = ["taskset", "-c", self.deployment.cpus, *args]
            service = self.services.start(
                f"function-worker-{index}",
                [*args, "--worker-id", str(index)],
                env,
                cwd=self.deployment.function_dir,
            )
            self.workers.append(Worker(index, service, port))

    def start_workers(self) -> None:
        """Start the worker processes and open the ports; the trigger serves a worker once it is ready."""
        self._start_worker_processes()
        self.trigger = FunctionTrigger([], self.availability_timeout_s, self.event_timeout_s)
        self._serve(self.http_port, _TriggerHandler, trigger=self.trigger)
        self._serve(self.dashboard_port, _DashboardHandler, nuclio=self)

    def redeploy(self, env: dict[str, str]) -> None:
        """Deploy the function again with `env` over the deployment's (as `nuctl deploy` with other --env
        values): the idle workers are stopped and new ones serve once ready. Call it between calls."""
        with self.trigger.available:
            self.trigger.idle.clear()
        for worker in self.workers:
            self.services.stop(worker.service)
        self.workers.clear()
        self.deployment = replace(self.deployment, env={**self.deployment.env, **env})
        self._start_worker_processes()
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 600) -> None:
        for worker in self.workers:
            wait_until(f"function worker {worker.index}", http_ok(worker.url), self.services, timeout_s)
            self.trigger.add(worker)

    def _serve(self, port: int, handler: type[_Handler], **attributes: Any) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        server.daemon_threads = True
        server.log = self.log  # type: ignore[attr-defined]
        for name, value in attributes.items():
            setattr(server, name, value)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)

    def function_log(self) -> str:
        """Every worker's log, as `docker logs` of the function's container would show it."""
        return "\n".join(w.service.log.read_text(errors="replace") for w in self.workers)

    def wait_for_log(self, text: str, timeout_s: float = 10) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.function_log():
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        for server in self._servers:
            with contextlib.suppress(OSError):
                server.shutdown()
                server.server_close()
        self._servers.clear()
        self.log.close()


def parse_seconds(value: str | int) -> float:
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)
