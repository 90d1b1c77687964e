"""Lesson 08 (MultiResUNet): MultiResUNet against U-Net on one budget, and each of its two parts alone.

The task and the split are lesson 02's: the 30 ISBI 2012 training slices in three folds of ten
consecutive slices (0–9, 10–19, 20–29), each held out once while the other twenty train, so
every slice is a held-out item exactly once. Both kinds of network are padded the same way
("same" convolutions, 2x2 transposed convolutions up, batch norm), so that the blocks and the
skips are what differs.

The paper compares MultiResUNet with a U-Net of the same U (Section 4: "#filters =
[32,64,128,256,512] along the levels, which are also the values of U in our model"), with
alpha = 1.67 chosen so that MultiResUNet has slightly fewer parameters. At the CPU width U = 16
(every branch of a MultiRes block keeps at least 4 channels: 4, 8, 13 at the top level) the
arms are:

* ``U-Net (U = 16)``: the paper's baseline, scaled: 16, 32, …, 256 filters (more parameters);
* ``U-Net (U = 15)``: the U-Net whose width comes nearest below MultiResUNet's parameter count,
  so that the blocks, not the size, are compared;
* ``MultiResUNet``: U = 16, alpha 1.67, Res paths of 4, 3, 2, 1 units, as the official code;
* ``MultiRes blocks, plain skips``: the skips copy (no Res paths);
* ``Res paths, U-Net blocks``: the U-Net's two 3x3 convolutions (U channels) with the Res paths.

Each network trains 200 steps of four 128x128 patches (flips and rotations by 90°; no elastic
deformation, which lesson 02 found inconclusive) with Adam, a one-cycle schedule at 5e-3 and
cross-entropy over two logits (the authors' demo notebook trains with binary cross-entropy on one
sigmoid output; the loss of the paper's experiments is not in the text available to us).

Every held-out slice is scored: membrane Dice, boundary IoU of the cells (2 px, as lesson 02),
pixel error, and linear CKA between the two maps each decoder level concatenates (the skip side
and the upsampled side), on the slice's centre 256×256, for the trained network and for the same network at its initialisation
(``init_``): lesson 05's measure of the semantic gap and its noise floor. Where a skip has a
Res path, ``cka_before_L{i}`` is the same measure with the map *before* the path: what the
path changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import PatchSampler, load_isbi
from ..metrics import boundary_iou, dice_per_class, pixel_error
from ..models import MultiResUNet, UNet
from ..similarity import linear_cka
from ..train import TrainConfig, predict
from ..utils import seed_everything
from .declare import Arm, Benchmark
from .lesson02 import FOLDS

TABLE = "08_multiresunet.csv"
METRIC = "membrane_dice"
SEEDS = (0, 1, 2, 3, 4)
BOUNDARY_BAND = 2                 # boundary IoU's band, pixels (lesson 02's)
CKA_CROP = slice(128, 384)        # CKA on each held-out slice's centre 256×256 (a quarter of the cost of the whole)
SHARED = dict(slices=30, folds="three folds of ten consecutive slices (0–9, 10–19, 20–29), each held out once",
              depth=4, alpha=1.67, norm="batch", upsample="2x2 transposed convolution", padding="same",
              patch=128, batch=4, steps=200, lr=5e-3, optimizer="adam", schedule="onecycle",
              loss="cross-entropy (two classes, softmax)", augment="flips and rotations by 90°", elastic_sigma=0.0)
ARMS = (
    Arm("U-Net (U = 16)", dict(model="unet", width=16), live=True),
    Arm("U-Net (U = 15)", dict(model="unet", width=15)),
    Arm("MultiResUNet", dict(model="multiresunet", width=16, block="multires", res_paths=True), live=True),
    Arm("MultiRes blocks, plain skips", dict(model="multiresunet", width=16, block="multires", res_paths=False)),
    Arm("Res paths, U-Net blocks", dict(model="multiresunet", width=16, block="double_conv", res_paths=True)),
)
ARM = {arm.name: arm for arm in ARMS}
REFERENCE = "MultiResUNet"


def make_data() -> dict[str, Any]:
    """The 30 ISBI 2012 training slices (512×512) and their labels (0 membrane, 1 cell)."""
    images, labels = load_isbi()
    return dict(images=images, labels=labels)


def folds(data: dict) -> list[dict]:
    """One view per fold of lesson 02's split: its twenty training slices and its ten held-out ones."""
    views = []
    for start, stop in FOLDS:
        test = np.arange(start, stop)
        train = np.setdiff1d(np.arange(len(data["labels"])), test)
        views.append(dict(train_images=data["images"][train], train_labels=data["labels"][train],
                          test_images=data["images"][test], test_labels=data["labels"][test], held_out_items=test))
    return views


def make_model(arm: Arm | str, seed: int) -> nn.Module:
    """The arm's network, its weights drawn from ``seed``."""
    arm = ARM[arm] if isinstance(arm, str) else arm
    seed_everything(seed)
    settings = arm.settings
    if settings["model"] == "unet":
        model = UNet(1, 2, width=settings["width"], depth=SHARED["depth"], upsample="transpose", norm=SHARED["norm"])
    else:
        model = MultiResUNet(1, 2, width=settings["width"], depth=SHARED["depth"], alpha=SHARED["alpha"],
                             block=settings["block"], res_paths=settings["res_paths"])
    # Scoring rebuilds the same network at its initialisation (the CKA noise floor); score() is not told the seed.
    model.initial_seed = seed
    return model


def make_sampler(seed: int, view: dict) -> PatchSampler:
    return PatchSampler(view["train_images"], view["train_labels"], patch_size=SHARED["patch"],
                        batch_size=SHARED["batch"], augment=True, elastic_sigma=SHARED["elastic_sigma"], seed=seed)


def make_config(**overrides) -> TrainConfig:
    return TrainConfig(**{"steps": SHARED["steps"], "lr": SHARED["lr"], "optimizer": SHARED["optimizer"],
                          "schedule": SHARED["schedule"], **overrides})


def make_arm(name: str, seed: int, view: dict):
    """Everything ``fit`` needs for one arm, seed and fold."""
    return make_model(ARM[name], seed), make_sampler(seed, view), nn.CrossEntropyLoss(), make_config()


def held_out_inputs(view: dict) -> torch.Tensor:
    """The fold's held-out slices (N, 1, 512, 512), normalised with its training statistics, as the sampler does."""
    return torch.from_numpy(make_sampler(0, view).normalize(view["test_images"]))[:, None]


def segmentation_scores(prediction: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per slice: membrane Dice, boundary IoU of the cells, pixel error."""
    scores = {"membrane_dice": [], "boundary_iou": [], "pixel_error": []}
    for p, t in zip(prediction, labels):
        scores["membrane_dice"].append(float(dice_per_class(p, t, 2)[0]))
        scores["boundary_iou"].append(float(boundary_iou(p, t, 2, BOUNDARY_BAND)[1]))  # the cells' borders
        scores["pixel_error"].append(float(pixel_error(p, t)))
    return {key: np.array(values) for key, values in scores.items()}


@torch.no_grad()
def join_cka(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Linear CKA of the two maps each decoder level concatenates, for one input (1, C, H, W), in one pass.

    ``cka_L{i}``: the skip side (after the Res path, when there is one) against the upsampled side.
    ``cka_before_L{i}``, for a skip with a Res path: the map entering the path against the upsampled side.
    """
    entering = {}

    def recorder(level: str):
        def record(_module: nn.Module, inputs: tuple) -> None:
            entering[level] = inputs[0]
        return record

    paths = {level: modules[0] for level, modules in model.skip_modules().items() if modules}
    handles = [path.register_forward_pre_hook(recorder(level)) for level, path in paths.items()]
    try:
        pairs = model.skip_pairs(x)
    finally:
        for handle in handles:
            handle.remove()
    values = {}
    for i, (level, (skip, up)) in enumerate(pairs.items()):
        values[f"cka_L{i}"] = linear_cka(skip, up)
        if level in entering:
            values[f"cka_before_L{i}"] = linear_cka(entering[level], up)
    return values


def cka_scores(model: nn.Module, inputs: torch.Tensor) -> dict[str, np.ndarray]:
    """Per slice, :func:`join_cka` of the trained model and of the same network at its initialisation (``init_``)."""
    if not hasattr(model, "initial_seed"):
        raise ValueError("cka_scores rebuilds the model at its initialisation: build it with make_model(arm, seed), "
                         "which records the seed as model.initial_seed.")
    seed_everything(model.initial_seed)
    untrained = model.rebuild().eval()  # the same draws as make_model: seeded, then built
    crops = inputs[..., CKA_CROP, CKA_CROP]
    per_slice = [{**join_cka(model, x[None]), **{f"init_{k}": v for k, v in join_cka(untrained, x[None]).items()}}
                 for x in crops]
    return {key: np.array([values[key] for values in per_slice]) for key in per_slice[0]}


@torch.no_grad()
def held_out_scores(model: nn.Module, arm: Arm, view: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per held-out slice of the fold: :func:`segmentation_scores` of the argmax on the whole 512×512 slice, and CKA."""
    inputs = held_out_inputs(view)
    model.eval()
    scores = segmentation_scores(predict(model, inputs, batch_size=1).argmax(1), torch.from_numpy(view["test_labels"]))
    scores.update(cka_scores(model, inputs))
    return {"test": scores}


def seconds_per_step(model: nn.Module, arm: Arm, view: dict, history: dict) -> dict[str, float]:
    """Training wall time per step (a timing: not in the behaviour fingerprint)."""
    return {"seconds_per_step": history["seconds"] / SHARED["steps"]}


def first_slice(data: dict) -> dict:
    """The fingerprint's view of a fold: its first held-out slice."""
    return {**data, "test_images": data["test_images"][:1], "test_labels": data["test_labels"][:1],
            "held_out_items": data["held_out_items"][:1]}


BENCHMARK = Benchmark(lesson="08", table=TABLE, seeds=SEEDS, arms=ARMS, shared=SHARED, make_data=make_data,
                      make_arm=make_arm, score=held_out_scores, measure=seconds_per_step, metric=METRIC, folds=folds,
                      fingerprint_view=first_slice)
