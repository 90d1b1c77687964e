"""UNet++: nested, dense skip pathways with deep supervision, in 2D and 3D.

Zhou, Siddiquee, Tajbakhsh and Liang, "UNet++: A Nested U-Net Architecture for Medical
Image Segmentation", DLMIA 2018 (Section 2, Fig. 1). The encoder is a U-Net's: nodes
``X^{i,0}``, each a unit of two 3x3 conv + act, pooled between levels. Between encoder
and decoder, every skip pathway becomes a row of nodes::

    X^{i,j} = H(concat(X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})))     for j >= 1

so the features that reach the top row have passed through convolutions at every depth.
With deep supervision, a 1x1 head on each of ``X^{0,1} ... X^{0,L}`` gives a
segmentation, and the loss is averaged over them; at inference the model can be pruned
to depth ``k``: only the nodes with ``i + j <= k`` are needed for ``X^{0,k}``.

The seed article says no 3D version exists; MONAI's ``BasicUNetPlusPlus`` is 2D and 3D,
and so is this one, through ``spatial_dims``.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from ..blocks import DoubleConv, conv_transpose_type, conv_type, max_pool_type
from ..losses.deep_supervision import DeepSupervisionLoss, deep_supervision_loss  # their home; kept here for lesson 05
from .base import SegmentationModel

__all__ = ["UNetPlusPlus", "DeepSupervisionLoss", "deep_supervision_loss", "load_monai_weights"]


class UNetPlusPlus(SegmentationModel):
    """UNet++ (Zhou et al. 2018) for 2D images or 3D volumes; returns logits.

    Args:
        in_channels: input channels.
        out_channels: classes (1 with a sigmoid in the paper's binary tasks).
        spatial_dims: 2 or 3.
        features: channels of the levels ``X^{0,.}`` … ``X^{L,.}`` (paper: 32, 64, 128, 256, 512).
            Defaults to ``width * 2**i`` for ``i = 0 … depth``.
        width: channels of the top level when ``features`` is not given (32 in the paper).
        depth: ``L``, the number of poolings, when ``features`` is not given (4 in the paper).
        deep_supervision: a 1x1 head on every ``X^{0,j}``; otherwise only on ``X^{0,L}``.
        norm: normalisation name (``None`` in the paper's configuration).
        act: activation name.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S), every size a multiple of ``2**L``.
        With deep supervision, ``forward`` returns the list of the L heads' logits in
        training mode, and in eval mode the deepest head's (or the one chosen by ``head``).
    """

    feature_scheme = "nested"
    example_arguments = ({"depth": 3}, {"depth": 2, "deep_supervision": True})

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, spatial_dims: int = 2,
                 features: Optional[Sequence[int]] = None, width: int = 32, depth: int = 4,
                 deep_supervision: bool = False, norm: Optional[str] = None, act: Optional[str] = "relu") -> None:
        super().__init__()
        if features is None:
            features = [width * 2**level for level in range(depth + 1)]
        features = tuple(int(f) for f in features)
        if len(features) < 2:
            raise ValueError(f"features needs at least two levels; got {features}.")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.features, self.depth, self.deep_supervision = features, len(features) - 1, deep_supervision
        self.padding = "same"  # padded convolutions
        unit = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        self.pool = max_pool_type(spatial_dims)(kernel_size=2, stride=2)
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for i, width in enumerate(features):  # the encoder column X^{i,0}
            self.nodes[f"x_{i}_0"] = DoubleConv(in_channels if i == 0 else features[i - 1], width, **unit)
        for j in range(1, self.depth + 1):  # then column by column, as the rule needs
            for i in range(self.depth + 1 - j):
                self.ups[f"x_{i}_{j}"] = conv_transpose_type(spatial_dims)(features[i + 1], features[i], 2, stride=2)
                self.nodes[f"x_{i}_{j}"] = DoubleConv(features[i] * (j + 1), features[i], **unit)
        heads = range(1, self.depth + 1) if deep_supervision else [self.depth]
        self.heads = nn.ModuleDict({f"head_{j}": conv_type(spatial_dims)(features[0], out_channels, 1) for j in heads})

    def node_grid(self) -> "OrderedDict[str, list[str]]":
        """Every node and the nodes it reads, in computation order (for drawing the grid)."""
        grid: OrderedDict[str, list[str]] = OrderedDict()
        for i in range(self.depth + 1):
            grid[f"x_{i}_0"] = [] if i == 0 else [f"x_{i - 1}_0"]
        for j in range(1, self.depth + 1):
            for i in range(self.depth + 1 - j):
                grid[f"x_{i}_{j}"] = [f"x_{i}_{k}" for k in range(j)] + [f"x_{i + 1}_{j - 1}"]
        return grid

    def output_size(self, size: int) -> Optional[int]:
        """Output length of an axis of length ``size`` (kept), or ``None`` if not a multiple of ``2**depth``."""
        multiple = 2**self.depth
        return size if size >= multiple and size % multiple == 0 else None

    def size_rule(self) -> str:
        return f"With depth {self.depth} every axis must be a multiple of 2**{self.depth} = {2**self.depth}."

    @torch.no_grad()
    def skip_pairs(self, x: torch.Tensor) -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
        """At each decoder node ``X^{i,L-i}`` (the nodes a U-Net of the same depth also has): the
        nearest same-row node ``X^{i,L-i-1}``, which is what the dense skip pathway delivers after
        its convolutions, and ``Up(X^{i+1,L-i-1})``."""
        return self.skip_pairs_of(self.forward_features(x))

    @torch.no_grad()
    def skip_pairs_of(self, feats: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
        """:meth:`skip_pairs` from the maps of a :meth:`forward_features` pass already made (no second pass)."""
        pairs: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        for i in range(self.depth):
            j = self.depth - i
            pairs[f"level {i}"] = (feats[f"x_{i}_{j - 1}"], self.ups[f"x_{i}_{j}"](feats[f"x_{i + 1}_{j - 1}"]))
        return pairs

    def forward_features(self, x: torch.Tensor, *, depth: Optional[int] = None) -> "OrderedDict[str, torch.Tensor]":
        """Every node's output (``"x_i_j"``) and every head's logits (``"head_j"``).

        ``depth`` computes only the nodes with ``i + j <= depth``: the pruned network.
        """
        self.check_input(x)
        depth = self.depth if depth is None else depth
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = x
        for i in range(depth + 1):
            h = self.nodes[f"x_{i}_0"](h if i == 0 else self.pool(h))  # (B, F_i, *S / 2**i)
            feats[f"x_{i}_0"] = h
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                up = self.ups[f"x_{i}_{j}"](feats[f"x_{i + 1}_{j - 1}"])  # (B, F_i, *S / 2**i)
                same_row = [feats[f"x_{i}_{k}"] for k in range(j)]
                feats[f"x_{i}_{j}"] = self.nodes[f"x_{i}_{j}"](torch.cat(same_row + [up], dim=1))
        for name, head in self.heads.items():
            j = int(name.split("_")[1])
            if j <= depth:
                feats[name] = head(feats[f"x_0_{j}"])  # (B, out_channels, *S)
        return feats

    def forward(self, x: torch.Tensor, *, head: Optional[int] = None) -> Union[torch.Tensor, list[torch.Tensor]]:
        if head is not None:
            self._check_head(head)
            return self.forward_features(x, depth=head)[f"head_{head}"]
        feats = self.forward_features(x)
        if self.deep_supervision and self.training:
            return [feats[f"head_{j}"] for j in range(1, self.depth + 1)]
        return feats[f"head_{self.depth}"]

    def deepest_path(self, head: Optional[int] = None) -> list[nn.Module]:
        """The spatial layers along the longest path from the input to ``head`` (default: the deepest).

        Down the encoder to ``X^{k,0}``, then up the diagonal ``X^{k-1,1}, ..., X^{0,k}``: the
        same layers as a U-Net of depth ``k``. Every other path to ``X^{0,k}`` (along a row of
        dense skips) is shorter and sees a subset of the input, so this path sets the receptive
        field (``unet_lessons.viz.receptive_field``).
        """
        depth = self.depth if head is None else head
        if not 1 <= depth <= self.depth:
            raise ValueError(f"head must be between 1 and the model's depth {self.depth}; got {head}.")
        convs = lambda node: [m for m in self.nodes[node].modules() if isinstance(m, nn.modules.conv._ConvNd)]  # noqa: E731
        layers: list[nn.Module] = []
        for i in range(depth + 1):
            layers += ([self.pool] if i else []) + convs(f"x_{i}_0")
        for j in range(1, depth + 1):
            node = f"x_{depth - j}_{j}"
            layers += [self.ups[node]] + convs(node)
        head_name = f"head_{depth}"
        if head_name in self.heads:
            layers.append(self.heads[head_name])
        return layers

    def _check_head(self, head: int) -> None:
        if not 1 <= head <= self.depth:
            raise ValueError(f"head/pruning depth must be between 1 and the model's depth {self.depth}; got {head}.")
        if f"head_{head}" not in self.heads:
            raise ValueError(f"there is no head on X^(0,{head}): build the model with deep_supervision=True "
                             "to read or prune at a shallower depth.")

    def prune(self, depth: int) -> "UNetPlusPlus":
        """A copy with only the nodes ``i + j <= depth`` and the head on ``X^{0,depth}``: UNet++ L_depth.

        Its output equals the full model's head-``depth`` output exactly.
        """
        self._check_head(depth)
        pruned = copy.deepcopy(self)
        keep = lambda name: sum(int(k) for k in name.split("_")[1:]) <= depth  # noqa: E731
        pruned.nodes = nn.ModuleDict({k: v for k, v in pruned.nodes.items() if keep(k)})
        pruned.ups = nn.ModuleDict({k: v for k, v in pruned.ups.items() if keep(k)})
        pruned.heads = nn.ModuleDict({f"head_{depth}": pruned.heads[f"head_{depth}"]})
        pruned.features, pruned.depth, pruned.deep_supervision = self.features[:depth + 1], depth, False
        # The pruned net is the UNet++ of the first depth + 1 levels: record the arguments that build it.
        pruned.__dict__["arguments"] = {**self.arguments, "features": pruned.features, "depth": depth,
                                        "deep_supervision": False}
        return pruned


def _monai_key(key: str) -> str:
    """Our parameter name for one of MONAI ``BasicUNetPlusPlus``'s (same layout, other names)."""
    rules = [
        (r"^conv_0_0\.conv_(\d)\.", lambda m: f"nodes.x_0_0.conv{int(m[1]) + 1}."),
        (r"^conv_(\d)_0\.convs\.conv_(\d)\.", lambda m: f"nodes.x_{m[1]}_0.conv{int(m[2]) + 1}."),
        (r"^upcat_(\d)_(\d)\.convs\.conv_(\d)\.", lambda m: f"nodes.x_{m[1]}_{m[2]}.conv{int(m[3]) + 1}."),
        (r"^upcat_(\d)_(\d)\.upsample\.deconv\.", lambda m: f"ups.x_{m[1]}_{m[2]}."),
        (r"^final_conv_0_(\d)\.", lambda m: f"heads.head_{m[1]}."),
    ]
    for pattern, replace in rules:
        match = re.match(pattern, key)
        if match:
            return (replace(match) + key[match.end():]).replace("adn.N.", "norm.")
    raise KeyError(f"no counterpart for MONAI parameter {key!r}")


def load_monai_weights(model: UNetPlusPlus, monai_model: nn.Module) -> UNetPlusPlus:
    """Copy the weights of MONAI's ``BasicUNetPlusPlus`` into ``model``, name by name.

    Both must have the same configuration: ``features`` ending ``(F0, F0, 2F0, 4F0, 8F0, F0)`` on
    MONAI's side (its up-convolution halves the channels below row 0 and keeps them on row 0,
    ours always maps ``F_{i+1} -> F_i``), and ``deep_supervision=True`` on ours, because MONAI
    builds all four heads even without deep supervision.

    Raises:
        ValueError: naming the parameters whose shapes or names do not match.
    """
    ours = model.state_dict()
    mapped = {_monai_key(key): value for key, value in monai_model.state_dict().items()}
    missing, unexpected = sorted(set(ours) - set(mapped)), sorted(set(mapped) - set(ours))
    wrong = [k for k in set(ours) & set(mapped) if ours[k].shape != mapped[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"the two models are configured differently: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}, shapes differ for {sorted(wrong)[:3]}. Build ours with the same "
                         "features, norm and deep_supervision=True.")
    model.load_state_dict(mapped)
    return model
