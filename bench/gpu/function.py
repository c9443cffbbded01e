"""The function under test, as Nuclio runs it: in this process through nuclio-sdk's own platform
(`main.init_context`, then `main.handler` per call, each request made into an event the way Nuclio's
HTTP trigger makes it), or as worker processes (`python -m local_server --workers 1`, one model and
CUDA context each, as Nuclio's `maxWorkers` runs them) that a client hands each call to the first free
one of, as Nuclio's worker allocator does."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gpu.output import nvidia_smi
from bench.gpu.timing import rss_mb
from tests.support.cvat import function_environment
from tests.support.server_process import LocalServer, post

PLATFORM_LOGGER = "mock_platform"  # the Python logger nuclio-sdk's test platform logs through


def request_bytes(image: bytes, shapes: list[dict[str, Any]] | None, states: list[str] | None) -> bytes:
    """A CVAT tracker request as its JSON bytes: start `shapes`, or continue `states`."""
    encoded = base64.b64encode(image).decode()
    if states is None:
        body = {"image": encoded, "shapes": shapes, "states": []}
    else:
        body = {"image": encoded, "shapes": [None] * len(states), "states": states}
    return json.dumps(body).encode()


class LogFields(logging.Handler):
    """The fields of the function's latest log line of each message (nuclio-sdk's `info_with`)."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: dict[str, dict[str, Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.latest[record.getMessage()] = dict(getattr(record, "with", {}))

    def last(self, message: str) -> dict[str, Any]:
        return self.latest[message]


@dataclass(frozen=True)
class Call:
    status: int
    seconds: float  # as the trigger sees it: the event made from the bytes, the handler, the answer parsed
    answer: dict[str, Any]
    fields: dict[str, Any]  # the handler's log line: stages in ms (decode_ms, encode_ms...), total_ms


@dataclass
class InProcessFunction:
    """One function instance of nuclio-sdk's test platform, its `init_context` run by its first call."""

    platform: Any
    app: Any
    init_s: float  # the start-up line's init_s
    fields: LogFields

    @classmethod
    def start(cls, checkpoint: Path, env: dict[str, str], log_stream: Any) -> InProcessFunction:
        import nuclio_sdk
        from nuclio_sdk.test import Platform

        import main

        fields = LogFields()
        platform_logger = logging.getLogger(PLATFORM_LOGGER)
        platform_logger.propagate = False  # its lines go to the run's log alone
        platform_logger.addHandler(fields)
        contexts = []

        def keep(context: Any) -> Any:
            contexts.append(context)
            return context

        try:
            with function_environment(checkpoint, **env):
                platform = Platform()
                formatter = nuclio_sdk.logger.HumanReadableFormatter()
                platform.context.logger.set_handler("default", log_stream, formatter)
                refused = platform.call_handler_with_context_mutation(
                    main.handler, nuclio_sdk.Event(body=b""), keep
                )
            if refused.status_code != 400:
                raise RuntimeError(f"the function's first (empty) call answered {refused.status_code}")
        except BaseException:
            platform_logger.removeHandler(fields)
            raise
        init_s = float(fields.last("SAM2 tracker ready")["init_s"])
        return cls(platform, contexts[0].user_data.app, init_s, fields)

    def call(self, payload: bytes) -> Call:
        import local_server
        import main

        began = time.perf_counter()
        event = local_server.event_from_http(payload, {"Content-Type": "application/json"}, "POST", "/")
        response = self.platform.call_handler(main.handler, event)
        answer = json.loads(response.body)
        seconds = time.perf_counter() - began
        return Call(response.status_code, seconds, answer, self.fields.last("track"))

    def close(self) -> None:
        logging.getLogger(PLATFORM_LOGGER).removeHandler(self.fields)
        self.app = self.platform = None


@dataclass
class WorkerProcess:
    server: LocalServer
    log: Path
    ready_s: float = 0.0  # from the process's start to its first health-check answer

    @property
    def pid(self) -> int:
        return self.server.process.pid if self.server.process else -1

    def init_s(self) -> float | None:
        """init_s of the process's start-up line (`SAM2 tracker ready`)."""
        found = re.search(r"SAM2 tracker ready.*'init_s': ([\d.]+)", self.log.read_text())
        return float(found.group(1)) if found else None

    def rss_mb(self) -> float | None:
        return rss_mb(str(self.pid))


def start_worker(env: dict[str, str], log: Path) -> WorkerProcess:
    began = time.perf_counter()
    server = LocalServer(env, workers=1, log=log).__enter__()
    return WorkerProcess(server, log, round(time.perf_counter() - began, 2))


@contextlib.contextmanager
def worker_processes(env: dict[str, str], count: int, folder: Path) -> Iterator[list[WorkerProcess]]:
    """`count` worker processes started at once, stopped on leaving."""
    workers: list[WorkerProcess] = []
    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            starting = [pool.submit(start_worker, env, folder / f"worker{i}.log") for i in range(count)]
            for future in starting:
                with contextlib.suppress(Exception):
                    workers.append(future.result())
            for future in starting:
                future.result()  # raises the first start that failed, once all are kept for stopping
        yield workers
    finally:
        for worker in workers:
            worker.server.__exit__()


def gpu_memory_of(pids: list[int]) -> dict[str, Any]:
    """GPU memory each process holds, as nvidia-smi reports it (its CUDA context and PyTorch's cached
    blocks included); None with the reason where it cannot be read."""
    rows = nvidia_smi("--query-compute-apps=pid,used_memory")
    if rows is None:
        return {"per_process_mb": None, "why_none": "no nvidia-smi (no GPU)"}
    used = {int(row[0]): float(row[1]) for row in rows if len(row) == 2 and row[0].isdigit()}
    if not all(pid in used for pid in pids):
        return {
            "per_process_mb": None,
            "listed_mb": sorted(used.values()),
            "why_none": "nvidia-smi lists other process ids (another PID namespace)",
        }
    return {"per_process_mb": [used[pid] for pid in pids]}


@dataclass
class FreeWorkers:
    """Each call goes to a worker that is free, waiting for one when all are busy (Nuclio's worker
    allocator); a call waits in the queue, not at one busy worker."""

    urls: list[str]
    free: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        for url in self.urls:
            self.free.put(url)

    def call(self, payload: bytes) -> tuple[int, dict[str, Any]]:
        url = self.free.get()
        try:
            return post(url, payload)
        finally:
            self.free.put(url)
