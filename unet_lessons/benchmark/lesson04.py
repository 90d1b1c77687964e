"""Lesson 04 (V-Net): the losses and the downsampling on 1.5 % foreground, every arm and seed.

The task: synthetic organ volumes of 64³ in which the organ fills 1.5 % of the voxels,
16 for training and 12 held out. A V-Net of width 4 with batch norm (lesson 04, section 6,
says why) trains 200 steps of two patches with Adam and a one-cycle schedule. The arms:

* the loss: plain cross-entropy, cross-entropy weighted per sample by the inverse frequency
  of each label, N / n_label, as the official code builds its weights (the paper's "logistic
  loss with sample re-weighting", Section 3; :class:`~unet_lessons.losses.SampleBalancedCrossEntropy`),
  and the paper's Dice loss (squared denominator, foreground only);
* the downsampling: the paper's strided 2×2×2 convolution against max-pooling;
* patch sampling: uniform, or a third of the patches centred on foreground;
* the patch: 32³ with three down-convolutions (trained live), or the whole 64³ volume with
  the paper's four (8× the cost per step: stored only), with the Dice loss and with plain
  cross-entropy: the regime of the paper's "strongly biased towards background" (Section 3). At 32³ with four down-convolutions
  the deepest 5×5×5 kernels would read a 2³ map, mostly zero padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import PatchSampler, make_organ_volumes
from ..losses import SampleBalancedCrossEntropy, SoftDiceLoss
from ..metrics import dice_per_class
from ..models import VNet
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "04_vnet.csv"
METRIC = "dice"
SEEDS = (0, 1, 2, 3, 4)
SHARED = dict(volume=64, foreground_fraction=0.015, train_volumes=list(range(2000, 2016)),
              test_volumes=list(range(6000, 6012)), width=4, norm="batch", batch=2, steps=200, lr=1e-2,
              augment="flips and rotations", model="VNet, the paper's stage depths")
_BASE = dict(loss="dice", downsample="conv", down_convolutions=3, patch=32, foreground_patches=0.0)
ARMS = (
    Arm("cross-entropy", {**_BASE, "loss": "cross_entropy"}, live=True),
    Arm("weighted cross-entropy", {**_BASE, "loss": "weighted_ce_per_sample"}, live=True),
    Arm("Dice (V-Net)", dict(_BASE), live=True),
    Arm("Dice, max-pooling", {**_BASE, "downsample": "maxpool"}),
    Arm("Dice, foreground oversampling", {**_BASE, "foreground_patches": 0.33}),
    Arm("Dice, 64³ volumes, 4 down-convolutions", {**_BASE, "down_convolutions": 4, "patch": 64}),
    Arm("cross-entropy, 64³ volumes, 4 down-convolutions",
        {**_BASE, "loss": "cross_entropy", "down_convolutions": 4, "patch": 64}),
)
ARM = {arm.name: arm for arm in ARMS}
# The paper's stage depths (Fig. 2), the deepest level dropped for three down-convolutions.
_DEPTHS = {4: ((1, 2, 3, 3, 3), (3, 3, 2, 1)), 3: ((1, 2, 3, 3), (3, 2, 1))}


def make_data() -> dict[str, Any]:
    """Training and test volumes (N, 1, 64, 64, 64) with their labels (N, 64, 64, 64)."""
    options = dict(num_classes=2, foreground_fraction=SHARED["foreground_fraction"])
    train_images, train_labels = make_organ_volumes(SHARED["volume"], SHARED["train_volumes"], **options)
    test_images, test_labels = make_organ_volumes(SHARED["volume"], SHARED["test_volumes"], **options)
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, fraction=float(train_labels.mean()))


def make_loss(arm: Arm) -> nn.Module:
    """The arm's loss."""
    kind = arm.settings["loss"]
    if kind == "cross_entropy":
        return nn.CrossEntropyLoss()
    if kind == "weighted_ce_per_sample":  # N / n_label within each patch, as the official VNet.py weighs
        return SampleBalancedCrossEntropy()
    if kind == "dice":
        return SoftDiceLoss(squared_pred=True, include_background=False)  # the paper's form
    raise ValueError(f"unknown loss {kind!r} in arm {arm.name!r}.")


def make_model(arm: Arm, seed: int) -> VNet:
    """The arm's V-Net, its weights drawn from ``seed``."""
    seed_everything(seed)
    encoder_depths, decoder_depths = _DEPTHS[arm.settings["down_convolutions"]]
    return VNet(1, 2, width=SHARED["width"], encoder_depths=encoder_depths, decoder_depths=decoder_depths,
                norm=SHARED["norm"], downsample=arm.settings["downsample"])


def make_sampler(arm: Arm, seed: int, data: dict) -> PatchSampler:
    return PatchSampler(data["train_images"], data["train_labels"], patch_size=arm.settings["patch"],
                        batch_size=SHARED["batch"], augment=True, elastic_sigma=0.0, seed=seed,
                        foreground=arm.settings["foreground_patches"])


def make_config(arm: Arm, **overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], "collapse_check": False, **overrides})


def make_arm(name: str, seed: int, data: dict) -> tuple[VNet, PatchSampler, nn.Module, TrainConfig]:
    """Everything ``fit`` needs for one arm and seed: ``fit(*make_arm(...))`` trains it."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(arm, seed, data), make_loss(arm), make_config(arm)


def held_out_inputs(data: dict) -> torch.Tensor:
    """The test volumes normalised with the training statistics, as the samplers normalise patches."""
    return torch.from_numpy(make_sampler(ARMS[0], 0, data).normalize(data["test_images"]))


def score(model: nn.Module, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per test volume: the organ's Dice, and the fraction of voxels predicted organ."""
    prediction = predict(model, held_out_inputs(data), batch_size=1).argmax(1)  # (N, 64, 64, 64)
    labels = torch.from_numpy(data["test_labels"])
    dice = np.array([float(dice_per_class(p, t, 2)[1]) for p, t in zip(prediction, labels)])
    return dice, prediction.flatten(1).float().mean(1).numpy()


def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """:func:`score` as the stored benchmark records it: the one held-out set, ``"test"``."""
    dice, predicted = score(model, data)
    return {"test": {"dice": dice, "predicted_fraction": predicted}}


BENCHMARK = Benchmark(lesson="04", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, metric=METRIC)
