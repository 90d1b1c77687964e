"""Layer factories: one code path for 2D and 3D, and norms and activations chosen by name.

Every factory takes ``spatial_dims`` and returns the ``Conv2d``/``Conv3d`` (pooling, norm,
interpolation mode …) to match. Normalisation and activation are chosen by a name, or a
name and its options as MONAI writes them (``norm=("group", {"num_groups": 8})``,
``norm=("instance", {"affine": False})``, ``act=("leakyrelu", {"negative_slope": 0.01})``),
and resolved here, in one place.

Built in lesson 02 (``notebooks/02_unet.ipynb``).
"""

from __future__ import annotations

from typing import Optional, Union

import torch.nn as nn

__all__ = ["conv_type", "conv_transpose_type", "max_pool_type", "avg_pool_type", "interpolation_mode",
           "make_norm", "make_act", "NORMS", "ACTS", "LayerSpec"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}

NORMS = ("batch", "instance", "group", None)
ACTS = ("relu", "leakyrelu", "prelu", "elu", None)
#: A norm or activation: its name, or its name and keyword options, or ``None`` for none.
LayerSpec = Union[str, tuple[str, dict], None]


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


def interpolation_mode(spatial_dims: int) -> str:
    """The (multi)linear ``F.interpolate`` mode for ``spatial_dims``: linear, bilinear or trilinear."""
    return _INTERPOLATION[_check_dims(spatial_dims)]


def _name_and_options(spec: LayerSpec, kind: str, known: tuple) -> tuple[Optional[str], dict]:
    if spec is None:
        return None, {}
    if isinstance(spec, str):
        return spec.lower(), {}
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
        return spec[0].lower(), dict(spec[1])
    raise ValueError(f"{kind} must be a name, a (name, options) pair such as ('group', {{'num_groups': 8}}), or None; "
                     f"got {spec!r}. Names: {known}.")


def make_norm(norm: LayerSpec, num_channels: int, spatial_dims: int, num_groups: int = 8) -> nn.Module:
    """Return the normalisation layer ``norm``, or ``nn.Identity`` for ``None``.

    Args:
        norm: ``"batch"`` (``("batch", {"scale": False})``: a learned shift, no learned scale, as Keras's
            ``BatchNormalization(scale=False)``), ``"instance"`` (affine by default, as nnU-Net uses it;
            ``("instance", {"affine": False})`` for the plain one), ``"group"``, or ``None``; or a (name, options) pair.
        num_channels: channels of the tensor being normalised.
        spatial_dims: 1, 2 or 3.
        num_groups: groups for a plain ``"group"``: reduced to a divisor of ``num_channels`` when it
            does not divide them. Given as an option, it must divide them.
    """
    _check_dims(spatial_dims)
    name, options = _name_and_options(norm, "norm", NORMS)
    if name is None:
        return nn.Identity()
    if name == "batch":
        # scale=False: Keras's BatchNormalization(scale=False), a learned shift and no learned scale
        # (MultiResUNet's official code puts it after every convolution).
        scale = options.pop("scale", True)
        layer = _BATCH_NORM[spatial_dims](num_channels, **options)
        if not scale:
            if not layer.affine:
                raise ValueError("batch norm with scale=False keeps a learned shift; it needs affine=True (the default).")
            layer.register_parameter("weight", None)  # F.batch_norm takes weight=None: no scale
        return layer
    if name == "instance":
        return _INSTANCE_NORM[spatial_dims](num_channels, **{"affine": True, **options})
    if name == "group":
        if "num_groups" in options:
            groups = options.pop("num_groups")
            if num_channels % groups:
                raise ValueError(f"group norm with num_groups={groups} cannot split {num_channels} channels; "
                                 f"choose a divisor of {num_channels} or change the width.")
        else:
            groups = min(num_groups, num_channels)
            while num_channels % groups:
                groups -= 1
        return nn.GroupNorm(groups, num_channels, **options)
    raise ValueError(f"Unknown norm {name!r}; choose one of {NORMS}.")


def make_act(act: LayerSpec, num_channels: int = 1) -> nn.Module:
    """Return the activation ``act``, or ``nn.Identity`` for ``None``.

    Args:
        act: ``"relu"``, ``"leakyrelu"`` (slope 0.01 unless ``negative_slope`` is given; No
            New-Net), ``"prelu"`` (one slope per channel, as in V-Net), ``"elu"``, or ``None``;
            or a (name, options) pair.
        num_channels: channels, used by ``"prelu"`` only.
    """
    name, options = _name_and_options(act, "act", ACTS)
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(**{"inplace": True, **options})
    if name == "leakyrelu":
        return nn.LeakyReLU(**{"negative_slope": 0.01, "inplace": True, **options})
    if name == "prelu":
        return nn.PReLU(**{"num_parameters": num_channels, **options})
    if name == "elu":
        return nn.ELU(**{"inplace": True, **options})
    raise ValueError(f"Unknown act {name!r}; choose one of {ACTS}.")
