"""Bad input, store faults, replicas and races: the function keeps answering, and answers right."""

from __future__ import annotations

import json
import os
import pickle
import threading

import nuclio_sdk
import pytest
from hypothesis import HealthCheck, given, settings
from nuclio_sdk.test import Platform

import main
from state_store import RedisStateStore
from tests.support.cvat import FRAMES, b64, continue_body, function_env, function_instance, start_body
from tests.support.redis_server import RedisServer
from tests.support.request_strategies import VALID_IMAGE, raw_bodies
from tests.support.server_process import LocalServer, post, run_benchmark

ANSWERS = {200, 400, 404, 413}


def call(platform: Platform, body, content_type="application/json") -> tuple[int, dict]:
    response = platform.call_handler(main.handler, nuclio_sdk.Event(body=body, content_type=content_type))
    assert response.content_type == "application/json"
    return response.status_code, json.loads(response.body)


@pytest.fixture(scope="module")
def fuzzed(checkpoint):
    return function_instance(checkpoint)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(raw_bodies)
def test_any_request_gets_a_clear_answer_never_a_500(fuzzed, kind_and_body):
    kind, body = kind_and_body
    status, answer = call(fuzzed, body, "application/json" if kind == "json" else "text/plain")
    assert status in ANSWERS, answer
    if status != 200:
        message = answer["error"]
        assert isinstance(message, str) and 10 < len(message) < 600
        assert "Traceback" not in message and 'File "' not in message
    else:
        assert len(answer["shapes"]) == len(answer["states"])


def test_the_function_still_tracks_right_after_the_fuzzing(fuzzed, images, start_shapes, expected):
    """Runs after the fuzzing above, on the same function instance."""
    status, body = call(fuzzed, start_body(images[0], start_shapes))
    assert status == 200
    for index in range(1, 3):
        status, body = call(fuzzed, continue_body(images[index], body["states"]))
        assert status == 200
        assert [s["points"] for s in body["shapes"]] == list(expected[index - 1])


def test_the_same_state_twice_gives_the_same_answer_and_both_continue(
    checkpoint, redis_server, images, start_shapes, expected
):
    replicas = [function_instance(checkpoint, **redis_server.env()) for _ in range(2)]
    _, body = call(replicas[0], start_body(images[0], start_shapes))
    first = call(replicas[0], continue_body(images[1], body["states"]))
    retry = call(replicas[1], continue_body(images[1], body["states"]))  # a retry, on another replica
    assert first[0] == retry[0] == 200
    assert first[1]["shapes"] == retry[1]["shapes"]
    assert first[1]["states"] != retry[1]["states"]  # two versions, neither corrupts the other
    for branch in (first[1], retry[1]):
        status, answer = call(replicas[0], continue_body(images[2], branch["states"]))
        assert status == 200
        assert [s["points"] for s in answer["shapes"]] == list(expected[1])


def test_racing_requests_on_the_same_state(checkpoint, redis_server, images, start_shapes, expected):
    replicas = [function_instance(checkpoint, **redis_server.env()) for _ in range(2)]
    _, body = call(replicas[0], start_body(images[0], start_shapes[:1]))
    answers = [None, None]

    def run(index):
        answers[index] = call(replicas[index], continue_body(images[1], body["states"]))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in answers)
    assert answers[0][1]["shapes"] == answers[1][1]["shapes"] == [{"type": "mask", "points": expected[0][0]}]


def test_planted_pickle_state_is_refused_and_never_executed(
    checkpoint, redis_server, images, start_shapes, tmp_path
):
    platform = function_instance(checkpoint, **redis_server.env())
    _, body = call(platform, start_body(images[0], start_shapes[:1]))
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    token = body["states"][0]
    store = RedisStateStore(redis_server.client())
    head_key = store.keys_of(store.load([token])[0]).head
    redis_server.client().set(head_key, pickle.dumps(Exploit()))
    status, answer = call(platform, continue_body(images[1], [token]))
    assert status == 400
    assert "corrupt" in answer["error"] and "re-run the tracker" in answer["error"]
    assert not marker.exists()


def test_state_of_another_model_is_refused(checkpoint, absent_checkpoint, redis_server, images, start_shapes):
    first = function_instance(checkpoint, **redis_server.env())
    other = function_instance(absent_checkpoint, **redis_server.env())
    _, body = call(first, start_body(images[0], start_shapes[:1]))
    status, answer = call(other, continue_body(images[1], body["states"]))
    assert status == 400
    assert "another SAM2 model" in answer["error"] and "re-run the tracker" in answer["error"]
    assert call(first, continue_body(images[1], body["states"]))[0] == 200


def test_password_redis_works_with_the_password_and_fails_clearly_without(
    checkpoint, tmp_path, images, start_shapes, capsys
):
    server = RedisServer(tmp_path, password="hunter2-secret").start()
    try:
        good = function_instance(checkpoint, **server.env())
        status, body = call(good, start_body(images[0], start_shapes[:1]))
        assert status == 200
        assert call(good, continue_body(images[1], body["states"]))[0] == 200

        bad = function_instance(checkpoint, **server.env(with_password=False))
        status, answer = call(bad, start_body(images[0], start_shapes[:1]))
        assert status == 503
        assert "CVAT_FUNCTIONS_REDIS_PASSWORD" in answer["error"]
    finally:
        server.stop()
    output = capsys.readouterr()
    assert "hunter2-secret" not in output.out + output.err


def test_two_processes_sharing_redis_give_the_output_of_one(
    checkpoint, redis_server, images, start_shapes, expected
):
    env = {**function_env(checkpoint), **redis_server.env()}
    with LocalServer(env) as first, LocalServer(env) as second:
        urls = [first.url, second.url]
        status, body = post(urls[0], start_body(images[0], start_shapes))
        assert status == 200
        for index in range(1, FRAMES):
            status, body = post(urls[index % 2], continue_body(images[index], body["states"]))
            assert status == 200
            assert [s["points"] for s in body["shapes"]] == list(expected[index - 1])


def test_concurrent_sessions_through_one_server_do_not_mix():
    """A small run of bench/concurrent_sessions.py: 3 sessions x 4 frames, 2 workers."""
    report = run_benchmark("concurrent_sessions", "--sessions", "3", "--frames", "4", "--workers", "2")
    assert report["mismatches"] == 0 and report["errors"] == 0
    assert report["frames_answered"] == 3 * 4


def test_limits_are_enforced_with_a_sentence(checkpoint):
    platform = function_instance(
        checkpoint,
        SAM2_MAX_OBJECTS="2",
        SAM2_MAX_IMAGE_PIXELS="1000",
        SAM2_MAX_REQUEST_BYTES="20000",
        SAM2_MAX_POLYGON_POINTS="3",
    )
    image = b64(VALID_IMAGE)
    polygon = {"type": "polygon", "points": [1, 1, 10, 1, 10, 10]}
    status, answer = call(platform, {"image": image, "shapes": [polygon] * 3})
    assert status == 400 and "3 objects in one call; the limit is 2 (SAM2_MAX_OBJECTS)" in answer["error"]
    status, answer = call(platform, {"image": image, "shapes": [{**polygon, "points": [1, 1] * 4}]})
    assert status == 400 and "4 vertices; the limit is 3" in answer["error"]
    status, answer = call(platform, {"image": image, "shapes": [polygon]})
    assert status == 400 and "48x32 (1536 pixels); the limit is 1000 pixels" in answer["error"]
    status, answer = call(platform, json.dumps({"image": image, "pad": "x" * 25000}).encode(), "text/plain")
    assert status == 413 and "SAM2_MAX_REQUEST_BYTES" in answer["error"]
