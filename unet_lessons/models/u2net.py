"""3D U²-Net (Huang et al., MICCAI 2019): one U-Net for several domains, separable convolutions with domain adapters.

C. Huang, H. Han, Q. Yao, S. Zhu, S. K. Zhou, "3D U²-Net: A 3D Universal U-Net for Multi-Domain Medical Image
Segmentation", MICCAI 2019, arXiv:1909.06012. The abstract: "images from different domains have
domain-specific spatial correlations which can be probed with channel-wise convolution while also
share cross-channel correlations which can be modeled with pointwise convolution".

The layout is the authors' PyTorch code, github.com/huangmozhilv/u2net_torch at commit c655840,
``u2net_torch_src/models/u2net3d.py`` (``u2net3d.py:line`` below), class ``u2net3d``:

* per domain an input layer, 3x3x3 convolution, instance norm, LeakyReLU (``InputTransition``,
  l.146-158), and an output layer, a 1x1x1 convolution (``OutputTransition``, l.272-286);
* ``depth + 1`` levels of widths ``width * 2**i`` (l.317; the code's ``depth`` counts levels,
  ``max(num_pool_per_axis) + 1``, l.303; five poolings, ``config.py:25``, give six levels);
* each level's block (``DownBlock``, l.172-195): two units (:class:`~unet_lessons.blocks.DomainConv`),
  a LeakyReLU after each, the second after adding the block's input (the residual, l.190-191);
* downsampling by a shared full 3x3x3 convolution of stride 2 with each domain's norm and a
  LeakyReLU (``DownSample``, l.161-170), after padding one voxel at the end of each axis, as
  TensorFlow's "SAME" (l.323-329, l.371);
* upsampling by nearest-neighbour x2 then a unit to the level's width (``UnetUpsample``,
  l.207-227), the skip concatenated after the upsampled map (l.381), then a unit 3x3x3 and a unit
  "1x1x1" (separable in the universal model, see ``DomainConv``), each with a LeakyReLU, no
  residual (``UpBlock``, l.229-249);
* deep supervision (``config.py:53``) at decoder levels 2 and 1 (l.344): per domain a 1x1x1
  convolution to the classes, instance norm and LeakyReLU, added to the next coarser level's
  and upsampled x2, and the sum added to the logits (l.252-270, l.285): one output, no extra loss.

``separable=True`` is the universal model (``trainMode='universal'``,
``module='separable_adapter'``); ``separable=False`` the independent model of the same layout
(full convolutions, ``trainMode='independent'``), which the paper compares it with.

Simplified: the strides are 2 on every axis (the code's independent models pool some axes
fewer times, ``config.py:67``; the universal model pools all five times on every axis, which
is what we build); that changes no parameter count.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Mapping, Optional

import torch
import torch.nn as nn

from ..blocks import ResidualAdd, SkipJoin, conv_type, make_act, make_norm
from ..blocks.separable import U2NET_ACT, U2NET_NORM, DomainConv
from .base import SegmentationModel

__all__ = ["U2Net", "U2NET_PRESETS", "SINGLE_DOMAIN"]

#: The internal name of a single-domain model's one set of per-domain layers.
SINGLE_DOMAIN = "main"


class U2NetBlock(nn.Module):
    """A level's block: ``act(unit2(act(unit1(x))) + x)``, the residual within the level (``DownBlock``)."""

    def __init__(self, channels: int, domains: Iterable[str], spatial_dims: int, separable: bool) -> None:
        super().__init__()
        domains = list(domains)
        self.unit1 = DomainConv(channels, channels, domains, spatial_dims=spatial_dims, separable=separable)
        self.act1 = make_act(U2NET_ACT)
        self.unit2 = DomainConv(channels, channels, domains, spatial_dims=spatial_dims, separable=separable)
        self.add = ResidualAdd()
        self.act2 = make_act(U2NET_ACT)

    def forward(self, x: torch.Tensor, domain: str, adapters: Optional[str] = None) -> torch.Tensor:
        out = self.act1(self.unit1(x, domain, adapters))
        return self.act2(self.add(x, self.unit2(out, domain, adapters)))

    def domain_modules(self, domain: str) -> list[nn.Module]:
        return [*self.unit1.domain_modules(domain), self.act1, *self.unit2.domain_modules(domain), self.add,
                self.act2]


class U2NetDown(nn.Module):
    """Pad one voxel at the end of each axis, a shared full 3x3x3 convolution of stride 2, the domain's norm, LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, domains: Iterable[str], spatial_dims: int) -> None:
        super().__init__()
        # TensorFlow's "SAME" for kernel 3, stride 2: one zero at the end of each axis (u2net3d.py:323-329, 371).
        self.pad = (nn.ZeroPad2d if spatial_dims == 2 else nn.ZeroPad3d)((0, 1) * spatial_dims)
        self.unit = DomainConv(in_channels, out_channels, list(domains), spatial_dims=spatial_dims, stride=2)
        self.act = make_act(U2NET_ACT)

    def forward(self, x: torch.Tensor, domain: str, adapters: Optional[str] = None) -> torch.Tensor:
        return self.act(self.unit(self.pad(x), domain, adapters))

    def domain_modules(self, domain: str) -> list[nn.Module]:
        return [self.pad, *self.unit.domain_modules(domain), self.act]


class U2NetUp(nn.Module):
    """Nearest-neighbour x2, then a unit to the level's width and a LeakyReLU (``UnetUpsample``)."""

    def __init__(self, in_channels: int, out_channels: int, domains: Iterable[str], spatial_dims: int,
                 separable: bool) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.unit = DomainConv(in_channels, out_channels, list(domains), spatial_dims=spatial_dims, separable=separable)
        self.act = make_act(U2NET_ACT)

    def forward(self, x: torch.Tensor, domain: str, adapters: Optional[str] = None) -> torch.Tensor:
        return self.act(self.unit(self.upsample(x), domain, adapters))

    def domain_modules(self, domain: str) -> list[nn.Module]:
        return [self.upsample, *self.unit.domain_modules(domain), self.act]


class U2NetDecoderBlock(nn.Module):
    """A unit 3x3x3 (2w -> w) and a unit "1x1x1" (w -> w), each with a LeakyReLU; no residual (``UpBlock``)."""

    def __init__(self, channels: int, domains: Iterable[str], spatial_dims: int, separable: bool) -> None:
        super().__init__()
        domains = list(domains)
        self.unit1 = DomainConv(2 * channels, channels, domains, spatial_dims=spatial_dims, separable=separable)
        self.act1 = make_act(U2NET_ACT)
        self.unit2 = DomainConv(channels, channels, domains, spatial_dims=spatial_dims, kernel_size=1,
                                separable=separable)
        self.act2 = make_act(U2NET_ACT)

    def forward(self, x: torch.Tensor, domain: str, adapters: Optional[str] = None) -> torch.Tensor:
        return self.act2(self.unit2(self.act1(self.unit1(x, domain, adapters)), domain, adapters))

    def domain_modules(self, domain: str) -> list[nn.Module]:
        return [*self.unit1.domain_modules(domain), self.act1, *self.unit2.domain_modules(domain), self.act2]


class DeepSupervisionHead(nn.Module):
    """One domain's deep-supervision head at a decoder level: 1x1x1 conv to the classes, norm, LeakyReLU, (+ coarser), x2."""

    def __init__(self, channels: int, classes: int, spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(channels, classes, 1)
        self.norm = make_norm(U2NET_NORM, classes, spatial_dims)
        self.act = make_act(U2NET_ACT)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, coarser: Optional[torch.Tensor]) -> torch.Tensor:
        out = self.act(self.norm(self.conv(x)))
        return self.upsample(out if coarser is None else out + coarser)


class U2Net(SegmentationModel):
    """3D U²-Net: a U-Net whose units keep a depthwise adapter and norms per domain and share the rest.

    Args:
        in_channels: input channels (of every domain not in ``domain_in_channels``).
        out_channels: classes of a single-domain model (ignored when ``domains`` is given).
        spatial_dims: 3 (the paper's) or 2.
        width: channels of the first level (16 in the authors' training script, ``train_models.sh:29``;
            the command line's default is 32, ``train_model_wt_adapters.py:37``).
        depth: downsamplings (5 in the code: six levels).
        domains: ``{name: classes}`` for a multi-domain model; ``None``: one domain.
        domain_in_channels: ``{name: input channels}`` where a domain has its own (MRI with two sequences).
        separable: the universal model's separable units with adapters (``True``) or the
            independent model's full convolutions (``False``).
        deep_supervision: the heads at decoder levels 2 and 1, added to the logits.

    Shape:
        (B, C_domain, *S) -> (B, classes_domain, *S); every axis a multiple of ``2**depth``.
        A multi-domain model takes ``domain=name`` (``model.for_domain(name)`` is a plain model).
    """

    # Depth 3 keeps the registry-wide tests small and still reaches both deep-supervision heads.
    example_arguments = ({"depth": 3}, {"depth": 3, "domains": {"a": 2, "b": 3}, "domain_in_channels": {"b": 2}},
                         {"depth": 2, "separable": False, "deep_supervision": False})

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 3, width: int = 16,
                 depth: int = 5, domains: Optional[Mapping[str, int]] = None,
                 domain_in_channels: Optional[Mapping[str, int]] = None, separable: bool = True,
                 deep_supervision: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth counts downsamplings and must be at least 1; got {depth}.")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.padding, self.depth, self.width = "same", depth, width
        self.separable, self.deep_supervision = separable, deep_supervision
        self.domains = {str(name): int(classes) for name, classes in (domains or {}).items()}
        for name in self.domains:
            if not name.isidentifier():
                raise ValueError(f"a domain's name must be a Python identifier (it names layers); got {name!r}.")
        unknown = sorted(set(domain_in_channels or {}) - set(self.domains))
        if unknown:
            raise ValueError(f"domain_in_channels names domains the model does not have: {unknown}; "
                             f"its domains are {sorted(self.domains)}.")
        self.domain_in_channels = {name: int((domain_in_channels or {}).get(name, in_channels)) for name in self.domains}
        classes = self.domains or {SINGLE_DOMAIN: out_channels}
        inputs = self.domain_in_channels or {SINGLE_DOMAIN: in_channels}
        names = list(classes)
        widths = [width * 2**level for level in range(depth + 1)]
        conv = conv_type(spatial_dims)

        # Per domain: the input layer, the output layer and the deep-supervision heads (u2net3d.py:306-308, 344-353).
        self.inputs = nn.ModuleDict({name: nn.Sequential(conv(inputs[name], width, 3, padding=1),
                                                         make_norm(U2NET_NORM, width, spatial_dims),
                                                         make_act(U2NET_ACT)) for name in names})
        self.blocks = nn.ModuleList(U2NetBlock(w, names, spatial_dims, separable) for w in widths)
        self.downs = nn.ModuleList(U2NetDown(widths[i], widths[i + 1], names, spatial_dims) for i in range(depth))
        self.ups = nn.ModuleList(U2NetUp(widths[i + 1], widths[i], names, spatial_dims, separable) for i in range(depth))
        self.joins = nn.ModuleList(SkipJoin("concat", skip_first=False) for _ in range(depth))  # cat((up, skip)), l.381
        self.decoder = nn.ModuleList(U2NetDecoderBlock(widths[i], names, spatial_dims, separable) for i in range(depth))
        self.supervised_levels = [i for i in (2, 1) if deep_supervision and i < depth]
        self.deep_heads = nn.ModuleDict({name: nn.ModuleDict({str(i): DeepSupervisionHead(widths[i], classes[name],
                                                                                           spatial_dims)
                                                              for i in self.supervised_levels}) for name in names})
        self.outputs = nn.ModuleDict({name: conv(width, classes[name], 1) for name in names})

    # ----- sizes -------------------------------------------------------------------------------
    def output_size(self, size: int) -> Optional[int]:
        # At least two voxels per axis at the coarsest level: instance norm needs more than one value.
        return size if size >= 2**(self.depth + 1) and size % 2**self.depth == 0 else None

    def size_rule(self) -> str:
        return (f"With {self.depth} downsamplings every axis must be a multiple of 2**{self.depth} = {2**self.depth}, "
                f"and at least {2**(self.depth + 1)} (instance norm needs two voxels per axis at the coarsest level).")

    # ----- domains ------------------------------------------------------------------------------
    def _domain(self, domain: Optional[str]) -> str:
        """The key of the per-domain layers for ``domain`` (checked), or the single domain's."""
        if not self.domains:
            if domain is not None:
                self.check_domain(domain)  # raises: a single-domain model takes no domain
            return SINGLE_DOMAIN
        return self.check_domain(domain)

    def domain_parameters(self, domain: Optional[str] = None) -> list[nn.Parameter]:
        """The parameters only ``domain`` uses: its input, output and deep-supervision layers, adapters and norms."""
        key = self._domain(domain)
        modules = [self.inputs[key], self.outputs[key], self.deep_heads[key]]
        modules += [m for unit in self._units() for m in unit.domain_modules(key) if m not in unit.shared_modules()]
        return list(dict.fromkeys(p for m in modules for p in m.parameters()))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every domain uses: the pointwise and the strided convolutions."""
        return list(dict.fromkeys(p for unit in self._units() for m in unit.shared_modules() for p in m.parameters()))

    def train_only(self, domain: Optional[str] = None) -> int:
        """Freeze every parameter but ``domain``'s own (adapting to a new domain); return how many stay trainable."""
        own = {id(p) for p in self.domain_parameters(domain)}
        for parameter in self.parameters():
            parameter.requires_grad_(id(parameter) in own)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _units(self) -> list[DomainConv]:
        return [m for m in self.modules() if isinstance(m, DomainConv)]

    # ----- forward ------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, domain: Optional[str] = None,
                         adapters: Optional[str] = None) -> "OrderedDict[str, torch.Tensor]":
        """Every stage's map for ``domain``; ``adapters``: run the body with another domain's adapters and norms."""
        key = self._domain(domain)
        swap = None if adapters is None else self._domain(adapters)
        self.check_input(x, key if self.domains else None)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.inputs[key](x)
        for level in range(self.depth + 1):
            if level:
                h = self.downs[level - 1](h, key, swap)
            h = self.blocks[level](h, key, swap)
            feats["bottleneck" if level == self.depth else f"enc{level}"] = h
        supervision = None
        for level in reversed(range(self.depth)):
            up = self.ups[level](h, key, swap)
            h = self.decoder[level](self.joins[level](feats[f"enc{level}"], up), key, swap)
            feats[f"dec{level}"] = h
            if str(level) in self.deep_heads[key]:
                supervision = self.deep_heads[key][str(level)](h, supervision)
        logits = self.outputs[key](h)
        feats["logits"] = logits if supervision is None else logits + supervision
        return feats

    def forward(self, x: torch.Tensor, domain: Optional[str] = None, adapters: Optional[str] = None) -> torch.Tensor:
        return self.forward_features(x, domain, adapters)["logits"]

    def stage_modules(self, domain: Optional[str] = None) -> "OrderedDict[str, list[nn.Module]]":
        key = self._domain(domain)
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(enc0=[self.inputs[key], *self.blocks[0].domain_modules(key)])
        for level in range(1, self.depth + 1):
            stages["bottleneck" if level == self.depth else f"enc{level}"] = [
                *self.downs[level - 1].domain_modules(key), *self.blocks[level].domain_modules(key)]
        for level in reversed(range(self.depth)):
            stages[f"dec{level}"] = [*self.ups[level].domain_modules(key), self.joins[level],
                                     *self.decoder[level].domain_modules(key)]
        # Not listed: the deep-supervision heads, which branch off dec2 and dec1 and join at the logits (a
        # stage is a chain, and they are not on it); they see less than the chain does.
        stages["logits"] = [self.outputs[key]]
        return stages

    @classmethod
    def preset(cls, name: str, **overrides) -> "U2Net":
        """A configuration of :data:`U2NET_PRESETS`, e.g. ``U2Net.preset("huang2019")``."""
        if name not in U2NET_PRESETS:
            raise KeyError(f"Unknown U2Net preset {name!r}; presets: {sorted(U2NET_PRESETS)}.")
        return cls(**{**U2NET_PRESETS[name], **overrides})


#: The authors' universal model as their training script runs it (``train_models.sh:29``): five
#: Medical Segmentation Decathlon tasks, width 16, five poolings (``config.py:25``). Classes are
#: each task's labels in its ``dataset.json``, tumour labels of Liver and Pancreas dropped
#: (``config.py:105-115``); Prostate has two input sequences (T2, ADC). The MSD metadata were
#: read from third-party copies of the Decathlon's ``dataset.json`` files.
U2NET_PRESETS: dict[str, dict] = {
    "huang2019": dict(width=16, depth=5, separable=True, deep_supervision=True,
                      domains={"heart": 2, "liver": 2, "hippocampus": 3, "prostate": 3, "pancreas": 2},
                      domain_in_channels={"prostate": 2}),
}
