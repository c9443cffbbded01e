"""Building the SAM2 model a tracker runs: checkpoint, fingerprint, precision, and its preparation.

The model comes from sam2's own builder and checkpoint loader (`build_sam2_video_predictor`), so a
checkpoint that loads here loads in the official predictor too. The fingerprint (config name, hydra
overrides and checkpoint content) is written into every state, so that a state is never resumed by
another model.

`prepare` is the one place where the model is changed after loading: the faster module versions of
`speedups/` switched in, matrix weights held in bf16, the fast kernels. It returns what it applied
(the start-up log line shows it) and fails when something it chose switched no module, which would
mean a sam2 other than the one these rewrites were written for.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from config import ConfigError, TrackerConfig, checkpoint_url
from devices import resolve_device
from speedups import cpu_support
from speedups.cpu_support import CpuSupport
from speedups.encoder_overheads import hand_stages_channels_last, remove_encoder_overheads
from speedups.fast_attention import use_chunked_attention
from speedups.frame_shared import share_first_self_attention
from speedups.onednn_linear import use_onednn_linears

# bf16 on the CPU also rounds differently from the official fp32 run: worth it only when clearly faster
BF16_MIN_SPEEDUP = 1.3


@dataclass(frozen=True)
class Preparation:
    """What `prepare` applied to a model: its choices and how many modules each rewrite switched."""

    device: torch.device
    precision: str  # "fp32" or "bf16"
    fast_kernels: bool  # chunked attention (and, for bf16 on the CPU, oneDNN's linears)
    batch_objects: bool
    switched: dict[str, int]  # rewrite (speedups/ module) -> modules switched
    bf16_weights: int = 0  # linear and convolution layers whose weights are held in bf16
    # speed-up (speedups/ module) -> why it was not switched in on this machine
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """For the start-up log line, e.g. "bf16, fast kernels, one object at a time; switched
        encoder_overheads 2, frame_shared 1, fast_attention 13, onednn_linear 61; 120 bf16 weights",
        followed by what was skipped and why, e.g. "; onednn_linear: skipped, this CPU has no bf16
        inner product (AVX2 only)"."""
        batching = "objects batched" if self.batch_objects else "one object at a time"
        kernels = "fast kernels" if self.fast_kernels else "official kernels"
        switched = ", ".join(f"{name} {count}" for name, count in self.switched.items())
        skipped = "".join(f"; {name}: skipped, {why}" for name, why in self.skipped.items())
        return (
            f"{self.precision}, {kernels}, {batching}; switched {switched}; "
            f"{self.bf16_weights} bf16 weights{skipped}"
        )


@dataclass(frozen=True)
class LoadedModel:
    """The prepared model, its fingerprint and what its preparation applied."""

    model: torch.nn.Module
    fingerprint: str
    preparation: Preparation


def resolve_precision(precision: str, device: torch.device, cpu: CpuSupport | None = None) -> str:
    """`auto`: bf16 on CUDA when supported; on a CPU, bf16 only where it is native (never where it is
    emulated: AVX2-only CPUs) and its matrix products are clearly faster than fp32 on this machine.
    Some CPUs announce bf16 instructions yet multiply bf16 slower than fp32, and fp32 is also the
    exact path."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if not (cpu or cpu_support.detect()).native_bf16.runs:
        return "fp32"
    return "bf16" if bf16_matmul_speedup() >= BF16_MIN_SPEEDUP else "fp32"


def bf16_matmul_speedup(size: int = 1024, repeats: int = 3) -> float:
    """How many times faster a (size x size) @ (size x size) product runs in bf16 than in fp32 here
    (best of `repeats`; about 0.1 s on 2 cores). SAM2's cost on the CPU is mostly such products."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    a16, b16 = a.bfloat16(), b.bfloat16()
    return best_seconds(lambda: a @ b, repeats) / best_seconds(lambda: a16 @ b16, repeats)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The shortest of `repeats` timed runs, after one untimed run (which sets kernels up)."""
    run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def load(
    cfg: TrackerConfig, device: torch.device | None = None, cpu: CpuSupport | None = None
) -> LoadedModel:
    """The model on `device` (default: resolved from `cfg.device` for worker 0), prepared with the
    precision, kernels and batching `cfg` asks for (`auto` resolved for the machine). `cpu`: what this
    CPU runs of the fast paths (default: detected); a fast path it cannot run is skipped, and the
    reason kept for the start-up line."""
    device = device or resolve_device(cfg.device)
    cpu = cpu or cpu_support.detect()
    model = load_model(cfg, device)
    precision = resolve_precision(cfg.precision, device, cpu)
    bf16_on_cpu = device.type == "cpu" and precision == "bf16"
    skipped = {}
    fast = cfg.fast_attention == "on"
    if cfg.fast_attention == "auto" and bf16_on_cpu:
        fast = cpu.native_bf16.runs
        if not fast:
            skipped["fast_attention"] = f"{cpu.native_bf16.reason}: the official bf16 kernels run"
    onednn = fast and bf16_on_cpu and cpu.onednn_bf16_linear.runs
    if fast and bf16_on_cpu and not onednn:
        skipped["onednn_linear"] = cpu.onednn_bf16_linear.reason
    batch = cfg.batch_objects == "on" or (cfg.batch_objects == "auto" and device.type == "cuda")
    preparation = prepare(model, device, precision, fast, onednn, batch, skipped)
    return LoadedModel(model, model_fingerprint(cfg), preparation)


def prepare(
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    fast_kernels: bool,
    onednn_linears: bool,
    batch_objects: bool,
    skipped: dict[str, str],
) -> Preparation:
    """Change the model, once, for how it will run (see the module docstring); what was applied, with
    `skipped` (the speed-ups this machine cannot run, and why) for the start-up line."""
    if getattr(model, "memory_temporal_stride_for_eval", 1) != 1:
        raise ConfigError("SAM2_CONFIG: memory_temporal_stride_for_eval must be 1")
    switched = {
        "encoder_overheads": remove_encoder_overheads(model),
        "frame_shared": share_first_self_attention(model.memory_attention),
    }
    bf16_weights = store_matmul_weights_in_bf16(model) if precision == "bf16" else 0
    if fast_kernels:
        switched["fast_attention"] = use_chunked_attention(model.memory_attention) + use_chunked_attention(
            model.image_encoder
        )
    if onednn_linears:
        switched["onednn_linear"] = switch_to_onednn_linears(model)
    unswitched = [name for name, count in switched.items() if count == 0]
    if unswitched:
        raise ConfigError(
            f"no sam2 module was switched by {', '.join(unswitched)}: this tracker needs sam2 1.1.0 "
            "(pip install sam2==1.1.0)"
        )
    return Preparation(device, precision, fast_kernels, batch_objects, switched, bf16_weights, dict(skipped))


def switch_to_onednn_linears(model: torch.nn.Module) -> int:
    """The image encoder's linears, MLPs and 1x1 convolutions, and the mask decoder's high-resolution
    projections, through oneDNN; the neck's 1x1 convolutions then read the stages channels-last."""
    decoder = model.sam_mask_decoder
    parts = [model.image_encoder]
    parts += [decoder.conv_s0, decoder.conv_s1] if model.use_high_res_features_in_sam else []
    switched = sum(use_onednn_linears(part) for part in parts)
    if switched:
        hand_stages_channels_last(model.image_encoder.trunk)
    return switched


def store_matmul_weights_in_bf16(model: torch.nn.Module) -> int:
    """bf16 autocast casts every Linear and Conv2d weight to bf16 on each call (a copy of the
    encoder's weights per frame); holding them in bf16 gives the same products without the copies.
    Other parameters (norms, embeddings) stay fp32, as autocast uses them. Returns the layers cast."""
    layers = [m for m in model.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]
    for layer in layers:
        layer.to(torch.bfloat16)
    return len(layers)


def load_model(cfg: TrackerConfig, device: torch.device) -> torch.nn.Module:
    """The official video predictor model, through sam2's own builder and checkpoint loader."""
    if not cfg.checkpoint.is_file():
        url = checkpoint_url(cfg.sam2_config)
        how = f"download it from {url}" if url else "download the checkpoint that fits SAM2_CONFIG"
        raise ConfigError(
            f"SAM2_CHECKPOINT={cfg.checkpoint} does not exist: {how} "
            f"(e.g. `curl -L -o {cfg.checkpoint} {url or '<url>'}`) or set SAM2_CHECKPOINT"
        )
    from hydra.errors import HydraException
    from sam2.build_sam import build_sam2_video_predictor

    try:
        model = build_sam2_video_predictor(
            cfg.sam2_config,
            str(cfg.checkpoint),
            device=str(device),
            hydra_overrides_extra=list(cfg.model_overrides),
        )
    except HydraException as error:
        raise ConfigError(
            f"SAM2_CONFIG={cfg.sam2_config!r} is not a sam2 config "
            f"(e.g. configs/sam2.1/sam2.1_hiera_t.yaml): {error}"
        ) from None
    except RuntimeError as error:
        raise ConfigError(
            f"SAM2_CHECKPOINT={cfg.checkpoint} does not fit SAM2_CONFIG={cfg.sam2_config}: {error}"
        ) from None
    # We apply hole filling ourselves (fill_hole_area); the model's own path needs sam2's CUDA extension.
    model.fill_hole_area = 0
    return model


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(cfg: TrackerConfig) -> str:
    """Identifies the model a state belongs to: config name, overrides and checkpoint content."""
    digest = hashlib.sha256()
    digest.update(cfg.sam2_config.encode())
    for override in cfg.model_overrides:
        digest.update(b"\0" + override.encode())
    digest.update(b"\0" + file_sha256(cfg.checkpoint).encode())
    return digest.hexdigest()
