"""One entry point for the architecture figures: the drawing that fits the model's feature scheme.

Every registered model declares which keys its ``forward_features`` returns
(``feature_scheme``, see ``unet_lessons.models.base.FEATURE_SCHEMES``), and each scheme has
its figure: the U of the U-Net paper, the node grid of UNet++, the staircase of FCN.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from matplotlib.figure import Figure

from .diagram import draw_unet
from .fcn_diagram import draw_fcn
from .node_grid import draw_node_grid

__all__ = ["draw_architecture"]

_DRAWINGS = {"encoder_decoder": draw_unet, "nested": draw_node_grid, "fcn": draw_fcn}


def draw_architecture(model: nn.Module, input_shape: Sequence[int], **kwargs) -> Figure:
    """Draw ``model`` for ``input_shape`` with the figure of its ``feature_scheme``.

    Args:
        model: a model following the contract of ``unet_lessons.models.base``.
        input_shape: ``(B, C, *S)`` or the spatial size ``S``.
        kwargs: passed on, e.g. ``title``.

    Raises:
        TypeError: for a model without a drawable ``feature_scheme``.
    """
    scheme = getattr(model, "feature_scheme", None)
    if scheme not in _DRAWINGS:
        raise TypeError(f"draw_architecture draws the feature schemes {sorted(_DRAWINGS)}; "
                        f"{type(model).__name__} declares {scheme!r}.")
    return _DRAWINGS[scheme](model, input_shape, **kwargs)
