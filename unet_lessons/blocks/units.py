"""The convolutional units every network here is made of: conv-norm-act in both orders, the
U-Net's double convolution, a residual block and strided-convolution downsampling.

Built in lessons 02 (``DoubleConv``) and 07 (the pre-activation residual block).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .layers import LayerSpec, conv_type, make_act, make_norm

__all__ = ["ConvNormAct", "DoubleConv", "ResidualBlock", "StridedDown", "ORDERS"]

#: "conv_norm_act" (post-activation, most networks here) or "norm_act_conv" (pre-activation:
#: He et al., "Identity mappings in deep residual networks", 2016; Myronenko 2018).
ORDERS = ("conv_norm_act", "norm_act_conv")


class ConvNormAct(nn.Sequential):
    """conv → norm → act (or norm → act → conv), the unit every network here is made of.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: convolution kernel size.
        spatial_dims: 2 for images, 3 for volumes.
        padding: ``"same"`` pads ``kernel_size // 2`` (the size is kept at stride 1);
            ``"valid"`` pads nothing, so each 3x3 conv trims one pixel per side, as in the 2015 U-Net.
        norm: normalisation, see :func:`~unet_lessons.blocks.make_norm`.
        act: activation, see :func:`~unet_lessons.blocks.make_act`.
        bias: conv bias. ``True`` (PyTorch's default); ``None`` means "only when no norm follows the
            conv", because a norm that subtracts the mean makes the bias redundant.
        stride: convolution stride (2 halves the size: strided downsampling).
        order: ``"conv_norm_act"``, or ``"norm_act_conv"`` for pre-activation residual networks,
            where the norm and the activation act on the ``in_channels`` input.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S'), S' = ceil(S / stride) ("same")
        or S - (k - 1) ("valid", stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        spatial_dims: int = 2,
        padding: str = "same",
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
        bias: Optional[bool] = True,
        stride: int = 1,
        order: str = "conv_norm_act",
    ) -> None:
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}.")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}; got {order!r}.")
        pad = kernel_size // 2 if padding == "same" else 0
        conv_bias = (norm is None or order == "norm_act_conv") if bias is None else bias
        conv = conv_type(spatial_dims)(in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=conv_bias)
        if order == "conv_norm_act":
            self.add_module("conv", conv)
            self.add_module("norm", make_norm(norm, out_channels, spatial_dims))
            self.add_module("act", make_act(act, out_channels))
        else:
            self.add_module("norm", make_norm(norm, in_channels, spatial_dims))
            self.add_module("act", make_act(act, in_channels))
            self.add_module("conv", conv)


class DoubleConv(nn.Sequential):
    """Two (conv -> norm -> act) layers: one U-Net stage (Ronneberger et al. 2015, Fig. 1).

    Args:
        in_channels: input channels.
        out_channels: output channels of the second conv.
        mid_channels: output channels of the first conv; ``out_channels`` when not given.
            The 3D U-Net's encoder uses ``out_channels // 2`` (Çiçek et al. 2016, Section 2).
        spatial_dims: 2 or 3.
        padding: ``"same"`` or ``"valid"``, see :class:`ConvNormAct`.
        norm: normalisation; the seed article uses ``"batch"``, the paper ``None``.
        act: activation.
        bias: conv bias, see :class:`ConvNormAct`.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S'), S' = S ("same") or S - 4 ("valid").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        mid_channels: Optional[int] = None,
        spatial_dims: int = 2,
        padding: str = "same",
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
        bias: Optional[bool] = True,
    ) -> None:
        super().__init__()
        common = dict(spatial_dims=spatial_dims, padding=padding, norm=norm, act=act, bias=bias)
        mid_channels = out_channels if mid_channels is None else mid_channels
        self.add_module("conv1", ConvNormAct(in_channels, mid_channels, **common))
        self.add_module("conv2", ConvNormAct(mid_channels, out_channels, **common))


class ResidualBlock(nn.Module):
    """``num_convs`` padded convolutions plus a shortcut: ``body(x) + shortcut(x)``.

    The shortcut is the identity when the channels stay the same, else a 1×1 convolution
    (He et al. 2016, "projection shortcut"). In the pre-activation order (``"norm_act_conv"``,
    Myronenko 2018's block: GroupNorm, ReLU, 3×3×3 conv, twice) nothing follows the addition;
    in the post-activation order the last unit's activation moves after the addition, as in
    the original ResNet.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        spatial_dims: 2 or 3.
        kernel_size: kernel of the body's convolutions.
        num_convs: convolutions in the body.
        norm: normalisation, e.g. ``("group", {"num_groups": 8})``.
        act: activation.
        order: ``"norm_act_conv"`` (pre-activation, default) or ``"conv_norm_act"``.
        dropout: spatial dropout after the body's first convolution (Myronenko: 0.2 in the
            first encoder block), 0 for none.
        bias: conv bias, see :class:`ConvNormAct` (MONAI's ``ResBlock`` has none: ``False``).

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S).
    """

    #: The block adds its input (or its projection) to its output; the architecture diagram marks it.
    residual = True

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 3, kernel_size: int = 3,
                 num_convs: int = 2, norm: LayerSpec = ("group", {"num_groups": 8}), act: LayerSpec = "relu",
                 order: str = "norm_act_conv", dropout: float = 0.0, bias: Optional[bool] = None) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"a residual block needs at least one convolution; got num_convs={num_convs}.")
        self.order = order
        pre = order == "norm_act_conv"
        self.body = nn.Sequential()
        for i in range(num_convs):
            last = i == num_convs - 1
            self.body.add_module(f"unit{i + 1}", ConvNormAct(
                in_channels if i == 0 else out_channels, out_channels, kernel_size, spatial_dims=spatial_dims,
                norm=norm, act=None if (last and not pre) else act, bias=bias, order=order))
            if i == 0 and dropout > 0:
                self.body.add_module("dropout", nn.Dropout(dropout) if spatial_dims == 1 else
                                     (nn.Dropout2d(dropout) if spatial_dims == 2 else nn.Dropout3d(dropout)))
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else conv_type(spatial_dims)(in_channels, out_channels, kernel_size=1, bias=False))
        self.act = nn.Identity() if pre else make_act(act, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))  # (B, out_channels, *S)


class StridedDown(ConvNormAct):
    """Downsampling by a strided convolution: size halved, channels as asked.

    Args:
        in_channels: input channels.
        out_channels: output channels (usually twice the input's).
        spatial_dims: 2 or 3.
        kernel_size: 3 (Myronenko 2018, nnU-Net) or 2 (V-Net's 2×2×2, padding none).
        norm, act: as :class:`ConvNormAct`; ``None`` for a bare convolution (Myronenko's).

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *ceil(S / 2)).
    """

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 3, kernel_size: int = 3,
                 norm: LayerSpec = None, act: LayerSpec = None, bias: Optional[bool] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, spatial_dims=spatial_dims,
                         padding="same" if kernel_size % 2 else "valid", norm=norm, act=act, bias=bias, stride=2)


class ResidualAdd(nn.Module):
    """``x + out``: a block's residual addition as a module, for a model whose stages list the modules that run
    for one domain rather than the block (3D U²-Net): the diagram reads ``residual`` from it."""

    residual = True  # it adds the block's input to its output

    def forward(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return x + out
