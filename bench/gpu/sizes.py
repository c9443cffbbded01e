"""How big each measurement is: the real GPU run, and the CPU smoke that runs the same code small."""

from __future__ import annotations

from dataclasses import dataclass, field

CONFIGS = {
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
}


@dataclass(frozen=True)
class Guesses:
    """Seconds assumed for the parts of the run before the run has measured them (budget.py refines
    them): a whole call and an official frame as `per frame + objects x per object`, building a
    function, making a checkpoint, compiling."""

    call: dict[str, tuple[float, float]]
    official: dict[str, tuple[float, float]]
    load_s: dict[str, float]
    checkpoint_s: dict[str, float]
    compile_s: dict[str, float]
    png_s: float  # one frame written as PNG, on one core


@dataclass(frozen=True)
class Sizes:
    mode: str  # "gpu" or "smoke"
    device: str  # SAM2_DEVICE of every function: "cuda" or "cpu"
    configs: tuple[str, ...]  # keys of CONFIGS, most important first
    overrides: tuple[str, ...]  # hydra overrides of every model (none: the 1024 input)
    # torch threads of this process and SAM2_CPU_THREADS of every function; 0 = the function's default
    # (on a shared 2-core CI machine, one thread each keeps the smoke's processes off each other)
    cpu_threads: int
    frame_size: tuple[int, int]  # (height, width) of the PNG frames
    object_counts: tuple[int, ...]
    warmup_calls: int  # the start call and the calls that fill the memory bank (6 frames)
    measured_calls: int
    # concurrency: annotators against worker processes
    concurrency_config: str
    workers: tuple[int, ...]
    annotators: tuple[int, ...]
    annotator_objects: int
    annotator_calls: int  # measured calls per annotator, after the warm-up calls
    # memory over one long session
    memory_config: str
    memory_objects: int
    memory_calls: int
    memory_every: int
    distinct_frames: int  # frames the long session cycles through (more than the feature cache holds)
    feature_cache_mb: int | None  # SAM2_FEATURE_CACHE_MB of the long session; None = the default
    cold_start_configs: tuple[str, ...]
    variant_config: str
    compile_configs: tuple[str, ...]
    compile_backend: str  # torch.compile's backend: inductor on a GPU, dynamo alone ("eager") on the CPU
    batching_counts: tuple[int, ...]
    guesses: Guesses = field(repr=False)

    @property
    def steady_from(self) -> int:
        """Index of the first call whose objects continue with a full memory bank."""
        return self.warmup_calls

    @property
    def session_calls(self) -> int:
        return self.warmup_calls + self.measured_calls


GPU = Sizes(
    mode="gpu",
    device="cuda",
    configs=("large", "tiny"),
    overrides=(),
    cpu_threads=0,
    frame_size=(1080, 1920),
    object_counts=(1, 3, 10, 30),
    warmup_calls=7,
    measured_calls=6,
    concurrency_config="large",
    workers=(1, 2, 4),
    annotators=(1, 2, 4, 8),
    annotator_objects=3,
    annotator_calls=4,
    memory_config="large",
    memory_objects=3,
    memory_calls=300,
    memory_every=25,
    distinct_frames=40,
    feature_cache_mb=None,
    cold_start_configs=("large", "tiny"),
    variant_config="large",
    compile_configs=("tiny", "large"),
    compile_backend="inductor",
    batching_counts=(3, 10, 30),
    guesses=Guesses(
        call={"large": (0.08, 0.012), "tiny": (0.05, 0.006)},
        official={"large": (0.05, 0.01), "tiny": (0.02, 0.004)},
        load_s={"large": 20.0, "tiny": 10.0},
        checkpoint_s={"large": 15.0, "tiny": 4.0},
        compile_s={"large": 150.0, "tiny": 70.0},
        png_s=0.6,
    ),
)

SMOKE = Sizes(
    mode="smoke",
    device="cpu",
    configs=("tiny",),
    overrides=("++model.image_size=256",),
    cpu_threads=1,
    frame_size=(64, 64),
    object_counts=(1, 2),
    warmup_calls=2,  # not a full memory bank: the smoke checks the outputs, not the figures
    measured_calls=2,
    concurrency_config="tiny",
    workers=(1, 2),
    annotators=(1, 2),
    annotator_objects=1,
    annotator_calls=2,
    memory_config="tiny",
    memory_objects=1,
    memory_calls=12,
    memory_every=4,
    distinct_frames=10,
    feature_cache_mb=2,
    cold_start_configs=("tiny",),
    variant_config="tiny",
    compile_configs=("tiny",),
    compile_backend="eager",
    batching_counts=(2,),
    guesses=Guesses(
        call={"tiny": (0.1, 0.06)},
        official={"tiny": (0.08, 0.06)},
        load_s={"tiny": 8.0},
        checkpoint_s={"tiny": 4.0},
        compile_s={"tiny": 25.0},
        png_s=0.001,
    ),
)
