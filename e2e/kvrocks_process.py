"""The Kvrocks 2.7 stand-in of tests/support/kvrocks.py as a process of its own, as Kvrocks is a server of
its own: the stack's services do not share a Python interpreter (and its GIL) with the tests.

    python -m e2e.kvrocks_process --port 6666 --backend-port 6379
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from e2e.processes import Service, Services, free_port, port_open, wait_until
from tests.support import ROOT
from tests.support.kvrocks import KvrocksStandIn


class KvrocksProcess:
    """One stand-in process in front of a redis-server; stop() takes it away (its port refuses
    connections, open ones are cut), start() brings it back on the same port."""

    def __init__(self, name: str, backend_port: int, services: Services):
        self.name = name
        self.backend_port = backend_port
        self.services = services
        self.port = free_port()
        self.service: Service | None = None

    def start(self) -> KvrocksProcess:
        args = [sys.executable, "-m", "e2e.kvrocks_process", "--port", str(self.port)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.service = self.services.start(self.name, [*args, "--backend-port", str(self.backend_port)], env)
        wait_until(f"the Kvrocks stand-in {self.name}", port_open(self.port), self.services, 30)
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.services.stop(self.service)
            self.service = None

    def env(self) -> dict[str, str]:
        """The function's settings for it as its state store."""
        return {"CVAT_FUNCTIONS_REDIS_HOST": "127.0.0.1", "CVAT_FUNCTIONS_REDIS_PORT": str(self.port)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="where Kvrocks's clients connect")
    parser.add_argument("--backend-port", type=int, required=True, help="the redis-server behind it")
    args = parser.parse_args()
    standin = KvrocksStandIn(args.backend_port, port=args.port).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.wait(1):
        pass
    standin.stop()


if __name__ == "__main__":
    main()
