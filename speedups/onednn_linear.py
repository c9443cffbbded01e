"""Linear layers through oneDNN's own linear, with the MLP activation fused, for bf16 on the CPU.

PyTorch's CPU `linear` in bf16 first writes the broadcast bias into the output and then runs the
matrix product on top of it; an MLP's activation is one more pass over the widest tensor of the block.
Where the inner dimension is small, as in Hiera's first stage (65,536 tokens of 96 channels), those
passes cost as much as the product: the qkv projection runs at 0.56 TFLOP/s where the machine's bf16
products reach 0.9. oneDNN's linear (the kernel torch.compile's CPU backend calls) adds the bias and
applies the activation while the product's tiles are still in registers.

Without an activation the result has the same bits as `F.linear` on the same contiguous input
(tested). With the activation fused it is applied to the fp32 accumulator rather than to the product
rounded to bf16, so it rounds differently: it belongs to the fast path (`SAM2_FAST_ATTENTION`), whose
deviation from the official bf16 run the fidelity test bounds.

Only where bf16 is native and oneDNN runs these kernels (speedups/cpu_support.py): on an AVX2-only CPU
oneDNN has no bf16 inner product at all.
"""

from __future__ import annotations

import torch
from sam2.modeling.sam2_utils import MLP
from torch import Tensor, nn

from speedups.module_classes import switch_classes


def runs_on_onednn(layer: nn.Module, x: Tensor) -> bool:
    return layer.weight.dtype == torch.bfloat16 and x.device.type == "cpu"


def onednn_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None, activation: str = "none", algorithm: str = ""
) -> Tensor:
    """`activation(x weight^T + bias)` over the last dimension in one oneDNN kernel; the input in the
    weight's dtype, as autocast would cast it."""
    x = x.to(weight.dtype).contiguous()
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], algorithm)


def fused_activation(act: nn.Module) -> tuple[str, str] | None:
    """oneDNN's name and algorithm for an MLP's activation, or None where it has none."""
    if type(act) is nn.GELU:
        return "gelu", act.approximate
    if type(act) is nn.ReLU:
        return "relu", ""
    return None


class OneDnnLinear(nn.Linear):
    """nn.Linear through oneDNN when its weight is bf16 and its input on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if not runs_on_onednn(self, x):
            return super().forward(x)
        return onednn_linear(x, self.weight, self.bias)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution (the FPN neck's lateral layers, the mask decoder's high-resolution
    projections) as a oneDNN linear over the channels: its input comes channels-last from Hiera,
    where the channels are already the contiguous last dimension, and so does its output. Other
    convolutions run as they are."""

    def forward(self, x: Tensor) -> Tensor:
        pointwise = (
            self.kernel_size == (1, 1)
            and self.stride == (1, 1)
            and self.padding in ((0, 0), "valid")
            and self.groups == 1
            and self.padding_mode == "zeros"
        )
        if not pointwise or not runs_on_onednn(self, x):
            return super().forward(x)
        weight = self.weight.view(self.out_channels, self.in_channels)
        return onednn_linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)


class FusedActivationMLP(MLP):
    """sam2's MLP with each hidden layer's activation fused into its linear."""

    def forward(self, x: Tensor) -> Tensor:
        fused = fused_activation(self.act)
        if fused is None or not runs_on_onednn(self.layers[0], x):
            return super().forward(x)
        for layer in self.layers[:-1]:
            x = onednn_linear(x, layer.weight, layer.bias, *fused)
        x = self.layers[-1](x)
        return torch.sigmoid(x) if self.sigmoid_output else x


ONEDNN = {nn.Linear: OneDnnLinear, MLP: FusedActivationMLP, nn.Conv2d: PointwiseConv2d}


def use_onednn_linears(module: torch.nn.Module) -> int:
    """Switch the linear layers, MLPs and convolutions inside `module` to the versions above; returns
    how many were switched. Weights stay as they are. Only where `cpu_support` says oneDNN's bf16
    linear runs."""
    return switch_classes(module, ONEDNN)
