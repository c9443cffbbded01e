"""The connection to the state store, and what its failures mean to an admin.

One client dialect, on purpose: RESP2. Redis, Kvrocks (CVAT's ``cvat_redis_ondisk``), Valkey, KeyDB and
Dragonfly all speak it; Kvrocks up to 2.10 speaks nothing else and answers ``HELLO 3`` with a RESP2
array, which redis-py 8's default RESP3 handshake cannot read. With
``CVAT_FUNCTIONS_REDIS_CLUSTER=1`` it is redis-py's cluster client, connected on first use: a cluster
down at start-up must not stop the function's start, only the calls that need it (503).

Every failure becomes `StoreUnavailable` with a sentence that names the setting to change, because CVAT
shows the user only the status and the function's log is where an admin reads why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config import StoreConfig

RESP_VERSION = 2


class StoreUnavailable(Exception):
    """The state store cannot be reached or refused us; the message says which and why."""


def describe(cfg: StoreConfig) -> str:
    kind = "Redis Cluster" if cfg.redis_cluster else "Redis"
    return f"{kind} at {cfg.redis_host}:{cfg.redis_port}"


def connector(cfg: StoreConfig) -> Callable[[], Any]:
    """A function that makes the client (a cluster client asks the cluster for its slots when made)."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    common = {
        "host": cfg.redis_host,
        "port": cfg.redis_port,
        "password": cfg.redis_password,
        "protocol": RESP_VERSION,
        # RESP2 sends no handshake that needs the password; naming the connection is one (CLIENT
        # SETNAME, which Kvrocks has), so a missing or wrong password fails at connect with its own
        # error, not later when Redis cuts an unauthenticated client sending a large value.
        "client_name": "sam2-tracker",
        "socket_connect_timeout": 2,
        "socket_timeout": 30,
        # A short retry: a frame is better answered 503 at once than after redis-py's default
        # backoff of up to 10 s per try (a wrong password is retried too, it is a connection error).
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
    }
    if cfg.redis_cluster:
        from redis.cluster import RedisCluster

        return lambda: RedisCluster(**common)
    return lambda: redis.Redis(health_check_interval=30, **common)


def translate(error: Exception, where: str) -> StoreUnavailable | None:
    """The sentence for a store failure; None for what is no store failure (a bug to let through)."""
    import redis
    from redis.exceptions import RedisClusterException

    text = str(error)
    lowered = text.lower()
    if lowered.startswith("noauth") or lowered == "authentication required.":
        return StoreUnavailable(f"{where} requires a password: set CVAT_FUNCTIONS_REDIS_PASSWORD")
    if isinstance(error, redis.AuthenticationError) or any(
        words in lowered for words in ("invalid password", "wrongpass", "invalid username-password")
    ):
        # Kvrocks says "invalid password" up to 2.8 and "Invalid password" from 2.9; redis-py maps
        # only the first to its authentication error
        return StoreUnavailable(
            f"{where} refused the password ({text}): set CVAT_FUNCTIONS_REDIS_PASSWORD to the "
            "server's password"
        )
    if "but no password is set" in lowered or "without any password configured" in lowered:
        return StoreUnavailable(
            f"{where} has no password but one was sent: unset CVAT_FUNCTIONS_REDIS_PASSWORD"
        )
    if "space limit reached" in lowered or "no space left" in lowered or lowered.startswith("oom"):
        # Kvrocks at its max-db-size (RocksDB's SpaceLimit), a full disk, or Redis at its maxmemory
        return StoreUnavailable(
            f"{where} is full ({text}): raise Kvrocks's max-db-size or Redis's maxmemory, or free its "
            "disk; tracking states leave it within twice SAM2_TRACKER_STATE_TTL of their last frame"
        )
    if isinstance(error, redis.ResponseError):
        return StoreUnavailable(f"{where} refused the request ({text})")
    if isinstance(error, redis.RedisError | RedisClusterException):
        # RedisClusterException (no slots, cluster unreachable at connect) is no RedisError
        return StoreUnavailable(f"{where} is unavailable ({text or type(error).__name__})")
    return None
