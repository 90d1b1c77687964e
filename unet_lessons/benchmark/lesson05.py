"""Lesson 05 (UNet++): U-Net, wide U-Net and UNet++ with and without deep supervision, on one budget.

The task is lesson 02's: ISBI 2012 electron microscopy, slices 0-24 for training and the five
slices 25-29 held out, two classes (membrane, cell). Every network is the paper's, scaled to the
CPU by the same width factor of 1/4, with batch normalisation after every convolution (as
lesson 02 trains): U-Net 8, 16, …, 128 filters; wide U-Net the paper's 35, 70, …, 560 divided
by 4 and rounded (9, 18, 35, 70, 140: 2.8 % more parameters than UNet++, as the official code's
9,282,246 against 9,041,601 is 2.7 %); UNet++ 8, 16, …, 128. Each trains 250 steps of eight
64×64 patches with Adam, a one-cycle schedule and Dice + cross-entropy; UNet++ with deep
supervision takes the mean of that loss over its four heads (the paper, Section 2).

The arms separate what the paper's comparison mixes: UNet++ without deep supervision against
the wide U-Net is the architecture alone; UNet++ with against without is deep supervision alone.

Every arm is scored per held-out slice: membrane Dice and IoU, boundary IoU (Cheng et al.
2021; band 2 px, mean of the two classes), and, for the networks with a U-Net's decoder
nodes, linear CKA between the two maps each decoder node concatenates, per level, for the
trained network and for the same network at its initialisation (the noise floor of lesson 05,
section 4). UNet++ with deep supervision is also scored at each pruned head L1-L4 (membrane Dice and IoU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import ISBI_SPLIT, PatchSampler, load_isbi
from ..losses import DeepSupervisionLoss, DiceCELoss
from ..metrics import boundary_iou, dice_per_class, iou_per_class
from ..models import UNet, UNetPlusPlus
from ..similarity import linear_cka
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "05_unetpp.csv"
METRIC = "dice"
SEEDS = (0, 1, 2, 3, 4)
MEMBRANE = 0                      # ISBI labels: 0 membrane, 1 cell
BOUNDARY_BAND = 2                 # boundary IoU's band, pixels
LEVELS = 4                        # decoder levels 0 (top) … 3
SHARED = dict(patch=64, batch=8, steps=250, lr=5e-3, norm="batch", schedule="onecycle", optimizer="adam",
              train_slices=list(ISBI_SPLIT["train"]), test_slices=list(ISBI_SPLIT["val"]),
              loss="Dice + cross-entropy (softmax, two classes); with deep supervision its mean over the heads",
              augment="flips, rotations by 90°, elastic deformation (PatchSampler)",
              width_factor="1/4 of the paper's filters")
ARMS = (
    Arm("U-Net", dict(model="unet", features=[8, 16, 32, 64, 128]), live=True),
    Arm("wide U-Net", dict(model="unet", features=[9, 18, 35, 70, 140]), live=True),
    Arm("UNet++, deep supervision", dict(model="unetpp", features=[8, 16, 32, 64, 128], deep_supervision=True),
        live=True),
    Arm("UNet++, no deep supervision", dict(model="unetpp", features=[8, 16, 32, 64, 128], deep_supervision=False)),
)
ARM = {arm.name: arm for arm in ARMS}


def make_data() -> dict[str, Any]:
    """Lesson 02's split of ISBI 2012: 25 training slices and the 5 held-out ones (512×512), with labels."""
    images, labels = load_isbi()
    train, test = SHARED["train_slices"], SHARED["test_slices"]
    return dict(train_images=images[train], train_labels=labels[train], test_images=images[test],
                test_labels=labels[test])


def make_model(arm: Arm | str, seed: int) -> nn.Module:
    """The arm's network, its weights drawn from ``seed``."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    seed_everything(seed)
    settings = arm.settings
    if settings["model"] == "unet":
        model = UNet(1, 2, features=tuple(settings["features"]), norm=SHARED["norm"])
    else:
        model = UNetPlusPlus(1, 2, features=tuple(settings["features"]), norm=SHARED["norm"],
                             deep_supervision=settings["deep_supervision"])
    # Scoring rebuilds the same network at its initialisation (the CKA noise floor); score() is not told the seed.
    model.initial_seed = seed
    return model


def make_loss(arm: Arm) -> nn.Module:
    """Dice + cross-entropy; with deep supervision, its mean over the heads (Section 2 of the paper)."""
    return DeepSupervisionLoss(DiceCELoss()) if arm.settings.get("deep_supervision") else DiceCELoss()


def make_sampler(seed: int, data: dict) -> PatchSampler:
    return PatchSampler(data["train_images"], data["train_labels"], patch_size=SHARED["patch"],
                        batch_size=SHARED["batch"], augment=True, seed=seed)


def make_config(arm: Arm, **overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], "optimizer": SHARED["optimizer"],
                          "schedule": SHARED["schedule"], **overrides})


def make_arm(name: str, seed: int, data: dict):
    """Everything ``fit`` needs for one arm and seed: ``fit(*make_arm(...))`` trains it."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(seed, data), make_loss(arm), make_config(arm)


def held_out_inputs(data: dict) -> torch.Tensor:
    """The held-out slices (N, 1, 512, 512), normalised with the training statistics, as the sampler does."""
    return torch.from_numpy(make_sampler(0, data).normalize(data["test_images"]))[:, None]


def segmentation_scores(prediction: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per slice: membrane Dice and IoU, and boundary IoU (mean of the two classes, band 2 px)."""
    dice, iou, boundary = [], [], []
    for p, t in zip(prediction, labels):
        dice.append(float(dice_per_class(p, t, 2)[MEMBRANE]))
        iou.append(float(iou_per_class(p, t, 2)[MEMBRANE]))
        boundary.append(float(boundary_iou(p, t, 2, BOUNDARY_BAND).mean()))
    return {"dice": np.array(dice), "iou": np.array(iou), "boundary_iou": np.array(boundary)}


@torch.no_grad()
def concatenation_cka(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Linear CKA of the two maps each decoder node concatenates, per level, on one input (1, 1, H, W).

    ``cka_L{i}``: the skip side the network actually concatenates (U-Net: ``X^{i,0}``; UNet++: the
    nested node ``X^{i,L-i-1}``) against the upsampled map. For UNet++ also ``cka_encoder_L{i}``:
    its own encoder map ``X^{i,0}`` against the same upsampled map (what the nested nodes changed).
    """
    model.eval()
    nested = isinstance(model, UNetPlusPlus)
    features = model.forward_features(x) if nested else None  # one pass gives both the pairs and X^{i,0}
    pairs = model.skip_pairs_of(features) if nested else model.skip_pairs(x)
    values = {f"cka_L{i}": linear_cka(skip, up) for i, (skip, up) in enumerate(pairs.values())}
    if nested:
        values.update({f"cka_encoder_L{i}": linear_cka(features[f"x_{i}_0"], up)
                       for i, (_, up) in enumerate(pairs.values())})
    return values


def cka_scores(model: nn.Module, arm: Arm, inputs: torch.Tensor) -> dict[str, np.ndarray]:
    """Per held-out slice, :func:`concatenation_cka` of the trained model and of the same network at its
    initialisation (the same seed's weights; ``init_`` columns): the part of the similarity the wiring gives."""
    if not hasattr(model, "initial_seed"):
        raise ValueError("cka_scores rebuilds the model at its initialisation: build it with make_model(arm, seed), "
                         "which records the seed as model.initial_seed.")
    untrained = make_model(arm, model.initial_seed).eval()
    per_slice = [{**concatenation_cka(model, x[None]),
                  **{f"init_{k}": v for k, v in concatenation_cka(untrained, x[None]).items()}} for x in inputs]
    return {key: np.array([values[key] for values in per_slice]) for key in per_slice[0]}


@torch.no_grad()
def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per held-out slice: the segmentation scores, the pruned heads' Dice (deep supervision), and CKA."""
    inputs, labels = held_out_inputs(data), torch.from_numpy(data["test_labels"])
    model.eval()
    if getattr(model, "deep_supervision", False):
        # One pass per slice gives every head; the deepest is what predict() returns, so it is not run again.
        passes = [model.forward_features(x[None]) for x in inputs]
        heads = {k: segmentation_scores(torch.cat([f[f"head_{k}"] for f in passes]).argmax(1), labels)
                 for k in range(1, model.depth + 1)}
        scores = dict(heads[model.depth])
        for k, head in heads.items():
            scores[f"dice_L{k}"], scores[f"iou_L{k}"] = head["dice"], head["iou"]
    else:
        scores = segmentation_scores(predict(model, inputs, batch_size=1).argmax(1), labels)
    scores.update(cka_scores(model, arm, inputs))
    return {"test": scores}


BENCHMARK = Benchmark(lesson="05", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, metric=METRIC)
