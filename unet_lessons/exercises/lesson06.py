"""Reference solutions of lesson 06 (No New-Net), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from . import register


def _label_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for shape in ((6, 7, 8), (4, 4, 4), (2, 5, 5, 5)):
        label = torch.from_numpy(rng.integers(0, 4, shape))
        cases.append({"label": label})
    return cases


@register("lesson06.regions", task="labels_to_regions_by_hand(label) -> the nested regions of a class map "
          "(0 background, 1 necrotic core, 2 edema, 3 enhancing): whole tumour, tumour core, enhancing tumour, "
          "stacked as the first axis of a bool tensor (3, *S).",
          cases=_label_cases,
          hint="whole tumour is every class but the background; the tumour core is necrosis and enhancing "
               "tumour (classes 1 and 3, not the edema); the enhancing tumour is class 3. torch.stack them along "
               "a new first axis, dtype bool.")
def labels_to_regions_by_hand(label: torch.Tensor) -> torch.Tensor:
    return torch.stack([label > 0, (label == 1) | (label == 3), label == 3])


def _pair_cases(rng: np.random.Generator) -> list[dict]:
    a = torch.from_numpy(rng.random((8, 8, 8)) < 0.3)
    b = torch.from_numpy(rng.random((8, 8, 8)) < 0.3)
    empty = torch.zeros(8, 8, 8, dtype=torch.bool)
    return [{"prediction": a, "truth": b}, {"prediction": empty, "truth": empty}, {"prediction": a, "truth": empty},
            {"prediction": empty, "truth": b}, {"prediction": a, "truth": a}]


@register("lesson06.brats_dice", task="brats_dice(prediction, truth) -> the Dice of one binary region as BraTS "
          "scores it (a float), including the cases where one or both are empty.",
          cases=_pair_cases,
          hint="2·|P∩T| / (|P| + |T|) when the denominator is positive; when the region is absent from both, "
               "BraTS gives 1 (nothing to find, nothing found); when only one of them is empty, the formula "
               "already gives 0.")
def brats_dice(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((prediction & truth).sum()) / total


def _region_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for min_voxels in (10, 40, 0):
        regions = torch.from_numpy(rng.random((3, 3, 6, 6, 6)) < 0.15)
        cases.append({"regions": regions, "min_voxels": min_voxels})
    return cases


@register("lesson06.remove_small_enhancing", task="remove_small_enhancing(regions, min_voxels) -> a copy of the "
          "(B, 3, *S) regions in which the enhancing channel (index 2) of every sample holding fewer than "
          "min_voxels enhancing voxels is emptied.",
          cases=_region_cases,
          hint="count regions[:, 2] per sample (flatten all but the batch axis and sum), find the samples below "
               "min_voxels, and set their channel 2 to False in a clone; leave the other channels alone.")
def remove_small_enhancing(regions: torch.Tensor, min_voxels: int) -> torch.Tensor:
    out = regions.clone()
    out[out[:, 2].flatten(1).sum(1) < min_voxels, 2] = False
    return out


def _mirror_cases(rng: np.random.Generator) -> list[dict]:
    generator = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    conv = torch.nn.Conv3d(2, 3, kernel_size=3, padding=1)
    with torch.no_grad():
        for parameter in conv.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    conv.requires_grad_(False)
    return [{"predict": conv, "x": torch.randn(1, 2, 6, 7, 8, generator=generator)},
            {"predict": conv, "x": torch.randn(2, 2, 4, 4, 4, generator=generator)}]


@register("lesson06.mirrored_probabilities", task="mirrored_probabilities(predict, x) -> the sigmoid probabilities "
          "of predict(x) averaged over all 8 mirrorings of the three spatial axes, each flipped back.",
          cases=_mirror_cases,
          hint="loop over every subset of the spatial dims (2, 3, 4), the empty one included: flip x, predict, take "
               "the sigmoid, flip the result back along the same dims, and average the 8 results.")
def mirrored_probabilities(predict, x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(())
    subsets = [dims for r in range(4) for dims in itertools.combinations((2, 3, 4), r)]
    for dims in subsets:
        flipped = torch.flip(x, dims) if dims else x
        probabilities = torch.sigmoid(predict(flipped))
        total = total + (torch.flip(probabilities, dims) if dims else probabilities)
    return total / len(subsets)
