"""Lesson 03 (3D U-Net): 3D against slice-by-slice 2D, and sparse against dense labels, every arm and seed.

The task: synthetic organ volumes of 64³ (:func:`~unet_lessons.data.make_organ_volume`: an
organ with lesions, distractors of the organ's and the lesions' intensity, a bias field and
noise), 16 for training and 12 held out. Every arm trains 300 steps with Adam, a one-cycle
schedule, Dice + cross-entropy, flips and rotations, and a third of the samples centred on
foreground.

* **3D, dense labels**: the lesson's 3D U-Net (two poolings, 16, 32, 64 channels, the paper's
  channel plan), on 32³ patches, two per step.
* **2D, slice by slice**: a 2D U-Net matched to it in three things, each said in the lesson:
  the receptive field in-plane (two poolings: 44 pixels, the 3D network's 44 voxels), the
  parameters (channels 27, 54, 106: within 0.1 % of the 3D network's) and the multiply-adds of a
  training step (eleven whole 64×64 axial slices per step: within 2 %). It segments a held-out
  volume one axial slice at a time.
* **3D, sparse labels**: the 3D arm trained on 3 annotated slices per axis of every training
  volume (the paper's setting, Section 3), the other voxels left out of the loss.

Scored per held-out volume: the Dice of the organ and of the lesions and their mean, and the
share of foreground voxels whose predicted class changes from one axial slice to the next.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import IGNORE_INDEX, PatchSampler, make_organ_volumes, sparsify_labels
from ..inference import predict_slicewise
from ..losses import DiceCELoss
from ..metrics import dice_per_class
from ..models import UNet
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "03_unet3d.csv"
METRIC = "dice"
SEEDS = (0, 1, 2, 3, 4)
SHARED = dict(volume=64, train_volumes=list(range(1000, 1016)), test_volumes=list(range(5000, 5012)), steps=300,
              lr=3e-3, foreground_patches=0.33, sparse_slices_per_axis=3, channel_plan="unet3d",
              loss="Dice + cross-entropy; unlabelled voxels left out (ignore_index=-1)",
              augment="flips and 90° rotations, no elastic deformation")
ARMS = (
    Arm("3D, dense labels", dict(dims=3, features=[16, 32, 64], patch=32, batch=2, labels="dense"), live=True),
    Arm("2D slice by slice, matched", dict(dims=2, features=[27, 54, 106], patch=64, batch=11, labels="dense"),
        live=True),
    Arm("3D, sparse labels", dict(dims=3, features=[16, 32, 64], patch=32, batch=2, labels="sparse")),
)
ARM = {arm.name: arm for arm in ARMS}


def make_data() -> dict[str, Any]:
    """The 16 training volumes with dense and sparse labels, and the 12 held-out ones."""
    train_images, train_labels = make_organ_volumes(SHARED["volume"], SHARED["train_volumes"])
    test_images, test_labels = make_organ_volumes(SHARED["volume"], SHARED["test_volumes"])
    sparse = sparsify_labels(train_labels, SHARED["sparse_slices_per_axis"], seed=0)
    return dict(train_images=train_images, train_labels=train_labels, sparse_labels=sparse,
                test_images=test_images, test_labels=test_labels)


def make_model(arm: Arm | str, seed: int) -> UNet:
    """The arm's U-Net, its weights drawn from ``seed``."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    seed_everything(seed)
    return UNet(1, 3, spatial_dims=arm.settings["dims"], features=tuple(arm.settings["features"]),
                channel_plan=SHARED["channel_plan"], up_bias=False)


def normalizer(data: dict) -> PatchSampler:
    """A sampler over the dense 3D training volumes: its mean and standard deviation normalise every arm's input."""
    return PatchSampler(data["train_images"], data["train_labels"], patch_size=32, batch_size=2)


def axial_slices(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Volumes (N, 1, D, H, W) and labels (N, D, H, W) as N·D axial slices (N·D, 1, H, W) and (N·D, H, W)."""
    n, c, d, h, w = images.shape
    return images.transpose(0, 2, 1, 3, 4).reshape(n * d, c, h, w), labels.reshape(n * d, h, w)


def make_sampler(arm: Arm, seed: int, data: dict) -> PatchSampler:
    """The arm's training batches: 3D patches (dense or sparse labels), or whole axial slices for the 2D arm."""
    settings, norm = arm.settings, normalizer(data)
    labels = data["sparse_labels"] if settings["labels"] == "sparse" else data["train_labels"]
    images = data["train_images"]
    if settings["dims"] == 2:
        images, labels = axial_slices(images, labels)
    return PatchSampler(images, labels, patch_size=settings["patch"], batch_size=settings["batch"], augment=True,
                        elastic_sigma=0.0, seed=seed, foreground=SHARED["foreground_patches"], mean=norm.mean,
                        std=norm.std)


def make_loss(arm: Arm) -> nn.Module:
    """Dice + cross-entropy; the sparse arm leaves its unlabelled voxels out of both."""
    return DiceCELoss(ignore_index=IGNORE_INDEX) if arm.settings["labels"] == "sparse" else DiceCELoss()


def make_config(arm: Arm, **overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], **overrides})


def make_arm(name: str, seed: int, data: dict):
    """Everything ``fit`` needs for one arm and seed: ``fit(*make_arm(...))`` trains it."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(arm, seed, data), make_loss(arm), make_config(arm)


def held_out_inputs(data: dict) -> torch.Tensor:
    """The held-out volumes (N, 1, 64, 64, 64), normalised with the training statistics."""
    return torch.from_numpy(normalizer(data).normalize(data["test_images"]))


@torch.no_grad()
def segment(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Class maps (N, D, H, W): a 3D network on whole volumes, a 2D one slice by slice along D."""
    if model.spatial_dims == 2:
        return torch.stack([predict_slicewise(model, volume).argmax(0) for volume in inputs])
    return predict(model, inputs, batch_size=1).argmax(1)


def slice_changes(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per volume: the share of foreground voxels (from the second axial slice on) whose class differs
    from the voxel in the slice before, along D."""
    labels = torch.as_tensor(labels)
    changed = labels[:, 1:] != labels[:, :-1]
    foreground = labels[:, 1:] > 0
    return np.array([float(c[f].float().mean()) for c, f in zip(changed, foreground)])


def volume_scores(prediction: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per volume: Dice of the organ and of the lesions, their mean, and the slice-to-slice changes."""
    target = torch.from_numpy(labels)
    dice = np.array([dice_per_class(p, t, 3)[1:].numpy() for p, t in zip(prediction, target)])
    return {"dice": dice.mean(1), "dice_organ": dice[:, 0], "dice_lesion": dice[:, 1],
            "slice_changes": slice_changes(prediction)}


def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """:func:`volume_scores` on the held-out volumes (the one held-out set, ``"test"``)."""
    return {"test": volume_scores(segment(model, held_out_inputs(data)), data["test_labels"])}


BENCHMARK = Benchmark(lesson="03", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, metric=METRIC)
