"""MultiResUNet (Ibtehaz and Rahman, Neural Networks 2020), in 2D and 3D.

A U-Net whose pairs of 3x3 convolutions become MultiRes blocks and whose skips carry Res
paths: 4, 3, 2, 1 units from the top level down (paper, Section 4). Laid out as the authors'
Keras code (github.com/nibtehaz/MultiResUNet, ``tensorflow/MultiResUNet.py``, ``MultiResUnet``):

* encoder: MultiRes block with U = 32, 64, 128, 256, then 2x2 max-pooling; bottleneck U = 512;
* each skip: a Res path of ``depth - level`` units with U filters;
* decoder: a 2x2 stride-2 transposed convolution to U channels (with a bias, no norm), the
  upsampled map *first* and the Res path's output second in the concatenation, a MultiRes block;
* output: a 1x1 convolution without bias followed by ``BatchNormalization(scale=False)``: the
  code batch-normalises the output layer, although Section 4 says "All the convolutional
  layers except for the output layer [...] are batch-normalized". ``output_norm=False`` follows
  the text (a 1x1 convolution with a bias). The sigmoid (softmax here) belongs to the loss.

``MultiResUNet.preset("ibtehaz2020")`` (3 channels in, 1 out, U = 32) has exactly the
parameters that Keras's ``summary()`` prints for ``MultiResUnet(128, 128, 3)``: its trainable
parameters are this model's ``parameters()``, its non-trainable ones the batch norms'
running means and variances (buffers here; see ``keras_counts``).

Two switches take the network apart for the lesson's ablations: ``block="double_conv"`` puts
the U-Net's pair of convolutions back (Res paths without MultiRes blocks), ``res_paths=False``
copies the skips (MultiRes blocks without Res paths).

Built step by step in ``notebooks/08_multiresunet.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn

from ..blocks import (DoubleConv, MultiResBlock, ResPath, SkipJoin, conv_transpose_type, conv_type, make_norm,
                      max_pool_type)
from ..blocks.multires import SHIFT_ONLY_BATCH_NORM
from .base import SegmentationModel

__all__ = ["MultiResUNet", "MULTIRESUNET_PRESETS", "keras_counts"]

BLOCKS = ("multires", "double_conv")


class MultiResUNet(SegmentationModel):
    """MultiResUNet for 2D images or 3D volumes (Ibtehaz and Rahman 2020).

    Args:
        in_channels: input channels (3 in the paper's code: RGB).
        out_channels: classes; one logit map per class (the paper's code: 1, with a sigmoid).
        spatial_dims: 2 or 3.
        width: U of the first level (32 in the paper); level i has U = width * 2**i.
        depth: number of poolings (4 in the paper); the Res path of level i has depth - i units.
        alpha: W = alpha * U sets a MultiRes block's filters (1.67 in the paper).
        block: ``"multires"`` (the paper) or ``"double_conv"`` (the U-Net's two 3x3 convolutions with
            batch norm, U channels: Res paths without MultiRes blocks).
        res_paths: Res paths on the skips (the paper), or ``False``: the skips copy.
        output_norm: the official code's batch norm after the output convolution (``True``), or the
            paper's text: none, and a bias instead.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S), every axis a multiple of 2**depth.
    """

    skip_join = "concat"
    example_arguments = ({"depth": 2}, {"depth": 2, "res_paths": False}, {"depth": 2, "block": "double_conv"},
                         {"depth": 2, "output_norm": False})

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 2, width: int = 32,
                 depth: int = 4, alpha: float = 1.67, block: str = "multires", res_paths: bool = True,
                 output_norm: bool = True) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"MultiResUNet is built for spatial_dims=2 or 3; got spatial_dims={spatial_dims}.")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}; got {block!r}.")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.padding, self.depth = "same", depth
        self.block_kind, self.has_res_paths = block, res_paths
        self.units = tuple(width * 2**level for level in range(depth + 1))  # U per level

        def make_block(channels_in: int, u: int) -> nn.Module:
            if block == "multires":
                return MultiResBlock(channels_in, u, alpha=alpha, spatial_dims=spatial_dims)
            made = DoubleConv(channels_in, u, spatial_dims=spatial_dims)
            made.out_channels = u
            return made

        pool = max_pool_type(spatial_dims)
        self.encoder = nn.ModuleList()
        channels = in_channels
        for level, u in enumerate(self.units):
            made = make_block(channels, u)
            self.encoder.append(made if level == 0 else nn.Sequential(OrderedDict(pool=pool(2), block=made)))
            channels = made.out_channels
        self.block_channels = tuple(
            (stage if level == 0 else stage.block).out_channels for level, stage in enumerate(self.encoder))
        # The Res path of level i: depth - i units of U_i filters (4, 3, 2, 1 in the paper); else a copy.
        self.res_paths = nn.ModuleList(
            ResPath(self.block_channels[level], self.units[level], depth - level, spatial_dims=spatial_dims)
            if res_paths else nn.Identity() for level in range(depth))
        skip_channels = [self.units[level] if res_paths else self.block_channels[level] for level in range(depth)]
        self.ups, self.joins, self.decoder = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        below = self.block_channels[-1]
        for level in reversed(range(depth)):
            u = self.units[level]
            self.ups.append(conv_transpose_type(spatial_dims)(below, u, kernel_size=2, stride=2))  # Keras: bias, no norm
            self.joins.append(SkipJoin("concat", skip_first=False))  # concatenate([up, skip]) in the official code
            made = make_block(u + skip_channels[level], u)
            self.decoder.append(made)
            below = made.out_channels
        head = [conv_type(spatial_dims)(below, out_channels, kernel_size=1, bias=not output_norm)]
        if output_norm:
            head.append(make_norm(SHIFT_ONLY_BATCH_NORM, out_channels, spatial_dims))
        self.head = nn.Sequential(*head)

    @classmethod
    def preset(cls, name: str, **overrides) -> "MultiResUNet":
        """A paper's configuration by name (see :data:`MULTIRESUNET_PRESETS`); ``overrides`` replace its arguments."""
        if name not in MULTIRESUNET_PRESETS:
            raise KeyError(f"Unknown MultiResUNet preset {name!r}; choose one of {sorted(MULTIRESUNET_PRESETS)}.")
        return cls(**{**MULTIRESUNET_PRESETS[name], **overrides})

    # ----- sizes ---------------------------------------------------------------------------
    def output_size(self, size: int) -> Optional[int]:
        """``size`` when it is a positive multiple of ``2**depth`` (the concatenations need equal sizes), else ``None``."""
        return size if size > 0 and size % 2**self.depth == 0 else None

    def size_rule(self) -> str:
        return (f"With depth {self.depth} every axis must be a multiple of 2**{self.depth} = {2**self.depth} "
                "(the up-sampled map and the skip must have the same size to be concatenated).")

    # ----- forward ---------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Every stage's output by name: ``enc0`` ... ``enc{depth-1}`` (the blocks' outputs, before
        their Res paths), ``bottleneck``, then ``skip{i}`` (after the Res path, when there is one) and
        ``dec{i}`` from the bottom up, and ``logits``."""
        self.check_input(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = x
        for level, stage in enumerate(self.encoder):
            h = stage(h)  # (B, C_level, *S / 2**level)
            feats["bottleneck" if level == self.depth else f"enc{level}"] = h
        for up, join, block, level in zip(self.ups, self.joins, self.decoder, reversed(range(self.depth))):
            skip = self.res_paths[level](feats[f"enc{level}"])  # (B, U_level, *S / 2**level)
            if self.has_res_paths:
                feats[f"skip{level}"] = skip
            h = block(join(skip, up(h)))  # concatenate [up, skip], then the block
            feats[f"dec{level}"] = h
        feats["logits"] = self.head(h)  # (B, out_channels, *S)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["logits"]

    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules of each stage, keyed as in :meth:`forward_features` (see ``SegmentationModel``)."""
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict()
        for level, stage in enumerate(self.encoder):
            stages["bottleneck" if level == self.depth else f"enc{level}"] = [stage]
        for up, join, block, level in zip(self.ups, self.joins, self.decoder, reversed(range(self.depth))):
            if self.has_res_paths:
                stages[f"skip{level}"] = [self.res_paths[level]]
            stages[f"dec{level}"] = [up, join, block]
        stages["logits"] = [self.head]
        return stages


#: The paper's configuration: the official ``MultiResUnet(height, width, n_channels=3)``, one output.
MULTIRESUNET_PRESETS: dict[str, dict] = {
    "ibtehaz2020": dict(in_channels=3, out_channels=1, spatial_dims=2, width=32, depth=4, alpha=1.67),
}


def keras_counts(model: nn.Module) -> dict[str, int]:
    """The three figures Keras's ``model.summary()`` prints, read from a PyTorch model.

    Keras counts a batch norm's moving mean and variance as non-trainable parameters; PyTorch
    keeps them as buffers (``running_mean``, ``running_var``) and also keeps a step counter
    (``num_batches_tracked``) that Keras has no counterpart for and that is not counted.

    Returns:
        ``{"total": ..., "trainable": ..., "non_trainable": ...}``.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    statistics = sum(b.numel() for name, b in model.named_buffers() if name.rsplit(".", 1)[-1] in ("running_mean", "running_var"))
    return {"total": trainable + frozen + statistics, "trainable": trainable, "non_trainable": frozen + statistics}
