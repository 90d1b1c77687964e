"""The networks of the lessons, one file per architecture, and a registry to build them by name.

Every registered model follows the contract of :mod:`unet_lessons.models.base`
(:class:`~unet_lessons.models.base.SegmentationModel`); networks from other libraries join
through :mod:`unet_lessons.models.adapters`.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .adapters import OutputAdapter
from .base import FEATURE_SCHEMES, ModelOutput, SegmentationModel, unpack_output
from .fcn import FCN, FCN32sSeed, VGGClassifier, VGGEncoder, convolutionalize
from .multiresunet import MULTIRESUNET_PRESETS, MultiResUNet, keras_counts
from .myronenko import MyronenkoNet
from .nonewnet import NoNewNet
from .unet import UNET_PRESETS, UNet
from .unetpp import UNetPlusPlus
from .u2net import U2NET_PRESETS, U2Net
from .vnet import VNET_PRESETS, VNet

__all__ = ["MODELS", "build_model", "SegmentationModel", "ModelOutput", "unpack_output", "FEATURE_SCHEMES",
           "OutputAdapter", "UNet", "NoNewNet", "MyronenkoNet", "UNET_PRESETS", "VNet", "VNET_PRESETS", "UNetPlusPlus", "MultiResUNet", "MULTIRESUNET_PRESETS", "U2Net", "U2NET_PRESETS", "keras_counts", "FCN", "FCN32sSeed", "VGGEncoder", "VGGClassifier", "convolutionalize"]

#: name -> a SegmentationModel class. Every entry is tested against the contract by tests/test_contract.py.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "fcn": FCN,
    "vnet": VNet,
    "unetpp": UNetPlusPlus,
    "nonewnet": NoNewNet,
    "myronenko": MyronenkoNet,
    "multiresunet": MultiResUNet,
    "u2net": U2Net,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs``.

    Every model takes the same core arguments: ``in_channels``, ``out_channels``,
    ``spatial_dims`` and ``width`` (the channels of its first level); the others are its own,
    e.g. ``build_model("unet", in_channels=1, out_channels=3, spatial_dims=3, width=8, depth=3)``.

    Raises:
        KeyError: naming the registered models when ``name`` is unknown.
    """
    key = name.lower()
    if key not in MODELS:
        raise KeyError(f"Unknown model {name!r}; registered models: {sorted(MODELS)}.")
    return MODELS[key](**kwargs)
