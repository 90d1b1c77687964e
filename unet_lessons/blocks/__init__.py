"""The reusable stages of every network in the lessons, one code path for 2D and 3D.

* :mod:`.layers`: ``conv_type`` and the other factories by ``spatial_dims``, ``interpolation_mode``,
  and norms and activations by name (``make_norm``, ``make_act``), resolved in one place.
* :mod:`.units`: ``ConvNormAct`` (both orders), ``DoubleConv``, ``ResidualBlock``, ``StridedDown``.
* :mod:`.stages`: the U-Net's ``Down`` and ``Up`` (and ``center_crop``), ``SkipJoin`` (where every skip meets
  the decoder), V-Net's residual ``VNetStage``.
* :mod:`.multires`: MultiResUNet's ``MultiResBlock`` and ``ResPath``.
* :mod:`.separable`: depthwise, pointwise and separable convolutions; 3D U²-Net's ``DomainConv``.
"""

from .layers import (ACTS, NORMS, LayerSpec, avg_pool_type, conv_transpose_type, conv_type, interpolation_mode,
                     make_act, make_norm, max_pool_type)
from .units import ORDERS, ConvNormAct, DoubleConv, ResidualAdd, ResidualBlock, StridedDown
from .stages import Down, SkipJoin, Up, VNetStage, center_crop
from .multires import MultiResBlock, ResPath, ResPathUnit, multires_widths
from .separable import DomainConv, SeparableConv, depthwise_conv, pointwise_conv

__all__ = ["conv_type", "conv_transpose_type", "max_pool_type", "avg_pool_type", "interpolation_mode", "make_norm",
           "make_act", "NORMS", "ACTS", "ORDERS", "LayerSpec", "ConvNormAct", "DoubleConv", "ResidualBlock",
           "StridedDown", "ResidualAdd", "Down", "Up", "SkipJoin", "center_crop", "VNetStage", "MultiResBlock", "ResPath",
           "ResPathUnit", "multires_widths", "SeparableConv", "DomainConv", "depthwise_conv", "pointwise_conv"]
