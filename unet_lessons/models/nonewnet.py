"""No New-Net: the plain 3D U-Net with which Isensee et al. took second place in BraTS 2018.

F. Isensee, P. Kickingereder, W. Wick, M. Bendszus, K. H. Maier-Hein, "No New-Net",
BrainLes 2018 (LNCS 11384), arXiv:1809.10483. The abstract: "a well trained U-Net is hard to
beat"; "This setup achieved rank two in BraTS2018".

The layout follows the authors' released inference code for their BraTS 2018 model
(ModelHub ``mic-dkfz-brats``, ``contrib_src/predict.py``), cross-checked against NiftyNet's
third-party ``no_new_net``:

* 30 feature maps at full resolution, doubling per level, four 2×2×2 max-poolings (five
  levels); the authors cap the widest level at 320 (``max_num_filters_3d``), NiftyNet does not
  (480): ``max_features`` chooses;
* padded 3×3×3 convolutions, each followed by instance normalisation (affine) and a leaky
  ReLU with negative slope 0.01 (NiftyNet's layer uses 0.02);
* no learned upsampling: trilinear interpolation;
* "fewer filters before upsampling": the last convolution of the bottleneck and of every
  decoder stage already outputs the channels of the skip it will be joined to (bottleneck
  320 → 240, then 240 → 120, 120 → 60, 60 → 30), so that the upsampled map and the skip are
  the same width; no extra 1×1×1 convolution;
* a 1×1×1 head, three sigmoid outputs (whole tumour, tumour core, enhancing tumour) in the
  authors' region-based training; no deep supervision.

It is a :class:`~unet_lessons.models.UNet` in everything but its widths, so every tool of the
model contract works on it unchanged. Built step by step in ``notebooks/06_no_new_net.ipynb``.
"""

from __future__ import annotations

import torch.nn as nn

from ..blocks import Down, DoubleConv, Up, conv_type
from ..blocks.layers import LayerSpec
from .base import SegmentationModel
from .unet import UNet

__all__ = ["NoNewNet", "no_new_net_widths"]


def no_new_net_widths(width: int, depth: int, max_features: int) -> list[int]:
    """Channels per level, top to bottom: ``width · 2^level``, capped at ``max_features``."""
    return [min(width * 2**level, max_features) for level in range(depth + 1)]


class NoNewNet(UNet):
    """Isensee et al.'s No New-Net (BraTS 2018): a 3D U-Net with instance norm, leaky ReLU and trilinear upsampling.

    Args:
        in_channels: input channels (4 MRI modalities).
        out_channels: output channels: 3 regions under sigmoid (the paper's region-based
            training) or 4 classes under softmax.
        spatial_dims: 3 (the paper); 2 works too, for small experiments.
        width: feature maps at full resolution (30 in the paper); shrink it for a CPU.
        depth: number of poolings (4 in the paper).
        max_features: the cap on a level's width (320 in the authors' code, 480 in NiftyNet's).
        norm, act: per convolution; the paper's instance norm and leaky ReLU by default.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S), each side of S a multiple of 2^depth.
    """

    argument_aliases = {"base_features": "width"}
    example_arguments = ({"depth": 2}, {"depth": 2, "max_features": 8})
    spatial_dims_supported = (2, 3)

    def __init__(self, in_channels: int = 4, out_channels: int = 3, *, spatial_dims: int = 3, width: int = 30,
                 depth: int = 4, max_features: int = 320,
                 norm: LayerSpec = ("instance", {"affine": True}),
                 act: LayerSpec = ("leakyrelu", {"negative_slope": 1e-2})) -> None:
        SegmentationModel.__init__(self)
        if depth < 1 or width < 1 or max_features < width:
            raise ValueError(f"NoNewNet needs depth >= 1 and 1 <= width <= max_features; got depth={depth}, "
                             f"width={width}, max_features={max_features}.")
        features = no_new_net_widths(width, depth, max_features)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.features, self.depth, self.padding = tuple(features), depth, "same"
        self.upsample_mode, self.channel_plan, self.max_features = "interp", "no_new_net", max_features
        conv = dict(spatial_dims=spatial_dims, padding="same", norm=norm, act=act, bias=True)
        self.inc = DoubleConv(in_channels, features[0], **conv)
        self.downs = nn.ModuleList()
        for level in range(1, depth + 1):
            # The bottleneck's second convolution already reduces to the width of the skip above it.
            out = features[level - 1] if level == depth else features[level]
            self.downs.append(Down(features[level - 1], out, mid_channels=features[level], **conv))
        self.ups = nn.ModuleList()
        for level in reversed(range(depth)):
            out = features[level - 1] if level > 0 else features[0]  # reduce before the next upsampling
            self.ups.append(Up(features[level], features[level], out, upsample="interp",
                               mid_channels=features[level], **conv))
        self.head = conv_type(spatial_dims)(features[0], out_channels, kernel_size=1)

    def output_size(self, size: int) -> int | None:
        """Every length of at least ``2**(depth + 1)`` is kept: instance normalisation needs more than one
        voxel in the bottleneck to compute a mean and variance, so the bottleneck must be at least 2 wide."""
        return size if size >= 2 ** (self.depth + 1) else None

    def size_rule(self) -> str:
        return (f"With depth {self.depth} every axis needs at least 2**{self.depth + 1} = {2 ** (self.depth + 1)} voxels: "
                "instance normalisation needs the bottleneck to be at least 2 voxels wide.")
