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
    "fcn32s_collapse": "Close to the stride-16 row (the best map found there: 0.405 mean IoU), not the stride-32 row "
                       "(0.186). Drawn at 256×256, every object covers as many 32-pixel cells as it covers 16-pixel cells "
                       "at 128×128, so FCN-32s's output grid would hold the scenes as FCN-16s's grid holds them now (up to "
                       "the small difference between one ×32 bilinear step and ×2 then ×16). So the network is not "
                       "broken: at 128×128 the task is wrong for its stride. There, background everywhere scores 0.159, "
                       "the best stride-32 map we found 0.186, and FCN-32s 0.161; 200 more steps gained only 0.009 "
                       "(section 7), a twentieth of what the pool4 skip adds in the same steps. What helps is a finer "
                       "output stride (the skips of FCN-16s and 8s) or objects larger relative to the stride.",
    "ceiling_cross_entropy": "Cross-entropy counts every pixel once; the mean IoU weighs each class equally. Take a bar "
                             "3 pixels wide at stride 16 (section 5: the best stride-16 maps we found reach a bar IoU of "
                             "only 0.059). Raising the bar's coarse score along it would win some of the bar's centre "
                             "pixels but turn a wider band of background pixels on either side into bar: cross-entropy "
                             "prefers to leave the bar out, as the background pixels it keeps right outnumber the bar "
                             "pixels it loses. The mean IoU can prefer the other map: the bar's IoU rises from near 0, "
                             "while background, the largest class, loses little of its IoU. So the fitted row is the best "
                             "map we found by cross-entropy, not the best mean IoU a stride allows, and a network trained "
                             "on a loss closer to the class-averaged score (Dice + cross-entropy, whose Dice term weighs "
                             "the classes equally) can come close to the fitted row or even pass it without contradicting "
                             "anything. A score near the fitted row means the network is near what its stride allows as "
                             "far as we could find, not at a proven maximum.",
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
