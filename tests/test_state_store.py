"""The state stores, with real redis-server processes and small synthetic states (no model)."""

from __future__ import annotations

import dataclasses
import pickle
import time

import pytest
import torch

from config import StoreConfig
from object_state import HEAD_FORMAT_1, ObjectState, StateError, anchor_bytes, pack, read_head, to_pieces
from state_store import (
    ChunkCache,
    MemoryStateStore,
    RedisStateStore,
    UnknownState,
    Update,
    store_from_config,
)
from store_client import StoreUnavailable
from tests.support.kvrocks import KvrocksStandIn
from tests.support.redis_server import RedisServer
from tests.support.server_process import run_benchmark
from tests.support.synthetic import random_object_state, random_step
from tokens import is_old_token, is_token, new_token, object_tag

TTL = 600


def started_state(seed: int = 0) -> ObjectState:
    return random_object_state(seed, side=8, video_size=(240, 320))


def stepped(state: ObjectState, seed: int) -> ObjectState:
    return random_step(state, seed)


def assert_same(a: ObjectState, b: ObjectState) -> None:
    assert to_pieces(a) == to_pieces(b)


def empty_store(redis_server, ttl_seconds: int) -> tuple:
    """A client of the flushed test redis-server and a store over it."""
    client = redis_server.client()
    client.flushall()
    return client, RedisStateStore(client, StoreConfig(ttl_seconds=ttl_seconds))


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
    client, store = empty_store(redis_server, ttl_seconds=TTL)
    state = started_state()
    (current,) = store.save([Update(state, "polygon")])
    for step in range(1, 31):
        state = stepped(state, step)
        (current,) = store.save([Update(state, "polygon", current)])
    keys = client.keys("sam2-tracker:*")
    kinds = sorted(key.split(b":")[2].decode() for key in keys)
    # the start memory, the 6 memory frames of the current version plus the one the previous version
    # still uses, and two heads
    assert kinds == ["c"] + ["m"] * 7 + ["v"] * 2
    assert all(0 < client.ttl(key) <= store.piece_ttl for key in keys)


def test_many_objects_in_one_call_keep_their_order(store):
    states = [started_state(seed) for seed in range(5)]
    forms = ["mask", "polygon"] * 2 + ["mask"]
    saved = store.save([Update(state, form) for state, form in zip(states, forms, strict=True)])
    loaded = store.load([s.token for s in reversed(saved)])
    for original, back in zip(reversed(states), loaded, strict=True):
        assert_same(original, back.state)
    assert [s.answer_form for s in loaded] == ["mask", "polygon", "mask", "polygon", "mask"][::-1]


def test_tokens_are_random_and_name_their_object():
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000 and len({object_tag(t) for t in tokens}) == 1000
    assert all(is_token(t) for t in tokens)
    # "v2." + 11 base64url characters (64 random bits, the object) + "." + 22 (128 random bits, the version)
    assert all(len(t) == 3 + 11 + 1 + 22 for t in tokens)
    first = new_token()
    versions = {new_token(object_tag(first)) for _ in range(100)}
    assert len(versions) == 100 and {object_tag(t) for t in versions} == {object_tag(first)}
    assert not is_token("v2." + "A" * 11 + "." + "A" * 21) and not is_token(7)
    assert not is_token("v2." + "A" * 11 + "." + "A" * 21 + "!") and not is_token("v1." + "A" * 22)
    assert is_old_token("v1." + "A" * 22) and not is_old_token(first)


def test_unknown_token_raises(store):
    with pytest.raises(UnknownState):
        store.load([new_token()])


def test_planted_pickle_is_refused_and_never_executed(redis_server, tmp_path):
    client, store = empty_store(redis_server, ttl_seconds=TTL)
    (stored,) = store.save([Update(started_state(), "mask")])
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("executed",))

    (other,) = store.save([Update(started_state(), "mask")])
    client.set(store.keys_of(stored).head, pickle.dumps(Exploit()))  # a head
    client.set(store.keys_of(other).anchors[0], pickle.dumps(Exploit()))  # an anchor piece
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
    now[0] = 20.5  # the pieces outlive the head by one TTL, as in Redis
    assert len(store.bytes) == 0


def test_redis_state_disappears_after_the_ttl(redis_server):
    client, store = empty_store(redis_server, ttl_seconds=1)
    (stored,) = store.save([Update(started_state(), "mask")])
    (stepped_version,) = store.save([Update(stepped(stored.state, 1), "mask", stored)])
    assert client.keys("sam2-tracker:*")
    time.sleep(2 * store.ttl_seconds + 1.1)
    assert client.keys("sam2-tracker:*") == []
    with pytest.raises(UnknownState):
        store.load([stepped_version.token])


def test_redis_memory_per_object_stays_under_twice_the_state_size():
    """A short run of bench/redis_footprint.py: real-size states, INFO memory of a real redis-server."""
    report = run_benchmark("redis_footprint", "--objects", "2", "--frames", "60", "--ttl", "1")
    assert report["ttls_covered"] >= 1  # so that refreshes are counted
    assert report["peak_ratio_to_state"] <= 2.0
    # a frame writes its new piece and head only, not the state, however fast the frames come
    assert report["set_bytes_per_object_per_frame"] <= 560_000
    # and a piece is refreshed (Kvrocks rewrites it on EXPIRE) at most once per 0.9 TTL: what that costs
    # per frame depends on how many TTLs the run took, so on the machine's load, not on the store
    rewritten = report["expire_rewrite_bytes_per_object_per_frame"] * report["frames"]
    assert rewritten <= report["state_bytes_per_object"] * (report["ttls_covered"] / 0.9 + 2)
    assert report["abandoned_keys_before_ttl"] > 0 == report["abandoned_keys_after_twice_the_ttl"]


def test_a_state_stored_before_anchors_still_continues(redis_server):
    """A release before anchors wrote heads of the first format (one start piece named "cond", frames
    counted from it): such a state loads as one anchor on frame 0 with its history, and steps on."""
    client, store = empty_store(redis_server, ttl_seconds=TTL)
    counted = dataclasses.replace(started_state(), frames_known=False)  # as that release's states were
    (current,) = store.save([Update(counted, "mask")])
    for step in range(1, 9):
        (current,) = store.save([Update(stepped(current.state, step), "mask", current)])
    head = read_head(client.get(store.keys_of(current).head))
    first_format = {
        name: value
        for name, value in head.info.items()
        if name in ("step", "video_size", "fingerprint", "max_memories", "max_ptrs", "answer_form")
        or name in ("window", "parent", "dropped", "until")
    }
    (first_format["cond"],) = head.info["anchors"]
    client.set(store.keys_of(current).head, pack(HEAD_FORMAT_1, {"ptrs": head.ptrs}, first_format), ex=TTL)

    (old,) = RedisStateStore(client, StoreConfig(ttl_seconds=TTL)).load([current.token])
    assert_same(old.state, current.state)
    assert (old.state.anchor_frames, old.state.recent_frames) == ((0,), tuple(range(1, 9)))
    (on,) = store.save([Update(stepped(old.state, 9), "mask", old)])
    assert store.load([on.token])[0].state.frame == 9


def test_redis_memory_per_object_with_4_anchors_stays_under_twice_the_state_size():
    """An object corrected 3 times holds 4 anchors: its state grows by 3 anchor pieces, and the store
    still holds less than twice it."""
    report = run_benchmark(
        "redis_footprint", "--objects", "2", "--frames", "20", "--ttl", "1", "--anchors", "4"
    )
    memory = 64 * 64 * 64 * 2
    assert 10 * memory <= report["state_bytes_per_object"] < 11 * memory  # 4 anchors + 6 recent frames
    assert report["peak_ratio_to_state"] <= 2.0
    assert report["set_bytes_per_object_per_frame"] <= 560_000  # a step writes no anchor
    assert report["abandoned_keys_after_twice_the_ttl"] == 0


def _bytes_sent(client) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


def test_the_worker_that_served_the_last_frame_reads_only_heads(redis_server):
    client = redis_server.client()
    client.flushall()
    worker, other = (
        RedisStateStore(client, StoreConfig(ttl_seconds=TTL)),
        RedisStateStore(client, StoreConfig(ttl_seconds=TTL)),
    )
    big = random_object_state(0, side=64, video_size=(240, 320))
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


# ---- lifetimes: pieces outlive the heads that reference them, refreshed rarely -------------------


def _pieces_outlive_the_head(client, store: RedisStateStore, stored) -> bool:
    keys = store.keys_of(stored)
    head = client.pttl(keys.head)
    return head > 0 and all(client.pttl(key) > head for key in keys.pieces)


def test_a_session_with_steps_just_under_the_ttl_apart_keeps_working(redis_server):
    client, store = empty_store(redis_server, ttl_seconds=2)
    (current,) = store.save([Update(started_state(), "mask")])
    for step in range(1, 9):
        time.sleep(1.6)
        (loaded,) = store.load([current.token])
        (current,) = store.save([Update(stepped(loaded.state, step), "mask", loaded)])
        assert _pieces_outlive_the_head(client, store, current)
    assert store.load([current.token])[0].state.step == 8


def test_an_idle_session_answers_unknown_and_leaves_the_store_within_twice_the_ttl(redis_server):
    client, store = empty_store(redis_server, ttl_seconds=1)
    (current,) = store.save([Update(started_state(), "mask")])
    for step in range(1, 4):
        (current,) = store.save([Update(stepped(current.state, step), "mask", current)])
    time.sleep(1.2)  # longer than the head lives
    with pytest.raises(UnknownState):
        store.load([current.token])
    time.sleep(1.0)  # two TTLs since the last step
    assert client.keys("sam2-tracker:*") == []


def test_pieces_are_refreshed_at_most_about_once_per_ttl(redis_server):
    """Through the Kvrocks stand-in, which sees every EXPIRE: a fast session over several TTLs
    refreshes its start piece about once per TTL and never its memory pieces (each lives 7 frames)."""
    client = redis_server.client()
    client.flushall()
    with KvrocksStandIn(redis_server.port) as kvrocks:
        cfg = StoreConfig(redis_host="127.0.0.1", redis_port=kvrocks.port, ttl_seconds=1)
        store = RedisStateStore.from_config(cfg)
        (current,) = store.save([Update(started_state(), "mask")])
        began = time.monotonic()
        for step in range(1, 41):
            time.sleep(0.1)
            (current,) = store.save([Update(stepped(current.state, step), "mask", current)])
            assert _pieces_outlive_the_head(client, store, current)
        elapsed = time.monotonic() - began
        refreshes = kvrocks.commands["expire"]
        assert 1 <= refreshes <= elapsed / (0.9 * cfg.ttl_seconds) + 1
        assert set(kvrocks.expired) == set(store.keys_of(current).anchors)  # no memory piece
        assert kvrocks.written["expire"] <= refreshes * len(anchor_bytes(current.state.anchors[0])) * 1.01
