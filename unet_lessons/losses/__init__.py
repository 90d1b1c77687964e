"""Segmentation losses, each written by hand and checked against MONAI or the paper.

* :mod:`.dice`: soft Dice (Milletari et al. 2016) and Dice + cross-entropy (nnU-Net's
  default) on class labels, with a softmax over disjoint classes.
* :mod:`.regions`: region Dice and region Dice + binary cross-entropy, one sigmoid per
  (possibly overlapping) region, as BraTS networks predict whole tumour ⊃ tumour core ⊃
  enhancing tumour.
* :mod:`.deep_supervision`: the mean of one loss per decoder head (UNet++).
* :mod:`.weight_map`: the U-Net paper's border weight map and weighted cross-entropy
  (Ronneberger et al. 2015, Section 3), and the official V-Net code's per-sample
  inverse-frequency weights (:class:`SampleBalancedCrossEntropy`).
* :mod:`.lovasz`: 3D U²-Net's Lovász-Softmax + focal loss (Berman et al. 2018; Lin et al. 2017).
* :mod:`.finite`: the check each of them makes first, that the logits hold no NaN or inf.

Conventions: networks output logits ``(B, C, *S)``; class targets are int64 indices
``(B, *S)`` or ``(B, 1, *S)``, region targets binary ``(B, R, *S)``; one code path for 2D and 3D.
"""

from .deep_supervision import DeepSupervisionLoss, deep_supervision_loss
from .dice import DiceCELoss, SoftDiceLoss, one_hot, soft_dice_terms, vnet_dice_gradient
from .finite import NonFiniteLogitsWarning
from .lovasz import LovaszFocalLoss, focal_loss, lovasz_grad, lovasz_softmax
from .regions import RegionDiceBCELoss, RegionDiceLoss
from .weight_map import (SampleBalancedCrossEntropy, WeightedCrossEntropy, cell_distances, inverse_frequency_weight_map,
                         separation_band, unet_weight_map, weighted_cross_entropy)

__all__ = ["one_hot", "soft_dice_terms", "SoftDiceLoss", "vnet_dice_gradient", "DiceCELoss", "RegionDiceLoss",
           "RegionDiceBCELoss", "cell_distances", "separation_band", "unet_weight_map", "weighted_cross_entropy", "WeightedCrossEntropy", "inverse_frequency_weight_map",
           "SampleBalancedCrossEntropy", "DeepSupervisionLoss",
           "deep_supervision_loss", "NonFiniteLogitsWarning", "LovaszFocalLoss", "lovasz_softmax", "lovasz_grad",
           "focal_loss"]
