"""A real Redis Cluster of three masters (no replicas) on loopback, made by redis-cli, whose masters
the tests may stop and start again."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer

NODE_TIMEOUT_MS = 1000  # how soon the others call a stopped master failed


class RedisCluster:
    def __init__(self, directory: Path, masters: int = 3):
        self.nodes = []
        for index in range(masters):
            folder = directory / f"node{index}"
            folder.mkdir(parents=True, exist_ok=True)
            extra = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            )  # fmt: skip
            self.nodes.append(RedisServer(folder, extra=extra))

    def start(self) -> RedisCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian/Ubuntu: apt-get install redis-tools)")
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_until_ok()
        return self

    def wait_until_ok(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(n.client().cluster("info")["cluster_state"] == "ok" for n in self.nodes):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not come up")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node_holding(self, key: str) -> RedisServer:
        """The master serving `key`'s slot."""
        slot = self.nodes[0].client().cluster("keyslot", key)
        for start, end, (_, port, *_), *_ in self.nodes[0].client().cluster("slots"):
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no master holds slot {slot}")

    def env(self) -> dict[str, str]:
        return {**self.nodes[0].env(), "CVAT_FUNCTIONS_REDIS_CLUSTER": "1"}
