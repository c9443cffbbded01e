"""Which fast paths this CPU can run, known once per process, and why not where it cannot.

The bf16 fast path (chunked bf16 attention, oneDNN's linear with fused activations) was written for
CPUs with native bf16 instructions (AVX512-BF16, AMX). Many CVAT hosts have none: AMD EPYC Rome and
Milan (Zen 2/3) stop at AVX2, older Xeons at AVX-512 without BF16. There oneDNN refuses to build its
bf16 inner product ("could not create a primitive descriptor"), and PyTorch emulates bf16 matrix
products in fp32 with conversions, several times slower than fp32 itself (about 10x for SAM2 at 512
input on an AVX2 machine, measured).

So each fast path is switched in only where it runs:
- whether bf16 is native comes from oneDNN's own check of the CPU (which also honours
  ONEDNN_MAX_CPU_ISA, so a machine can be made to behave like an AVX2-only one), or from the CPU's
  flags where PyTorch has no oneDNN;
- whether oneDNN's bf16 linear and its fused activations run comes from one tiny probe of each
  kernel, so a CPU, a PyTorch build or a oneDNN that refuses is found at start-up, not at the first
  frame.

`model_loading.load` asks these and puts the reasons of what it skipped in the start-up line.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Support:
    """Whether a kernel runs here; `reason` says why not, for the start-up line."""

    runs: bool
    reason: str = ""


@dataclass(frozen=True)
class CpuSupport:
    """What this CPU can run of the fast paths (`detect`); a test may build one to see the fallbacks."""

    native_bf16: Support
    onednn_bf16_linear: Support


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def instruction_sets(flags: set[str]) -> str:
    """The CPU's widest vector instructions, in words, e.g. "AVX2 only"."""
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    if "avx512f" in flags:
        return "AVX-512 without BF16"
    if "avx2" in flags:
        return "AVX2 only"
    return "no AVX2" if flags else "instruction sets unknown"


def why_no_bf16() -> str:
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if capped:
        return f"oneDNN capped at {capped} by ONEDNN_MAX_CPU_ISA"
    return instruction_sets(cpu_flags())


def native_bf16() -> bool:
    """oneDNN's own check of the CPU (it honours ONEDNN_MAX_CPU_ISA); the CPU's flags without oneDNN."""
    if torch.backends.mkldnn.is_available():
        with contextlib.suppress(Exception):
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return False
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


# what speedups/onednn_linear.py asks of oneDNN: a plain linear, then with each fused activation
ONEDNN_PROBES = (("none", ""), ("gelu", "none"), ("gelu", "tanh"), ("relu", ""))


def probe_onednn_bf16_linear() -> Support:
    """One tiny run of each oneDNN kernel that onednn_linear uses, in bf16."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return Support(False, "this PyTorch has no oneDNN linear")
    weight = torch.ones(8, 16, dtype=torch.bfloat16)
    bias = torch.zeros(8, dtype=torch.bfloat16)
    x = torch.ones(4, 16, dtype=torch.bfloat16)
    for activation, algorithm in ONEDNN_PROBES:
        try:
            with torch.inference_mode():
                out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], algorithm)
        except RuntimeError:
            return Support(False, f"this CPU has no bf16 inner product ({why_no_bf16()})")
        if out.shape != (4, 8) or not bool(torch.isfinite(out).all()):
            return Support(False, f"oneDNN's bf16 linear with {activation} gave a wrong result here")
    return Support(True)


@functools.cache
def detect() -> CpuSupport:
    """This CPU's support, probed once per process (well under a millisecond). oneDNN's bf16 linear
    counts only where bf16 is native: emulated, it would be slower than the official kernels."""
    if not native_bf16():
        why = why_no_bf16()
        return CpuSupport(
            native_bf16=Support(False, f"bf16 is emulated on this CPU ({why})"),
            onednn_bf16_linear=Support(False, f"this CPU has no bf16 inner product ({why})"),
        )
    return CpuSupport(native_bf16=Support(True), onednn_bf16_linear=probe_onednn_bf16_linear())
