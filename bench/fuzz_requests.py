"""Throw many hostile or broken requests at one function instance (tests/request_strategies.py):
every answer must be a 200 or a 4xx JSON error with a sentence, never a 500, and the function must
still track correctly afterwards.

    .venv/bin/python -m bench.fuzz_requests [--examples 10000]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nuclio_sdk
from hypothesis import HealthCheck, given, settings
from nuclio_sdk.test import Platform

from tests.support.cvat import continue_body, encode_image, function_env, start_body
from tests.support.request_strategies import raw_bodies
from tests.support.synthetic import moving_objects_scene, write_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10000)
    args = parser.parse_args()
    checkpoint = write_checkpoint(Path(tempfile.mkdtemp(prefix="sam2-fuzz-")) / "random.pt")
    os.environ.update(function_env(checkpoint))
    os.environ.pop("CVAT_FUNCTIONS_REDIS_HOST", None)
    import main as function

    platform = Platform()

    def call(body, content_type="application/json"):
        response = platform.call_handler(
            function.handler, nuclio_sdk.Event(body=body, content_type=content_type)
        )
        return response.status_code, json.loads(response.body)

    statuses: collections.Counter = collections.Counter()
    failures = []

    @settings(
        max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(raw_bodies)
    def fuzz(kind_and_body):
        kind, body = kind_and_body
        status, answer = call(body, "application/json" if kind == "json" else "text/plain")
        statuses[status] += 1
        ok = status in (200, 400, 404, 413) and (
            status == 200 or (isinstance(answer.get("error"), str) and "Traceback" not in answer["error"])
        )
        if not ok and len(failures) < 20:
            failures.append((status, answer, repr(body)[:300]))

    started = time.perf_counter()
    fuzz()
    seconds = time.perf_counter() - started

    scene = moving_objects_scene(3, seed=7)
    images = [encode_image(frame) for frame in scene.frames]
    from shape_codecs import mask_to_rle

    status, body = call(start_body(images[0], [{"type": "mask", "points": mask_to_rle(scene.masks[0][0])}]))
    still_tracks = status == 200
    for image in images[1:]:
        status, body = call(continue_body(image, body["states"]))
        still_tracks = still_tracks and status == 200 and body["shapes"][0] is not None

    report = {
        "examples": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "failures": failures,
        "seconds": round(seconds),
        "still_tracks": still_tracks,
    }
    print(json.dumps(report, indent=2, default=str))
    return 0 if not failures and still_tracks and 500 not in statuses else 1


if __name__ == "__main__":
    sys.exit(main())
