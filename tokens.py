"""The state strings CVAT carries between calls: ``v2.<object tag>.<random 128-bit version>``.

A token names one stored version of an object's state; it holds no data, so what CVAT signs, stores
and sends back cannot be forged into a state. The object tag (64 random bits, the same for every
version of one object) is the Redis Cluster hash tag of all the object's keys, so one object's pieces
share a slot and are read and deleted together. Kept apart from the stores so that parsing a request
needs neither Redis nor torch.

``v1.`` tokens (no object tag) came from releases before the tag; their keys are not looked up.
"""

from __future__ import annotations

import re
import secrets

TOKEN_PATTERN = re.compile(r"v2\.([A-Za-z0-9_-]{11})\.[A-Za-z0-9_-]{22}")
OLD_TOKEN_PATTERN = re.compile(r"v1\.[A-Za-z0-9_-]{22}")


def new_token(object_tag: str | None = None) -> str:
    """A new version of the object `object_tag`, or of a new object."""
    tag = object_tag if object_tag is not None else secrets.token_urlsafe(8)  # 64 random bits
    return f"v2.{tag}.{secrets.token_urlsafe(16)}"  # 128 random bits per version


def is_token(value: object) -> bool:
    return isinstance(value, str) and TOKEN_PATTERN.fullmatch(value) is not None


def is_old_token(value: object) -> bool:
    """A token of an earlier release, whose state this release cannot find."""
    return isinstance(value, str) and OLD_TOKEN_PATTERN.fullmatch(value) is not None


def object_tag(token: str) -> str:
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise ValueError("not a tracker token")
    return match.group(1)
