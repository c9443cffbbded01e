"""What every measurement gets: the sizes, the budget and its estimates, the workspace, the output
folder, and the inputs made once and shared."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.gpu.budget import Budget, Estimates
from bench.gpu.inputs import Video, Workspace, grid_video
from bench.gpu.output import Measurement
from bench.gpu.sizes import Sizes


@dataclass
class Context:
    sizes: Sizes
    budget: Budget
    estimates: Estimates
    workspace: Workspace
    folder: Path
    _videos: dict[tuple[int, int, int], Video] = field(default_factory=dict)
    _pngs: dict[tuple[int, int, int], list[bytes]] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return torch.device(self.sizes.device)

    def measurement(self, order: int, name: str, title: str) -> Measurement:
        return Measurement(self.folder, order, name, title, self.sizes.mode)

    def video(self, frames: int, objects: int, seed: int, period: int = 0) -> Video:
        key = (frames, objects, seed)
        if key not in self._videos:
            self._videos[key] = grid_video(frames, self.sizes.frame_size, objects, seed, period)
        return self._videos[key]

    def pngs(self, frames: int, objects: int, seed: int, period: int = 0) -> list[bytes]:
        key = (frames, objects, seed)
        if key not in self._pngs:
            self._pngs[key] = self.video(frames, objects, seed, period).pngs()
        return self._pngs[key]

    def count_video(self, objects: int) -> Video:
        """The video of one object count of the per-frame comparison: a session's frames, its own
        pixels (a function's feature cache never serves one count the frames of another)."""
        return self.video(self.sizes.session_calls, objects, seed=10 + objects)

    def count_pngs(self, objects: int) -> list[bytes]:
        return self.pngs(self.sizes.session_calls, objects, seed=10 + objects)

    def session_video(self) -> Video:
        """The video of the variants: the per-frame comparison's with the most objects."""
        return self.count_video(max(self.sizes.object_counts))

    def session_pngs(self) -> list[bytes]:
        return self.count_pngs(max(self.sizes.object_counts))
