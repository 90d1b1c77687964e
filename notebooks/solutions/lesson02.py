"""Worked solutions and written answers for the exercises of lesson 02 (the U-Net).

The functions a student writes are checked by ``check_exercise("lesson02.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson02`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

import torch

from unet_lessons.exercises.lesson02 import (iou_from_dice, pixel_weighted_cross_entropy,  # noqa: F401
                                             textbook_field_depth3, valid_sizes_depth3)
from unet_lessons.losses import weighted_cross_entropy
from unet_lessons.metrics import dice_per_class, iou_per_class

ANSWERS = {
    "valid_sizes": "A size works when, on the way down, n − 4 is positive and even before every pooling, and "
                   "every size on the way up stays positive; between 100 and 200 that leaves the sides that "
                   "UNet(..., depth=3, padding='valid').valid_sizes(100, 200) lists, 8 apart.",
    "textbook_field": "Every level adds more than the one above it because a layer adds (k − 1)·j, and j, the "
                      "distance in input pixels between neighbouring positions of the map, doubles with every "
                      "pooling: the same 3×3 convolution spans twice as many input pixels one level down.",
    "weighted_cross_entropy": "−mean over pixels of w(x)·log p_{l(x)}(x): log_softmax, gather the true class, "
                              "weight, average. With all weights 1 it is plain cross-entropy. The bonus (training "
                              "with it) is not measured in the lesson; try it and compare the membrane Dice.",
    "iou_from_dice": "With I = |A∩B| and S = |A| + |B|: Dice = 2I/S and IoU = I/(S − I). Dividing by S, "
                     "IoU = (Dice/2)/(1 − Dice/2) = Dice/(2 − Dice). The map is increasing, so the two metrics "
                     "always rank predictions the same way per class; only the numbers differ.",
}


def check_weighted_cross_entropy(seed: int = 0) -> bool:
    """Exercise 3: the hand-written loss equals the package's."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 16, 16, generator=g)
    target = torch.randint(0, 2, (2, 16, 16), generator=g)
    weights = torch.rand(2, 16, 16, generator=g) * 10
    ours = pixel_weighted_cross_entropy(logits, target, weights)
    return bool(torch.allclose(ours, weighted_cross_entropy(logits, target, weights), atol=1e-6))


def check_dice_iou(prediction: torch.Tensor, target: torch.Tensor, num_classes: int = 2) -> bool:
    """Exercise 4: per class, IoU = Dice / (2 - Dice), on real predictions."""
    dice = dice_per_class(prediction, target, num_classes)
    iou = iou_per_class(prediction, target, num_classes)
    return bool(torch.allclose(iou, iou_from_dice(dice), atol=1e-9))
