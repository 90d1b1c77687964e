"""A new model written as one file, to show that the model contract is all a model needs.

``ToyPathNet`` is small, but it has both things the last lessons bring: layers on its skips
(like MultiResUNet's Res paths: a 3x3 conv with a 1x1 shortcut, repeated) and several
domains (like 3D U²-Net: a shared body with a 1x1 adapter and a head per domain, each
domain with its own number of classes). ``tests/test_contract.py`` registers it and runs every
tool and every contract check on it with no code that names it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn

from unet_lessons.blocks import SkipJoin, conv_transpose_type, conv_type, max_pool_type
from unet_lessons.models.base import SegmentationModel


class ResPathUnit(nn.Module):
    """``relu(conv3x3(x) + conv1x1(x))``: one unit of a Res path (Ibtehaz and Rahman 2020, Fig. 4)."""

    residual = True  # read by the diagram: it adds a shortcut of its input

    def __init__(self, channels: int, spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(channels, channels, kernel_size=3, padding=1)
        self.shortcut = conv_type(spatial_dims)(channels, channels, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x) + self.shortcut(x))


def _conv_relu(in_channels: int, out_channels: int, spatial_dims: int) -> nn.Sequential:
    return nn.Sequential(conv_type(spatial_dims)(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU())


class ToyPathNet(SegmentationModel):
    """A two-domain U-Net with a Res path of ``path_length`` units on the skip of every level."""

    example_arguments = ({}, {"path_length": 2})

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 2, width: int = 4,
                 depth: int = 2, path_length: int = 1, domains: Optional[dict] = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.padding, self.depth = "same", depth
        # Every domain has its own classes; the default gives the second domain one more.
        self.domains = dict(domains) if domains else {"heart": out_channels, "liver": out_channels + 1}
        widths = [width * 2**level for level in range(depth + 1)]
        self.adapters = nn.ModuleDict({name: conv_type(spatial_dims)(in_channels, in_channels, kernel_size=1)
                                       for name in self.domains})
        self.encoder = nn.ModuleList([_conv_relu(in_channels, widths[0], spatial_dims)])
        self.encoder.extend(nn.Sequential(max_pool_type(spatial_dims)(2), _conv_relu(widths[i - 1], widths[i], spatial_dims))
                            for i in range(1, depth + 1))
        self.paths = nn.ModuleList(nn.Sequential(*[ResPathUnit(widths[i], spatial_dims) for _ in range(path_length)])
                                   for i in range(depth))
        self.ups = nn.ModuleList(conv_transpose_type(spatial_dims)(widths[i + 1], widths[i], kernel_size=2, stride=2)
                                 for i in range(depth))
        self.joins = nn.ModuleList(SkipJoin("concat") for _ in range(depth))
        self.decoder = nn.ModuleList(_conv_relu(2 * widths[i], widths[i], spatial_dims) for i in range(depth))
        self.heads = nn.ModuleDict({name: conv_type(spatial_dims)(widths[0], classes, kernel_size=1)
                                    for name, classes in self.domains.items()})

    def output_size(self, size: int) -> Optional[int]:
        return size if size > 0 and size % 2**self.depth == 0 else None

    def forward_features(self, x: torch.Tensor, domain: Optional[str] = None) -> "OrderedDict[str, torch.Tensor]":
        domain = self.check_domain(domain)
        self.check_input(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.adapters[domain](x)
        for level, stage in enumerate(self.encoder):
            h = stage(h)
            feats["bottleneck" if level == self.depth else f"enc{level}"] = h
        for level in reversed(range(self.depth)):
            feats[f"skip{level}"] = skip = self.paths[level](feats[f"enc{level}"])
            feats[f"dec{level}"] = h = self.decoder[level](self.joins[level](skip, self.ups[level](h)))
        feats["logits"] = self.heads[domain](h)
        return feats

    def forward(self, x: torch.Tensor, domain: Optional[str] = None) -> torch.Tensor:
        return self.forward_features(x, domain)["logits"]

    def stage_modules(self, domain: Optional[str] = None) -> "OrderedDict[str, list[nn.Module]]":
        domain = self.check_domain(domain)
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(enc0=[self.adapters[domain], self.encoder[0]])
        for level in range(1, self.depth + 1):
            stages["bottleneck" if level == self.depth else f"enc{level}"] = [self.encoder[level]]
        for level in reversed(range(self.depth)):
            stages[f"skip{level}"] = [self.paths[level]]
            stages[f"dec{level}"] = [self.ups[level], self.joins[level], self.decoder[level]]
        stages["logits"] = [self.heads[domain]]
        return stages
