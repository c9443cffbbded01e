"""The encoder without its overheads gives the same bits as sam2's, and the tracker uses it."""

from __future__ import annotations

import copy

import pytest
import torch
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.position_encoding import PositionEmbeddingSine

from speedups.encoder_overheads import (
    CachedPositionEmbeddingSine,
    LeanHiera,
    remove_encoder_overheads,
)
from tests.support.models import make_tracker


@pytest.mark.parametrize("bf16", [False, True])
def test_hiera_without_overheads_equals_sam2s(bf16):
    torch.manual_seed(0)
    hiera = Hiera(embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), window_spec=(8, 4, 4, 2)).eval()
    torch.nn.init.normal_(hiera.pos_embed)
    torch.nn.init.normal_(hiera.pos_embed_window)
    cached = copy.deepcopy(hiera)
    assert remove_encoder_overheads(cached) == 1 and type(cached) is LeanHiera
    image = torch.randn(1, 3, 128, 128)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for size in [(32, 32), (64, 48), (32, 32)]:
            assert torch.equal(cached._get_pos_embed(size), hiera._get_pos_embed(size))
        for expected, ours in zip(hiera(image), cached(image), strict=True):
            assert torch.equal(ours, expected)
            # the neck's convolutions round differently on another memory layout
            assert ours.stride() == expected.stride()


@pytest.mark.parametrize("bf16", [False, True])
def test_stage_outputs_handed_on_channels_last_hold_the_same_values(bf16):
    """The fast path's neck reads the first stage channels-last (onednn_linear.PointwiseConv2d)."""
    torch.manual_seed(0)
    hiera = Hiera(embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), window_spec=(8, 4, 4, 2)).eval()
    remove_encoder_overheads(hiera)
    channels_last = copy.deepcopy(hiera)
    channels_last.stage_outputs_in_sam2_layout = False
    image = torch.randn(1, 3, 128, 128)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for expected, ours in zip(hiera(image), channels_last(image), strict=True):
            assert torch.equal(ours, expected)
            assert ours.is_contiguous(memory_format=torch.channels_last)
        assert not hiera(image)[0].is_contiguous(memory_format=torch.channels_last)


def test_cached_sine_encoding_equals_sam2s_for_every_size_and_batch():
    encoding = PositionEmbeddingSine(num_pos_feats=64)
    cached = copy.deepcopy(encoding)
    assert remove_encoder_overheads(cached) == 1 and type(cached) is CachedPositionEmbeddingSine
    with torch.inference_mode():
        for shape in [(1, 64, 16, 16), (3, 64, 16, 16), (1, 64, 8, 12), (1, 64, 16, 16)]:
            x = torch.zeros(shape)
            ours = cached(x)
            assert ours.shape == shape and torch.equal(ours, encoding(x))


def test_tracker_runs_the_encoder_without_its_overheads(checkpoint):
    tracker = make_tracker(checkpoint)
    kinds = {type(m) for m in tracker.model.modules()}
    assert {LeanHiera, CachedPositionEmbeddingSine} <= kinds
    assert Hiera not in kinds and PositionEmbeddingSine not in kinds


def test_kept_encodings_are_dropped_when_torch_moves_or_casts_the_module():
    cached = PositionEmbeddingSine(num_pos_feats=64)
    remove_encoder_overheads(cached)
    with torch.inference_mode():
        cached(torch.zeros(1, 64, 16, 16))
        cached(torch.zeros(1, 64, 8, 8))
        assert len(cached.constants) == 2
        cached.to(torch.float64)
        assert len(cached.constants) == 0
        assert torch.equal(
            cached(torch.zeros(1, 64, 8, 8)),
            PositionEmbeddingSine(num_pos_feats=64)(torch.zeros(1, 64, 8, 8)),
        )
