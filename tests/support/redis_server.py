"""A real redis-server on a free port, owned by the tests so they can stop and restart it."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port(bus_offset: int = 0) -> int:
    """A free loopback port; with `bus_offset`, one whose port + offset is free too (a cluster node's
    bus)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not bus_offset:
            return port
        if port + bus_offset < 65536:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + bus_offset))
                    return port
                except OSError:
                    pass


class RedisServer:
    def __init__(self, directory: Path, password: str | None = None, extra: tuple[str, ...] = ()):
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)")
        self.executable = executable
        self.directory = directory
        self.password = password
        self.extra = extra
        self.port = free_port(bus_offset=10000 if "--cluster-enabled" in extra else 0)
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.stop)  # never outlive the tests, even when one fails before its stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def env(self, with_password: bool = True) -> dict[str, str]:
        env = {"CVAT_FUNCTIONS_REDIS_HOST": "127.0.0.1", "CVAT_FUNCTIONS_REDIS_PORT": str(self.port)}
        if self.password and with_password:
            env["CVAT_FUNCTIONS_REDIS_PASSWORD"] = self.password
        return env
