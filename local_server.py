"""Serve the function on localhost without Nuclio: POST the CVAT request body, get the CVAT response.

    python -m local_server [--host 127.0.0.1] [--port 8080] [--workers 1] [--worker-id 0]

Each request becomes a nuclio-sdk `Event` the way Nuclio's HTTP trigger makes it (a body with content
type exactly ``application/json`` arrives parsed, anything else as bytes) and goes to `main.handler`
with a nuclio-sdk `Context` set up by `main.init_context`. States go to Redis when
``CVAT_FUNCTIONS_REDIS_HOST`` is set, else stay in this process. ``GET /`` answers a health check.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nuclio_sdk

import main
from config import ConfigError, Limits

log = logging.getLogger("sam2-tracker.local")


def make_context(worker_id: int = 0) -> nuclio_sdk.Context:
    logger = nuclio_sdk.Logger(logging.INFO, "sam2-tracker")
    logger.set_handler("default", sys.stderr, nuclio_sdk.logger.HumanReadableFormatter())
    # Nuclio's Python wrapper hands the worker's index on as a string
    trigger = nuclio_sdk.TriggerInfo("http", "local")
    context = nuclio_sdk.Context(logger=logger, worker_id=str(worker_id), trigger=trigger)
    main.init_context(context)
    return context


def event_from_http(body: bytes, headers: dict[str, str], method: str, path: str) -> nuclio_sdk.Event:
    content_type = headers.get("Content-Type", "")
    parsed: object = body
    if content_type == "application/json":  # exactly, as Nuclio's event decoder does
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
    return nuclio_sdk.Event(
        body=parsed,
        content_type=content_type,
        headers=headers,
        method=method,
        path=path,
        size=len(body),
        trigger=nuclio_sdk.TriggerInfo("http", "local"),
    )


class FunctionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, context: nuclio_sdk.Context, workers: int, limits: Limits):
        super().__init__(address, RequestHandler)
        self.context = context
        self.limits = limits
        self.workers = threading.BoundedSemaphore(workers)


class RequestHandler(BaseHTTPRequestHandler):
    server: FunctionServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        app = self.server.context.user_data.app
        self._reply(
            200,
            "application/json",
            json.dumps(
                {
                    "name": "Segment Anything 2: Tracker",
                    "ready": True,
                    "store": app.store.describe(),
                    "device": str(app.tracker.device),
                    "precision": app.tracker.precision,
                }
            ).encode(),
        )

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the request with a Content-Length")
            return
        if int(length) > self.server.limits.max_request_bytes:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the request is {length} bytes; the limit is {self.server.limits.max_request_bytes}",
            )
            return
        body = self.rfile.read(int(length))
        event = event_from_http(body, dict(self.headers), "POST", self.path)
        with self.server.workers:
            response = main.handler(self.server.context, event)
        payload = response.body if isinstance(response.body, bytes) else str(response.body).encode()
        self._reply(response.status_code, response.content_type, payload)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, "application/json", json.dumps({"error": message}).encode(), close=True)

    def _reply(self, status: int, content_type: str, payload: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        log.info("%s %s", self.address_string(), format % args)


def serve(host: str, port: int, workers: int, worker_id: int = 0) -> FunctionServer:
    context = make_context(worker_id)
    limits = context.user_data.app.settings.limits
    return FunctionServer((host, port), context, workers, limits)


def main_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1, help="requests served at once")
    parser.add_argument(
        "--worker-id", type=int, default=0, help="this process's index among a function's worker processes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        server = serve(args.host, args.port, max(1, args.workers), args.worker_id)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"SAM2 tracker listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
