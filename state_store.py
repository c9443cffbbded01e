"""Where each tracked object's SAM2 memory lives between calls.

CVAT gives back, on the next call, the opaque state strings we returned; any replica of the function
may serve that call, so the memory itself lives in Redis (or Kvrocks, CVAT's ``cvat_redis_ondisk``)
and the strings are only tokens: ``v1.<random 128-bit token>``.

States are immutable versions: every step stores a new version under a new token and never changes an
old one, so a retried or raced request cannot corrupt a session. Versions share what did not change.
Per object, Redis holds:

- ``<prefix>c:<token>``: the start frame's memory (written once, by the version that started it);
- ``<prefix>m:<token>``: the memory features of the frame that version `token` tracked;
- ``<prefix>v:<token>``: a small head per version: step, object pointers, and the tokens of the
  start and memory chunks it uses.

A step writes one memory piece and one head (about 0.53 MB at 1024 input, against 3.7 MB for the
whole state). The previous version stays readable, so the last request can be retried; the one before
it is deleted as soon as the new version is written, together with the memory chunk that only it used.
Everything carries the TTL (CVAT's 8-hour state max age), refreshed while the session is tracked.

The pieces and their bytes are object_state.py's; this module decides where they live and when they go.
Only commands Kvrocks supports too: SET with EX, GET, MGET, DEL, EXPIRE, pipelines. No Lua, no modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from config import StoreConfig
from object_state import (
    Head,
    ObjectState,
    StateError,
    assemble,
    head_bytes,
    memory_bytes,
    read_head,
    read_memory,
    read_start,
    start_bytes,
    start_tensors,
)
from tokens import is_token, new_token

logger = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The state store cannot be reached or refused us; the message says which and why."""


class UnknownState(LookupError):
    """No such state: never issued, expired, or superseded twice since."""


@dataclass(frozen=True)
class Lineage:
    """Which stored pieces a version is made of, and what to clean up after its successor."""

    cond: str  # token of the version that holds the start frame's memory
    window: tuple[str, ...]  # tokens of the versions holding each memory frame, oldest first
    parent: str | None = None
    dropped: tuple[str, ...] = ()  # memory chunks that left the window at this version


@dataclass(frozen=True)
class StoredObject:
    """An object's state as a store holds it under `token`, and the form its answers take (the CVAT
    shape type it came in). How the store keeps versions is its own business."""

    token: str
    state: ObjectState
    answer_form: str
    lineage: Lineage = field(repr=False, compare=False)


@dataclass(frozen=True)
class Update:
    """A state to save: new (`previous` None) or stepped from a stored one."""

    state: ObjectState
    answer_form: str
    previous: StoredObject | None = None


def next_lineage(token: str, update: Update) -> Lineage:
    parent = update.previous
    if parent is None:
        return Lineage(cond=token, window=())
    window = (*parent.lineage.window, token) if update.state.max_memories else ()
    keep = len(update.state.memories)
    return Lineage(
        cond=parent.lineage.cond,
        window=window[len(window) - keep :],
        parent=parent.token,
        dropped=window[: len(window) - keep],
    )


class StateStore:
    """Load object states by token; save new versions. A saved version never changes: stepping a
    state saves a new one under a new token, and the version before the one it was stepped from
    goes."""

    def load(self, tokens: Sequence[str]) -> list[StoredObject]:
        raise NotImplementedError

    def save(self, updates: Sequence[Update]) -> list[StoredObject]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class MemoryStateStore(StateStore):
    """States in this process only: replicas do not share them. For a single local instance."""

    def __init__(self, ttl_seconds: int = StoreConfig.ttl_seconds, clock=time.monotonic):
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._items: dict[str, tuple[float, StoredObject]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "in-process memory"

    def load(self, tokens: Sequence[str]) -> list[StoredObject]:
        now = self._clock()
        with self._lock:
            self._expire(now)
            found = [self._items.get(token) for token in tokens]
        if any(item is None for item in found):
            raise UnknownState("unknown or expired state")
        return [stored for _, stored in found]

    def save(self, updates: Sequence[Update]) -> list[StoredObject]:
        now = self._clock()
        saved = []
        with self._lock:
            for update in updates:
                token = new_token()
                stored = StoredObject(token, update.state, update.answer_form, next_lineage(token, update))
                self._items[token] = (now + self.ttl_seconds, stored)
                if stored.lineage.parent is not None:
                    self._items.pop(update.previous.lineage.parent, None)
                saved.append(stored)
            self._expire(now)
        return saved

    def _expire(self, now: float) -> None:
        for token in [t for t, (deadline, _) in self._items.items() if deadline <= now]:
            del self._items[token]

    def __len__(self) -> int:
        return len(self._items)


class ChunkCache:
    """Recently used memory chunks of this process, parsed, by Redis key (least recently used out).

    Chunks are immutable (a key is never rewritten with other content), so a cached chunk is always
    the one Redis holds; whether a version is still alive is decided by reading its head from Redis
    on every call. A worker that served the previous frame of a session has every chunk of the next
    call; a worker that did not reads only the ones it lacks.
    """

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self._items: OrderedDict[str, tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if size > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (tensors, size)
            self._size += size
            while self._size > self.capacity:
                _, (_, evicted) = self._items.popitem(last=False)
                self._size -= evicted

    def discard(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                item = self._items.pop(key, None)
                if item is not None:
                    self._size -= item[1]

    def __len__(self) -> int:
        return len(self._items)


class RedisStateStore(StateStore):
    """States in Redis (or Kvrocks), shared by every replica of the function."""

    def __init__(self, client, cfg: StoreConfig | None = None, where: str = "redis"):
        cfg = cfg or StoreConfig()
        self.client = client
        self.ttl_seconds = cfg.ttl_seconds
        self.prefix = cfg.key_prefix
        self.where = where
        self.cache = ChunkCache(cfg.cache_megabytes * 1024 * 1024)

    @classmethod
    def from_config(cls, cfg: StoreConfig) -> RedisStateStore:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        # A short retry: a frame is better answered 503 at once than after redis-py's default
        # backoff of up to 10 s per try (a wrong password is retried too, it is a connection error).
        client = redis.Redis(
            host=cfg.redis_host,
            port=cfg.redis_port,
            password=cfg.redis_password,
            socket_connect_timeout=2,
            socket_timeout=30,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
        )
        return cls(client, cfg, where=f"Redis at {cfg.redis_host}:{cfg.redis_port}")

    def describe(self) -> str:
        return self.where

    def _head_key(self, token: str) -> str:
        return f"{self.prefix}v:{token}"

    def _cond_key(self, token: str) -> str:
        return f"{self.prefix}c:{token}"

    def _memory_key(self, token: str) -> str:
        return f"{self.prefix}m:{token}"

    def load(self, tokens: Sequence[str]) -> list[StoredObject]:
        heads = self._call(lambda: self.client.mget([self._head_key(t) for t in tokens]))
        if any(head is None for head in heads):
            raise UnknownState("unknown or expired state")
        parsed = [_parse_head(head) for head in heads]
        chunks = self._chunks([key for _, lineage, _ in parsed for key in self._chunk_keys(lineage)])
        loaded = []
        for token, (head, lineage, answer_form) in zip(tokens, parsed, strict=True):
            cond, *memories = (chunks[key] for key in self._chunk_keys(lineage))
            state = assemble(head, cond, [m["memory"] for m in memories])
            loaded.append(StoredObject(token, state, answer_form, lineage))
        return loaded

    def _chunk_keys(self, lineage: Lineage) -> list[str]:
        return [self._cond_key(lineage.cond), *(self._memory_key(t) for t in lineage.window)]

    def _chunks(self, keys: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        """Parsed chunks by key: from this process's cache, the others in one MGET."""
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        missing = [key for key, tensors in found.items() if tensors is None]
        if missing:
            for key, data in zip(missing, self._call(lambda: self.client.mget(missing)), strict=True):
                if data is None:
                    raise UnknownState("unknown or expired state")
                is_cond = key.startswith(self._cond_key(""))
                found[key] = read_start(data) if is_cond else {"memory": read_memory(data)}
                self.cache.put(key, found[key])
        return found

    def save(self, updates: Sequence[Update]) -> list[StoredObject]:
        saved = []
        fresh: dict[str, dict[str, torch.Tensor]] = {}
        gone: list[str] = []
        pipe = self.client.pipeline(transaction=False)
        for update in updates:
            token = new_token()
            lineage = next_lineage(token, update)
            state = update.state
            if update.previous is None:
                pipe.set(self._cond_key(token), start_bytes(state), ex=self.ttl_seconds)
                fresh[self._cond_key(token)] = start_tensors(state)
            else:
                pipe.expire(self._cond_key(lineage.cond), self.ttl_seconds)
            if lineage.window and lineage.window[-1] == token:
                pipe.set(self._memory_key(token), memory_bytes(state.memories[-1]), ex=self.ttl_seconds)
                fresh[self._memory_key(token)] = {"memory": state.memories[-1]}
            for older in lineage.window[:-1]:
                pipe.expire(self._memory_key(older), self.ttl_seconds)
            pipe.set(
                self._head_key(token), _head_bytes(state, update.answer_form, lineage), ex=self.ttl_seconds
            )
            if update.previous is not None and update.previous.lineage.parent is not None:
                # The grandparent version and the memory only it still used: nothing can reach them
                # once the parent is superseded too.
                dead = [self._memory_key(t) for t in update.previous.lineage.dropped]
                pipe.delete(self._head_key(update.previous.lineage.parent), *dead)
                gone.extend(dead)
            saved.append(StoredObject(token, state, update.answer_form, lineage))
        self._call(pipe.execute)
        self.cache.discard(gone)
        for key, tensors in fresh.items():
            self.cache.put(key, {name: t.detach().to("cpu") for name, t in tensors.items()})
        return saved

    def _call(self, action):
        import redis

        try:
            return action()
        except redis.AuthenticationError as error:
            raise StoreUnavailable(
                f"{self.where} refused the password ({error}): set "
                "CVAT_FUNCTIONS_REDIS_PASSWORD to the server's password"
            ) from None
        except redis.ResponseError as error:
            if str(error).startswith(("NOAUTH", "WRONGPASS")):
                raise StoreUnavailable(
                    f"{self.where} requires a password: set CVAT_FUNCTIONS_REDIS_PASSWORD"
                ) from None
            raise StoreUnavailable(f"{self.where} refused the request ({error})") from None
        except redis.RedisError as error:
            raise StoreUnavailable(f"{self.where} is unavailable ({error})") from None


def _head_bytes(state: ObjectState, answer_form: str, lineage: Lineage) -> bytes:
    return head_bytes(
        state,
        {
            "answer_form": answer_form,
            "cond": lineage.cond,
            "window": list(lineage.window),
            "parent": lineage.parent,
            "dropped": list(lineage.dropped),
        },
    )


def _parse_head(data: bytes) -> tuple[Head, Lineage, str]:
    head = read_head(data)
    info = head.info
    try:
        tokens = [info["cond"], *info["window"], *info["dropped"]]
        if info["parent"] is not None:
            tokens.append(info["parent"])
        if not all(is_token(t) for t in tokens) or not isinstance(info["answer_form"], str):
            raise ValueError("bad tokens")
        lineage = Lineage(
            cond=info["cond"],
            window=tuple(info["window"]),
            parent=info["parent"],
            dropped=tuple(info["dropped"]),
        )
    except (KeyError, TypeError, ValueError):
        raise StateError("corrupt tracker state (bad head)") from None
    return head, lineage, info["answer_form"]


def store_from_config(cfg: StoreConfig) -> StateStore:
    if cfg.redis_host:
        return RedisStateStore.from_config(cfg)
    logger.warning(
        "CVAT_FUNCTIONS_REDIS_HOST is not set: tracking states stay in this process, so "
        "replicas of the function will not share them (fine for one local instance)"
    )
    return MemoryStateStore(cfg.ttl_seconds)
