"""The local HTTP server: the same handler over real HTTP, as users run it (python -m local_server)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.support.cvat import FRAMES, continue_body, start_body
from tests.support.server_process import post


def test_health_check(server_url):
    with urllib.request.urlopen(server_url) as response:
        info = json.loads(response.read())
    assert info["ready"] is True and info["store"] == "in-process memory"


def test_session_over_http_equals_the_tracker_core(server_url, images, start_shapes, expected):
    status, body = post(server_url, start_body(images[0], start_shapes))
    assert status == 200
    states = body["states"]
    for index in range(1, FRAMES):
        status, body = post(server_url, continue_body(images[index], states))
        assert status == 200, body
        assert body["shapes"][0]["points"] == expected[index - 1][0]
        assert body["shapes"][1]["points"] == expected[index - 1][1]
        states = body["states"]


def test_errors_over_http(server_url, images):
    assert post(server_url, b"{oops")[0] == 400
    assert post(server_url, b"{oops", content_type="text/plain")[0] == 400
    status, body = post(server_url, continue_body(images[0], ["v2." + "B" * 11 + "." + "B" * 22]))
    assert status == 404 and "re-run the tracker" in body["error"]
