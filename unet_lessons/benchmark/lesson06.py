"""Lesson 06 (No New-Net): the training recipe, one ingredient at a time, every arm and seed.

The task: synthetic BraTS-like volumes of 48³ (four modalities, the nested tumour regions,
healthy look-alikes that defeat a threshold; :func:`~unet_lessons.data.make_brats_volume`),
16 for training and 12 held out, each modality z-scored over the brain. A No New-Net of width
8 with three poolings trains on 32³ patches, two per batch, a third centred on tumour, with
Adam, weight decay 1e-5 and a polynomial schedule. The arms change one ingredient of the
full recipe each:

* the targets: sigmoid outputs on the nested regions (the paper's "region based training"),
  or a softmax over the four classes, scored on the regions either way;
* the loss: Dice plus cross-entropy, Dice alone (the claim that the combination helps is a
  claim against it), or cross-entropy alone;
* augmentation with MONAI dictionary transforms, or none.

Every arm is scored on the held-out volumes the BraTS way: Dice and the 95 % Hausdorff
distance per region, an absent region scoring Dice 1 (HD95 0) when it is absent from the
prediction too, Dice 0 (HD95 373.13 mm) when not. Inference-only ingredients are scored on
every arm's own model: Gaussian against constant blending of the sliding windows, test-time
mirroring, and the post-processing of small enhancing tumours.

Two more held-out sets: ``"small_et"``, volumes whose true enhancing tumour is small (about
100 to 300 voxels; a post-processing threshold above that removes it), scored with and
without post-processing, so that its cost can show; and ``"shifted"``, the 12 test volumes
as another scanner might show them (:func:`~unet_lessons.data.scanner_shift`: a strong
smooth bias field and a contrast change), which augmentation may or may not make up for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import BRATS_REGIONS, PatchSampler, make_brats_volumes
from ..inference import sliding_window_probabilities
from ..losses import DiceCELoss, RegionDiceBCELoss, RegionDiceLoss
from ..metrics import dice_per_region, hausdorff95_per_region
from ..models import NoNewNet
from ..targets import BRATS_REGION_CLASSES, labels_to_regions, remove_small_region
from ..train import TrainConfig
from ..utils import seed_everything
from .declare import Arm, Benchmark, first_test_item

TABLE = "06_no_new_net.csv"
METRIC = "dice"
SEEDS = (0, 1, 2, 3, 4)
REGIONS = ("wt", "tc", "et")
SHARED = dict(volume=48, train_volumes=list(range(3000, 3016)), test_volumes=list(range(7000, 7012)), width=8,
              depth=3, patch=32, batch=2, steps=700, lr=3e-3, weight_decay=1e-5, optimizer="adam", schedule="poly",
              foreground_patches=0.33, window_overlap=0.5, model="NoNewNet, instance norm, leaky ReLU 0.01",
              postprocess_candidates=[0, 25, 50, 100, 200, 400, 800, 1600, 3200],
              small_et_volumes=list(range(7100, 7106)), small_et_tumour_size=0.55,
              shift=dict(bias=0.4, gamma=1.5),
              data="make_brats_volume: healthy look-alikes, one tumour in five without enhancing rim")
_FULL = dict(targets="regions", loss="dice+ce", augment=True)
ARMS = (
    Arm("full recipe", dict(_FULL), live=True),
    Arm("softmax targets", {**_FULL, "targets": "classes"}),
    Arm("Dice only", {**_FULL, "loss": "dice"}),
    Arm("cross-entropy only", {**_FULL, "loss": "ce"}),
    Arm("no augmentation", {**_FULL, "augment": False}),
)
ARM = {arm.name: arm for arm in ARMS}


def make_data() -> dict[str, Any]:
    train_images, train_labels = make_brats_volumes(SHARED["volume"], SHARED["train_volumes"])
    test_images, test_labels = make_brats_volumes(SHARED["volume"], SHARED["test_volumes"])
    small_images, small_labels = make_brats_volumes(SHARED["volume"], SHARED["small_et_volumes"], enhancing=True,
                                                    tumour_size=SHARED["small_et_tumour_size"])
    shifted_images, _ = make_brats_volumes(SHARED["volume"], SHARED["test_volumes"], shift=SHARED["shift"])
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, small_et_images=small_images, small_et_labels=small_labels,
                shifted_images=shifted_images)


#: What each transform of :func:`make_augmentation` does, in order.
AUGMENTATIONS = ("rotation", "scaling", "elastic deformation", "gamma", "mirroring (D)", "mirroring (H)",
                 "mirroring (W)")


def make_augmentation():
    """nnU-Net's kinds of augmentation as MONAI dictionary transforms, on image and label together.

    Rotation and scaling (one affine, each with probability 0.2), elastic deformation (0.2),
    gamma (0.3) and mirroring along each axis (0.5): the kinds and probabilities of the
    nnU-Net pipeline the paper's training descends from, with ranges shrunk for 32³ patches.
    """
    from monai.transforms import Compose, Rand3DElasticd, RandAdjustContrastd, RandAffined, RandFlipd

    keys = ["image", "label"]
    return Compose([
        RandAffined(keys, prob=0.2, rotate_range=[np.pi / 12] * 3, mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandAffined(keys, prob=0.2, scale_range=[0.15] * 3, mode=("bilinear", "nearest"), padding_mode="zeros"),
        Rand3DElasticd(keys, prob=0.2, sigma_range=(5, 7), magnitude_range=(30, 60), mode=("bilinear", "nearest"),
                       padding_mode="zeros"),
        RandAdjustContrastd(["image"], prob=0.3, gamma=(0.7, 1.5)),
        RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
    ])


def make_loss(arm: Arm) -> nn.Module:
    targets, kind = arm.settings["targets"], arm.settings["loss"]
    if targets == "classes":
        return DiceCELoss() if kind == "dice+ce" else nn.CrossEntropyLoss()
    if kind == "dice+ce":
        return RegionDiceBCELoss(nested=True, names=BRATS_REGIONS)
    if kind == "dice":  # the Dice term of the full recipe's loss, alone
        return RegionDiceLoss(nested=True, names=BRATS_REGIONS)
    if kind == "ce":
        return nn.BCEWithLogitsLoss()
    raise ValueError(f"unknown loss {kind!r} in arm {arm.name!r}.")


def make_model(arm: Arm, seed: int) -> NoNewNet:
    seed_everything(seed)
    out_channels = 4 if arm.settings["targets"] == "classes" else 3
    return NoNewNet(4, out_channels, width=SHARED["width"], depth=SHARED["depth"])


def make_sampler(arm: Arm, seed: int, data: dict) -> PatchSampler:
    return PatchSampler(data["train_images"], data["train_labels"], patch_size=SHARED["patch"],
                        batch_size=SHARED["batch"], augment=False, seed=seed, mean=0.0, std=1.0,
                        foreground=SHARED["foreground_patches"],
                        transform=make_augmentation() if arm.settings["augment"] else None,
                        regions=BRATS_REGION_CLASSES if arm.settings["targets"] == "regions" else None)


def make_config(arm: Arm, **overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], "weight_decay": SHARED["weight_decay"],
                          "optimizer": SHARED["optimizer"], "schedule": SHARED["schedule"], "collapse_check": False,
                          **overrides})


def make_arm(name: str, seed: int, data: dict):
    """Everything ``fit`` needs for one arm and seed: ``fit(*make_arm(...))`` trains it."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(arm, seed, data), make_loss(arm), make_config(arm)


def predict_regions(model: nn.Module, images: np.ndarray, *, mode: str = "gaussian", mirror: bool = False
                    ) -> torch.Tensor:
    """Binary regions (N, 3, *S) of whole volumes, from either kind of output."""
    classes = model.out_channels == 4
    probabilities = sliding_window_probabilities(
        model, torch.from_numpy(images), roi_size=SHARED["patch"], overlap=SHARED["window_overlap"], mode=mode,
        mirror_axes=(0, 1, 2) if mirror else (), activation="softmax" if classes else "sigmoid")
    return labels_to_regions(probabilities.argmax(1)) if classes else probabilities > 0.5


def choose_postprocess_threshold(model: nn.Module, data: dict) -> int:
    """The enhancing-tumour size below which it is removed, chosen on the training volumes (as nnU-Net's BraTS
    code chooses it on its training cases)."""
    regions = predict_regions(model, data["train_images"])
    truth = labels_to_regions(torch.from_numpy(data["train_labels"]))
    scores = [float(dice_per_region(remove_small_region(regions, 2, t), truth, per_sample=True)[:, 2].mean())
              for t in SHARED["postprocess_candidates"]]
    return SHARED["postprocess_candidates"][int(np.argmax(scores))]  # the smallest of equals: argmax takes the first


def brats_scores(regions: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per test volume: Dice and HD95 of each region, and the mean Dice over the regions."""
    truth = labels_to_regions(torch.from_numpy(labels))
    dice = dice_per_region(regions, truth, per_sample=True).numpy()
    hd95 = hausdorff95_per_region(regions, truth).numpy()
    scores = {"dice": dice.mean(1)}
    for r, name in enumerate(REGIONS):
        scores[f"dice_{name}"], scores[f"hd95_{name}"] = dice[:, r], hd95[:, r]
    return scores


def score(model: nn.Module, data: dict) -> dict[str, np.ndarray]:
    """The arm's held-out scores, plus the inference-only variants' mean Dice per volume."""
    plain = predict_regions(model, data["test_images"])
    scores = brats_scores(plain, data["test_labels"])
    threshold = choose_postprocess_threshold(model, data)
    processed = brats_scores(remove_small_region(plain, 2, threshold), data["test_labels"])
    scores["dice_postprocessed"], scores["dice_et_postprocessed"] = processed["dice"], processed["dice_et"]
    scores["dice_mirrored"] = brats_scores(predict_regions(model, data["test_images"], mirror=True),
                                           data["test_labels"])["dice"]
    scores["dice_constant_window"] = brats_scores(predict_regions(model, data["test_images"], mode="constant"),
                                                  data["test_labels"])["dice"]
    scores["postprocess_threshold"] = np.full(len(plain), threshold)
    return scores


def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """:func:`score` on ``"test"``; on ``"small_et"`` each region's Dice with and without post-processing (the
    threshold chosen on the training volumes, as for ``"test"``); on ``"shifted"`` the plain scores."""
    test = score(model, data)
    threshold = int(test["postprocess_threshold"][0])
    small = predict_regions(model, data["small_et_images"])
    small_scores = brats_scores(small, data["small_et_labels"])
    processed = brats_scores(remove_small_region(small, 2, threshold), data["small_et_labels"])
    small_scores["dice_et_postprocessed"] = processed["dice_et"]
    small_scores["dice_postprocessed"] = processed["dice"]
    small_scores["true_et_voxels"] = (data["small_et_labels"] == 3).reshape(len(small), -1).sum(1)
    small_scores["predicted_et_voxels"] = small[:, 2].flatten(1).sum(1).numpy()
    shifted = brats_scores(predict_regions(model, data["shifted_images"]), data["test_labels"])
    return {"test": test, "small_et": small_scores, "shifted": shifted}


def fingerprint_view(data: dict) -> dict:
    """Held-out volume 0, and training volume 0 alone for choosing the post-processing threshold.

    :func:`score` chooses the threshold on every training volume, 16 whole-volume predictions
    that would make the fingerprint check slow. On one volume the same code runs: prediction,
    every candidate threshold, the Dice that picks among them.
    """
    return {**first_test_item(data), "train_images": data["train_images"][:1], "train_labels": data["train_labels"][:1],
            "small_et_images": data["small_et_images"][:1], "small_et_labels": data["small_et_labels"][:1],
            "shifted_images": data["shifted_images"][:1]}


BENCHMARK = Benchmark(lesson="06", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, fingerprint_view=fingerprint_view, metric=METRIC)
