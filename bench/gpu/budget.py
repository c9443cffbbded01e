"""The run's time budget: what is left, and whether a part of the run is expected to fit in it.

A lent GPU gives minutes in all, so every part of the run (a checkpoint, an object count, a cell of
the concurrency grid, a variant) is estimated before it starts; a part whose estimate does not fit in
what is left is skipped and recorded as skipped, so that the parts after it (cheaper ones, or the
next step) still get their turn. Estimates start from `sizes.Guesses` and are replaced by what the
run measures (`learn_call`, `learn_load`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.gpu.sizes import Guesses


@dataclass
class Budget:
    total_s: float
    began: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def refusal(self, estimate_s: float) -> str | None:
        """Why a part estimated at `estimate_s` seconds must be skipped, or None when it fits."""
        left = self.left()
        if estimate_s <= left:
            return None
        return f"estimated {estimate_s:.0f} s, {max(left, 0):.0f} s left of the {self.total_s:.0f} s budget"


@dataclass
class Estimates:
    """Seconds expected for the parts of the run: the guesses until the run has measured them."""

    guesses: Guesses
    rates: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    load_s: dict[str, float] = field(default_factory=dict)
    made: set[str] = field(default_factory=set)  # configs whose checkpoint exists

    def call_s(self, config: str, objects: int) -> float:
        """One whole call of our function with `objects` objects."""
        return self._linear("call", config, objects)

    def official_s(self, config: str, objects: int) -> float:
        """One frame of the official predictor with `objects` objects."""
        return self._linear("official", config, objects)

    def _linear(self, kind: str, config: str, objects: int) -> float:
        per_frame, per_object = self.rates.get((kind, config)) or getattr(self.guesses, kind)[config]
        return per_frame + objects * per_object

    def function_s(self, config: str) -> float:
        """A function built (in this process or as a worker process), its checkpoint made if needed."""
        checkpoint = 0.0 if config in self.made else self.guesses.checkpoint_s[config]
        return checkpoint + self.load_s.get(config, self.guesses.load_s[config])

    def pngs_s(self, frames: int, cores: int) -> float:
        return self.guesses.png_s * frames / max(cores, 1) + 1.0

    def compile_s(self, config: str) -> float:
        return self.guesses.compile_s[config]

    def learn(self, kind: str, config: str, per_frame_s: float, per_object_s: float) -> None:
        """`kind` "call" or "official": seconds measured per frame and per object."""
        self.rates[(kind, config)] = (max(per_frame_s, 0.0), max(per_object_s, 0.0))

    def learn_load(self, config: str, seconds: float) -> None:
        self.load_s[config] = seconds
