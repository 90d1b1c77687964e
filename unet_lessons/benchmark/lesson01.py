"""Lesson 01 (FCN): FCN-32s, 16s and 8s trained in stages as the paper does, with the controls its claims need.

The task is the package's synthetic shapes (:func:`~unet_lessons.data.make_shapes_2d`): 128×128
RGB images of discs, thin bars, crosses and stars, 256 for training and 64 held out. Every
network is :class:`~unet_lessons.models.FCN` at a quarter of VGG16's width (16 … 128 channels,
fc6/fc7 of 256), with batch normalisation because it trains from scratch, not from ImageNet.

The paper trains in stages (Section 4.2): FCN-16s "is learned end-to-end, initialized with the
parameters of the last, coarser net", FCN-8s likewise from FCN-16s. Each stage here is 200
steps of eight images, Adam with a one-cycle schedule at the same peak learning rate (the
paper lowers it 100-fold for a converged, pretrained network; ours trains from scratch).

The arms beside the staged chain are the controls:

* ``continued``: the coarser net trained as many more steps without the new skip, the control
  the paper names ("simply decreasing the learning rate without adding the extra link"), so
  that a skip is compared with the same number of steps, not with fewer;
* ``fixed ×2``: the same chain with the ×2 upsamplers fixed to bilinear, as the official code
  does (``lr_mult: 0``) and its README says makes "no significant difference in accuracy";
* ``at once``: FCN-8s trained from scratch for the three stages' steps together.

Every arm is scored per held-out image: mean IoU over the five classes, the mean over the four
object classes, each class's IoU, and boundary IoU (Cheng et al. 2021; band 2 px, mean of the
five classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import SHAPE_CLASSES, PatchSampler, make_shapes_batch
from ..losses import DiceCELoss
from ..metrics import boundary_iou, iou_per_class
from ..models import FCN
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark

TABLE = "01_fcn.csv"
METRIC = "iou"
SEEDS = (0, 1, 2, 3, 4)
BOUNDARY_BAND = 2                 # boundary IoU's band, pixels
SHARED = dict(size=128, train_images=256, train_seed=0, test_images=64, test_seed=1, width=16, fc_width=256,
              norm="batch", batch=8, steps_per_stage=200, lr=3e-3, optimizer="adam", schedule="onecycle",
              loss="Dice + cross-entropy (softmax, five classes)", augment="flips and rotations by 90° (PatchSampler)")
STAGE = SHARED["steps_per_stage"]
ARMS = (
    Arm("FCN-32s", dict(variant="32s", stage=1, steps=STAGE), live=True),
    Arm("FCN-16s", dict(variant="16s", stage=2, steps=STAGE), live=True, parent="FCN-32s"),
    Arm("FCN-8s", dict(variant="8s", stage=3, steps=STAGE), live=True, parent="FCN-16s"),
    Arm("FCN-32s, continued", dict(variant="32s", stage=2, steps=STAGE), parent="FCN-32s"),
    Arm("FCN-16s, continued", dict(variant="16s", stage=3, steps=STAGE), parent="FCN-16s"),
    Arm("FCN-16s, fixed ×2", dict(variant="16s", stage=2, steps=STAGE, learnable_upsampling=False), parent="FCN-32s"),
    Arm("FCN-8s, fixed ×2", dict(variant="8s", stage=3, steps=STAGE, learnable_upsampling=False),
        parent="FCN-16s, fixed ×2"),
    Arm("FCN-8s, at once", dict(variant="8s", stage=1, steps=3 * STAGE)),
)
ARM = {arm.name: arm for arm in ARMS}


def make_data() -> dict[str, Any]:
    """256 training images (seed 0) and 64 held-out ones (seed 1), 128×128, with their labels."""
    train_images, train_labels = make_shapes_batch(SHARED["train_images"], SHARED["size"], seed=SHARED["train_seed"])
    test_images, test_labels = make_shapes_batch(SHARED["test_images"], SHARED["size"], seed=SHARED["test_seed"])
    return dict(train_images=train_images.numpy(), train_labels=train_labels.numpy(),
                test_images=test_images.numpy(), test_labels=test_labels.numpy())


def make_model(arm: Arm | str, seed: int) -> FCN:
    """The arm's network, its weights drawn from ``seed`` (a child arm then loads its parent's)."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    seed_everything(seed)
    return FCN(len(SHAPE_CLASSES), variant=arm.settings["variant"], width=SHARED["width"],
               fc_width=SHARED["fc_width"], norm=SHARED["norm"],
               learnable_upsampling=arm.settings.get("learnable_upsampling", True))


def make_sampler(arm: Arm, seed: int, data: dict) -> PatchSampler:
    """Whole images, flipped and rotated. Each stage draws its own batches; arms of one stage draw the same ones,
    so that a skip and its ``continued`` control see the same images in the same order."""
    return PatchSampler(data["train_images"], data["train_labels"], patch_size=SHARED["size"], batch_size=SHARED["batch"],
                        augment=True, elastic_sigma=0.0, seed=seed + 1000 * (arm.settings["stage"] - 1))


def make_config(arm: Arm, **overrides) -> TrainConfig:
    return TrainConfig(**{"steps": arm.settings["steps"], "lr": SHARED["lr"], "optimizer": SHARED["optimizer"],
                          "schedule": SHARED["schedule"], **overrides})


def make_arm(name: str, seed: int, data: dict):
    """Everything ``fit`` needs for one arm and seed. A child arm's network is built here at its own
    initialisation; the runner (or the lesson) then loads the parent's trained weights into it."""
    arm = ARM[name]
    return make_model(arm, seed), make_sampler(arm, seed, data), DiceCELoss(), make_config(arm)


def held_out_inputs(data: dict) -> torch.Tensor:
    """The held-out images (N, 3, 128, 128), normalised with the training statistics, as the sampler does."""
    return torch.from_numpy(make_sampler(ARMS[0], 0, data).normalize(data["test_images"]))


def segmentation_scores(prediction: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: mean IoU over the classes, over the four object classes, each class's IoU, boundary IoU."""
    classes = len(SHAPE_CLASSES)
    per_image = [iou_per_class(p, t, classes) for p, t in zip(prediction, labels)]
    iou = torch.stack(per_image).numpy()                                    # (N, classes)
    boundary = np.array([float(boundary_iou(p, t, classes, BOUNDARY_BAND).mean()) for p, t in zip(prediction, labels)])
    scores = {"iou": iou.mean(1), "iou_objects": iou[:, 1:].mean(1), "boundary_iou": boundary}
    scores.update({f"iou_{name}": iou[:, c] for c, name in enumerate(SHAPE_CLASSES)})
    return scores


@torch.no_grad()
def held_out_scores(model: nn.Module, arm: Arm, data: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per held-out image, :func:`segmentation_scores` of the model's argmax."""
    prediction = predict(model, held_out_inputs(data)).argmax(1)
    return {"test": segmentation_scores(prediction, torch.from_numpy(data["test_labels"]))}


BENCHMARK = Benchmark(lesson="01", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, metric=METRIC)
