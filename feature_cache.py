"""Encoded frames kept in this process, so that a frame encoded once is not encoded again.

CVAT's answer to drift is a re-run: the annotator corrects the shape on frame K and tracks again from K,
or tracks a frame's objects one after another. Each such pass sends frames the function has already
encoded, and the image encoder is a third of a one-object call on the CPU (more of it for large models on
a GPU). SAM2's own predictor keeps `cached_features` for the same reason.

The key is what the encoder sees: the decoded picture's pixels (hashed with its shape), the model
fingerprint and the input size; never the request's bytes, so a PNG and a JPEG of the same picture
differ only when their pixels do, and two models never share an entry. The value is the encoder's output
on the device the model runs on, so a hit gives the same bits as a miss. Entries go least recently used
first once the bound (SAM2_FEATURE_CACHE_MB) is reached; 0 turns the cache off.

Not in the state store: one frame's features are megabytes (about 8 MB at 1024 input for hiera tiny),
where a step stores half a megabyte per object; docs/performance.md has the figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bounded_lru import BoundedLru


@dataclass(frozen=True)
class EncodedFeatures:
    """The image encoder's output for one picture, as the tracker uses it."""

    vision_feats: tuple[torch.Tensor, ...]
    vision_pos: tuple[torch.Tensor, ...]
    feat_sizes: tuple[tuple[int, int], ...]

    @property
    def nbytes(self) -> int:
        return _tensor_bytes((*self.vision_feats, *self.vision_pos))


def _tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes held, counting a storage shared by several tensors once."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def picture_key(pixels: np.ndarray, fingerprint: str, input_size: int) -> bytes:
    """What identifies an encoder input: the pixels and their layout, the model and its input size."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"{fingerprint}|{input_size}|{pixels.shape}|{pixels.dtype}|".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.digest()


class FeatureCache:
    """Least-recently-used encoded frames, at most `capacity_bytes` of them; shared by the threads of a
    process (a lock guards the index, never an encode). Counts its hits and misses."""

    def __init__(self, capacity_bytes: int):
        self._frames: BoundedLru[EncodedFeatures] = BoundedLru(capacity_bytes)
        self.hits = 0
        self.misses = 0

    @property
    def capacity_bytes(self) -> int:
        return self._frames.capacity

    @property
    def size_bytes(self) -> int:
        return self._frames.size_bytes

    def get(self, key: bytes) -> EncodedFeatures | None:
        found = self._frames.get(key) if self.capacity_bytes > 0 else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: bytes, features: EncodedFeatures) -> None:
        if self.capacity_bytes > 0:
            self._frames.put(key, features, features.nbytes)

    def __len__(self) -> int:
        return len(self._frames)

    def describe(self) -> str:
        return f"{self.capacity_bytes / 2**20:.0f} MB" if self.capacity_bytes > 0 else "off"
