"""Worked solutions and written answers for the exercises of lesson 06 (No New-Net).

The functions a student writes are checked by ``check_exercise("lesson06.<name>", function)``;
their references live in ``unet_lessons.exercises.lesson06`` and are imported here.
``ANSWERS`` holds a written answer to every question.
"""

from __future__ import annotations

from unet_lessons.exercises.lesson06 import (brats_dice, labels_to_regions_by_hand,  # noqa: F401
                                             mirrored_probabilities, remove_small_enhancing)

ANSWERS = {
    "regions": "Whole tumour = every tumour class (1, 2, 3); tumour core = necrosis and enhancing tumour (1, 3); "
               "enhancing tumour = class 3. Each region contains the next, so a voxel of class 3 is in all "
               "three: the regions overlap, which is why they get sigmoid outputs and not one softmax.",
    "brats_dice": "2|P∩T| / (|P| + |T|), and 1 when both are empty. Without that rule the Dice is 0/0 on a "
                  "tumour without enhancing rim; BraTS decides it is a perfect answer when nothing is "
                  "predicted, and 0 when anything is. One false voxel then costs the whole case, which is "
                  "why the post-processing of section 10 exists.",
    "remove_small_enhancing": "Count the enhancing voxels of each sample and empty the channel where the count "
                              "is below the threshold; the voxels stay in the tumour core, so they become core "
                              "that does not enhance, as the replacement by necrosis in the nnU-Net team's BraTS code does.",
    "mirrored_probabilities": "The network is not equivariant to flips (its weights are not symmetric), so the "
                              "8 mirrored predictions differ; flipped back and averaged, their errors partly "
                              "cancel. It costs 8 forward passes. Averaging probabilities, not thresholded "
                              "masks, keeps the confidence of each pass.",
}
