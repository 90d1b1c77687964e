"""Worked solutions and written answers for the exercises of lesson 03 (the 3D U-Net).

The functions a student writes are checked by ``check_exercise("lesson03.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson03`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

import torch.nn as nn

from unet_lessons.exercises.lesson03 import (conv_output_bytes, labelled_fraction,  # noqa: F401
                                             paper_parameter_count, valid_cubic_sides)
from unet_lessons.memory import estimate_memory

ANSWERS = {
    "paper_parameters": "Summing the layers of Fig. 2 (3×3×3 convolutions with bias, bias-free 2×2×2 "
                        "up-convolutions that keep the channels, a 1×1×1 head) gives 19,069,955 for 3 input "
                        "channels and 3 classes, as the package's UNet.preset('cicek2016') counts.",
    "valid_sides": "Each side must stay positive and even before every pooling once the two unpadded "
                   "convolutions have taken 4 off. With b the side after the bottleneck's convolutions, the "
                   "way up gives 2(2(2b − 4) − 4) − 4 = 8b − 28: the paper's 132 reaches b = 9 and gives 44.",
    "conv_output_bytes": "For the lesson's network and one 32³ patch the convolution outputs come to 14.3 MiB, "
                         "53 % of the 26.8 MiB of activations that estimate_memory gives for one patch (batch 1; the "
                         "batch of two doubles both); the rest are the batch norms' and ReLUs' saved tensors and the "
                         "pooling indices. The full-resolution level holds most of them: one level down has 8× fewer "
                         "voxels and only 2× the channels, so each level holds about a quarter of the level above.",

    "labelled_fraction": "Three families of k planes: 3k·s² voxels, minus 3k²·s for the lines where two families "
                         "cross (counted twice), plus k³ for the points where all three cross, over s³.",
    "matching_2d_3d": "The claim is about the third axis, so everything else should be equal: the receptive field "
                      "in-plane (what each output pixel sees within its slice), the parameters (capacity) and the "
                      "multiply-adds per training step (the compute budget, with the same number of steps). With "
                      "one more pooling level (16, 32, 64, 128 channels) the 2D network would see 96 pixels in-plane "
                      "against the 3D network's 44 voxels and have 1.5 times the parameters (427,731): a difference in score would mix the third axis "
                      "with a larger field and a larger network, and could favour 2D for reasons that have nothing "
                      "to do with slices. The one difference left is the context along D: 44 voxels for the 3D "
                      "network, one slice for the 2D one. It cannot be matched, because it is what is being "
                      "compared; what we can say is that the 2D network's per-voxel cost is spent in-plane instead.",
}


def conv_output_share(model: nn.Module, patch: int) -> tuple[float, int]:
    """Exercise 3: bytes of all conv outputs for one patch, and their share of the estimated activations."""
    total = conv_output_bytes(model, patch)
    estimate = estimate_memory(model, (model.in_channels, patch, patch, patch), batch_size=1)
    return total / estimate.activations, total
