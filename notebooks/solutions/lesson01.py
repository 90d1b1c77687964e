"""Worked solutions and written answers for the exercises of lesson 01 (FCN).

The functions a student writes are checked by ``check_exercise("lesson01.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson01`` and are imported here, so that the
checker and this file can never disagree. ``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_lessons.exercises.lesson01 import (count_fcn32s_parameters, exact_x4_settings,  # noqa: F401
                                             fixed_upsample_x3, vgg16_receptive_fields)

ANSWERS = {
    "exact_x4": "The output side is (n − 1)·4 − 2p + (k − 1) + 1 = 4n + (k − 4 − 2p). It is 4n for every n "
                "exactly when k − 2p = 4; with k ≤ 8 and 0 ≤ p < k that leaves (4, 0), (6, 1) and (8, 2).",
    "vgg16_fields": "Each layer adds (k − 1)·j, each stride-2 pool doubles j: pool3 44, pool4 100, pool5 212, and "
                    "fc7 404 (fc6 is a 7×7 convolution at j = 32, adding 6·32 = 192).",
    "fcn32s_parameters": "The 13 convolutions of VGG16, fc6 (7·7·512·4096 + 4096), fc7 (4096·4096 + 4096) and "
                         "score_fr (4096·21 + 21) give 134,346,581 for 21 classes; the fixed ×32 upsampler adds "
                         "nothing that learns.",
    "bilinear_x3": "Away from the outer three pixels the fixed ×3 up-convolution equals bilinear interpolation "
                   "(align_corners=False); at the border the transposed convolution reads zeros beyond the "
                   "image, so it is darker there, while interpolate repeats the edge pixel.",
}


def check_bilinear_x3(seed: int = 0) -> bool:
    """Exercise 4: a fixed ×3 transposed conv equals bilinear interpolation away from the border."""
    x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(seed))
    ours = fixed_upsample_x3(x)
    reference = F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    return ours.shape == reference.shape and bool(torch.allclose(ours[inner], reference[inner], atol=1e-6))
