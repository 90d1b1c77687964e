"""Worked solutions and written answers for the exercises of lesson 04 (V-Net and the Dice loss).

The functions a student writes are checked by ``check_exercise("lesson04.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson04`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

import torch

from unet_lessons.exercises.lesson04 import table1_by_hand, vnet_dice, vnet_parameters  # noqa: F401

ANSWERS = {
    "table1": "5×5×5 convolutions add 4·j, a 2×2×2 down-convolution adds j and doubles j; on the way up the "
              "paper counts each up-convolution at the finer step. That gives Table 1's nine numbers.",
    "vnet_parameters": "Stage by stage: convolution weights and biases, one PReLU slope per channel after "
                       "every convolution but a stage's last and one after its residual addition, plus the "
                       "down- and up-convolutions with their PReLUs and the 1×1×1 head.",
    "vnet_dice": "For a binary prediction p² = p, so the squared and plain denominators agree. For a soft "
                 "prediction 0 < p < 1, p² < p, so Σp² < Σp: the squared denominator is smaller and D is larger "
                 "(1 − D smaller). MONAI's DiceLoss uses the plain form by default (squared_pred=False); "
                 "squared_pred=True gives the paper's.",
}


def squared_versus_plain(seed: int = 0) -> bool:
    """Exercise 3: binary p -> both forms equal; soft p -> the squared D is larger."""
    g = torch.Generator().manual_seed(seed)
    truth = (torch.rand(1000, generator=g) < 0.2).float()
    binary = (torch.rand(1000, generator=g) < 0.3).float()
    soft = torch.rand(1000, generator=g)
    return bool(torch.isclose(vnet_dice(binary, truth, True), vnet_dice(binary, truth, False))
                and vnet_dice(soft, truth, True) > vnet_dice(soft, truth, False))
