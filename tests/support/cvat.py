"""Requests as CVAT's lambda manager sends them, and the function's environment for tests."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.models import SMALL, fastest_precision

# Environment variables the function reads; hidden from a function a test starts with its own.
FUNCTION_SETTINGS = ("SAM2_", "CVAT_FUNCTIONS_REDIS")
FRAMES = 7  # the start call and 6 continue calls of the shared session


def function_env(checkpoint: Path, **extra: str) -> dict[str, str]:
    """The function at 512 input on the CPU, in this machine's faster precision (see
    tests/support/models.py), with the default hole filling."""
    return {
        "SAM2_CHECKPOINT": str(checkpoint),
        "SAM2_DEVICE": "cpu",
        "SAM2_PRECISION": fastest_precision(),
        "SAM2_MODEL_OVERRIDES": " ".join(SMALL),
        **extra,
    }


@contextlib.contextmanager
def function_environment(checkpoint: Path, **extra: str):
    """The process environment of a function started with `function_env` and no Redis (unless
    `extra` names one); other SAM2_* and Redis settings of the test process are hidden."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(FUNCTION_SETTINGS)]:
            patch.delenv(name)
        for name, value in function_env(checkpoint, **extra).items():
            patch.setenv(name, value)
        yield


def function_instance(checkpoint: Path, **extra: str):
    """A function instance (nuclio-sdk test platform) whose `init_context` ran in
    `function_environment(checkpoint, **extra)`, on its first call (an empty request, refused); the
    `App` its context holds is `.app`."""
    import nuclio_sdk
    from nuclio_sdk.test import Platform

    import main

    contexts = []

    def keep(context):
        contexts.append(context)
        return context

    with function_environment(checkpoint, **extra):
        platform = Platform()
        response = platform.call_handler_with_context_mutation(main.handler, nuclio_sdk.Event(body=b""), keep)
    assert response.status_code == 400
    platform.app = contexts[0].user_data.app
    return platform


def call_function(platform, body: Any, content_type: str | None = None) -> tuple[int, dict[str, Any]]:
    """One call of the Nuclio handler as nuclio-sdk's platform delivers it: (status, answer). Every
    answer, error or not, is JSON."""
    import nuclio_sdk

    import main

    response = platform.call_handler(main.handler, nuclio_sdk.Event(body=body, content_type=content_type))
    assert response.content_type == "application/json"
    return response.status_code, json.loads(response.body)


def encode_image(frame: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt, quality=92)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def start_body(image: bytes, shapes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": b64(image), "shapes": shapes, "states": []}


def continue_body(image: bytes, states: list[str]) -> dict[str, Any]:
    return {"image": b64(image), "shapes": [None] * len(states), "states": states}


# ---- what CVAT's server does with our states between calls ------------------------------------

FUNCTION_ID = "pth-facebookresearch-sam2-tracker"  # metadata.name in function*.yaml
STATE_MAX_AGE = timedelta(hours=8)


def _cvat_signer():
    """Django's TimestampSigner with the salt CVAT's lambda manager uses for tracker states."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="cvat-test-secret-key")
    from django.core.signing import TimestampSigner

    return TimestampSigner(salt=f"cvat-tracker-state:{FUNCTION_ID}")


def cvat_signs(states: list[Any]) -> list[str]:
    """What CVAT hands the browser for the function's states (signed compact JSON)."""
    signer = _cvat_signer()
    return [signer.sign(json.dumps(state, separators=(",", ":"))) for state in states]


def cvat_unsigns(signed: list[str]) -> list[Any]:
    """What CVAT sends the function back on the next call (checked, at most 8 hours old)."""
    signer = _cvat_signer()
    return [None if s is None else json.loads(signer.unsign(s, max_age=STATE_MAX_AGE)) for s in signed]
