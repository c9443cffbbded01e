"""The chunked attention kernels compute the same function as sam2's layers (checked in fp32, where
only summation order differs), and the tracker switches them on only where configured."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import MultiScaleAttention
from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis
from sam2.modeling.sam.transformer import RoPEAttention

from speedups.fast_attention import (
    ChunkedMultiScaleAttention,
    ChunkedRoPEAttention,
    attend_then_project_values,
    chunked_attention,
    rotary,
    use_chunked_attention,
)
from tests.support.models import make_tracker


@pytest.mark.parametrize(
    "shape_q, shape_k", [((1, 1, 700, 64), (1, 1, 1500, 64)), ((3, 4, 256, 32), (3, 4, 100, 32))]
)
def test_chunked_attention_equals_sdpa(shape_q, shape_k):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(*shape_q, generator=generator)
    k = torch.randn(*shape_k, generator=generator)
    v = torch.randn(*shape_k, generator=generator)
    torch.testing.assert_close(
        chunked_attention(q, k, v, chunk=128), F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5
    )
    ours = chunked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    theirs = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=0.05, atol=0.05)


def test_chunked_rope_attention_equals_sam2s_layer():
    torch.manual_seed(0)
    layer = RoPEAttention(
        embedding_dim=256, num_heads=1, kv_in_dim=64, rope_k_repeat=True, feat_sizes=(32, 32)
    ).eval()
    chunked = copy.deepcopy(layer)
    assert use_chunked_attention(chunked) == 1 and type(chunked) is ChunkedRoPEAttention
    q = torch.randn(2, 32 * 32, 256)
    k = torch.randn(2, 2 * 32 * 32 + 16, 64)  # two memory frames, then 16 pointer tokens without RoPE
    v = torch.randn(2, 2 * 32 * 32 + 16, 64)
    with torch.inference_mode():
        expected = layer(q, k.clone(), v, num_k_exclude_rope=16)
        torch.testing.assert_close(
            chunked(q, k.clone(), v, num_k_exclude_rope=16), expected, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize(
    "shape",
    [
        (1, 64, 64, 96),  # global: 4,096 queries (1,024 when pooled), in chunks
        (30, 8, 8, 96),  # 30 windows of 64 tokens (16 queries when pooled), one product each way
    ],
)
def test_chunked_hiera_attention_equals_sam2s_layer(pooled, shape):
    torch.manual_seed(0)
    q_pool = torch.nn.MaxPool2d(kernel_size=2, stride=2) if pooled else None
    layer = MultiScaleAttention(dim=96, dim_out=96, num_heads=2, q_pool=q_pool).eval()
    chunked = copy.deepcopy(layer)
    assert use_chunked_attention(chunked) == 1 and type(chunked) is ChunkedMultiScaleAttention
    x = torch.randn(shape)
    with torch.inference_mode():
        torch.testing.assert_close(chunked(x), layer(x), rtol=1e-5, atol=1e-5)


def test_fast_attention_is_on_only_where_configured(checkpoint):
    exact = make_tracker(checkpoint, precision="bf16", fast_attention="off")
    fast = make_tracker(checkpoint, precision="bf16", fast_attention="on")
    kinds = lambda tracker: {type(m) for m in tracker.model.modules()}  # noqa: E731
    assert ChunkedRoPEAttention not in kinds(exact) and ChunkedRoPEAttention in kinds(fast)
    assert ChunkedMultiScaleAttention in kinds(fast)
    # bf16 keeps matmul weights in bf16 (what autocast would cast them to); fp32 leaves them alone
    assert exact.model.memory_attention.layers[0].linear1.weight.dtype == torch.bfloat16
    fp32 = make_tracker(checkpoint, precision="fp32")
    assert fp32.model.memory_attention.layers[0].linear1.weight.dtype == torch.float32


@pytest.mark.parametrize("heads", [1, 2])
def test_values_projected_after_attention_equal_projected_before(heads):
    """(softmax(q k^T) x) W^T + b equals softmax(q k^T) (x W^T + b): in fp32 up to summation order,
    in bf16 within bf16 rounding."""
    generator = torch.Generator().manual_seed(0)
    v_proj = torch.nn.Linear(64, 256)
    q = torch.randn(2, heads, 300, 256 // heads, generator=generator)
    k = torch.randn(2, heads, 900, 256 // heads, generator=generator)
    x = torch.randn(2, 900, 64, generator=generator)
    with torch.inference_mode():
        values = v_proj(x).reshape(2, 900, heads, -1).transpose(1, 2)
        expected = F.scaled_dot_product_attention(q, k, values)
        torch.testing.assert_close(
            attend_then_project_values(q, k, x, v_proj), expected, rtol=1e-5, atol=1e-5
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = attend_then_project_values(q.bfloat16(), k.bfloat16(), x, v_proj)
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_equals_sam2s_rotary_encoding_bit_for_bit(dtype):
    """Queries and repeated memory-frame keys, rotated with the table broadcast instead of copied."""
    generator = torch.Generator().manual_seed(0)
    freqs = compute_axial_cis(dim=64, end_x=8, end_y=8)
    q = torch.randn(2, 1, 64, 64, generator=generator).to(dtype)
    k = torch.randn(2, 1, 3 * 64, 64, generator=generator).to(dtype)
    expected_q, expected_k = apply_rotary_enc(q, k, freqs_cis=freqs, repeat_freqs_k=True)
    assert torch.equal(rotary(q, freqs).type_as(q), expected_q)
    assert torch.equal(rotary(k, freqs).type_as(k), expected_k)
