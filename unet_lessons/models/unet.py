"""U-Net, in 2D and 3D, in the paper's form and in the popular "seed" form.

Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (Section 2, Fig. 1); Çiçek et al., "3D U-Net", MICCAI 2016.

A contracting path of (DoubleConv, 2x2 max-pool) stages doubles the channels and halves
the size; an expanding path upsamples, concatenates the encoder feature map of the same
level (the long skip connection) and applies another DoubleConv; a 1x1 conv maps to
class scores. Two switches select between the paper and the popular variant:

* ``padding="valid"`` (paper): unpadded 3x3 convs, so every conv trims the map and the
  skip is centre-cropped ("copy and crop"); a 572x572 tile gives a 388x388 output.
  ``padding="same"`` (seed): padded convs, output size = input size, odd sizes are
  handled by padding the upsampled map to the skip's size.
* ``upsample="transpose"`` (paper): a 2x2 stride-2 transposed conv that halves the
  channels. ``upsample="interp"`` (seed): parameter-free bilinear/trilinear upsampling;
  as in the seed, the bottleneck then has half the channels so that the concatenations
  keep the same widths.

Built step by step in ``notebooks/02_unet.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..blocks import Down, DoubleConv, Up, center_crop, conv_type
from .base import SegmentationModel

__all__ = ["Down", "Up", "UNet", "UNET_PRESETS", "center_crop"]


class UNet(SegmentationModel):
    """U-Net for 2D images or 3D volumes (Ronneberger et al. 2015; Çiçek et al. 2016).

    Args:
        in_channels: input channels (1 for EM, 4 for multi-modal MRI).
        out_channels: number of classes; the output holds one logit map per class.
        spatial_dims: 2 or 3.
        features: channels per level, top to bottom; ``depth = len(features) - 1``
            poolings. Defaults to ``width * 2**i``.
        width: channels of the first level when ``features`` is not given (64 in the paper);
            ``base_features`` is its old name and still accepted.
        depth: number of poolings when ``features`` is not given (4 in the paper).
        upsample: ``"transpose"`` (paper) or ``"interp"`` (seed).
        padding: ``"same"`` (seed) or ``"valid"`` (paper).
        norm: ``"batch"`` (seed), ``None`` (paper), or another name from :func:`~unet_lessons.blocks.make_norm`.
        act: activation name.
        bias: conv bias in the DoubleConvs.
        up_bias: bias of the transposed convs.
        align_corners: corner alignment of the interpolation (``upsample="interp"`` only).
        channel_plan: ``"unet"`` (2015: both convs of a level at its width, the up-conv halves
            the channels) or ``"unet3d"`` (Çiçek et al. 2016, Section 2: the first conv of each
            encoder level has half the level's width, so the channels double *before* pooling,
            and the up-conv keeps the channels). ``UNet.preset("cicek2016")`` is the paper's net.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S) with ``padding="same"``;
        (B, in_channels, *S) -> (B, out_channels, *output_size(S)) with ``padding="valid"``.
    """

    argument_aliases = {"base_features": "width"}
    example_arguments = ({"depth": 2}, {"depth": 2, "padding": "valid", "norm": None}, {"depth": 2, "upsample": "interp"})

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        *,
        spatial_dims: int = 2,
        features: Optional[Sequence[int]] = None,
        width: int = 64,
        depth: int = 4,
        upsample: str = "transpose",
        padding: str = "same",
        norm: Optional[str] = "batch",
        act: Optional[str] = "relu",
        bias: bool = True,
        up_bias: bool = True,
        align_corners: bool = False,
        channel_plan: str = "unet",
    ) -> None:
        super().__init__()
        if channel_plan not in ("unet", "unet3d"):
            raise ValueError(f"channel_plan must be 'unet' or 'unet3d'; got {channel_plan!r}.")
        if features is None:
            if depth < 1:
                raise ValueError(f"depth must be at least 1; got {depth}.")
            features = [width * 2**level for level in range(depth + 1)]
        features = [int(f) for f in features]
        if len(features) < 2:
            raise ValueError(f"features needs at least two levels; got {features}.")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}.")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.features, self.depth = tuple(features), len(features) - 1
        self.upsample_mode, self.padding, self.channel_plan = upsample, padding, channel_plan
        conv_kwargs = dict(spatial_dims=spatial_dims, padding=padding, norm=norm, act=act, bias=bias)
        unet3d = channel_plan == "unet3d"
        half = lambda width: width // 2 if unet3d else None  # noqa: E731  (first conv's width)

        # With interpolation the seed halves the bottleneck, so each concat keeps 2 x skip channels.
        bottom = features[-1] // 2 if upsample == "interp" and not unet3d else features[-1]
        self.inc = DoubleConv(in_channels, features[0], mid_channels=half(features[0]), **conv_kwargs)
        self.downs = nn.ModuleList()
        for level in range(self.depth):
            out = bottom if level == self.depth - 1 else features[level + 1]
            self.downs.append(Down(features[level], out, mid_channels=half(out), **conv_kwargs))
        self.ups = nn.ModuleList()
        below = bottom
        for level in reversed(range(self.depth)):
            if upsample == "interp" and not unet3d:
                out = features[level - 1] if level > 0 else features[0]
            else:
                out = features[level]
            self.ups.append(Up(below, features[level], out, upsample=upsample, up_bias=up_bias,
                               up_channels=below if unet3d else None,
                               align_corners=align_corners, **conv_kwargs))
            below = out
        self.head = conv_type(spatial_dims)(features[0], out_channels, kernel_size=1)

    @classmethod
    def preset(cls, name: str, **overrides) -> "UNet":
        """A paper's configuration by name (see :data:`UNET_PRESETS`); ``overrides`` replace its arguments.

        ``"ronneberger2015"``: the 2D U-Net of Fig. 1 (1 channel in, 2 classes, 64…1024 channels,
        valid convs, no normalisation). ``"cicek2016"``: the 3D U-Net of Fig. 1 (3 channels in,
        3 classes, 32,64 | 64,128 | 128,256 | 256,512, BatchNorm, bias-free up-convolutions).
        """
        if name not in UNET_PRESETS:
            raise KeyError(f"Unknown U-Net preset {name!r}; choose one of {sorted(UNET_PRESETS)}.")
        return cls(**{**UNET_PRESETS[name], **overrides})

    # ----- sizes -------------------------------------------------------------------------
    def output_size(self, size: int) -> Optional[int]:
        """Output length of one axis for an input of length ``size``, or ``None`` if it cannot be taken.

        With ``padding="same"`` every length of at least ``2**depth`` works and is kept.
        With ``padding="valid"`` every DoubleConv trims 4, and each pooling needs an even length.
        """
        if self.padding == "same":
            return size if size >= 2**self.depth else None
        for _ in range(self.depth):
            size -= 4
            if size <= 0 or size % 2:
                return None
            size //= 2
        size -= 4  # bottleneck
        for _ in range(self.depth):
            if size <= 0:
                return None
            size = size * 2 - 4
        return size if size > 0 else None

    def size_rule(self) -> str:
        if self.padding == "same":
            return f"With padding='same' and depth {self.depth} every axis needs at least 2**{self.depth} = {2**self.depth} voxels."
        return (f"With padding='valid' and depth {self.depth} every conv trims the map and every pooling "
                "needs an even size (model.valid_sizes() lists them).")

    # ----- forward -----------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Run the network and return every stage's output by name.

        Keys: ``enc0`` … ``enc{depth-1}`` (the skip sources), ``bottleneck``,
        ``dec{depth-1}`` … ``dec0`` and ``logits``.
        """
        self.check_input(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.inc(x)  # (B, F0, *S)
        skips = [h]
        feats["enc0"] = h
        for level, down in enumerate(self.downs, start=1):
            h = down(h)  # (B, F_level, *S / 2**level)
            if level < self.depth:
                skips.append(h)
                feats[f"enc{level}"] = h
        feats["bottleneck"] = h
        for level, up in zip(reversed(range(self.depth)), self.ups):
            h = up(h, skips[level])  # (B, C_out, *S / 2**level)
            feats[f"dec{level}"] = h
        feats["logits"] = self.head(h)  # (B, out_channels, *S)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["logits"]

    # ----- the layers, stage by stage ------------------------------------------------------
    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules of each stage, keyed as in :meth:`forward_features` (see ``SegmentationModel``)."""
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(enc0=[self.inc])
        for level, down in enumerate(self.downs, start=1):
            stages["bottleneck" if level == self.depth else f"enc{level}"] = [down]
        for level, up in zip(reversed(range(self.depth)), self.ups):
            stages[f"dec{level}"] = [up.up, up.join, up.conv]  # upsample, join the skip, the DoubleConv
        stages["logits"] = [self.head]
        return stages


#: The papers' configurations, as ``UNet`` arguments (``UNet.preset(name)``).
UNET_PRESETS: dict[str, dict] = {
    "ronneberger2015": dict(in_channels=1, out_channels=2, spatial_dims=2, features=(64, 128, 256, 512, 1024),
                            upsample="transpose", padding="valid", norm=None),
    # Çiçek et al. 2016, Section 2: "each layer contains two 3x3x3 convolutions each followed by a
    # ReLU, and then a 2x2x2 max pooling"; BatchNorm before each ReLU; up-convolutions of 2x2x2.
    "cicek2016": dict(in_channels=3, out_channels=3, spatial_dims=3, features=(64, 128, 256, 512),
                      upsample="transpose", padding="valid", norm="batch", channel_plan="unet3d", up_bias=False),
}
