"""Lesson 07 (Myronenko's autoencoder regularisation): with and without the VAE, on little and more data.

The paper adds its VAE branch "Due to a limited training dataset size". The arms test that
motivation at this budget: the same network trained with and without the branch, on 4
training volumes and on 16, with the same held-out volumes and the same number of steps.

The task is lesson 06's: synthetic BraTS-like volumes of 48³ (four modalities, the nested
tumour regions, healthy look-alikes; :func:`~unet_lessons.data.make_brats_volume`), each
modality z-scored over the brain; 12 held-out volumes. The network is
:class:`~unet_lessons.models.MyronenkoNet` of width 8 (the paper: 32) on 32³ patches, two per
batch, with the paper's soft Dice (squared denominators) on the three regions, its loss weights
(0.1, 0.1), its augmentation (per-channel intensity scale and shift, mirroring) and Adam with
its polynomial schedule, at a CPU learning rate (1e-3; at 3e-3 a run with the VAE on 16 volumes
collapsed to predicting nothing). Every arm is scored on the held-out volumes by
Dice per region (sliding window, the VAE branch off as at test time), and on its own training
volumes, to show the gap between the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import BRATS_REGIONS, PatchSampler, make_brats_volumes
from ..inference import sliding_window_probabilities
from ..losses import RegionDiceLoss
from ..metrics import dice_per_region
from ..models import MyronenkoNet
from ..targets import BRATS_REGION_CLASSES, labels_to_regions
from ..train import TrainConfig
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "07_autoencoder_regularization.csv"
METRIC = "dice"
SEEDS = (0, 1, 2, 3, 4)
REGIONS = ("wt", "tc", "et")
TRAIN_POOL = list(range(3000, 3016))
SHARED = dict(volume=48, test_volumes=list(range(7000, 7012)), width=8, blocks_down=[1, 2, 2, 4],
              blocks_up=[1, 1, 1], dropout=0.2, latent_size=128, l2_weight=0.1, kl_weight=0.1, patch=32, batch=2,
              steps=300, lr=1e-3, weight_decay=1e-5, optimizer="adam", schedule="poly", foreground_patches=0.33,
              window_overlap=0.5, loss="soft Dice, squared denominators, nested regions",
              augmentation="per-channel intensity scale 0.9-1.1 and shift ±0.1 std, mirroring on each axis",
              data="make_brats_volume: healthy look-alikes, one tumour in five without enhancing rim")
ARMS = (
    Arm("VAE, 4 volumes", dict(vae=True, train_volumes=TRAIN_POOL[:4]), live=True),
    Arm("no VAE, 4 volumes", dict(vae=False, train_volumes=TRAIN_POOL[:4]), live=True),
    Arm("VAE, 16 volumes", dict(vae=True, train_volumes=TRAIN_POOL)),
    Arm("no VAE, 16 volumes", dict(vae=False, train_volumes=TRAIN_POOL)),
)
ARM = {arm.name: arm for arm in ARMS}


def make_data() -> dict[str, Any]:
    """The 16 training volumes (an arm takes the first 4 or all 16) and the 12 held-out ones."""
    train_images, train_labels = make_brats_volumes(SHARED["volume"], TRAIN_POOL)
    test_images, test_labels = make_brats_volumes(SHARED["volume"], SHARED["test_volumes"])
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels)


def training_volumes(arm: Arm, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """The arm's training volumes: the first ``len(train_volumes)`` of the pool."""
    index = [TRAIN_POOL.index(seed) for seed in arm.settings["train_volumes"]]
    return data["train_images"][index], data["train_labels"][index]


def make_augmentation():
    """Section 2.6's augmentation as MONAI dictionary transforms: per-channel intensity scale (0.9-1.1) and shift
    (±0.1 of the channel's standard deviation, which is 1 after z-scoring), and mirroring on each axis (0.5)."""
    from monai.transforms import Compose, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

    keys = ["image", "label"]
    return Compose([
        RandScaleIntensityd(["image"], factors=0.1, prob=1.0, channel_wise=True),
        RandShiftIntensityd(["image"], offsets=0.1, prob=1.0, channel_wise=True),
        RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
    ])


def make_model(arm: Arm, seed: int) -> MyronenkoNet:
    seed_everything(seed)
    return MyronenkoNet(4, 3, width=SHARED["width"], blocks_down=SHARED["blocks_down"],
                        blocks_up=SHARED["blocks_up"], dropout=SHARED["dropout"],
                        vae_input_size=SHARED["patch"] if arm.settings["vae"] else None,
                        latent_size=SHARED["latent_size"], l2_weight=SHARED["l2_weight"],
                        kl_weight=SHARED["kl_weight"])


def make_loss() -> nn.Module:
    """L_dice of Section 2.4: soft Dice with squared terms in the denominator, on each region."""
    return RegionDiceLoss(squared_pred=True, nested=True, names=BRATS_REGIONS)


def make_sampler(arm: Arm, seed: int, data: dict) -> PatchSampler:
    images, labels = training_volumes(arm, data)
    return PatchSampler(images, labels, patch_size=SHARED["patch"], batch_size=SHARED["batch"], augment=False,
                        seed=seed, mean=0.0, std=1.0, foreground=SHARED["foreground_patches"],
                        transform=make_augmentation(), regions=BRATS_REGION_CLASSES)


def make_config(arm: Arm, **overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], "weight_decay": SHARED["weight_decay"],
                          "optimizer": SHARED["optimizer"], "schedule": SHARED["schedule"], **overrides})


def make_arm(name: str, seed: int, data: dict):
    """Everything ``fit`` needs for one arm and seed: ``fit(*make_arm(...))`` trains it."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(arm, seed, data), make_loss(), make_config(arm)


def predict_regions(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    """Binary regions (N, 3, *S) of whole volumes: Gaussian-weighted sliding windows of the patch size."""
    probabilities = sliding_window_probabilities(model, torch.from_numpy(images), roi_size=SHARED["patch"],
                                                 overlap=SHARED["window_overlap"], activation="sigmoid")
    return probabilities > 0.5


def region_scores(regions: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per volume: the Dice of each region (absent from both: 1) and their mean."""
    dice = dice_per_region(regions, labels_to_regions(torch.from_numpy(labels)), per_sample=True).numpy()
    return {"dice": dice.mean(1), **{f"dice_{name}": dice[:, r] for r, name in enumerate(REGIONS)}}


def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per held-out volume: the Dice of each region and their mean (the one held-out set, ``"test"``)."""
    return {"test": region_scores(predict_regions(model, data["test_images"]), data["test_labels"])}


def training_dice(model: nn.Module, arm: Arm, data: dict, history: dict) -> dict[str, float]:
    """The mean Dice on the arm's own training volumes: one number per arm and seed."""
    images, labels = training_volumes(arm, data)
    return {"train_dice": float(region_scores(predict_regions(model, images), labels)["dice"].mean())}


def score(model: nn.Module, arm: Arm, data: dict) -> dict[str, np.ndarray]:
    """Held-out scores per volume, and the mean Dice on the arm's own training volumes (the same on every row)."""
    scores = dict(held_out_scores(model, arm, data)["test"])
    scores["train_dice"] = np.full(len(data["test_labels"]), training_dice(model, arm, data, {})["train_dice"])
    return scores


BENCHMARK = Benchmark(lesson="07", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, measure=training_dice, metric=METRIC)
