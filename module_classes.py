"""Switching sam2's modules to our subclasses in place.

The model is built by sam2's own builder and checkpoint loader (model_loading.py); our faster versions
of some of its modules are subclasses that add no parameters or buffers, so switching an instance's
class keeps its weights, its place in the module tree and everything the checkpoint loaded.
"""

from __future__ import annotations

import torch


def switch_classes(root: torch.nn.Module, replacements: dict[type, type]) -> int:
    """Give every module inside `root` whose exact class is a key of `replacements` the class it maps
    to; returns how many were switched."""
    switched = 0
    for module in root.modules():
        replacement = replacements.get(type(module))
        if replacement is not None:
            module.__class__ = replacement
            switched += 1
    return switched
