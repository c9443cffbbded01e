"""CVAT's default deployment: the state store is Kvrocks 2.7 (``cvat_redis_ondisk``), here its stand-in
(tests/support/kvrocks.py) in front of a real redis-server, reached through the Nuclio handler."""

from __future__ import annotations

import pytest
from cvat_sdk.masks import encode_mask

from shape_codecs import mask_to_polygon
from tests.support.cvat import call_function, continue_body, encode_image, function_instance, start_body
from tests.support.kvrocks import KVROCKS_2_7_COMMANDS, KvrocksStandIn
from tests.support.redis_server import RedisServer
from tests.support.synthetic import moving_objects_scene

SESSION_FRAMES = 10


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("kvrocks-backend")).start()
    yield server
    server.stop()


@pytest.fixture
def kvrocks(backend):
    backend.client().flushall()
    with KvrocksStandIn(backend.port) as standin:
        yield standin


@pytest.fixture(scope="module")
def session():
    """A 10-frame video with a mask and a polygon on its first frame, as CVAT sends them."""
    scene = moving_objects_scene(SESSION_FRAMES, seed=11)
    shapes = [
        {"type": "mask", "points": encode_mask(scene.masks[0][0])},
        {"type": "polygon", "points": mask_to_polygon(scene.masks[0][1], tolerance=1.0)},
    ]
    return [encode_image(frame, "PNG") for frame in scene.frames], shapes


def run_session(workers, images, shapes) -> list[tuple[int, dict]]:
    """Start on worker 0, then each frame on the next worker, as Nuclio spreads calls."""
    answers = [call_function(workers[0], start_body(images[0], shapes))]
    for index in range(1, len(images)):
        states = answers[-1][1]["states"]
        answers.append(call_function(workers[index % len(workers)], continue_body(images[index], states)))
    return answers


def test_default_deployment_session_on_two_workers_answers_200_on_every_call(checkpoint, kvrocks, session):
    """No password (CVAT's default), each worker's first call on a new connection included; the
    masks are those of one process keeping its states in memory."""
    images, shapes = session
    workers = [function_instance(checkpoint, **kvrocks.env()) for _ in range(2)]
    answers = run_session(workers, images, shapes)
    assert [status for status, _ in answers] == [200] * SESSION_FRAMES, answers
    alone = run_session([function_instance(checkpoint)], images, shapes)
    assert [body["shapes"] for _, body in answers] == [body["shapes"] for _, body in alone]
    assert all(shape is not None for _, body in answers for shape in body["shapes"])
    # everything the store sent is a command Kvrocks 2.7 has
    assert set(kvrocks.commands) <= KVROCKS_2_7_COMMANDS
    assert kvrocks.commands["hello"] == 0  # RESP2 on purpose: no handshake Kvrocks cannot answer


@pytest.mark.parametrize("spelling", ["invalid password", "Invalid password"])  # Kvrocks <=2.8, >=2.9
def test_wrong_password_is_503_and_the_log_names_the_setting(checkpoint, backend, session, spelling, capsys):
    images, shapes = session
    with KvrocksStandIn(backend.port, password="s3cret-pass", auth_error=spelling) as standin:
        wrong = function_instance(checkpoint, **standin.env(password="not-it"))
        capsys.readouterr()
        status, answer = call_function(wrong, start_body(images[0], shapes))
        assert status == 503
        assert "refused the password" in answer["error"]
        log = capsys.readouterr()
        line = [entry for entry in (log.out + log.err).splitlines() if "503" in entry]
        assert line and "CVAT_FUNCTIONS_REDIS_PASSWORD" in line[-1]

        missing = function_instance(checkpoint, **standin.env())
        status, answer = call_function(missing, start_body(images[0], shapes))
        assert status == 503 and "requires a password: set CVAT_FUNCTIONS_REDIS_PASSWORD" in answer["error"]

        right = function_instance(checkpoint, **standin.env(password="s3cret-pass"))
        status, body = call_function(right, start_body(images[0], shapes))
        assert status == 200
        assert call_function(right, continue_body(images[1], body["states"]))[0] == 200
    output = capsys.readouterr()
    assert "s3cret-pass" not in output.out + output.err and "not-it" not in output.out + output.err


def test_full_store_is_503_with_the_way_on_and_the_session_goes_on_once_there_is_room(
    checkpoint, kvrocks, session
):
    images, shapes = session
    worker = function_instance(checkpoint, **kvrocks.env())
    status, body = call_function(worker, start_body(images[0], shapes))
    assert status == 200
    kvrocks.full = True  # max-db-size reached: 2.7 refuses every write, DEL included
    status, answer = call_function(worker, continue_body(images[1], body["states"]))
    assert status == 503
    assert "is full" in answer["error"] and "max-db-size" in answer["error"]
    kvrocks.full = False
    status, again = call_function(worker, continue_body(images[1], body["states"]))  # the same call
    assert status == 200 and all(shape is not None for shape in again["shapes"])


def test_store_gone_is_503_and_the_session_continues_once_it_is_back(checkpoint, kvrocks, session):
    images, shapes = session
    workers = [function_instance(checkpoint, **kvrocks.env()) for _ in range(2)]
    status, body = call_function(workers[0], start_body(images[0], shapes))
    assert status == 200
    kvrocks.stop()
    for worker in workers:
        status, answer = call_function(worker, continue_body(images[1], body["states"]))
        assert status == 503 and "unavailable" in answer["error"]
    kvrocks.start()
    status, body = call_function(workers[1], continue_body(images[1], body["states"]))
    assert status == 200
    assert call_function(workers[0], continue_body(images[2], body["states"]))[0] == 200
