"""A real Redis Cluster (three masters on loopback), opted into with CVAT_FUNCTIONS_REDIS_CLUSTER=1."""

from __future__ import annotations

import pytest

from config import StoreConfig
from state_store import RedisStateStore, UnknownState, Update, store_from_config
from store_client import StoreUnavailable
from tests.support.cvat import call_function, continue_body, function_instance, start_body
from tests.support.redis_cluster import RedisCluster
from tests.support.synthetic import random_object_state, random_step


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


def cluster_store(cluster: RedisCluster) -> RedisStateStore:
    node = cluster.nodes[0]
    cfg = StoreConfig(redis_host="127.0.0.1", redis_port=node.port, redis_cluster=True, ttl_seconds=600)
    store = store_from_config(cfg)
    assert isinstance(store, RedisStateStore) and "Redis Cluster" in store.describe()
    return store


def small_state(seed: int):
    return random_object_state(seed, side=8, video_size=(240, 320))


def test_a_start_of_many_objects_spreads_over_every_master_and_each_object_keeps_one_slot(cluster):
    store = cluster_store(cluster)
    saved = store.save([Update(small_state(seed), "mask") for seed in range(32)])
    for step in range(1, 9):  # past the memory bank, so that pieces are refreshed and deleted too
        loaded = store.load([s.token for s in saved])
        saved = store.save(
            [Update(random_step(s.state, step * 100 + i), "mask", s) for i, s in enumerate(loaded)]
        )
    per_master = [node.client().dbsize() for node in cluster.nodes]
    assert all(count > 0 for count in per_master), per_master
    for stored in saved:  # all of an object's pieces, across its versions, on one master
        keys = store.keys_of(stored)
        keys = [keys.head, *keys.pieces]
        assert len({cluster.node_holding(key).port for key in keys}) == 1
    fresh = cluster_store(cluster)  # another worker: everything read from the cluster
    for stored, back in zip(saved, fresh.load([s.token for s in saved]), strict=True):
        assert back.state.step == stored.state.step == 8


def test_two_workers_alternating_frames_give_the_masks_of_one_process(
    checkpoint, cluster, images, start_shapes, expected
):
    workers = [function_instance(checkpoint, **cluster.env()) for _ in range(2)]
    status, body = call_function(workers[0], start_body(images[0], start_shapes))
    assert status == 200
    for index in range(1, len(images)):
        status, body = call_function(workers[index % 2], continue_body(images[index], body["states"]))
        assert status == 200, body
        assert [s["points"] for s in body["shapes"]] == list(expected[index - 1])


def test_a_cluster_down_at_start_up_does_not_stop_the_function(checkpoint, images, start_shapes):
    """The cluster client connects on first use: init_context succeeds, calls answer 503."""
    env = {"CVAT_FUNCTIONS_REDIS_HOST": "127.0.0.1", "CVAT_FUNCTIONS_REDIS_PORT": "1"}
    worker = function_instance(checkpoint, **env, CVAT_FUNCTIONS_REDIS_CLUSTER="1")
    status, answer = call_function(worker, start_body(images[0], start_shapes))
    assert status == 503 and "Redis Cluster at 127.0.0.1:1 is unavailable" in answer["error"]


def test_a_master_stopped_mid_session_is_503_then_the_session_continues_or_is_404(
    checkpoint, cluster, images, start_shapes
):
    worker = function_instance(checkpoint, **cluster.env())
    status, body = call_function(worker, start_body(images[0], start_shapes[:1]))
    assert status == 200
    (token,) = body["states"]
    store = cluster_store(cluster)
    master = cluster.node_holding(store.keys_of(store.load([token])[0]).head)
    master.stop()
    try:
        status, answer = call_function(worker, continue_body(images[1], body["states"]))
        assert status == 503
        assert "the tracking state store is unavailable" in answer["error"]
        assert "Redis Cluster" in answer["error"]
    finally:
        master.start()
        cluster.wait_until_ok()
    status, answer = call_function(worker, continue_body(images[1], body["states"]))
    assert status in (200, 404), answer
    if status == 404:  # the master came back empty (no persistence here)
        assert "re-run the tracker" in answer["error"]


def test_cluster_errors_are_store_unavailable_never_a_crash(cluster):
    store = cluster_store(cluster)
    (stored,) = store.save([Update(small_state(1), "mask")])
    for node in cluster.nodes:
        node.stop()
    try:
        with pytest.raises(StoreUnavailable, match=r"Redis Cluster at .* is unavailable"):
            store.load([stored.token])
    finally:
        for node in cluster.nodes:
            node.start()
        cluster.wait_until_ok()
    with pytest.raises((UnknownState, StoreUnavailable)):
        store.load([stored.token])
