"""Overheads of sam2's image encoder removed without changing a bit of its output.

- Hiera interpolates its position embedding (bicubic, from a 7x7 table, plus a tiled window embedding)
  on every forward, and the FPN neck's sine encoding copies its cached table (stored channels-first, so
  the copy is a transpose) into a new tensor for each of its four levels, the largest 256x256x256
  floats at 1024 input. Both depend only on the weights and the input size: they are kept per size
  (`PerSizeConstants`, on the module, emptied when torch moves or casts it).
- The patch embedding hands the first block a channels-last view of a channels-first convolution
  output, and the position embedding added to it keeps that layout. Every layer norm of the first
  stage then reads its 96 channels 65,536 elements apart (15 ms instead of 3 ms each on 2 CPU cores).
  The blocks get their input contiguous; the first stage's output goes to the neck in sam2's layout.

Together about 0.15 s of a 1.3 s encoder on 2 CPU cores. Same arithmetic, same bits (the fidelity tests
run with it), so it is on in every precision and on every device.
"""

from __future__ import annotations

import torch
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.position_encoding import PositionEmbeddingSine

from speedups.module_classes import KeepsPerSizeConstants, switch_classes


class LeanHiera(KeepsPerSizeConstants, Hiera):
    """Hiera with its interpolated position embedding kept per feature-map size, and its first
    stage run on contiguous memory."""

    # False where the neck's 1x1 convolutions run as linears over channels-last input
    # (onednn_linear.py), for which sam2's layout would be a transposing copy: `hand_stages_channels_last`
    stage_outputs_in_sam2_layout = True

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        key = (tuple(hw), self.pos_embed.device, self.pos_embed.dtype)
        return self.constants.get(key, lambda: Hiera._get_pos_embed(self, hw))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._get_pos_embed(x.shape[1:3])
        # sam2's layout, which a block keeps while its width does not change: a stage output taken
        # before then is handed to the neck in it, because its convolutions round differently on
        # another layout
        upstream_layout: torch.Tensor | None = x
        x = x.contiguous()
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if block.dim != block.dim_out or not self.stage_outputs_in_sam2_layout:
                upstream_layout = None
            if index == self.stage_ends[-1] or (index in self.stage_ends and self.return_interm_layers):
                features = x if upstream_layout is None else torch.empty_like(upstream_layout).copy_(x)
                outputs.append(features.permute(0, 3, 1, 2))
        return outputs


class CachedPositionEmbeddingSine(KeepsPerSizeConstants, PositionEmbeddingSine):
    """The sine encoding as a contiguous table per (size, device), returned as a view for each batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.shape[-2], x.shape[-1], x.device)
        table = self.constants.get(
            key, lambda: super(CachedPositionEmbeddingSine, self).forward(x[:1]).contiguous()
        )
        return table.expand(x.shape[0], -1, -1, -1)


LEAN = {Hiera: LeanHiera, PositionEmbeddingSine: CachedPositionEmbeddingSine}


def remove_encoder_overheads(model: torch.nn.Module) -> int:
    """Switch the modules inside `model` (a SAM2 model or a part of it) to the versions above; returns
    how many were switched. Weights and buffers stay as they are."""
    return switch_classes(model, LEAN)


def hand_stages_channels_last(trunk: torch.nn.Module) -> None:
    """Let the (switched) Hiera hand its stage outputs on channels-last, for a neck whose 1x1
    convolutions read them as linears over the channels (onednn_linear.PointwiseConv2d)."""
    if not isinstance(trunk, LeanHiera):
        raise TypeError(f"{type(trunk).__name__} is not switched to LeanHiera")
    trunk.stage_outputs_in_sam2_layout = False
