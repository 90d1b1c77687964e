"""Depthwise, pointwise and separable convolutions, and 3D U²-Net's convolution unit with domain adapters.

Huang et al., "3D U²-Net: A 3D Universal U-Net for Multi-Domain Medical Image Segmentation",
MICCAI 2019 (arXiv:1909.06012). The layout follows the authors' PyTorch code,
github.com/huangmozhilv/u2net_torch, ``u2net_torch_src/models/u2net3d.py`` at commit c655840
(cited below as ``u2net3d.py:line``).

* A **depthwise** (channel-wise) convolution filters each channel on its own:
  ``groups = channels``, one ``k**d`` kernel per channel.
* A **pointwise** convolution is a 1x1(x1) convolution: at every voxel it mixes the channels.
* A **separable** convolution is a depthwise one followed by a pointwise one. With nothing
  between them it is one linear map: the full convolution whose kernel is
  ``W[o, i] = P[o, i] * D[i]`` (:meth:`SeparableConv.full_conv`): every kernel that reads input
  channel ``i`` is a multiple of the same ``D[i]``, where a full convolution learns a free kernel
  for each (output, input) pair. That is what it gives up.
* :class:`DomainConv` is the paper's unit (``conv_unit``, ``u2net3d.py:76-141``): per domain a
  depthwise 3x3x3 filter followed by that domain's instance norm and a LeakyReLU (``dwise``,
  l.56-65), then one pointwise convolution shared by all domains (``pwise``, l.67-74, l.101),
  then that domain's instance norm (l.105). The norm and activation *between* the two steps
  make the unit nonlinear, so the identity with a full convolution holds for the bare
  :class:`SeparableConv` only.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from .layers import conv_type, make_act, make_norm

__all__ = ["depthwise_conv", "pointwise_conv", "SeparableConv", "DomainConv", "U2NET_NORM", "U2NET_ACT"]

#: The official code's normalisation and activation (``norm_act``, ``u2net3d.py:24-34``):
#: ``nn.InstanceNorm3d(nchan, affine=True)`` and ``nn.LeakyReLU(negative_slope=1e-2)``.
U2NET_NORM = "instance"
U2NET_ACT = ("leakyrelu", {"negative_slope": 0.01})


def depthwise_conv(channels: int, spatial_dims: int = 3, kernel_size: int = 3, bias: bool = True) -> nn.Module:
    """A depthwise (channel-wise) convolution: ``groups = channels``, so each channel gets its own kernel.

    Parameters: ``channels * kernel_size**spatial_dims`` (+ ``channels`` biases).
    """
    return conv_type(spatial_dims)(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                                   bias=bias)


def pointwise_conv(in_channels: int, out_channels: int, spatial_dims: int = 3, bias: bool = True) -> nn.Module:
    """A pointwise (1x1 or 1x1x1) convolution: mixes the channels at each position.

    Parameters: ``in_channels * out_channels`` (+ ``out_channels`` biases).
    """
    return conv_type(spatial_dims)(in_channels, out_channels, 1, bias=bias)


class SeparableConv(nn.Module):
    """A depthwise convolution and then a pointwise one, with nothing between them.

    Args:
        in_channels, out_channels: channels in and out.
        spatial_dims: 2 or 3.
        kernel_size: the depthwise kernel's side.
        bias: biases on both steps.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S).
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 3, kernel_size: int = 3,
                 bias: bool = True) -> None:
        super().__init__()
        self.spatial_dims, self.kernel_size = spatial_dims, kernel_size
        self.depthwise = depthwise_conv(in_channels, spatial_dims, kernel_size, bias)
        self.pointwise = pointwise_conv(in_channels, out_channels, spatial_dims, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    @torch.no_grad()
    def full_conv(self) -> nn.Module:
        """The full convolution this one equals: kernel ``W[o, i] = P[o, i] * D[i]``, bias ``b + P @ beta``.

        ``D[i]`` is channel ``i``'s depthwise kernel (bias ``beta[i]``) and ``P`` the pointwise
        weights (bias ``b``): the depthwise bias is a constant per channel, which the pointwise
        step mixes like any other value.
        """
        depth_w, point_w = self.depthwise.weight, self.pointwise.weight  # (C, 1, k..), (O, C, 1..)
        channels, outputs = depth_w.shape[0], point_w.shape[0]
        point = point_w.reshape(outputs, channels)
        bias = self.pointwise.bias is not None or self.depthwise.bias is not None
        full = conv_type(self.spatial_dims)(channels, outputs, self.kernel_size, padding=self.kernel_size // 2,
                                            bias=bias).to(depth_w)
        kernel = depth_w.reshape(channels, -1)  # (C, k**d)
        full.weight.copy_((point[:, :, None] * kernel[None]).reshape(full.weight.shape))
        if bias:
            total = torch.zeros(outputs).to(depth_w)
            if self.pointwise.bias is not None:
                total += self.pointwise.bias
            if self.depthwise.bias is not None:
                total += point @ self.depthwise.bias
            full.bias.copy_(total)
        return full


class DomainConv(nn.Module):
    """3D U²-Net's convolution unit (``conv_unit``): a convolution, then a norm of the batch's domain.

    * ``separable=True`` and ``stride=1`` (the universal model, ``u2net3d.py:98-105``): each
      domain's adapter, a depthwise 3x3x3 convolution, instance norm and LeakyReLU
      (``dwise``); one pointwise convolution shared by the domains; each domain's instance norm.
      The adapter's kernel is 3 whatever ``kernel_size`` says: the code builds ``dwise(inChans)``
      with its default kernel (l.100), so the universal decoder's 1x1x1 unit becomes separable too.
    * ``stride > 1`` (downsampling, l.84-85) or ``separable=False`` (the independent models,
      l.86-88): one full convolution, shared, and each domain's instance norm. A strided unit
      takes no padding (``padding=0``): the model pads before it, as TensorFlow's "SAME" does.

    Args:
        in_channels, out_channels: channels.
        domains: the domains' names (one entry for a single-domain model).
        spatial_dims: 2 or 3.
        kernel_size: the full convolution's kernel.
        stride: the full convolution's stride.
        separable: per-domain depthwise adapters and a shared pointwise convolution.

    ``forward(x, domain, adapters=None)``: ``adapters`` names the domain whose adapters and norms
    to use instead of ``domain``'s (a lesson's swap experiment).
    """

    def __init__(self, in_channels: int, out_channels: int, domains: Sequence[str], *, spatial_dims: int = 3,
                 kernel_size: int = 3, stride: int = 1, separable: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.separable = separable and stride == 1
        if self.separable:
            self.adapters = nn.ModuleDict({
                name: nn.Sequential(depthwise_conv(in_channels, spatial_dims, 3),
                                    make_norm(U2NET_NORM, in_channels, spatial_dims), make_act(U2NET_ACT))
                for name in domains})
            self.pointwise = pointwise_conv(in_channels, out_channels, spatial_dims)
        else:
            padding = 0 if stride != 1 else kernel_size // 2
            self.conv = conv_type(spatial_dims)(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.norms = nn.ModuleDict({name: make_norm(U2NET_NORM, out_channels, spatial_dims) for name in domains})

    def forward(self, x: torch.Tensor, domain: str, adapters: Optional[str] = None) -> torch.Tensor:
        own = adapters or domain
        if self.separable:
            return self.norms[own](self.pointwise(self.adapters[own](x)))
        return self.norms[own](self.conv(x))

    def domain_modules(self, domain: str) -> list[nn.Module]:
        """The modules that run for ``domain``, in order (its adapter, the shared layer, its norm)."""
        shared = self.pointwise if self.separable else self.conv
        return [self.adapters[domain], shared, self.norms[domain]] if self.separable else [shared, self.norms[domain]]

    def shared_modules(self) -> list[nn.Module]:
        """The layer every domain runs: the pointwise convolution, or the full one."""
        return [self.pointwise if self.separable else self.conv]
