"""Solutions to the exercises of lesson 02 (the U-Net). Each returns something a test can check."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_lessons.losses import weighted_cross_entropy
from unet_lessons.metrics import dice_per_class, iou_per_class


def valid_sizes_depth3(start: int, stop: int) -> list[int]:
    """Exercise 1: input sides in [start, stop) that a valid U-Net of depth 3 can take."""

    def works(n: int) -> bool:
        for _ in range(3):          # contracting path: two convs trim 4, then pool needs an even size
            n -= 4
            if n <= 0 or n % 2:
                return False
            n //= 2
        n -= 4                      # bottleneck
        for _ in range(3):          # expanding path: up x2, two convs trim 4
            if n <= 0:
                return False
            n = 2 * n - 4
        return n > 0

    return [n for n in range(start, stop) if works(n)]


def textbook_field_depth3() -> float:
    """Exercise 2: r += (k - 1) * j along the longest path of the depth-3 valid U-Net."""
    r, j = 1.0, 1.0
    for _level in range(3):
        r += 2 * j + 2 * j          # two 3x3 convs
        r += 1 * j                  # 2x2 max-pool, stride 2
        j *= 2
    r += 2 * j + 2 * j              # bottleneck convs
    for _level in range(3):
        j /= 2                      # 2x2 up-conv, stride 2: each output reads one input
        r += 2 * j + 2 * j          # two 3x3 convs
    return r                        # the 1x1 head adds nothing


def pixel_weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the paper: sum over pixels of w(x) * log p_{l(x)}(x), negated, averaged."""
    log_probs = F.log_softmax(logits, dim=1)                     # (B, C, H, W)
    picked = log_probs.gather(1, target[:, None]).squeeze(1)     # (B, H, W)
    return -(weights * picked).mean()


def check_weighted_cross_entropy(seed: int = 0) -> bool:
    """Exercise 3: the hand-written loss equals the package's."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 16, 16, generator=g)
    target = torch.randint(0, 2, (2, 16, 16), generator=g)
    weights = torch.rand(2, 16, 16, generator=g) * 10
    ours = pixel_weighted_cross_entropy(logits, target, weights)
    return bool(torch.allclose(ours, weighted_cross_entropy(logits, target, weights), atol=1e-6))


def check_dice_iou(prediction: torch.Tensor, target: torch.Tensor, num_classes: int = 2) -> bool:
    """Exercise 4: per class, IoU = Dice / (2 - Dice)."""
    dice = dice_per_class(prediction, target, num_classes)
    iou = iou_per_class(prediction, target, num_classes)
    return bool(torch.allclose(iou, dice / (2 - dice), atol=1e-9))
