"""oneDNN's linear against the layers it replaces: the same bits where no activation is fused, within
bf16 rounding of an fp64 reference (no further than sam2's own bf16 run) where one is; the tracker
uses it only on the fast bf16 CPU path. The kernels' tests skip where this CPU has no bf16 inner
product (AVX2 only); tests/test_cpu_support.py proves the fallback on every machine."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_utils import MLP

from speedups.onednn_linear import FusedActivationMLP, OneDnnLinear, PointwiseConv2d, use_onednn_linears
from tests.support.models import make_tracker, needs_onednn_bf16


def switched(module: torch.nn.Module) -> torch.nn.Module:
    ours = copy.deepcopy(module)
    assert use_onednn_linears(ours) >= 1
    return ours


@needs_onednn_bf16
@pytest.mark.parametrize("shape", [(300, 96), (1, 16, 20, 96)])
def test_linear_equals_torch_bit_for_bit(shape):
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 288).bfloat16()
    ours = switched(layer)
    assert type(ours) is OneDnnLinear
    x = torch.randn(shape)
    with torch.inference_mode():
        assert torch.equal(ours(x.bfloat16()), layer(x.bfloat16()))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 input, cast as autocast casts it
            assert torch.equal(ours(x), layer(x))


@needs_onednn_bf16
def test_pointwise_convolution_equals_torch_bit_for_bit_on_either_layout():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(96, 64, kernel_size=1).bfloat16()
    ours = switched(conv)
    assert type(ours) is PointwiseConv2d
    channels_last = torch.randn(2, 24, 20, 96).bfloat16().permute(0, 3, 1, 2)
    with torch.inference_mode():
        for x in (channels_last, channels_last.contiguous()):
            out = ours(x)
            assert out.shape == (2, 64, 24, 20) and torch.equal(out, conv(x))


@needs_onednn_bf16
@pytest.mark.parametrize("activation", [torch.nn.GELU, torch.nn.ReLU])
def test_mlp_with_fused_activation_is_as_close_to_fp64_as_sam2s_bf16(activation):
    torch.manual_seed(0)
    mlp = MLP(96, 384, 96, num_layers=3, activation=activation)
    exact = copy.deepcopy(mlp).double()
    official = copy.deepcopy(mlp).bfloat16()
    ours = switched(official)
    assert type(ours) is FusedActivationMLP
    x = torch.randn(2048, 96)
    with torch.inference_mode():
        reference = exact(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            theirs, fused = official(x), ours(x)
    error = lambda out: float((out.double() - reference).norm() / reference.norm())  # noqa: E731
    assert fused.dtype == torch.bfloat16 and fused.shape == reference.shape
    assert error(fused) <= 1.5 * error(theirs) and error(fused) < 1e-2
    # GELU is applied before rounding to bf16; ReLU commutes with rounding
    assert torch.equal(fused, theirs) == (activation is torch.nn.ReLU)


@needs_onednn_bf16
def test_other_layers_and_precisions_run_as_they_are():
    torch.manual_seed(0)
    fp32 = torch.nn.Linear(32, 16)
    conv3x3 = torch.nn.Conv2d(8, 8, kernel_size=3, padding=1).bfloat16()
    tanh_mlp = MLP(32, 64, 16, num_layers=2, activation=torch.nn.Tanh).bfloat16()
    with torch.inference_mode():
        x = torch.randn(5, 32)
        assert torch.equal(switched(fp32)(x), F.linear(x, fp32.weight, fp32.bias))
        image = torch.randn(1, 8, 12, 12).bfloat16()
        assert torch.equal(switched(conv3x3)(image), conv3x3(image))
        assert torch.equal(switched(tanh_mlp)(x.bfloat16()), tanh_mlp(x.bfloat16()))


@needs_onednn_bf16
def test_tracker_uses_onednn_only_on_the_fast_bf16_cpu_path(checkpoint):
    kinds = lambda tracker: {type(m) for m in tracker.model.modules()}  # noqa: E731
    fast = make_tracker(checkpoint, precision="bf16", fast_attention="on")
    assert {OneDnnLinear, FusedActivationMLP, PointwiseConv2d} <= kinds(fast)
    assert type(fast.model.sam_mask_decoder.conv_s0) is PointwiseConv2d
    assert not fast.model.image_encoder.trunk.stage_outputs_in_sam2_layout
    for tracker in (
        make_tracker(checkpoint, precision="bf16", fast_attention="off"),
        make_tracker(checkpoint, precision="fp32", fast_attention="on"),
    ):
        assert not {OneDnnLinear, FusedActivationMLP, PointwiseConv2d} & kinds(tracker)
        assert tracker.model.image_encoder.trunk.stage_outputs_in_sam2_layout
