"""What a user meets when something is wrong, through CVAT: another user's task, a bad shape, a state
tampered with, the function's state store gone and back. CVAT passes on only the function's HTTP
status (its message is CVAT's own), so the function's log must say why."""

from __future__ import annotations

import json
import re
import time

from e2e.client import call_tracker, init_tracking, put_shapes, run_session, track
from e2e.tests.test_tracking import signed_tokens, start_shapes


def test_another_user_gets_403_on_the_task_and_on_the_tracker(stack, owner, stranger, scene, video_job):
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, start_shapes(scene))
        own = call_tracker(client, init_tracking(video_job, 0, shapes))
    assert own.status == 200
    calls = len(stack.nuclio.trigger.calls)
    with stranger.client(stack.url) as client:
        _, response = client.api_client.tasks_api.retrieve(
            video_job.task_id, _parse_response=False, _check_status=False
        )
        assert response.status == 403
        assert call_tracker(client, init_tracking(video_job, 0, shapes)).status == 403
        assert call_tracker(client, track(video_job, 1, own.states)).status == 403
    assert len(stack.nuclio.trigger.calls) == calls  # refused by CVAT's policies: the function saw nothing


def test_a_bad_shape_is_a_400_and_the_function_s_log_says_why(stack, owner, video_job):
    two_points = {"type": "polygon", "points": [10.0, 10.0, 50.0, 50.0]}
    with owner.client(stack.url) as client:
        answer = call_tracker(client, init_tracking(video_job, 0, [two_points]))
    assert answer.status == 400
    # CVAT's own words (requests' HTTPError), not ours
    assert "400 Client Error" in str(answer.body)
    assert "polygon" not in str(answer.body)
    assert stack.nuclio.wait_for_log("shapes[0]: a polygon needs at least 3 points")


def test_a_state_tampered_with_is_refused_by_cvat(stack, owner, scene, video_job):
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, start_shapes(scene))
        (start,) = run_session(client, video_job, [0], shapes)
        calls = len(stack.nuclio.trigger.calls)
        value, timestamp, signature = start.states[0].rsplit(":", 2)
        forged = value.replace('"v2.', '"v2.x')
        for tampered in (f"{forged}:{timestamp}:{signature}", f"{value}:{timestamp}:{signature[:-2]}xx"):
            answer = call_tracker(client, track(video_job, 1, [tampered, start.states[1]]))
            assert answer.status == 400
            assert "Invalid or expired tracker state" in str(answer.body)
        assert len(stack.nuclio.trigger.calls) == calls  # CVAT checks its signature before calling
        assert call_tracker(client, track(video_job, 1, start.states)).status == 200


def test_the_store_down_is_a_503_and_the_session_continues_once_it_is_back(stack, owner, scene, video_job):
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, start_shapes(scene))
        answers = run_session(client, video_job, [0, 1], shapes)
        assert [a.status for a in answers] == [200, 200]
        stack.function_store.stop()
        try:
            down = call_tracker(client, track(video_job, 2, answers[-1].states))
        finally:
            stack.function_store.start()
        assert down.status == 503
        assert stack.nuclio.wait_for_log("the tracking state store is unavailable")
        back = call_tracker(client, track(video_job, 2, answers[-1].states))
        assert back.status == 200
        reference = run_session(client, video_job, [0, 1, 2], shapes)
    assert back.shapes == reference[-1].shapes


def cvat_signer(stack):
    """The signer CVAT's lambda manager uses for this function's states, with the stack's own secret key
    (CVAT's keys/secret_key.py, made at its first start)."""
    from django.conf import settings
    from django.core.signing import TimestampSigner

    secret = re.search(r"SECRET_KEY = '(.+)'", (stack.work / "keys" / "secret_key.py").read_text()).group(1)
    if not settings.configured:
        settings.configure()
    return TimestampSigner(key=secret, salt="cvat-tracker-state:pth-facebookresearch-sam2-tracker")


def signed_at(signer, token: str, when: float) -> str:
    """`token` signed as CVAT signs states (compact JSON), with the time of signing set to `when`."""
    from django.core.signing import Signer, b62_encode

    value = json.dumps(token, separators=(",", ":"))
    return Signer.sign(signer, f"{value}{signer.sep}{b62_encode(int(when))}")


def test_cvat_expires_states_after_8_hours(stack, owner, scene, video_job):
    with owner.client(stack.url) as client:
        shapes = put_shapes(client, video_job, 0, start_shapes(scene))
        (start,) = run_session(client, video_job, [0], shapes)
        signer = cvat_signer(stack)
        tokens = signed_tokens(start.states)
        assert [json.loads(signer.unsign(state)) for state in start.states] == tokens  # CVAT's key and salt
        old = [signed_at(signer, t, time.time() - 8 * 3600 - 60) for t in tokens]
        answer = call_tracker(client, track(video_job, 1, old))
        assert answer.status == 400
        assert "Invalid or expired tracker state" in str(answer.body)
        almost = [signed_at(signer, t, time.time() - 8 * 3600 + 60) for t in tokens]
        assert call_tracker(client, track(video_job, 1, almost)).status == 200
