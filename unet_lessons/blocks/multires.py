"""MultiResUNet's two blocks: the MultiRes block and the Res path (Ibtehaz and Rahman 2020).

Ibtehaz and Rahman, "MultiResUNet: Rethinking the U-Net architecture for multimodal biomedical
image segmentation", Neural Networks 121 (2020); arXiv:1902.04049. Layer for layer as the
authors' Keras code, github.com/nibtehaz/MultiResUNet, ``tensorflow/MultiResUNet.py``:

* ``conv2d_bn``: a convolution without bias, then ``BatchNormalization(scale=False)`` (a learned
  shift, no learned scale), then the activation (none on a shortcut);
* ``MultiResBlock``: three 3x3 ``conv2d_bn`` in a chain with ``int(W*0.167)``, ``int(W*0.333)``
  and ``int(W*0.5)`` filters (W = alpha * U), their outputs concatenated and batch-normalised,
  plus a 1x1 ``conv2d_bn`` shortcut, then ReLU, then batch norm;
* ``ResPath``: ``length`` units of a 3x3 ``conv2d_bn`` (ReLU) plus a 1x1 ``conv2d_bn`` shortcut,
  added, then ReLU, then batch norm.

Keras's batch-norm defaults (epsilon 1e-3, momentum 0.99, i.e. PyTorch's momentum 0.01) are
not copied: every network of the lessons keeps PyTorch's (1e-5, 0.1), so that a comparison on
one short budget differs in the blocks, not in how fast the running statistics settle.

Built step by step in ``notebooks/08_multiresunet.ipynb``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import make_norm
from .units import ConvNormAct

__all__ = ["MultiResBlock", "ResPath", "ResPathUnit", "multires_widths", "SHIFT_ONLY_BATCH_NORM"]

#: Keras's ``BatchNormalization(scale=False)``: the norm of every ``conv2d_bn`` in the official code.
SHIFT_ONLY_BATCH_NORM = ("batch", {"scale": False})


def multires_widths(u: int, alpha: float = 1.67) -> tuple[int, int, int]:
    """The filters of a MultiRes block's three 3x3 convolutions, as the official code computes them.

    ``W = alpha * u``, then ``int(W*0.167)``, ``int(W*0.333)``, ``int(W*0.5)`` (the paper's W/6, W/3,
    W/2, rounded down after multiplying by the code's decimals: W/6 and W/3 can give other integers).

    Raises:
        ValueError: when a branch would have no channel (a width too small for ``alpha``).
    """
    w = alpha * u
    widths = (int(w * 0.167), int(w * 0.333), int(w * 0.5))
    if min(widths) < 1:
        smallest = next(n for n in range(1, 64) if int(alpha * n * 0.167) >= 1)
        raise ValueError(f"a MultiRes block with U={u} and alpha={alpha} gives branches of {widths} channels; every "
                         f"branch needs at least one. Use a width of at least {smallest}.")
    return widths


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, spatial_dims: int, act) -> ConvNormAct:
    """The official ``conv2d_bn``: a convolution without bias, a shift-only batch norm, the activation."""
    return ConvNormAct(in_channels, out_channels, kernel_size, spatial_dims=spatial_dims, norm=SHIFT_ONLY_BATCH_NORM,
                       act=act, bias=False)


class MultiResBlock(nn.Module):
    """Three 3x3 convolutions in a chain, their outputs side by side, plus a 1x1 shortcut.

    The chain's outputs have receptive fields of 3, 5 and 7 pixels: a factorised stand-in for
    parallel 3x3, 5x5 and 7x7 convolutions, as the authors' README describes it ("derived from
    factorizing 5x5 and 7x7 convolution operations to 3x3 ones").

    Args:
        in_channels: input channels.
        u: the filters of the U-Net level this block replaces (32 ... 512 in the paper).
        alpha: W = alpha * u (1.67 in the paper, Section 4).
        spatial_dims: 2 or 3 (the official code has both).

    Shape:
        (B, in_channels, *S) -> (B, sum(multires_widths(u, alpha)), *S).
    """

    #: It adds a projection of its input to its output; the architecture diagram marks it.
    residual = True

    def __init__(self, in_channels: int, u: int, *, alpha: float = 1.67, spatial_dims: int = 2) -> None:
        super().__init__()
        self.widths = multires_widths(u, alpha)
        self.out_channels = sum(self.widths)
        first, second, third = self.widths
        self.conv3 = _conv_bn(in_channels, first, 3, spatial_dims, "relu")   # receptive field 3
        self.conv5 = _conv_bn(first, second, 3, spatial_dims, "relu")        # 5: two 3x3 in a row
        self.conv7 = _conv_bn(second, third, 3, spatial_dims, "relu")        # 7: three in a row
        self.concat_norm = make_norm("batch", self.out_channels, spatial_dims)
        self.shortcut = _conv_bn(in_channels, self.out_channels, 1, spatial_dims, None)
        self.act = nn.ReLU()
        self.norm = make_norm("batch", self.out_channels, spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3(x)
        b = self.conv5(a)
        c = self.conv7(b)
        out = self.concat_norm(torch.cat([a, b, c], dim=1))  # (B, sum(widths), *S)
        return self.norm(self.act(self.shortcut(x) + out))


class ResPathUnit(nn.Module):
    """One unit of a Res path: ``norm(relu(conv3x3(x) + conv1x1(x)))`` (the official ``ResPath``).

    Shape:
        (B, in_channels, *S) -> (B, channels, *S).
    """

    residual = True

    def __init__(self, in_channels: int, channels: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        self.conv = _conv_bn(in_channels, channels, 3, spatial_dims, "relu")
        self.shortcut = _conv_bn(in_channels, channels, 1, spatial_dims, None)
        self.act = nn.ReLU()
        self.norm = make_norm("batch", channels, spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.conv(x) + self.shortcut(x)))


class ResPath(nn.Sequential):
    """``length`` Res path units in a row, all with ``channels`` filters: the layers on one skip.

    Shape:
        (B, in_channels, *S) -> (B, channels, *S).
    """

    def __init__(self, in_channels: int, channels: int, length: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"a Res path has at least one unit; got length={length}.")
        for index in range(length):
            self.add_module(f"unit{index + 1}", ResPathUnit(in_channels if index == 0 else channels, channels,
                                                            spatial_dims=spatial_dims))
