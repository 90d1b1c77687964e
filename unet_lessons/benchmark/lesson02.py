"""Lesson 02 (U-Net): what the paper's three ingredients are worth on ISBI 2012, one at a time.

The U-Net paper's abstract rests on three things: the skips (the expanding path combines the
upsampled features with "the correspondingly cropped feature map from the contracting path",
Section 2), "the strong use of data augmentation" (elastic deformations, Section 3.1), and the
border weight map of eq. 2 (Section 3). The reference arm uses all three; each other arm drops
one and keeps everything else, the same seeds drawing the same initial weights:

* ``without skips``: every skip knocked out for good (zeros) from the first step, so the decoder
  learns with no encoder map (``SegmentationModel.knock_out_skips``);
* ``without elastic deformation``: flips and rotations by 90° only;
* ``without the weight map``: the same cross-entropy with every pixel weighted 1;
* ``without the border term``: the weight map without its border term (``w0 = 0``): only the class
  balance ``w_c`` is left, so that this arm and the reference differ in the term that the paper
  says forces the separation borders to be learnt.

The data are the 30 slices of the ISBI 2012 training stack (the test stack's labels are not
public). Three folds of ten consecutive slices (0–9, 10–19, 20–29) are each held out once while
the other twenty train, so every slice is a held-out item exactly once; a seed's scores over the
folds together are one row per slice. Neighbouring slices are 50 nm apart and alike: consecutive
blocks keep each held-out slice's neighbours out of training, except at a block's two ends.

The network is the lesson's (:class:`~unet_lessons.models.UNet` with the seed's bilinear
upsampling, width 8, depth 4, batch norm), trained 200 steps of eight 128×128 patches with Adam
and a one-cycle schedule (the paper: SGD with momentum 0.99, one 512×512 tile per step, for a
number of steps it does not state).

Every held-out slice is scored: membrane Dice; boundary IoU of the cells (their 2-px inner bands,
along every border with the membrane: where a border moved or blurred; the membrane is too thin
for a band of its own to differ much from the whole of it); pixel error; and membrane Dice within
the separation band (:func:`~unet_lessons.losses.separation_band`: the thinnest membranes,
``d1 + d2 <= 5``, grown by 1 px), where the weight map should matter most.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import PatchSampler, load_isbi
from ..losses import WeightedCrossEntropy, separation_band, unet_weight_map
from ..metrics import boundary_iou, dice_per_class, pixel_error
from ..models import UNet
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "02_unet.csv"
METRIC = "membrane_dice"
SEEDS = (0, 1, 2, 3, 4)
FOLDS = ((0, 10), (10, 20), (20, 30))     # held-out slices of each fold: [start, stop)
BOUNDARY_BAND = 2                          # boundary IoU's band, pixels
SEPARATION = dict(max_gap=5.0, width=1)    # the separation band: d1 + d2 <= 5, grown by 1 px
SHARED = dict(slices=30, folds="three folds of ten consecutive slices (0–9, 10–19, 20–29), each held out once",
              width=8, depth=4, upsample="interp", norm="batch", patch=128, batch=8, steps=200, lr=5e-3,
              optimizer="adam", schedule="onecycle", loss="cross-entropy weighted per pixel (eq. 1)",
              w0=10.0, sigma=5.0, class_weights="balanced", elastic_sigma=10.0,
              augment="flips and rotations by 90°, then elastic deformation (3×3 control points, σ 10 px)")
ARMS = (
    Arm("U-Net (all three)", dict(skips=True, elastic=True, weight_map=True)),
    Arm("without skips", dict(skips=False, elastic=True, weight_map=True)),
    Arm("without elastic deformation", dict(skips=True, elastic=False, weight_map=True)),
    Arm("without the weight map", dict(skips=True, elastic=True, weight_map=False)),
    Arm("without the border term", dict(skips=True, elastic=True, weight_map="class balance only")),
)
ARM = {arm.name: arm for arm in ARMS}
REFERENCE = ARMS[0].name


def make_data() -> dict[str, Any]:
    """The 30 ISBI 2012 training slices and labels, each slice's border weight map (eq. 2) and separation band."""
    images, labels = load_isbi()
    weights = np.stack([unet_weight_map(label, w0=SHARED["w0"], sigma=SHARED["sigma"],
                                        class_weights=SHARED["class_weights"]) for label in labels])
    bands = np.stack([separation_band(label, **SEPARATION) for label in labels])
    return dict(images=images, labels=labels, weights=weights, bands=bands)


def folds(data: dict) -> list[dict]:
    """One view per fold: its twenty training slices and its ten held-out ones (``held_out_items``)."""
    views = []
    for start, stop in FOLDS:
        test = np.arange(start, stop)
        train = np.setdiff1d(np.arange(len(data["labels"])), test)
        views.append(dict(train_images=data["images"][train], train_labels=data["labels"][train],
                          train_weights=data["weights"][train], test_images=data["images"][test],
                          test_labels=data["labels"][test], test_bands=data["bands"][test], held_out_items=test))
    return views


def make_model(arm: Arm | str, seed: int) -> UNet:
    """The lesson's U-Net, its weights drawn from ``seed``; without skips, every skip carries zeros for good."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    seed_everything(seed)
    model = UNet(1, 2, width=SHARED["width"], depth=SHARED["depth"], upsample=SHARED["upsample"], norm=SHARED["norm"])
    return model if arm.settings["skips"] else model.knock_out_skips(replace="zero")


def training_weights(arm: Arm, view: dict) -> np.ndarray:
    """The arm's weight maps of the fold's training slices: Eq. 2 in full, its class balance alone, or ones."""
    if arm.settings["weight_map"] == "class balance only":
        return np.stack([unet_weight_map(label, w0=0.0, class_weights=SHARED["class_weights"])
                         for label in view["train_labels"]])
    return view["train_weights"] if arm.settings["weight_map"] else np.ones_like(view["train_weights"])


def make_sampler(arm: Arm, seed: int, view: dict) -> PatchSampler:
    """Patches of the fold's training slices with their weights (:func:`training_weights`): the same draws in
    every arm that deforms, since the weights ride along as a channel and draw no random numbers of their own."""
    weights = training_weights(arm, view)
    return PatchSampler(view["train_images"], view["train_labels"], patch_size=SHARED["patch"],
                        batch_size=SHARED["batch"], augment=True,
                        elastic_sigma=SHARED["elastic_sigma"] if arm.settings["elastic"] else 0.0,
                        seed=seed, weights=weights)


def make_config(**overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], "optimizer": SHARED["optimizer"],
                          "schedule": SHARED["schedule"], **overrides})


def make_arm(name: str, seed: int, view: dict):
    """Everything ``fit`` needs for one arm, seed and fold."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(arm, seed, view), WeightedCrossEntropy(), make_config()


def membrane_scores(prediction: torch.Tensor, labels: torch.Tensor, bands: np.ndarray) -> dict[str, np.ndarray]:
    """Per slice: membrane Dice, boundary IoU of the cells, pixel error, and membrane Dice inside the separation band."""
    scores = {"membrane_dice": [], "boundary_iou": [], "pixel_error": [], "separation_dice": []}
    for p, t, band in zip(prediction, labels, bands):
        band = torch.from_numpy(np.asarray(band, dtype=bool))
        scores["membrane_dice"].append(float(dice_per_class(p, t, 2)[0]))
        scores["boundary_iou"].append(float(boundary_iou(p, t, 2, BOUNDARY_BAND)[1]))  # the cells' borders
        scores["pixel_error"].append(float(pixel_error(p, t)))
        scores["separation_dice"].append(float(dice_per_class(p[band], t[band], 2)[0]))
    return {key: np.array(values) for key, values in scores.items()}


@torch.no_grad()
def held_out_scores(model: nn.Module, arm: Arm, view: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per held-out slice of the fold, :func:`membrane_scores` of the model's argmax on the whole 512×512 slice."""
    x = torch.from_numpy(make_sampler(arm, 0, view).normalize(view["test_images"]))[:, None]
    prediction = predict(model, x).argmax(1)
    return {"test": membrane_scores(prediction, torch.from_numpy(view["test_labels"]), view["test_bands"])}


def first_slice(data: dict) -> dict:
    """The fingerprint's view of a fold: its first held-out slice."""
    return {**data, "test_images": data["test_images"][:1], "test_labels": data["test_labels"][:1],
            "test_bands": data["test_bands"][:1], "held_out_items": data["held_out_items"][:1]}


BENCHMARK = Benchmark(lesson="02", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, metric=METRIC, folds=folds,
                      fingerprint_view=first_slice)
