"""The few Redis commands the state store uses, on bytes held in the process: the store without Redis
(one local instance, the offline CLI, the cvat-sdk agent) runs the same logic over these, so every state
goes through the bytes Redis would hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class ByteMap:
    """The few Redis commands the store uses (pipelines of GET, SET with EX, EXPIRE, MGET, DEL), on
    bytes held in this process, with Redis's expiry semantics."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._values: dict[str, tuple[bytes, float]] = {}  # key: (value, deadline)
        self._lock = threading.Lock()

    def pipeline(self, transaction: bool = False) -> BytePipeline:
        return BytePipeline(self)

    def run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        with self._lock:
            self._purge()
            return [self._run(*command) for command in commands]

    def delete_where(self, doomed: Callable[[str], bool]) -> None:
        with self._lock:
            for key in [k for k in self._values if doomed(k)]:
                del self._values[key]

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._values)

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, (_, deadline) in self._values.items() if deadline <= now]:
            del self._values[key]

    def _run(self, name: str, *args: Any) -> Any:
        if name == "GET":
            return self._get(args[0])
        if name == "MGET":
            return [self._get(key) for key in args]
        if name == "SET":
            key, value, seconds = args
            self._values[key] = (bytes(value), self._clock() + seconds)
            return True
        if name == "EXPIRE":
            key, seconds = args
            if key not in self._values:
                return False
            self._values[key] = (self._values[key][0], self._clock() + seconds)
            return True
        if name == "DEL":
            return sum(self._values.pop(key, None) is not None for key in args)
        raise ValueError(f"ByteMap does not run {name}")

    def _get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        return None if item is None else item[0]


class BytePipeline:
    """Commands queued for a `ByteMap`, run together by `execute` (as redis-py's pipeline)."""

    def __init__(self, owner: ByteMap):
        self._owner = owner
        self._commands: list[tuple[Any, ...]] = []

    def get(self, key: str) -> None:
        self._commands.append(("GET", key))

    def set(self, key: str, value: bytes, ex: int) -> None:
        self._commands.append(("SET", key, value, ex))

    def expire(self, key: str, seconds: int) -> None:
        self._commands.append(("EXPIRE", key, seconds))

    def execute_command(self, name: str, *args: Any) -> None:
        self._commands.append((name.upper(), *args))

    def execute(self) -> list[Any]:
        commands, self._commands = self._commands, []
        return self._owner.run(commands)
