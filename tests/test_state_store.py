"""The state stores, with real redis-server processes and small synthetic states (no model)."""

from __future__ import annotations

import pickle

import pytest
import torch

from config import StoreConfig
from object_state import ObjectState, StateError, to_pieces
from state_store import (
    ChunkCache,
    MemoryStateStore,
    RedisStateStore,
    StoreUnavailable,
    UnknownState,
    Update,
    store_from_config,
)
from tests.support.redis_server import RedisServer
from tests.support.server_process import run_benchmark
from tests.support.synthetic import random_object_state, random_step
from tokens import is_token, new_token

TTL = 600


def started_state(seed: int = 0) -> ObjectState:
    return random_object_state(seed, side=8, video_size=(240, 320))


def stepped(state: ObjectState, seed: int) -> ObjectState:
    return random_step(state, seed)


def assert_same(a: ObjectState, b: ObjectState) -> None:
    assert to_pieces(a) == to_pieces(b)


@pytest.fixture(params=["redis", "memory"])
def store(request, redis_server):
    if request.param == "memory":
        return MemoryStateStore(TTL)
    redis_server.client().flushall()
    return RedisStateStore(redis_server.client(), StoreConfig(ttl_seconds=TTL))


def test_versions_round_trip_and_superseded_ones_go(store):
    state = started_state()
    (stored,) = store.save([Update(state, "mask")])
    history = [stored]
    for step in range(1, 21):
        (loaded,) = store.load([history[-1].token])
        assert_same(loaded.state, history[-1].state)
        assert loaded.answer_form == "mask"
        state = stepped(loaded.state, step)
        (stored,) = store.save([Update(state, "mask", loaded)])
        history.append(stored)
    assert_same(store.load([history[-1].token])[0].state, history[-1].state)
    # the version before the current one can be retried; older ones are gone
    assert_same(store.load([history[-2].token])[0].state, history[-2].state)
    for old in history[:-2]:
        with pytest.raises(UnknownState):
            store.load([old.token])


def test_redis_keeps_about_one_state_per_object(redis_server):
    client = redis_server.client()
    client.flushall()
    store = RedisStateStore(client, StoreConfig(ttl_seconds=TTL))
    state = started_state()
    (current,) = store.save([Update(state, "polygon")])
    for step in range(1, 31):
        state = stepped(state, step)
        (current,) = store.save([Update(state, "polygon", current)])
    keys = client.keys("sam2-tracker:*")
    kinds = sorted(key.split(b":")[1].decode() for key in keys)
    # the start memory, the 6 memory frames of the current version plus the one the previous version
    # still uses, and two heads
    assert kinds == ["c"] + ["m"] * 7 + ["v"] * 2
    assert all(0 < client.ttl(key) <= TTL for key in keys)


def test_many_objects_in_one_call_keep_their_order(store):
    states = [started_state(seed) for seed in range(5)]
    forms = ["mask", "polygon"] * 2 + ["mask"]
    saved = store.save([Update(state, form) for state, form in zip(states, forms, strict=True)])
    loaded = store.load([s.token for s in reversed(saved)])
    for original, back in zip(reversed(states), loaded, strict=True):
        assert_same(original, back.state)
    assert [s.answer_form for s in loaded] == ["mask", "polygon", "mask", "polygon", "mask"][::-1]


def test_tokens_are_random_and_128_bit():
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(is_token(t) for t in tokens)
    assert all(len(t) == 3 + 22 for t in tokens)  # 22 base64url characters = 132 bits of text, 128 random
    assert not is_token("v1." + "A" * 21) and not is_token(7) and not is_token("v1." + "A" * 21 + "!")


def test_unknown_token_raises(store):
    with pytest.raises(UnknownState):
        store.load([new_token()])


def test_planted_pickle_is_refused_and_never_executed(redis_server, tmp_path):
    client = redis_server.client()
    client.flushall()
    store = RedisStateStore(client, StoreConfig(ttl_seconds=TTL))
    (stored,) = store.save([Update(started_state(), "mask")])
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("executed",))

    (other,) = store.save([Update(started_state(), "mask")])
    client.set(f"sam2-tracker:v:{stored.token}", pickle.dumps(Exploit()))  # a head
    client.set(f"sam2-tracker:c:{other.token}", pickle.dumps(Exploit()))  # a memory chunk
    replica = RedisStateStore(client, StoreConfig(ttl_seconds=TTL))  # reads everything from Redis
    for token in (stored.token, other.token):
        with pytest.raises(StateError):
            replica.load([token])
    assert not marker.exists()


def test_redis_down_is_store_unavailable_and_recovers(tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        cfg = StoreConfig(redis_host="127.0.0.1", redis_port=server.port, ttl_seconds=TTL)
        store = store_from_config(cfg)
        (stored,) = store.save([Update(started_state(), "mask")])
        server.stop()
        with pytest.raises(StoreUnavailable, match=f"Redis at 127.0.0.1:{server.port} is unavailable"):
            store.load([stored.token])
        with pytest.raises(StoreUnavailable):
            store.save([Update(started_state(), "mask")])
        server.start()
        (again,) = store.save([Update(started_state(), "mask")])
        assert_same(store.load([again.token])[0].state, started_state())
    finally:
        server.stop()


def test_password_protected_redis(tmp_path):
    server = RedisServer(tmp_path, password="correct horse").start()
    try:
        cfg = StoreConfig(redis_host="127.0.0.1", redis_port=server.port, redis_password="correct horse")
        store = store_from_config(cfg)
        (stored,) = store.save([Update(started_state(), "mask")])
        assert_same(store.load([stored.token])[0].state, started_state())

        without = store_from_config(StoreConfig(redis_host="127.0.0.1", redis_port=server.port))
        with pytest.raises(StoreUnavailable, match="CVAT_FUNCTIONS_REDIS_PASSWORD"):
            without.load([stored.token])
        wrong = store_from_config(
            StoreConfig(redis_host="127.0.0.1", redis_port=server.port, redis_password="wrong")
        )
        with pytest.raises(StoreUnavailable, match="CVAT_FUNCTIONS_REDIS_PASSWORD"):
            wrong.load([stored.token])
        assert "correct horse" not in repr(cfg)
    finally:
        server.stop()


def test_memory_store_expires_after_the_ttl():
    now = [0.0]
    store = MemoryStateStore(ttl_seconds=10, clock=lambda: now[0])
    (stored,) = store.save([Update(started_state(), "mask")])
    now[0] = 9.0
    store.load([stored.token])
    now[0] = 10.5
    with pytest.raises(UnknownState):
        store.load([stored.token])
    assert len(store) == 0


def test_redis_state_disappears_after_the_ttl(redis_server):
    client = redis_server.client()
    client.flushall()
    store = RedisStateStore(client, StoreConfig(ttl_seconds=1))
    (stored,) = store.save([Update(started_state(), "mask")])
    (stepped_version,) = store.save([Update(stepped(stored.state, 1), "mask", stored)])
    assert client.keys("sam2-tracker:*")
    import time

    time.sleep(2.1)
    assert client.keys("sam2-tracker:*") == []
    with pytest.raises(UnknownState):
        store.load([stepped_version.token])


def test_redis_memory_per_object_stays_under_twice_the_state_size():
    """A short run of bench/redis_footprint.py: real-size states, INFO memory of a real redis-server."""
    report = run_benchmark("redis_footprint", "--objects", "2", "--frames", "40", "--ttl", "1")
    assert report["peak_ratio_to_state"] <= 2.0
    assert report["bytes_written_per_object_per_frame"] <= 600_000  # the new frame only, not the state
    assert report["abandoned_keys_before_ttl"] > 0 == report["abandoned_keys_after_ttl"]


def _bytes_sent(client) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


def test_the_worker_that_served_the_last_frame_reads_only_heads(redis_server):
    client = redis_server.client()
    client.flushall()
    worker, other = (
        RedisStateStore(client, StoreConfig(ttl_seconds=TTL)),
        RedisStateStore(client, StoreConfig(ttl_seconds=TTL)),
    )
    big = ObjectState(
        **{**started_state().__dict__, "cond_memory": torch.zeros(1, 64, 64, 64, dtype=torch.bfloat16)}
    )
    (current,) = worker.save([Update(big, "mask")])
    for step in range(1, 8):
        memory = torch.full((1, 64, 64, 64), float(step), dtype=torch.bfloat16)
        (current,) = worker.save(
            [Update(current.state.advanced(memory, torch.zeros(1, 256)), "mask", current)]
        )

    before = _bytes_sent(client)
    (same,) = worker.load([current.token])
    from_worker = _bytes_sent(client) - before
    before = _bytes_sent(client)
    (elsewhere,) = other.load([current.token])
    from_other = _bytes_sent(client) - before
    assert_same(same.state, current.state)
    assert_same(elsewhere.state, current.state)
    assert from_worker < 50_000  # the head: step, pointers, chunk tokens
    assert from_other > 7 * 64 * 64 * 64 * 2  # the start frame and 6 memory frames

    # the other worker now has the chunks: after one more step by the first, it reads one chunk
    memory = torch.full((1, 64, 64, 64), 9.0, dtype=torch.bfloat16)
    (newer,) = worker.save([Update(current.state.advanced(memory, torch.zeros(1, 256)), "mask", current)])
    before = _bytes_sent(client)
    (back,) = other.load([newer.token])
    assert 64 * 64 * 64 * 2 < _bytes_sent(client) - before < 2 * 64 * 64 * 64 * 2
    assert_same(back.state, newer.state)


def test_chunk_cache_evicts_the_least_recently_used():
    cache = ChunkCache(capacity_bytes=3 * 400)
    for index in range(4):
        cache.put(f"k{index}", {"t": torch.zeros(100)})  # 400 bytes each
    assert cache.get("k0") is None and len(cache) == 3
    cache.get("k1")
    cache.put("k4", {"t": torch.zeros(100)})
    assert cache.get("k1") is not None and cache.get("k2") is None
    cache.put("huge", {"t": torch.zeros(1000)})
    assert cache.get("huge") is None


def test_the_local_cache_holds_only_live_chunks_of_a_long_session(redis_server):
    store = RedisStateStore(redis_server.client(), StoreConfig(ttl_seconds=TTL))
    (current,) = store.save([Update(started_state(), "mask")])
    for step in range(1, 41):
        (current,) = store.save([Update(stepped(current.state, step), "mask", current)])
    # the start frame's memory and the 7 memory frames the current and previous versions use
    assert len(store.cache) == 8
