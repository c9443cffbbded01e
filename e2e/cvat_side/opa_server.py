"""OPA's data API on a real Rego engine, over the rule bundle CVAT itself serves.

CVAT asks OPA about every request (``POST /v1/data/<package path>/allow`` or ``/filter`` with
``{"input": ...}``). CVAT's Docker Compose file runs OPA with one bundle, polled from CVAT's server at
``/api/auth/rules``; this server loads the same bundle once at start (retrying until CVAT's server
answers) into OPA's own Go engine, embedded by ``opa-golib-python-bindings``, and answers as OPA does:
``{"result": <value>}``, or ``{}`` where the document is undefined. Nothing is allowed or denied here;
every decision is CVAT's Rego.

    python opa_server.py --port 8181 --bundle-url http://127.0.0.1:8080/api/auth/rules
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

DATA_PREFIX = "/v1/data/"


def fetch_bundle(url: str, wait_s: float) -> bytes:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def load_bundle(bundle: bytes) -> tuple[OpaEngine, int]:
    """An engine holding every Rego module of the bundle (a gzipped tar, as OPA's bundles are)."""
    engine = OpaEngine()
    modules = 0
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".rego"):
                source = tar.extractfile(member).read().decode()
                engine.add_policy(member.name, source)
                modules += 1
    return engine, modules


class DataApi(BaseHTTPRequestHandler):
    server: OpaServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        if not self.path.startswith(DATA_PREFIX):
            self._reply(404, {"code": "resource_not_found", "message": f"{self.path} is not served"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"code": "invalid_parameter", "message": "the body is not JSON"})
            return
        document = self.path[len(DATA_PREFIX) :].strip("/").replace("/", ".")
        try:
            result = self.server.engine.eval_document(document, body.get("input"))
        except OpaUndefinedError:
            self._reply(200, {})
            return
        except OpaError as error:
            self._reply(500, {"code": "internal_error", "message": str(error)})
            return
        self._reply(200, {"result": result})

    def do_GET(self) -> None:  # health, as OPA's /health
        self._reply(200, {} if self.path.startswith("/health") else {"modules": self.server.modules})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass


class OpaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: OpaEngine, modules: int):
        super().__init__(address, DataApi)
        self.engine = engine
        self.modules = modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bundle-url", required=True, help="CVAT's /api/auth/rules")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for CVAT's server")
    args = parser.parse_args()
    engine, modules = load_bundle(fetch_bundle(args.bundle_url, args.wait))
    server = OpaServer((args.host, args.port), engine, modules)
    print(
        f"OPA data API on {args.host}:{args.port}: {modules} Rego modules from {args.bundle_url}", flush=True
    )
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
