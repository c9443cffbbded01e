"""Attention for CPUs in bf16: SAM2's memory attention and the image encoder's global attention.

Most of a tracking step is the memory attention's cross-attention from the 4,096 image tokens (at 1024
input) to the ~29k memory tokens (7 frames of 64x64 plus object pointers), 4 layers, one 256-wide head.
PyTorch's CPU flash-attention kernel runs that well below the rate that bf16 matrix multiplication
reaches on the same cores: with a single wide head its tiles are small. Computing the attention in
chunks of queries as two plain matmuls with a softmax between them keeps the GEMMs near their peak
(512 queries: measured faster than 256 and as fast as 1024 on 2 cores, with 29 MB of scores).

The cross-attention's values are 64-wide memory tokens projected to 256. Since the rows of a softmax
sum to 1, the probabilities can mix the 64-wide tokens first and the projection follow, which makes
the probabilities-times-values product 4x smaller: a quarter of a tracking step's FLOPs.

The image encoder (Hiera) has the same problem in its global-attention blocks (4,096 tokens, 4 heads of
96), and worse in its windowed blocks: there the flash kernel runs each window's few tokens (16 to 196)
as its own tiny problem, where two batched matmuls over all windows are 2 to 3 times faster (Hiera's
first block: 14 ms against 6 ms on 2 cores).

It rounds differently from the flash kernel (the scores and probabilities are rounded to bf16), so it
is used only on the bf16 CPU path; fp32 keeps the official kernel and stays bit-exact. The speed-up and
the deviation from the official bf16 run are measured by bench/bench_tracking.py and
tests/test_tracker_fidelity.py; the figures are in the README.
"""

from __future__ import annotations

import torch
from sam2.modeling.backbones.hieradet import MultiScaleAttention, do_pool
from sam2.modeling.sam.transformer import RoPEAttention
from torch import Tensor

from speedups.module_classes import switch_classes

QUERY_CHUNK = 512


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, chunk: int = QUERY_CHUNK) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over (..., tokens, dim) tensors, a chunk of queries at a time."""
    q = q * q.shape[-1] ** -0.5
    if q.shape[-2] <= chunk:
        # windows: one batched product each way, keys read through a transposed view
        return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1), v)
    # contiguous once: a strided operand would be copied by every chunk's matmul
    keys = k.transpose(-1, -2).contiguous()
    v = v.contiguous()
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype, device=v.device)
    for start in range(0, q.shape[-2], chunk):
        scores = torch.matmul(q[..., start : start + chunk, :], keys)
        out[..., start : start + chunk, :] = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out


def rotary(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """sam2's rotary encoding (``apply_rotary_enc``, same fp32 complex products) of tokens that are one
    or more repeats of the positions in `freqs_cis` (memory frames of the same size): the table is
    broadcast over the repeats rather than copied once per repeat. Returns float32."""
    positions, pairs = freqs_cis.shape
    tokens = x.float().reshape(*x.shape[:-2], x.shape[-2] // positions, positions, pairs, 2)
    return torch.view_as_real(torch.view_as_complex(tokens) * freqs_cis).reshape(x.shape)


def attend_then_project_values(q: Tensor, k: Tensor, x: Tensor, v_proj: torch.nn.Linear) -> Tensor:
    """softmax(q k^T) (x W^T + b) computed as (softmax(q k^T) x) W^T + b, per head: the rows of a
    softmax sum to 1, so the bias passes through. The memory attention's values come from 64-wide
    memory tokens projected to 256: mixing the 64-wide tokens first makes the probabilities-times-values
    product 4x smaller (a quarter of a tracking step's FLOPs saved)."""
    heads = q.shape[1]
    mixed = chunked_attention(q, k, x.to(q.dtype)[:, None].expand(-1, heads, -1, -1))
    weight = v_proj.weight.view(heads, -1, v_proj.in_features).to(mixed.dtype)
    out = torch.matmul(mixed, weight.transpose(-1, -2))  # B x heads x N x head_dim
    if v_proj.bias is not None:
        out += v_proj.bias.view(heads, 1, -1).to(out.dtype)
    return out


class ChunkedRoPEAttention(RoPEAttention):
    """sam2's RoPEAttention (projections, rotary encoding of queries and of the non-pointer keys,
    one output projection) with `chunked_attention` in place of scaled_dot_product_attention."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        side = round(q.shape[-2] ** 0.5)
        if self.freqs_cis.shape[0] != q.shape[-2] or self.freqs_cis.device != q.device:
            self.freqs_cis = self.compute_cis(end_x=side, end_y=side).to(q.device)
        rope_keys = k.shape[-2] - num_k_exclude_rope
        if rope_keys % q.shape[-2] or (rope_keys != q.shape[-2] and not self.rope_k_repeat):
            raise ValueError(f"{rope_keys} keys to rotate do not fit {q.shape[-2]} positions")
        # the keys laid out transposed once, as every chunk's product reads them
        keys = torch.empty(*k.shape[:2], k.shape[-1], k.shape[-2], dtype=q.dtype, device=q.device)
        keys[..., :rope_keys].copy_(rotary(k[:, :, :rope_keys], self.freqs_cis).type_as(k).transpose(-1, -2))
        keys[..., rope_keys:].copy_(k[:, :, rope_keys:].transpose(-1, -2))
        q = rotary(q, self.freqs_cis).type_as(q)
        k = keys.transpose(-1, -2)
        if self.v_proj.in_features < self.internal_dim // self.num_heads:
            out = attend_then_project_values(q, k, v, self.v_proj)
        else:
            out = chunked_attention(q, k, self._separate_heads(self.v_proj(v), self.num_heads))
        return self.out_proj(self._recombine_heads(out))


class ChunkedMultiScaleAttention(MultiScaleAttention):
    """Hiera's attention (fused qkv projection, optional query pooling, output projection) with
    `chunked_attention`, global and windowed."""

    def forward(self, x: Tensor) -> Tensor:
        batch, height, width, _ = x.shape
        q, k, v = torch.unbind(self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1), 2)
        if self.q_pool:
            q = do_pool(q.reshape(batch, height, width, -1), self.q_pool)
            height, width = q.shape[1:3]
            q = q.reshape(batch, height * width, self.num_heads, -1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        out = chunked_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


CHUNKED = {RoPEAttention: ChunkedRoPEAttention, MultiScaleAttention: ChunkedMultiScaleAttention}


def use_chunked_attention(module: torch.nn.Module) -> int:
    """Switch the attention layers inside `module` (SAM2's memory attention, its image encoder) to
    the chunked kernel; returns how many were switched. Weights and buffers stay as they are."""
    return switch_classes(module, CHUNKED)
