"""The state strings CVAT carries between calls: ``v1.<random 128-bit token>``, nothing else.

A token names an object's stored state; it holds no data, so what CVAT signs, stores and sends back
cannot be forged into a state. Kept apart from the stores so that parsing a request needs neither
Redis nor torch.
"""

from __future__ import annotations

import re
import secrets

TOKEN_PATTERN = re.compile(r"v1\.[A-Za-z0-9_-]{22}")


def new_token() -> str:
    return "v1." + secrets.token_urlsafe(16)  # 128 random bits


def is_token(value: object) -> bool:
    return isinstance(value, str) and TOKEN_PATTERN.fullmatch(value) is not None
