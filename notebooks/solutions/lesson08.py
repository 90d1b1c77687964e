"""Worked solutions and written answers for the exercises of lesson 08 (MultiResUNet).

The functions a student writes are checked by ``check_exercise("lesson08.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson08`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

from unet_lessons.exercises.lesson08 import (block_counts, branch_widths, break_even_channels,  # noqa: F401
                                             res_path_unit)

ANSWERS = {
    "break_even_channels": "Parallel: c_in·(9a + 25b + 49c) weights, every branch reading the input. Chain: "
                           "9·(c_in·a + a·b + b·c), each 3×3 reading the branch before it. The difference is "
                           "c_in·(25b + 49c) − 9b(a + c), so the chain is lighter once c_in > 9b(a + c)/(25b + 49c): "
                           "the smallest such whole number is 9b(a + c) // (25b + 49c) + 1 (4 for the widths 8, 17, 26 "
                           "of U = 32). With a, b, c near W/6, W/3, W/2 the bound is about 9·(W/3)·(2W/3)/(32.8·W) ≈ "
                           "0.06·W ≈ 0.1·U: it grows in proportion to U, while a MultiRes block's input (the block "
                           "before it, or the concatenation in the decoder) is about 1.7·U or more wide. So only the "
                           "first block, on the 1 or 3 channels of the image, can be heavier as a chain.",
    "branch_widths": "W = alpha·u, then int(W*0.167), int(W*0.333), int(W*0.5): the code multiplies by rounded "
                      "decimals and rounds the products down. W/6, W/3, W/2 give other integers at some widths: at the "
                      "paper's bottleneck, U = 512, the second branch has 284 filters by the code and 285 by W/3 (and "
                      "at U = 61 the first has 17 and 16).",
    "res_path_unit": "norm(relu(conv(x) + shortcut(x))): the authors' ResPath adds the 3×3 branch (already through "
                     "its own batch norm and ReLU) and the 1×1 branch (batch norm, no activation), applies a ReLU to "
                     "the sum, and batch-normalises last. Putting the norm before the ReLU, or the ReLU before the "
                     "add, gives another function.",
    "block_counts": "The chain's three 3×3 convolutions and the 1×1 shortcut have 9·(c_in·a + a·b + b·c) + c_in·(a+b+c) "
                    "weights and no bias. Their four batch norms have no scale: one trainable shift per channel "
                    "(a + b + c + (a+b+c)) and two non-trainable statistics per channel. The two plain batch norms "
                    "(after the concatenation, after the add and ReLU) have a scale and a shift (2·(a+b+c) each) and "
                    "two statistics per channel. So trainable = weights + (a+b+c) + (a+b+c) + 4·(a+b+c), and "
                    "non-trainable = 2·(a+b+c) + 2·(a+b+c) + 4·(a+b+c) = 8·(a+b+c).",
    "baselines": "The U-Net of the same U is the paper's comparison: the same widths, with each pair of convolutions "
                 "and each plain skip replaced by MultiResUNet's parts. It has 8 % more parameters than MultiResUNet, so "
                 "a win of MultiResUNet there is a win with fewer weights. The U-Net of U = 15 has 5 % fewer parameters, "
                 "about MultiResUNet's size: it asks whether the same budget of weights is better spent on MultiRes "
                 "blocks and Res paths. Neither matches the computation: MultiResUNet does a third more multiply-adds "
                 "than U = 16 and half again as many as U = 15. If MultiResUNet had beaten U = 16 but not U = 15, "
                 "that would not mean the smaller U-Net is better than the larger: a 'reproduced' next to an "
                 "'inconclusive' is not itself a significant difference. It would mean that the evidence against the "
                 "slightly smaller U-Net is weaker, and the next question would be whether U = 15 and U = 16 differ at "
                 "all (a direct comparison of the two).",
    "cka": "No. CKA measures how alike two representations are, not whether the decoder uses them well. A Res path is "
           "trained by the same loss as the decoder, so its output can drift towards the decoder's features without "
           "that helping the segmentation; at initialisation, random convolutions already change the CKA (the "
           "untrained column of section 7.2), so part of any change is wiring, not learning. And a lower CKA need not "
           "hurt: the skip is there to bring what the decoder lacks, the fine layout, which is unlike the decoder's "
           "coarse features by design. What speaks to whether the gap matters is the comparison of the scores: "
           "MultiResUNet against itself with plain skips (section 7), over every seed and slice.",
}
