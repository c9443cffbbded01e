"""The image encoder replayed from one captured CUDA graph: a frame's hundreds of kernel launches
become one replay. One input shape (the model's square input); another shape runs eagerly."""

from __future__ import annotations

from typing import Any

import torch


def cloned(value: Any) -> Any:
    """The encoder's output (a dict of tensors and lists of tensors) copied out of the graph's memory,
    which the next replay overwrites."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: cloned(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(cloned(item) for item in value)
    return value


class GraphedEncoder(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, example: torch.Tensor, bf16: bool, warmups: int = 3):
        super().__init__()
        self.encoder = encoder
        self.static_input = example.clone()
        self.graph = torch.cuda.CUDAGraph()
        # autocast's cast cache would hand the graph tensors freed when the context closes
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False),
        ):
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(warmups):
                    encoder(self.static_input)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(self.graph):
                self.static_output = encoder(self.static_input)
        torch.cuda.synchronize()

    def forward(self, pixels: torch.Tensor) -> Any:
        if pixels.shape != self.static_input.shape or pixels.dtype != self.static_input.dtype:
            return self.encoder(pixels)
        self.static_input.copy_(pixels)
        self.graph.replay()
        return cloned(self.static_output)
