"""Where each tracked object's SAM2 memory lives between calls.

CVAT gives back, on the next call, the opaque state strings we returned; any replica of the function
may serve that call, so the memory itself lives in Redis, Kvrocks (CVAT's ``cvat_redis_ondisk``) or a
Redis Cluster, and the strings are only tokens: ``v2.<object tag>.<random 128-bit version>``.

States are immutable versions: every step stores a new version under a new token and never changes an
old one, so a retried or raced request cannot corrupt a session. Versions share what did not change.
Per object, the store holds (``{tag}`` is the object's tag, so one object's keys share a cluster slot):

- ``<prefix>{tag}:c:<token>``: an anchor's memory (the start frame's, or a correction's), written once
  by the version that started or corrected the object there;
- ``<prefix>{tag}:m:<token>``: the memory features of the frame that version `token` tracked;
- ``<prefix>{tag}:v:<token>``: a small head per version: frames, object pointers, the tokens of the
  anchor and memory pieces it uses and until when each lives.

A step writes one memory piece and one head (about 0.54 MB at 1024 input, against 3.7 MB for the
whole state). The previous version stays readable, so the last request can be retried; the one before
it is deleted as soon as the new version is written, together with the memory piece that only it used.
Lifetimes follow SAM2_TRACKER_STATE_TTL (CVAT's 8-hour state max age); see `RedisStateStore`.

The pieces and their bytes are object_state.py's; the connection and its errors store_client.py's; this
module decides where the pieces live and when they go. Only commands Kvrocks 2.7 supports too: SET
with EX, GET, MGET, DEL, EXPIRE, pipelines. No Lua, no modules. Without Redis (one local instance, the
offline CLI, the cvat-sdk agent) the same logic runs over `byte_map.ByteMap`, those commands on bytes
held in the process (`MemoryStateStore`), so every state goes through the bytes Redis would hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

import store_client
from bounded_lru import BoundedLru
from byte_map import ByteMap
from config import StoreConfig
from object_state import (
    Head,
    ObjectState,
    anchor_bytes,
    anchor_tensors,
    assemble,
    head_bytes,
    memory_bytes,
    read_anchor,
    read_head,
    read_memory,
)
from store_lineage import Lineage
from tokens import new_token, object_tag

logger = logging.getLogger(__name__)


class UnknownState(LookupError):
    """No such state: never issued, expired, or superseded twice since."""


@dataclass(frozen=True)
class StoredObject:
    """An object's state as a store holds it under `token`, and the form its answers take (the CVAT
    shape type it came in). How the store keeps versions is its own business."""

    token: str
    state: ObjectState
    answer_form: str
    lineage: Lineage = field(repr=False, compare=False)


@dataclass(frozen=True)
class VersionKeys:
    """The keys a version's head and pieces live under."""

    head: str
    anchors: tuple[str, ...]
    memories: tuple[str, ...]

    @property
    def pieces(self) -> tuple[str, ...]:
        return (*self.anchors, *self.memories)


@dataclass(frozen=True)
class Update:
    """A state to save: new (`previous` None), stepped from a stored one, or corrected from one
    (`anchored`: the anchor on the state's frame was made by this call)."""

    state: ObjectState
    answer_form: str
    previous: StoredObject | None = None
    anchored: bool = False


def version_token(update: Update) -> str:
    """The token of the version `update` saves: of a new object, or of the object it steps."""
    return new_token(None if update.previous is None else object_tag(update.previous.token))


def next_lineage(token: str, update: Update) -> Lineage:
    parent = update.previous
    if parent is None:
        return Lineage(anchors=(token,), window=())
    return parent.lineage.successor(parent.token, parent.state, token, update.state, update.anchored)


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


class ChunkCache(BoundedLru[dict[str, torch.Tensor]]):
    """Recently used memory chunks of this process, parsed, by Redis key (least recently used out).

    Chunks are immutable (a key is never rewritten with other content), so a cached chunk is always
    the one Redis holds; whether a version is still alive is decided by reading its head from Redis
    on every call. A worker that served the previous frame of a session has every chunk of the next
    call; a worker that did not reads only the ones it lacks.
    """

    def put(self, key: str, tensors: dict[str, torch.Tensor], size: int | None = None) -> None:
        if size is None:
            size = sum(t.numel() * t.element_size() for t in tensors.values())
        super().put(key, tensors, size)


class RedisStateStore(StateStore):
    """States in Redis, Kvrocks or a Redis Cluster, shared by every replica of the function.

    Keys: ``<prefix>{<object tag>}:v|c|m:<token>``. The braces make the object's tag the Redis Cluster
    hash tag, so all of an object's pieces, across its versions, share one slot: its reads are one MGET
    and its deletes one DEL, wherever the object lives. Objects of one call are spread over the slots
    and sent as one pipeline (the cluster client splits it per node).

    Lifetimes, chosen for Kvrocks, where an EXPIRE rewrites a string's whole value on disk: a head lives
    one TTL (a session idle longer answers 404); a piece is written to live two TTLs, the head records
    until when, and a step refreshes only the pieces that would not outlive its new head by a margin. So
    every piece a live head references outlives it, a piece is refreshed at most once per ~0.9 TTL of
    wall time (never in a session of frames seconds apart), and an abandoned session leaves the store
    within two TTLs of its last frame.
    """

    def __init__(
        self,
        client: Any = None,
        cfg: StoreConfig | None = None,
        where: str = "redis",
        connect: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        cfg = cfg or StoreConfig()
        self._clock = clock  # wall-clock seconds, as the pieces' lifetimes are recorded
        self._client = client
        self._connect = connect  # makes the client on first use, when none was given
        self._connecting = threading.Lock()
        self.ttl_seconds = cfg.ttl_seconds
        self.prefix = cfg.key_prefix
        self.where = where
        self.cache = ChunkCache(cfg.cache_megabytes * 1024 * 1024)

    @classmethod
    def from_config(cls, cfg: StoreConfig) -> RedisStateStore:
        return cls(cfg=cfg, where=store_client.describe(cfg), connect=store_client.connector(cfg))

    def describe(self) -> str:
        return self.where

    @property
    def piece_ttl(self) -> int:
        return 2 * self.ttl_seconds

    @property
    def refresh_margin(self) -> float:
        """How much longer than its head a piece must still live not to be refreshed: room for the
        time a call takes and for clock differences between replicas."""
        return 0.1 * self.ttl_seconds

    def keys_of(self, stored: StoredObject) -> VersionKeys:
        """Where a version's head and pieces live."""
        lineage = stored.lineage
        return VersionKeys(
            head=self._head_key(stored.token),
            anchors=tuple(self._anchor_key(t) for t in lineage.anchors),
            memories=tuple(self._memory_key(t) for t in lineage.window),
        )

    def _head_key(self, token: str) -> str:
        return self._key("v", token)

    def _anchor_key(self, token: str) -> str:
        return self._key("c", token)

    def _memory_key(self, token: str) -> str:
        return self._key("m", token)

    def _key(self, kind: str, token: str) -> str:
        return f"{self.prefix}{{{object_tag(token)}}}:{kind}:{token}"

    @staticmethod
    def _parse_head(data: bytes, token: str) -> tuple[Head, Lineage, str]:
        head = read_head(data)
        lineage, answer_form = Lineage.from_fields(head.info, token)
        return head, lineage, answer_form

    def _client_now(self):
        if self._client is None:
            with self._connecting:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def load(self, tokens: Sequence[str]) -> list[StoredObject]:
        heads = self._call(lambda pipe: [pipe.get(self._head_key(t)) for t in tokens])
        if any(head is None for head in heads):
            raise UnknownState("unknown or expired state")
        parsed = [self._parse_head(head, token) for head, token in zip(heads, tokens, strict=True)]
        chunks = self._chunks([self._piece_keys(lineage) for _, lineage, _ in parsed])
        loaded = []
        for token, (head, lineage, answer_form) in zip(tokens, parsed, strict=True):
            anchors = [chunks[self._anchor_key(t)] for t in lineage.anchors]
            memories = [chunks[self._memory_key(t)]["memory"] for t in lineage.window]
            state = assemble(head, anchors, memories)
            loaded.append(StoredObject(token, state, answer_form, lineage))
        return loaded

    def _piece_keys(self, lineage: Lineage) -> list[str]:
        return [
            *(self._anchor_key(t) for t in lineage.anchors),
            *(self._memory_key(t) for t in lineage.window),
        ]

    def _chunks(self, per_object: list[list[str]]) -> dict[str, dict[str, torch.Tensor]]:
        """Parsed pieces by key: from this process's cache, the others in one MGET per object (one
        slot each), all in one pipeline."""
        found = {key: self.cache.get(key) for keys in per_object for key in keys}
        missing = [[key for key in dict.fromkeys(keys) if found[key] is None] for keys in per_object]
        missing = [keys for keys in missing if keys]
        if missing:
            # execute_command: redis-py's cluster pipeline blocks its mget method, not the command
            replies = self._call(lambda pipe: [pipe.execute_command("MGET", *keys) for keys in missing])
            for keys, values in zip(missing, replies, strict=True):
                for key, data in zip(keys, values, strict=True):
                    if data is None:
                        raise UnknownState("unknown or expired state")
                    is_anchor = key.rsplit(":", 2)[-2] == "c"
                    found[key] = read_anchor(data) if is_anchor else {"memory": read_memory(data)}
                    self.cache.put(key, found[key])
        return found

    def save(self, updates: Sequence[Update]) -> list[StoredObject]:
        now = self._clock()
        planned = []
        for update in updates:
            token = version_token(update)
            lineage, refresh = self._lifetimes(token, next_lineage(token, update), update.previous, now)
            planned.append((token, update, lineage, refresh))
        fresh: dict[str, dict[str, torch.Tensor]] = {}
        gone: list[str] = []

        def queue(pipe) -> None:
            for token, update, lineage, refresh in planned:
                state = update.state
                if token in lineage.anchors:  # a start or a correction: its anchor, once
                    anchor = state.anchor_on(state.frame)
                    pipe.set(self._anchor_key(token), anchor_bytes(anchor), ex=self.piece_ttl)
                    fresh[self._anchor_key(token)] = anchor_tensors(anchor)
                if lineage.window and lineage.window[-1] == token:
                    pipe.set(self._memory_key(token), memory_bytes(state.memories[-1]), ex=self.piece_ttl)
                    fresh[self._memory_key(token)] = {"memory": state.memories[-1]}
                for key in refresh:
                    pipe.expire(key, self.piece_ttl)
                head = head_bytes(state, lineage.to_fields(update.answer_form))
                pipe.set(self._head_key(token), head, ex=self.ttl_seconds)
                if update.previous is not None and update.previous.lineage.parent is not None:
                    # The grandparent version and the pieces only it still used: nothing can reach
                    # them once the parent is superseded too. One object, one slot: one DEL.
                    old = update.previous.lineage
                    dead = [
                        *(self._memory_key(t) for t in old.dropped),
                        *(self._anchor_key(t) for t in old.dropped_anchors),
                    ]
                    pipe.execute_command("DEL", self._head_key(update.previous.lineage.parent), *dead)
                    gone.extend(dead)

        self._call(queue)
        self.cache.discard(gone)
        if self.cache.capacity:
            for key, tensors in fresh.items():
                self.cache.put(key, {name: t.detach().to("cpu") for name, t in tensors.items()})
        return [StoredObject(token, u.state, u.answer_form, lineage) for token, u, lineage, _ in planned]

    def _lifetimes(
        self, token: str, lineage: Lineage, previous: StoredObject | None, now: float
    ) -> tuple[Lineage, list[str]]:
        """`lineage` with until when each of its pieces lives, and the keys of the pieces to refresh."""
        known = {}
        if previous is not None:
            old = previous.lineage
            known = dict(zip((*old.anchors, *old.window), old.until, strict=True))
        written_until = now + self.piece_ttl
        needed = now + self.ttl_seconds + self.refresh_margin
        until, refresh = [], []
        keys = [
            *(self._anchor_key(t) for t in lineage.anchors),
            *(self._memory_key(t) for t in lineage.window),
        ]
        for piece, key in zip((*lineage.anchors, *lineage.window), keys, strict=True):
            if piece == token:  # written by this call
                until.append(written_until)
            elif known.get(piece, 0.0) >= needed:
                until.append(known[piece])
            else:
                until.append(written_until)
                refresh.append(key)
        return replace(lineage, until=tuple(until)), refresh

    def _call(self, queue):
        """Run the commands `queue` puts on a pipeline; their replies, or `StoreUnavailable`."""
        try:
            pipe = self._client_now().pipeline(transaction=False)
            queue(pipe)
            return pipe.execute()
        except Exception as error:
            unavailable = store_client.translate(error, self.where)
            if unavailable is None:
                raise
            raise unavailable from None


class MemoryStateStore(RedisStateStore):
    """States in this process only (replicas do not share them): for one local instance, the offline
    CLI and the cvat-sdk agent. The same store logic as Redis, over an in-process `ByteMap`, so every
    state goes through the bytes Redis would hold; no chunk cache (the bytes are already here)."""

    def __init__(self, ttl_seconds: int = StoreConfig.ttl_seconds, clock: Callable[[], float] = time.time):
        self.bytes = ByteMap(clock)
        cfg = StoreConfig(ttl_seconds=ttl_seconds, cache_megabytes=0)
        super().__init__(self.bytes, cfg, where="in-process memory", clock=clock)

    def forget_object(self, token: str) -> None:
        """Drop every version of the object `token` belongs to (its holder is done with it)."""
        tag = f"{{{object_tag(token)}}}:"
        self.bytes.delete_where(lambda key: tag in key)


def store_from_config(cfg: StoreConfig) -> StateStore:
    if cfg.redis_host:
        return RedisStateStore.from_config(cfg)
    logger.warning(
        "CVAT_FUNCTIONS_REDIS_HOST is not set: tracking states stay in this process, so "
        "replicas of the function will not share them (fine for one local instance)"
    )
    return MemoryStateStore(cfg.ttl_seconds)
