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
    "weighted_cross_entropy": "−mean over pixels of w(x)·log p_{l(x)}(x): log_softmax over the classes, gather each "
                              "pixel's true class, multiply by the weight map, average over every pixel of the batch "
                              "and negate. With all weights 1 it is plain cross-entropy. Section 7 trains with it, "
                              "against the same loss with every weight 1.",
    "training_loop": "Build the model and the optimiser once: model = make_model(); optimizer = "
                     "torch.optim.Adam(model.parameters(), lr=lr). Then, for each (x, y): loss = loss_fn(model(x), y); "
                     "optimizer.zero_grad(); loss.backward(); optimizer.step(); keep loss.item(). The order matters: "
                     "without zero_grad the gradients of all earlier steps add up (the first loss is still right, "
                     "the later ones are not); stepping before backward uses the previous step's gradient. fit does "
                     "exactly this on the CPU with a constant schedule, so the losses agree to rounding (1e-6).",
    "skip_zero_or_mean": "The mean says more. Replacing a skip by each channel's mean over the slice removes exactly what a "
                         "skip is for, the layout of its features (where the edges are), and keeps the level's "
                         "typical activation, so the decoder still gets inputs of the size it was trained on. "
                         "Zeros remove the layout too, but after batch norm and a ReLU a channel is never zero "
                         "everywhere, so they also shift every activation after the join to values the decoder "
                         "never saw: part of the loss is that shock, not the missing information. Either way the "
                         "knock-out happens after training: the decoder learnt to rely on the skip and had no chance "
                         "to get the same information elsewhere. A network trained without skips adapts: its "
                         "bottleneck and decoder learn to carry what they can through the coarse path. So a "
                         "knock-out measures how much this trained network relies on a skip, and section 7's "
                         "arm without skips measures what the skips are worth to training; the first can be much "
                         "larger than the second, and neither is the other.",
    "consecutive_folds": "Neighbouring slices of the stack are 50 nm apart and look almost the same. In an "
                         "interleaved split every held-out slice would have its two neighbours in training, so a "
                         "network that memorises its training slices would score almost as well on the held-out "
                         "ones: the scores would be too high, and would not say how the network does on tissue it "
                         "has not seen. The comparisons would be biased too: an arm that fits its training slices "
                         "more closely (one without augmentation, say) gains more from the leak than one that "
                         "generalises, which favours exactly the arms that the paper's ingredients are meant to "
                         "beat. With blocks of ten consecutive slices only the two end slices of each block have a "
                         "trained-on neighbour, and every slice is still held out once.",
    "iou_from_dice": "With I = |A∩B| and S = |A| + |B|: Dice = 2I/S and IoU = I/(S − I). Dividing by S, "
                     "IoU = (Dice/2)/(1 − Dice/2) = Dice/(2 − Dice). The map is increasing, so the two metrics "
                     "always rank predictions the same way per class; only the numbers differ.",
}


def train_steps_by_hand(make_model, batches, loss_fn, lr):
    """Exercise 1: the training loop, written out; ``check_exercise`` compares its losses with ``fit``'s."""
    model = make_model()
    model.train()                                            # batch norm uses the batch's statistics
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)  # once, before the loop: it keeps running averages
    losses = []
    for x, y in batches:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()                                # else this step's gradient adds to the last one's
        loss.backward()
        optimizer.step()
        losses.append(loss.item())                           # the loss of the weights before this step
    return losses


def check_weighted_cross_entropy(seed: int = 0) -> bool:
    """Exercise 4: the hand-written loss equals the package's."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 16, 16, generator=g)
    target = torch.randint(0, 2, (2, 16, 16), generator=g)
    weights = torch.rand(2, 16, 16, generator=g) * 10
    ours = pixel_weighted_cross_entropy(logits, target, weights)
    return bool(torch.allclose(ours, weighted_cross_entropy(logits, target, weights), atol=1e-6))


def check_dice_iou(prediction: torch.Tensor, target: torch.Tensor, num_classes: int = 2) -> bool:
    """Exercise 5: per class, IoU = Dice / (2 - Dice), on real predictions."""
    dice = dice_per_class(prediction, target, num_classes)
    iou = iou_per_class(prediction, target, num_classes)
    return bool(torch.allclose(iou, iou_from_dice(dice), atol=1e-9))
