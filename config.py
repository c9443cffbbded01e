"""Configuration, parsed once from the environment (see the README's configuration table)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
CHECKPOINT_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
# Official SAM 2.1 checkpoint file for each config name.
CHECKPOINT_FILES = {
    "configs/sam2.1/sam2.1_hiera_t.yaml": "sam2.1_hiera_tiny.pt",
    "configs/sam2.1/sam2.1_hiera_s.yaml": "sam2.1_hiera_small.pt",
    "configs/sam2.1/sam2.1_hiera_b+.yaml": "sam2.1_hiera_base_plus.pt",
    "configs/sam2.1/sam2.1_hiera_l.yaml": "sam2.1_hiera_large.pt",
}
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = ("auto", "fp32", "bf16")


class ConfigError(Exception):
    """The function cannot start with this configuration; the message says what to change."""


def checkpoint_url(sam2_config: str) -> str | None:
    name = CHECKPOINT_FILES.get(sam2_config)
    return f"{CHECKPOINT_BASE_URL}/{name}" if name else None


def default_checkpoint(sam2_config: str) -> Path:
    name = CHECKPOINT_FILES.get(sam2_config, Path(sam2_config).stem + ".pt")
    return REPO_ROOT / "checkpoints" / name


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _device(env: Mapping[str, str]) -> str:
    value = env.get("SAM2_DEVICE", "").strip().lower() or "auto"
    if value in DEVICES[:3] or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ConfigError(f"SAM2_DEVICE={value!r} is not one of {', '.join(DEVICES)}")


def _parsed(env: Mapping[str, str], name: str, default, convert, what: str, minimum):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = convert(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if not value >= minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not one of 1, 0 (or true, false)")


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return _parsed(env, name, default, int, "an integer", minimum)


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    return _parsed(env, name, default, float, "a number", minimum)


@dataclass(frozen=True)
class TrackerConfig:
    """What builds the SAM2 tracker: model, weights, device and numeric precision."""

    sam2_config: str = DEFAULT_SAM2_CONFIG
    checkpoint: Path = field(default_factory=lambda: default_checkpoint(DEFAULT_SAM2_CONFIG))
    # auto: cuda when available, else cpu; cuda: worker i of n on GPU i mod n; cuda:N: GPU N (devices.py)
    device: str = "auto"
    # auto: bf16 autocast on CUDA; on a CPU, bf16 where its matrix products are measured faster than fp32
    precision: str = "auto"
    # Small background holes (in low-resolution mask pixels) filled in the output, as the official
    # predictor does with its CUDA extension (its default is 8); 0 turns it off.
    fill_hole_area: int = 8
    # Extra hydra overrides for the model (e.g. "++model.image_size=512"); part of the model fingerprint.
    model_overrides: tuple[str, ...] = ()
    # torch threads on the CPU; 0 = the cores this process may use (CPU affinity and cgroup CPU limit)
    cpu_threads: int = 0
    # Attention as chunked bf16 matmuls (fast_attention.py) and, for bf16 on the CPU, oneDNN's linear
    # with fused activations (onednn_linear.py): auto = on for bf16 on the CPU.
    fast_attention: str = "auto"
    # Objects at the same step tracked in one forward: auto = on with CUDA, where it saves a kernel
    # launch per layer and object. On the CPU it is slower (bigger working set, same FLOPs; see the
    # README's performance section), and one by one is the official predictor's order (fp32 bit-exact).
    batch_objects: str = "auto"
    # Encoded frames kept per process for frames seen again (a re-run after a correction), in MB of
    # the model's device memory; 0 turns it off (feature_cache.py).
    feature_cache_mb: int = 512
    # Conditioning frames (the start and the corrections) an object's memory keeps, the nearest to the
    # frame being corrected (anchors.py). Each costs 0.5 MB of state and 4,096 memory tokens per frame
    # at 1024 input (the 6 recent frames add 24,576): 4 keeps the start and the three nearest
    # corrections for +40% of memory attention at most; 1 keeps only the last correction.
    max_anchors: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrackerConfig:
        env = os.environ if env is None else env
        sam2_config = env.get("SAM2_CONFIG", "").strip() or DEFAULT_SAM2_CONFIG
        checkpoint = env.get("SAM2_CHECKPOINT", "").strip()
        overrides = tuple(o for o in env.get("SAM2_MODEL_OVERRIDES", "").split() if o)
        return cls(
            sam2_config=sam2_config,
            checkpoint=Path(checkpoint) if checkpoint else default_checkpoint(sam2_config),
            device=_device(env),
            precision=_choice(env, "SAM2_PRECISION", cls.precision, PRECISIONS),
            fill_hole_area=_integer(env, "SAM2_FILL_HOLE_AREA", cls.fill_hole_area),
            model_overrides=overrides,
            cpu_threads=_integer(env, "SAM2_CPU_THREADS", cls.cpu_threads),
            fast_attention=_choice(env, "SAM2_FAST_ATTENTION", cls.fast_attention, ("auto", "on", "off")),
            batch_objects=_choice(env, "SAM2_BATCH_OBJECTS", cls.batch_objects, ("auto", "on", "off")),
            feature_cache_mb=_integer(env, "SAM2_FEATURE_CACHE_MB", cls.feature_cache_mb),
            max_anchors=_anchor_cap(env),
        )


MAX_ANCHORS_LIMIT = 16


def _anchor_cap(env: Mapping[str, str]) -> int:
    value = _integer(env, "SAM2_MAX_ANCHORS", TrackerConfig.max_anchors, minimum=1)
    if value > MAX_ANCHORS_LIMIT:
        raise ConfigError(f"SAM2_MAX_ANCHORS={value} must be at most {MAX_ANCHORS_LIMIT}")
    return value


@dataclass(frozen=True)
class ShapeConfig:
    """How tracked masks become CVAT shapes."""

    # Polygon simplification tolerance, in pixels (cv2.approxPolyDP epsilon); 0 keeps every contour point.
    polygon_tolerance: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShapeConfig:
        env = os.environ if env is None else env
        return cls(polygon_tolerance=_number(env, "SAM2_POLYGON_TOLERANCE", cls.polygon_tolerance))


def _key_prefix(prefix: str) -> str:
    if "{" in prefix or "}" in prefix:
        # a brace would become the Redis Cluster hash tag of every key, instead of the object's
        raise ConfigError(f"SAM2_TRACKER_KEY_PREFIX={prefix!r} must not contain {{ or }}")
    return prefix


@dataclass(frozen=True)
class StoreConfig:
    """Where object states live between calls: Redis when a host is given, else this process."""

    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: str | None = field(default=None, repr=False)
    # A Redis Cluster (redis-py's cluster client; keys hash-tagged per object) instead of one server
    redis_cluster: bool = False
    ttl_seconds: int = 28800  # CVAT's tracker-state max age (8 hours)
    key_prefix: str = "sam2-tracker:"
    # Memory chunks this process keeps parsed, so that the worker that served a session's last frame
    # reads no memory from Redis for the next one.
    cache_megabytes: int = 256

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        env = os.environ if env is None else env
        return cls(
            redis_host=env.get("CVAT_FUNCTIONS_REDIS_HOST", "").strip() or None,
            redis_port=_integer(env, "CVAT_FUNCTIONS_REDIS_PORT", cls.redis_port, minimum=1),
            redis_password=env.get("CVAT_FUNCTIONS_REDIS_PASSWORD") or None,
            redis_cluster=_flag(env, "CVAT_FUNCTIONS_REDIS_CLUSTER", cls.redis_cluster),
            ttl_seconds=_integer(env, "SAM2_TRACKER_STATE_TTL", cls.ttl_seconds, minimum=1),
            key_prefix=_key_prefix(env.get("SAM2_TRACKER_KEY_PREFIX", "").strip() or cls.key_prefix),
            cache_megabytes=_integer(env, "SAM2_STATE_CACHE_MB", cls.cache_megabytes),
        )


@dataclass(frozen=True)
class Limits:
    """What one call may ask for; larger requests get a 4xx answer before any work is done."""

    max_request_bytes: int = 64 * 1024 * 1024  # keep equal to the trigger's maxRequestBodySize
    max_image_pixels: int = 40_000_000  # 8K UHD is 33.2 megapixels
    max_objects: int = 100
    max_polygon_points: int = 100_000  # vertices per polygon
    # Seconds one call may take; a call estimated to take longer is refused before any model work.
    # Under CVAT's CVAT_NUCLIO_DEFAULT_TIMEOUT (120 s by default), which also covers CVAT's own work and
    # the transfers; 0 turns the check (and its start-up calibration) off.
    call_budget_s: float = 100.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if env is None else env
        return cls(
            max_request_bytes=_integer(env, "SAM2_MAX_REQUEST_BYTES", cls.max_request_bytes, minimum=1),
            max_image_pixels=_integer(env, "SAM2_MAX_IMAGE_PIXELS", cls.max_image_pixels, minimum=1),
            max_objects=_integer(env, "SAM2_MAX_OBJECTS", cls.max_objects, minimum=1),
            max_polygon_points=_integer(env, "SAM2_MAX_POLYGON_POINTS", cls.max_polygon_points, minimum=3),
            call_budget_s=_number(env, "SAM2_CALL_BUDGET_S", cls.call_budget_s),
        )


@dataclass(frozen=True)
class Settings:
    """All configuration of the function, read once at start."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    shapes: ShapeConfig = field(default_factory=ShapeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            tracker=TrackerConfig.from_env(env),
            shapes=ShapeConfig.from_env(env),
            store=StoreConfig.from_env(env),
            limits=Limits.from_env(env),
        )
