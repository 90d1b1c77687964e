"""Losses on region targets: one sigmoid per region, regions that may overlap (BraTS' nested
whole tumour ⊃ tumour core ⊃ enhancing tumour; see :mod:`unet_lessons.targets`).

* :class:`RegionDiceLoss`: the soft Dice of each region's sigmoid; equal to
  ``monai.losses.DiceLoss(sigmoid=True)``.
* :class:`RegionDiceBCELoss`: that plus binary cross-entropy; equal to
  ``DiceLoss(sigmoid=True)`` plus ``torch.nn.BCEWithLogitsLoss()``. Not MONAI's
  ``DiceCELoss(sigmoid=True)``: with more than one channel, MONAI's cross-entropy term is a
  softmax cross-entropy over the channels even then, which treats overlapping regions as
  competing classes.

Shape: input (B, R, *S) logits, target (B, R, *S) binary -> scalar.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..targets import check_region_target
from .dice import soft_dice_terms
from .finite import check_finite_logits

__all__ = ["RegionDiceLoss", "RegionDiceBCELoss"]


def _check_region_pair(input: torch.Tensor, target: torch.Tensor, nested: bool,
                       names: Optional[Sequence[str]], loss: str) -> torch.Tensor:
    if input.ndim < 3 or not input.is_floating_point():
        raise ValueError(f"input must be float logits (B, R, *S), one channel per region; got {input.dtype} "
                         f"of shape {tuple(input.shape)}.")
    if target.shape != input.shape:
        hint = (" The target looks like class labels (B, *S): convert them with "
                "unet_lessons.targets.labels_to_regions." if target.dim() == input.dim() - 1 else "")
        raise ValueError(f"prediction {tuple(input.shape)} and region target {tuple(target.shape)} must have the "
                         f"same shape (B, R, *S).{hint}")
    check_region_target(target, num_regions=input.shape[1], nested=nested, names=names)
    check_finite_logits(input, loss)
    return target.to(input.dtype)


class RegionDiceLoss(nn.Module):
    """Soft Dice of each region's sigmoid, averaged over (sample, region) terms.

    For region ``r`` with ``p = sigmoid(logits_r)`` and binary target ``g``::

        loss_r = 1 - (2 * sum(p * g) + smooth_nr) / (sum(p) + sum(g) + smooth_dr)

    Args:
        batch: one term per region over the whole batch (nnU-Net's "batch Dice").
        squared_pred: ``sum(p**2) + sum(g**2)`` in the denominator.
        smooth_nr, smooth_dr: smoothing, MONAI's defaults.
        nested: refuse targets whose regions are not nested (each inside the one before).
        names: region names for error messages.
    """

    def __init__(self, *, batch: bool = False, squared_pred: bool = False, smooth_nr: float = 1e-5,
                 smooth_dr: float = 1e-5, nested: bool = False, names: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        if smooth_dr <= 0 or smooth_nr < 0:
            raise ValueError(f"need smooth_dr > 0 and smooth_nr >= 0; got {smooth_nr}, {smooth_dr}.")
        self.batch, self.squared_pred, self.nested = batch, squared_pred, nested
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.names = tuple(names) if names is not None else None

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss(input, target, type(self).__name__)

    def _loss(self, input: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
        truth = _check_region_pair(input, target, self.nested, self.names, name)
        return soft_dice_terms(torch.sigmoid(input), truth, batch=self.batch, squared_pred=self.squared_pred,
                               smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr).mean()


class RegionDiceBCELoss(nn.Module):
    """``lambda_dice * RegionDiceLoss + lambda_bce * binary cross-entropy`` on region logits.

    The region arm of No New-Net (Isensee et al. 2018) and nnU-Net's BraTS setting: each
    region is its own binary problem, so the cross-entropy is per voxel and per region
    (``binary_cross_entropy_with_logits``, averaged over every element).

    Args:
        lambda_dice, lambda_bce: weights of the two terms (>= 0).
        **dice_options: passed to :class:`RegionDiceLoss` (``batch``, ``nested``, ``names`` …).
    """

    def __init__(self, *, lambda_dice: float = 1.0, lambda_bce: float = 1.0, **dice_options) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_bce < 0:
            raise ValueError(f"lambda_dice and lambda_bce must be >= 0; got {lambda_dice}, {lambda_bce}.")
        self.dice = RegionDiceLoss(**dice_options)
        self.lambda_dice, self.lambda_bce = float(lambda_dice), float(lambda_bce)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice = self.dice._loss(input, target, type(self).__name__)  # validates the pair
        bce = F.binary_cross_entropy_with_logits(input, target.to(input.dtype))
        return self.lambda_dice * dice + self.lambda_bce * bce
