"""Building blocks shared by every network in the lessons.

One code path serves 2D and 3D: every factory takes ``spatial_dims`` and returns the
``Conv2d``/``Conv3d`` (or pooling, norm, ...) class to match. Normalisation and
activation are chosen by name and resolved here, in one place, so a lesson can write
``norm="batch"`` or ``norm=None`` (the 2015 U-Net had no normalisation).

Built in lesson 02 (``notebooks/02_unet.ipynb``).
"""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

__all__ = [
    "conv_type",
    "conv_transpose_type",
    "max_pool_type",
    "avg_pool_type",
    "make_norm",
    "make_act",
    "ConvNormAct",
    "DoubleConv",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}

NORMS = ("batch", "instance", "group", None)
ACTS = ("relu", "leakyrelu", "prelu", "elu", None)


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3; got {spatial_dims!r}.")
    return spatial_dims


def conv_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d`` for ``spatial_dims`` 1/2/3."""
    return _CONV[_check_dims(spatial_dims)]


def conv_transpose_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.ConvTranspose{1,2,3}d`` for ``spatial_dims``."""
    return _CONV_T[_check_dims(spatial_dims)]


def max_pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool{1,2,3}d`` for ``spatial_dims``."""
    return _MAX_POOL[_check_dims(spatial_dims)]


def avg_pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.AvgPool{1,2,3}d`` for ``spatial_dims``."""
    return _AVG_POOL[_check_dims(spatial_dims)]


def make_norm(norm: Optional[str], num_channels: int, spatial_dims: int, num_groups: int = 8) -> nn.Module:
    """Return the normalisation layer called ``norm``, or ``nn.Identity`` for ``None``.

    Args:
        norm: ``"batch"``, ``"instance"`` (affine, as nnU-Net uses it), ``"group"`` or ``None``.
        num_channels: channels of the tensor being normalised.
        spatial_dims: 1, 2 or 3.
        num_groups: groups for ``"group"``; reduced to a divisor of ``num_channels`` if needed.
    """
    _check_dims(spatial_dims)
    if norm is None:
        return nn.Identity()
    key = norm.lower()
    if key == "batch":
        return _BATCH_NORM[spatial_dims](num_channels)
    if key == "instance":
        return _INSTANCE_NORM[spatial_dims](num_channels, affine=True)
    if key == "group":
        groups = min(num_groups, num_channels)
        while num_channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, num_channels)
    raise ValueError(f"Unknown norm {norm!r}; choose one of {NORMS}.")


def make_act(act: Optional[str], num_channels: int = 1) -> nn.Module:
    """Return the activation called ``act``, or ``nn.Identity`` for ``None``.

    Args:
        act: ``"relu"``, ``"leakyrelu"`` (slope 0.01, as in No New-Net), ``"prelu"``
            (one slope per channel, as in V-Net), ``"elu"`` or ``None``.
        num_channels: channels, used by ``"prelu"`` only.
    """
    if act is None:
        return nn.Identity()
    key = act.lower()
    if key == "relu":
        return nn.ReLU(inplace=True)
    if key == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    if key == "prelu":
        return nn.PReLU(num_channels)
    if key == "elu":
        return nn.ELU(inplace=True)
    raise ValueError(f"Unknown act {act!r}; choose one of {ACTS}.")


class ConvNormAct(nn.Sequential):
    """conv -> norm -> act, the unit every network here is made of.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: convolution kernel size.
        spatial_dims: 2 for images, 3 for volumes.
        padding: ``"same"`` keeps the size (zero padding of ``kernel_size // 2``);
            ``"valid"`` pads nothing, so each 3x3 conv trims one pixel per side, as in
            the 2015 U-Net.
        norm: normalisation name, see :func:`make_norm`.
        act: activation name, see :func:`make_act`.
        bias: conv bias. ``True`` (PyTorch's default, the seed's and the paper's choice);
            ``None`` means "only when there is no norm", because a norm that subtracts the
            mean makes the bias redundant.

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S'), S' = S ("same") or S - (k - 1) ("valid").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        spatial_dims: int = 2,
        padding: str = "same",
        norm: Optional[str] = "batch",
        act: Optional[str] = "relu",
        bias: Optional[bool] = True,
    ) -> None:
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}.")
        pad = kernel_size // 2 if padding == "same" else 0
        use_bias = (norm is None) if bias is None else bias
        self.add_module("conv", conv_type(spatial_dims)(in_channels, out_channels, kernel_size, padding=pad, bias=use_bias))
        self.add_module("norm", make_norm(norm, out_channels, spatial_dims))
        self.add_module("act", make_act(act, out_channels))


class DoubleConv(nn.Sequential):
    """Two (conv -> norm -> act) layers: one U-Net stage (Ronneberger et al. 2015, Fig. 1).

    Args:
        in_channels: input channels.
        out_channels: output channels of the second conv.
        mid_channels: output channels of the first conv; ``out_channels`` when not given.
            The 3D U-Net's encoder uses ``out_channels // 2`` (Çiçek et al. 2016, Section 2).
        spatial_dims: 2 or 3.
        padding: ``"same"`` or ``"valid"``, see :class:`ConvNormAct`.
        norm: normalisation name; the seed article uses ``"batch"``, the paper ``None``.
        act: activation name.
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
        norm: Optional[str] = "batch",
        act: Optional[str] = "relu",
        bias: Optional[bool] = True,
    ) -> None:
        super().__init__()
        common = dict(spatial_dims=spatial_dims, padding=padding, norm=norm, act=act, bias=bias)
        mid_channels = out_channels if mid_channels is None else mid_channels
        self.add_module("conv1", ConvNormAct(in_channels, mid_channels, **common))
        self.add_module("conv2", ConvNormAct(mid_channels, out_channels, **common))
