"""Switching sam2's modules to our subclasses in place, and the constants those subclasses keep.

The model is built by sam2's own builder and checkpoint loader (model_loading.py); our faster versions
of some of its modules are subclasses that add no parameters or buffers, so switching an instance's
class keeps its weights, its place in the module tree and everything the checkpoint loaded. A subclass
that keeps something of its own sets it up in `adopt`, which the switch calls (no `__init__` runs).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch


def switch_classes(root: torch.nn.Module, replacements: dict[type, type]) -> int:
    """Give every module inside `root` whose exact class is a key of `replacements` the class it maps
    to; returns how many were switched."""
    switched = 0
    for module in root.modules():
        replacement = replacements.get(type(module))
        if replacement is not None:
            module.__class__ = replacement
            adopt = getattr(module, "adopt", None)
            if adopt is not None:
                adopt()
            switched += 1
    return switched


class PerSizeConstants:
    """Values that depend only on a module's weights and the size of its input (position encodings),
    kept so that a frame does not compute them again.

    They live on the module they belong to, keyed by what they depend on besides the weights (size,
    device, dtype). Every thread that uses the model shares them: an entry is computed from constants,
    so two threads that compute the same entry at once store equal values, and no entry changes once
    stored. torch does not see them (they are neither parameters nor buffers): the module empties them
    whenever torch moves or casts it (`.to()`, `.cuda()`, `.bfloat16()` all go through `_apply`).
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        value = self._values.get(key)
        if value is None:
            value = self._values[key] = compute()
        return value

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)


class KeepsPerSizeConstants(torch.nn.Module):
    """A switched-in module with `PerSizeConstants`, emptied when torch moves or casts the module."""

    constants: PerSizeConstants

    def adopt(self) -> None:
        self.constants = PerSizeConstants()

    def _apply(self, fn, recurse=True):
        self.constants.clear()
        return super()._apply(fn, recurse)
