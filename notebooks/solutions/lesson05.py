"""Worked solutions and written answers for the exercises of lesson 05 (UNet++).

The functions a student writes are checked by ``check_exercise("lesson05.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson05`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

import torch

from unet_lessons.exercises.lesson05 import head_receptive_fields, linear_cka, unetpp_parameters  # noqa: F401

ANSWERS = {
    "unetpp_parameters": "Node by node: the encoder column, then every nested node X^{i,j} (its 2×2 "
                         "up-convolution and two 3×3 convolutions on j + 1 concatenated maps), then the heads: "
                         "9,041,601 for the paper's configuration with one head.",
    "head_fields": "Down to X^{k,0} and back up the diagonal: 18, 44, 96 and 200 for the four heads.",
    "linear_cka": "Linear CKA does not change under a rotation of the channels, a common scaling, or added "
                  "redundant channels, and it changes when some channels are stretched more than others. So a "
                  "map with 8 channels and one with 16 can be compared directly: CKA compares the geometry of "
                  "the samples, not the channels one by one, and the 16 channels may hold the same information.",
    "semantic_gap_wiring": "Section 4's 'at init' columns: before any training, UNet++'s nested node already reads about "
                           "0.14 at level 1 and 0.39 at level 2 against the upsampled map, while U-Net's encoder map "
                           "reads about 0. The nested node X^{i,3-i} reads U(X^{i+1,2-i}), and its partner "
                           "U(X^{i+1,3-i}) is computed from a node that read X^{i+1,2-i} too: both sides come from the "
                           "same node below, and two maps computed from a common input are alike even with random "
                           "weights. That part holds by construction. The comparison 'beyond the wiring' subtracts each "
                           "network's value at initialisation from its trained value and compares what training added. "
                           "Level 3 is wired the same in both networks (both concatenate X^{3,0} and U(X^{4,0})): the "
                           "difference there is how far two separate trainings differ, the noise floor the other "
                           "differences must be read against; in one stored seed it was 0.27.",
    "l3_or_l4": "Section 6: L3 - L4 is +0.004 IoU on average over five seeds and five slices, and its family-wise "
                "interval runs from about -0.012 to +0.019, past the one-point margin on the low side: inconclusive. "
                "What the data allow: L3 is not worse than L4 by more than about 1.2 IoU points, for about 60 % of "
                "the multiply-adds. If losing up to 1.2 points is acceptable, deploy L3; to know that it loses less "
                "than one point, train about 18 seeds (the seeds-needed table). A single seed in which L3 scores above L4 says "
                "nothing either way: the seeds differ from each other by more than that.",
}


def cka_invariances(seed: int = 0) -> dict[str, bool]:
    """Exercise 3: what linear CKA ignores, and what it does not."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(500, 8, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    stretch = torch.diag(torch.logspace(-1, 1, 8, dtype=torch.float64))
    return {
        "rotation of the channels": abs(linear_cka(x, x @ rotation) - 1) < 1e-9,
        "scaling by 5": abs(linear_cka(x, 5 * x) - 1) < 1e-9,
        "stretching some channels changes it": linear_cka(x, x @ stretch) < 0.99,
        "more channels, same information": abs(linear_cka(x, torch.cat([x, x @ rotation], 1)) - 1) < 1e-9,
    }
