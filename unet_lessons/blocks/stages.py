"""The stages of the U-shaped networks: the U-Net's steps down and up (with the skip joined
by concatenation, cropped or padded), and V-Net's residual stage.

Built in lessons 02 (``Down``, ``Up``, ``center_crop``), 03 (the same in 3D) and 04 (``VNetStage``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import LayerSpec, conv_transpose_type, interpolation_mode, make_act, max_pool_type
from .units import ConvNormAct, DoubleConv

__all__ = ["center_crop", "Down", "Up", "VNetStage"]


def center_crop(x: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing spatial axes of ``x`` to ``spatial_shape`` around the centre.

    Shape:
        (B, C, *S) -> (B, C, *spatial_shape), every target size <= the source size.
    """
    slices = [slice(None), slice(None)]
    for size, target in zip(x.shape[2:], spatial_shape):
        if target > size:
            raise ValueError(f"cannot centre-crop size {size} to the larger size {target}")
        start = (size - target) // 2
        slices.append(slice(start, start + target))
    return x[tuple(slices)]


class Down(nn.Sequential):
    """2x max-pool, then a :class:`DoubleConv`: one step down the contracting path.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S/2) with "same" padding.
    """

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 2,
                 mid_channels: Optional[int] = None, **conv_kwargs) -> None:
        super().__init__()
        self.add_module("pool", max_pool_type(spatial_dims)(kernel_size=2, stride=2))
        self.add_module("conv", DoubleConv(in_channels, out_channels, mid_channels=mid_channels,
                                           spatial_dims=spatial_dims, **conv_kwargs))


class SkipJoin(nn.Module):
    """Where a skip connection meets the decoder: the encoder side and the upsampled side, concatenated or added.

    Every U-shaped model here joins its skips through one of these, so the tools find the joins
    without knowing the model (``SegmentationModel.skip_joins()``): the similarity measures read
    both sides, and a lesson can knock one skip out (``SegmentationModel.skip_knocked_out``): replace it
    by zeros, or by each channel's mean over the map.

    Args:
        mode: ``"concat"`` (U-Net: the channels of both sides side by side) or ``"add"`` (Myronenko 2018).
        skip_first: for ``"concat"``, whether the skip's channels come first (U-Net) or second
            (V-Net's Caffe prototxt and MONAI: the up-convolved map first). The order changes which
            weights of the next convolution read which side, so it is part of the architecture.

    Shape:
        skip (B, C_skip, *S), upsampled (B, C_up, *S) -> (B, C_skip + C_up, *S) or (B, C, *S).
    """

    def __init__(self, mode: str = "concat", *, skip_first: bool = True) -> None:
        super().__init__()
        if mode not in ("concat", "add"):
            raise ValueError(f"a skip join concatenates or adds; mode must be 'concat' or 'add', got {mode!r}.")
        self.mode, self.skip_first = mode, skip_first
        # Set by SegmentationModel.skip_knocked_out / knock_out_skips: None (the skip passes), "zero" (the skip
        # side becomes zeros) or "mean" (each channel becomes its own spatial mean, per sample).
        self.knocked_out: Optional[str] = None

    def forward(self, skip: torch.Tensor, upsampled: torch.Tensor) -> torch.Tensor:
        if self.knocked_out == "zero":
            skip = torch.zeros_like(skip)  # the decoder sees no encoder detail at this level
        elif self.knocked_out == "mean":
            # Each channel's average over the map: the level's typical activation, none of its layout.
            skip = skip.mean(dim=tuple(range(2, skip.ndim)), keepdim=True).expand_as(skip)
        if self.mode == "add":
            return upsampled + skip
        return torch.cat([skip, upsampled] if self.skip_first else [upsampled, skip], dim=1)

    def extra_repr(self) -> str:
        order = "" if self.mode == "add" else f", skip_first={self.skip_first}"
        return f"mode={self.mode!r}{order}" + (f", knocked_out={self.knocked_out!r}" if self.knocked_out else "")


class Up(nn.Module):
    """Upsample, join the skip connection, then a :class:`DoubleConv`.

    Args:
        in_channels: channels of the map coming up from below.
        skip_channels: channels of the encoder map joined at this level.
        out_channels: output channels.
        spatial_dims: 2 or 3.
        upsample: ``"transpose"`` (2x2 stride-2 transposed conv to ``up_channels``
            channels, the paper's "up-convolution") or ``"interp"`` (bi/trilinear, channels kept).
        up_channels: output channels of the transposed conv: ``skip_channels`` by default
            (the 2D U-Net halves the channels), ``in_channels`` in the 3D U-Net (kept).
        up_bias: bias of the transposed conv.
        align_corners: for ``"interp"``; the seed uses ``True``, PyTorch recommends ``False``
            (pixel centres stay aligned, and every output pixel reads at most two inputs per axis).
        padding: ``"same"`` pads the upsampled map to the skip's size; ``"valid"``
            centre-crops the skip to the upsampled map's size.
        conv_kwargs: ``norm``, ``act``, ``bias`` for the DoubleConv.

    Shape:
        below (B, in_channels, *S/2), skip (B, skip_channels, *S) -> (B, out_channels, *S')
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        upsample: str = "transpose",
        up_channels: Optional[int] = None,
        up_bias: bool = True,
        align_corners: bool = False,
        padding: str = "same",
        **conv_kwargs,
    ) -> None:
        super().__init__()
        self.padding = padding
        if upsample == "transpose":
            up_channels = skip_channels if up_channels is None else up_channels
            self.up = conv_transpose_type(spatial_dims)(in_channels, up_channels, kernel_size=2, stride=2, bias=up_bias)
        elif upsample == "interp":
            mode = interpolation_mode(spatial_dims)
            self.up = nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
            up_channels = in_channels
        else:
            raise ValueError(f"upsample must be 'transpose' or 'interp'; got {upsample!r}.")
        self.join = SkipJoin("concat", skip_first=True)  # the paper's Fig. 1: the copied map, then the up-conv's
        self.conv = DoubleConv(skip_channels + up_channels, out_channels, spatial_dims=spatial_dims,
                               padding=padding, **conv_kwargs)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(below)  # (B, C_up, *2S)
        if self.padding == "valid":
            skip = center_crop(skip, up.shape[2:])  # "copy and crop"
        elif up.shape[2:] != skip.shape[2:]:
            # Odd input sizes lose a pixel in pooling; pad it back (F.pad lists the last axis first).
            pads = []
            for size_up, size_skip in zip(reversed(up.shape[2:]), reversed(skip.shape[2:])):
                diff = size_skip - size_up
                pads += [diff // 2, diff - diff // 2]
            up = F.pad(up, pads)
        return self.conv(self.join(skip, up))  # (B, C_skip + C_up, *S) -> (B, C_out, *S)


class VNetStage(nn.Module):
    """``num_convs`` padded convolutions with a residual add: ``act(convs(x) + x)``.

    Args:
        in_channels: input channels. When they differ from ``channels`` (only in the first
            stage: 1 image channel, 16 feature maps) the residual repeats the input
            ``channels // in_channels`` times along the channel axis, as the official code does.
        channels: output channels of every conv.
        num_convs: convolutions in the stage (1 to 3 in the paper).
        spatial_dims: 2 or 3.
        kernel_size: 5 in the paper.
        norm: normalisation after each conv (``None`` in the paper).
        act: activation between the convs and after the add.
        bias: conv bias, see :class:`~unet_lessons.blocks.ConvNormAct`.
        act_before_add: also put ``act`` on the last conv before the add (MONAI's ``LUConv``
            does; the Caffe prototxt adds the raw conv output).

    Shape:
        (B, in_channels, *S) -> (B, channels, *S).
    """

    #: The stage adds its input to its output; the architecture diagram marks such stages.
    residual = True

    def __init__(self, in_channels: int, channels: int, num_convs: int, *, spatial_dims: int = 3,
                 kernel_size: int = 5, norm: LayerSpec = None, act: LayerSpec = "prelu",
                 bias: Optional[bool] = True, act_before_add: bool = False) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"a V-Net stage needs at least one convolution; got num_convs={num_convs}.")
        if channels % in_channels:
            raise ValueError(f"the residual repeats the {in_channels} input channels to {channels}, so {channels} "
                             f"must be a multiple of {in_channels}; choose width (base_features) as a multiple of in_channels.")
        self.repeats = channels // in_channels
        self.convs = nn.Sequential()
        for index in range(num_convs):
            last = index == num_convs - 1
            self.convs.add_module(f"conv{index + 1}", ConvNormAct(
                in_channels if index == 0 else channels, channels, kernel_size, spatial_dims=spatial_dims,
                norm=norm, act=None if last and not act_before_add else act, bias=bias))
        self.act = make_act(act, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.repeats == 1 else x.repeat(1, self.repeats, *[1] * (x.ndim - 2))  # (B, C, *S)
        return self.act(self.convs(x) + residual)  # (B, C, *S)
