"""The networks of the lessons, one file per architecture, and a registry to build them by name."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .fcn import FCN, FCN32sSeed, VGGClassifier, VGGEncoder, convolutionalize
from .unet import UNET_PRESETS, UNet
from .unetpp import UNetPlusPlus
from .vnet import VNET_PRESETS, VNet

__all__ = ["MODELS", "build_model", "UNet", "UNET_PRESETS", "VNet", "VNET_PRESETS", "UNetPlusPlus", "FCN", "FCN32sSeed", "VGGEncoder", "VGGClassifier", "convolutionalize"]

#: name -> constructor. Presets are functions so that a lesson can name a paper's configuration.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "fcn": FCN,
    "vnet": VNet,
    "unetpp": UNetPlusPlus,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs``.

    Raises:
        KeyError: naming the registered models when ``name`` is unknown.
    """
    key = name.lower()
    if key not in MODELS:
        raise KeyError(f"Unknown model {name!r}; registered models: {sorted(MODELS)}.")
    return MODELS[key](**kwargs)
