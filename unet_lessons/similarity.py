"""How alike are two sets of feature maps? Linear CKA, and the pairs a U-Net concatenates.

Kornblith, Norouzi, Lee and Hinton, "Similarity of Neural Network Representations
Revisited", ICML 2019 (Section 3, eq. 4). Two feature maps of the same input are compared
as matrices whose rows are the same spatial positions and whose columns are channels:

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)      (X, Y centred per column)

It is 1 for maps that are equal up to a rotation of the channels and a scale, near 0 for
unrelated ones, and it compares maps with different numbers of channels. UNet++ (Zhou et
al. 2018) is motivated by a "semantic gap" between the encoder map and the upsampled
decoder map that a U-Net concatenates; :func:`concatenated_pairs` collects those pairs so
that the gap can be measured. Used in ``notebooks/05_unetpp.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from .models.base import is_skip_stage


__all__ = ["linear_cka", "as_feature_matrix", "concatenated_pairs", "skip_path_pairs"]


def as_feature_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) feature maps -> (B * prod(S), C): one row per position, one column per channel."""
    if features.ndim < 3:
        raise ValueError(f"expected feature maps (B, C, *spatial); got shape {tuple(features.shape)}. "
                         "For a (samples, features) matrix call linear_cka on it directly.")
    return features.movedim(1, -1).reshape(-1, features.shape[1])


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same samples.

    Args:
        x: (N, P) matrix, or (B, C, *S) feature maps (positions become samples).
        y: (N, Q) matrix, or feature maps with the same batch and spatial size as ``x``.

    Returns:
        A number in [0, 1]; 1 means equal up to an orthogonal transform and a scale.
    """
    x = as_feature_matrix(x) if x.ndim > 2 else x
    y = as_feature_matrix(y) if y.ndim > 2 else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares the same samples: got {tuple(x.shape)} and {tuple(y.shape)}. "
                         "Pass feature maps of the same input at the same resolution.")
    x, y = x.detach().double(), y.detach().double()
    x, y = x - x.mean(0), y - y.mean(0)
    cross = (y.T @ x).square().sum()  # ||Y^T X||_F^2, the linear HSIC up to a constant
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if norm == 0:
        raise ValueError("a representation is constant over all samples; CKA is undefined for it.")
    return float(cross / norm)


@torch.no_grad()
def concatenated_pairs(model: nn.Module, x: torch.Tensor) -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
    """The two sides of every skip join on the decoder path, for one input, in eval mode.

    The model says what they are (``model.skip_pairs(x)``, part of the model contract). For a
    U-Net: at each level ``i`` (top = 0), the encoder skip ``X^{i,0}`` and the upsampled
    decoder map. For UNet++: at each decoder node ``X^{i,L-i}``, the nearest same-row node
    ``X^{i,L-i-1}`` (what the dense skip pathway delivers after its convolutions) and
    ``Up(X^{i+1,L-i-1})``.

    Returns:
        ``{"level i": (skip side, upsampled side)}``, top level first.

    Raises:
        TypeError: for a module without ``skip_pairs``.
    """
    if not callable(getattr(model, "skip_pairs", None)):
        raise TypeError(f"concatenated_pairs asks the model for its skip_pairs(x) (the model contract in "
                        f"unet_lessons.models.base); {type(model).__name__} has none.")
    model.eval()
    return model.skip_pairs(x)


@torch.no_grad()
def skip_path_pairs(model: nn.Module, x: torch.Tensor) -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
    """Each skip before and after the layers on it (MultiResUNet's Res paths), for one input, in eval mode.

    Read from ``model.forward_features(x)``: ``enc{i}`` is the map before the path and
    ``skip{i}`` the map after it (the model contract). ``linear_cka`` of the two says how much
    the path changed what the skip carries.

    Returns:
        ``{"level i": (before, after)}``, top level first, for the levels whose skip has layers.

    Raises:
        ValueError: for a model with no layers on any skip, which has nothing to compare.
    """
    model.eval()
    features = model.forward_features(x)
    pairs = OrderedDict((f"level {name[4:]}", (features[f"enc{name[4:]}"], features[name]))
                        for name in sorted(filter(is_skip_stage, features), key=lambda k: int(k[4:])))
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no layers on its skips (forward_features returns no 'skip{{i}}' "
                         "maps): each skip carries the encoder map unchanged, so there is nothing to compare.")
    return pairs
