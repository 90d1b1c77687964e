"""Worked solutions and written answers for the exercises of lesson 01 (FCN).

The functions a student writes are checked by ``check_exercise("lesson01.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson01`` and are imported here, so that the
checker and this file can never disagree. ``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_lessons.exercises.lesson01 import (count_fcn32s_parameters, exact_x4_settings,  # noqa: F401
                                             fixed_upsample_x3, vgg_receptive_fields)

ANSWERS = {
    "exact_x4": "The output side is (n − 1)·4 − 2p + (k − 1) + 1 = 4n + (k − 4 − 2p). It is 4n for every n "
                "exactly when k − 2p = 4; with k ≤ 8 and 0 ≤ p < k that leaves (4, 0), (6, 1) and (8, 2).",
    "vgg_fields": "Each layer adds (k − 1)·j, each stride-2 pool doubles j. VGG16 (2, 2, 3, 3, 3): pool3 44, pool4 100, "
                  "pool5 212, fc7 404 (fc6 is a 7×7 convolution at j = 32, adding 6·32 = 192). VGG19 (2, 2, 4, 4, 4): "
                  "pool3 52, pool4 124, pool5 268, fc7 460: each extra 3×3 convolution in stage s adds 2·2^(s−1) pixels.",
    "fcn32s_parameters": "The 13 convolutions of VGG16, fc6 (7·7·512·4096 + 4096), fc7 (4096·4096 + 4096) and "
                         "score_fr (4096·21 + 21) give 134,346,581 for 21 classes; the fixed ×32 upsampler adds "
                         "nothing that learns.",
    "fcn32s_collapse": "Not broken: near its ceiling. Section 5: on this task's objects, 6 to 40 pixels across and most "
                       "smaller than one 32×32 cell, background everywhere scores 0.159 mean IoU and the best stride-32 "
                       "score map we found 0.186; FCN-32s scores 0.161. Section 7's 'more steps, no skip' row: 200 more "
                       "steps gained 0.009 (interval +0.003 to +0.015), real but a twentieth of what the pool4 skip adds "
                       "in the same steps, and 2,000 steps could not take it past 0.186, because no network can place what "
                       "its output grid cannot hold. What helps is a finer output stride: the pool4 and pool3 skips of "
                       "FCN-16s and 8s, whose ceilings are 0.405 and 0.654; or objects larger relative to the stride (the "
                       "same scenes at a higher resolution).",
    "ceiling_cross_entropy": "Cross-entropy counts every pixel once, and the mean IoU weighs each class equally. Take a "
                             "bar 3 pixels wide at stride 8: raising the bar's coarse score along it wins the bar's centre "
                             "pixels but also turns a band of background pixels on either side into bar. Cross-entropy "
                             "can prefer the map that leaves the bar out (many background pixels stay right), while the "
                             "mean IoU prefers the map that wins part of the bar: the bar's IoU rises from 0, and "
                             "background, the largest class, loses little of its IoU. So the fitted row is not the best "
                             "mean IoU a stride allows, only the best we found, and a network trained on a loss closer to "
                             "the class-averaged score (Dice + cross-entropy, which weighs classes equally through its "
                             "Dice term) can score close to it or even above it without contradicting anything: a score near "
                             "the fitted row means the network is near what its stride allows, not that it is at a proven "
                             "maximum.",
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
