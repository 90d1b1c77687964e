"""Tests for unet_lessons.metrics: MONAI as the reference, plus hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, MeanIoU, compute_dice, compute_iou
from scipy import ndimage

from unet_lessons.losses import one_hot
from unet_lessons.metrics import (
    boundary_iou,
    confusion_counts,
    dice_per_class,
    iou_per_class,
    pixel_error,
    segmentation_report,
)

NUM_CLASSES = 4


def random_maps(shape, seed=0):
    """Random class maps where class 3 is rare and absent from some images, to exercise empty classes."""
    generator = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, 3, shape, generator=generator)
    target = torch.randint(0, 3, shape, generator=generator)
    target[0].view(-1)[:3] = 3  # class 3 in image 0 of the target only
    pred[1].view(-1)[-2:] = 3  # and in image 1 of the prediction only
    return pred, target


def pooled_one_hot(labels: torch.Tensor) -> torch.Tensor:
    """(B, *S) -> (1, C, B*S0, *S[1:]): the batch laid side by side as one image, for MONAI's per-image metrics."""
    return one_hot(labels.reshape(1, -1, *labels.shape[2:]), NUM_CLASSES, spatial_dims=labels.ndim - 1)


@pytest.mark.parametrize("shape", [(3, 9, 7), (2, 5, 6, 7)], ids=["2D", "3D"])
def test_dice_and_iou_match_monai_per_image(shape):
    pred, target = random_maps(shape)
    their_dice = compute_dice(one_hot(pred, NUM_CLASSES), one_hot(target, NUM_CLASSES), ignore_empty=False)
    their_iou = compute_iou(one_hot(pred, NUM_CLASSES), one_hot(target, NUM_CLASSES), ignore_empty=False)
    default_dice = compute_dice(one_hot(pred, NUM_CLASSES), one_hot(target, NUM_CLASSES))  # ignore_empty=True
    for b in range(shape[0]):
        ours = dice_per_class(pred[b], target[b], NUM_CLASSES)
        torch.testing.assert_close(ours, their_dice[b].double())
        torch.testing.assert_close(iou_per_class(pred[b], target[b], NUM_CLASSES), their_iou[b].double())
        defined = ~torch.isnan(default_dice[b])
        torch.testing.assert_close(ours[defined], default_dice[b][defined].double())
    # MONAI's default leaves a class with an empty target undefined, even when the prediction has false positives.
    assert torch.isnan(default_dice[1, 3]) and their_dice[1, 3] == 0.0


@pytest.mark.parametrize("shape", [(3, 9, 7), (2, 5, 6, 7)], ids=["2D", "3D"])
def test_pooled_dice_and_iou_match_monai_metric_classes(shape):
    pred, target = random_maps(shape, seed=1)
    dice_metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    iou_metric = MeanIoU(include_background=True, reduction="none", ignore_empty=False)
    dice_metric(pooled_one_hot(pred), pooled_one_hot(target))
    iou_metric(pooled_one_hot(pred), pooled_one_hot(target))
    torch.testing.assert_close(dice_per_class(pred, target, NUM_CLASSES), dice_metric.aggregate()[0].double())
    torch.testing.assert_close(iou_per_class(pred, target, NUM_CLASSES), iou_metric.aggregate()[0].double())


def test_absent_class_scores_one_and_dice_iou_identity():
    pred, target = random_maps((3, 9, 7), seed=2)
    dice = dice_per_class(pred, target, NUM_CLASSES + 1)  # class 4 appears nowhere
    iou = iou_per_class(pred, target, NUM_CLASSES + 1)
    assert dice[4] == 1.0 and iou[4] == 1.0
    torch.testing.assert_close(dice, 2 * iou / (1 + iou))


def test_confusion_counts_by_hand():
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    target = np.array([[0, 1, 2], [2, 0, 0]])
    counts = confusion_counts(pred, target, 3)
    assert counts.tp.tolist() == [2, 1, 1]
    assert counts.fp.tolist() == [0, 1, 1]
    assert counts.fn.tolist() == [1, 0, 1]
    assert counts.tn.tolist() == [3, 4, 3]


def test_pixel_error_by_hand():
    pred = torch.tensor([[0, 1], [1, 1]])
    target = torch.tensor([[0, 0], [1, 1]])
    assert pixel_error(pred, target) == 0.25
    assert pixel_error(target.numpy(), target.numpy()) == 0.0


def square(shape, rows, cols):
    mask = np.zeros(shape, dtype=np.int64)
    mask[rows, cols] = 1
    return mask


def test_boundary_iou_by_hand_2d():
    # A 5x5 square and the same square shifted right by 1, in a 7x7 image, band width 1.
    target = square((7, 7), slice(1, 6), slice(1, 6))
    pred = square((7, 7), slice(1, 6), slice(2, 7))
    scores = boundary_iou(pred, target, 2, dilation=1)
    # Class 1: each band is the square's 16-pixel ring; they share 4 + 4 pixels of the top and
    # bottom rows -> 8 / (16 + 16 - 8) = 1/3 (region IoU is 20/30 = 2/3).
    # Class 0: every background pixel lies within 1 pixel of the square or the image edge, so each
    # band is the whole 24-pixel background; they share rows 0 and 6 (14) and column 0 (5) -> 19/29.
    torch.testing.assert_close(scores, torch.tensor([19 / 29, 1 / 3], dtype=torch.float64))
    assert iou_per_class(pred, target, 2)[1] == pytest.approx(2 / 3)


def test_boundary_iou_by_hand_3d():
    # A 5x5x5 cube shifted by 1 along depth: each band is 125 - 27 = 98 voxels. They share the 16
    # ring columns over the 4 common slices (64) and none of the 9 inner columns -> 64 / (196 - 64).
    target = np.zeros((7, 7, 7), np.int64)
    target[1:6, 1:6, 1:6] = 1
    pred = np.roll(target, 1, axis=0)
    expected = 64 / 132
    assert boundary_iou(pred, target, 2, dilation=1, spatial_dims=3)[1].item() == pytest.approx(expected)
    # The same volume with a batch axis is read as 3D without being told.
    assert boundary_iou(pred[None], target[None], 2, dilation=1)[1].item() == pytest.approx(expected)


def reference_boundary_iou(pred: np.ndarray, target: np.ndarray, num_classes: int, dilation: int) -> np.ndarray:
    """Boundary IoU from chessboard distances to the nearest non-mask pixel (the image edge counts)."""
    def band(mask):
        padded = np.pad(mask, 1)  # zeros outside the image make its edge a contour
        distance = ndimage.distance_transform_cdt(padded, metric="chessboard")[(slice(1, -1),) * mask.ndim]
        return mask & (distance <= dilation)

    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for p, t in zip(pred, target):
        for c in range(num_classes):
            bp, bt = band(p == c), band(t == c)
            inter[c] += (bp & bt).sum()
            union[c] += (bp | bt).sum()
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@pytest.mark.parametrize("shape", [(2, 23, 17), (2, 9, 11, 10)], ids=["2D", "3D"])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_boundary_iou_matches_distance_transform_reference(shape, dilation):
    # Smoothed noise gives blobs with corners and diagonal contacts, where the band's metric matters.
    rng = np.random.default_rng(dilation)
    smooth = ndimage.gaussian_filter(rng.random(shape), sigma=(0, *[1.5] * (len(shape) - 1)))
    target = np.digitize(smooth, np.quantile(smooth, [0.3, 0.7]))  # classes 0, 1, 2
    pred = np.roll(target, 1, axis=1)
    pred[:, :2] = 1
    expected = reference_boundary_iou(pred, target, 3, dilation)
    np.testing.assert_allclose(boundary_iou(pred, target, 3, dilation=dilation).numpy(), expected)


@pytest.mark.parametrize("shape", [(2, 40, 40), (1, 24, 24, 24)], ids=["2D", "3D"])
def test_boundary_iou_identical_is_one_and_shifted_is_less(shape):
    grid = np.indices(shape[1:]) - shape[1] / 2  # square image or cube: one centre coordinate
    ball = ((grid**2).sum(0) < (shape[1] / 4) ** 2).astype(np.int64)  # a disc or a ball
    target = np.stack([ball] * shape[0])
    torch.testing.assert_close(boundary_iou(target, target, 2), torch.ones(2, dtype=torch.float64))
    shifted = np.roll(target, 3, axis=-1)
    scores = boundary_iou(shifted, target, 2, dilation=2)
    assert scores[1] < 1.0 and scores[1] < iou_per_class(shifted, target, 2)[1]


def test_segmentation_report_keys_and_values():
    pred = torch.tensor([[[0, 1], [1, 1]]])
    target = torch.tensor([[[0, 0], [1, 1]]])
    report = segmentation_report(pred, target, ["membrane", "cell"])
    assert list(report) == ["membrane Dice", "membrane IoU", "cell Dice", "cell IoU", "pixel error"]
    assert report["membrane Dice"] == pytest.approx(2 / 3)
    assert report["cell IoU"] == pytest.approx(2 / 3)
    assert report["pixel error"] == 0.25
    assert "cell boundary IoU" in segmentation_report(pred, target, ["membrane", "cell"], boundary_dilation=1)


def test_metric_errors_name_the_fix():
    target = np.zeros((2, 4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="same shape"):
        dice_per_class(np.zeros((2, 3, 3), np.int64), target, 2)
    with pytest.raises(ValueError, match=r"argmax\(1\)"):
        dice_per_class(np.zeros((2, 2, 4, 4)), target, 2)
    with pytest.raises(ValueError, match=r"\[255\].*0/255"):
        iou_per_class(target, np.full((2, 4, 4), 255), 2)
    with pytest.raises(ValueError, match="fractional"):
        pixel_error(np.random.default_rng(0).random((2, 4, 4)), target)
    with pytest.raises(ValueError, match="dilation"):
        boundary_iou(target, target, 2, dilation=0)


def test_best_intensity_dice_equals_a_brute_force_search():
    from unet_lessons.metrics import best_intensity_dice
    rng = np.random.default_rng(0)
    values = rng.normal(size=500)
    target = (values > 0.5) & (values < 1.5)
    assert best_intensity_dice(values, target, bins=500) == pytest.approx(1.0)  # an interval separates it exactly
    noisy = target ^ (rng.random(500) < 0.1)
    edges = np.quantile(values, np.linspace(0, 1, 21))
    brute = max(2 * ((values >= lo) & (values < hi) & noisy).sum() / (((values >= lo) & (values < hi)).sum() + noisy.sum())
                for i, lo in enumerate(edges) for hi in list(edges[i + 1:]) + [np.inf])
    assert best_intensity_dice(values, noisy, bins=20) == pytest.approx(brute)
    with pytest.raises(ValueError, match="empty"):
        best_intensity_dice(values, np.zeros(500, bool))


# ----- region targets ---------------------------------------------------------------------

def test_dice_per_region_equals_monai_dice_metric_on_binarised_sigmoid_outputs():
    from monai.metrics import DiceMetric

    from unet_lessons.metrics import dice_per_region
    from unet_lessons.targets import labels_to_regions

    g = torch.Generator().manual_seed(0)
    target = labels_to_regions(torch.randint(0, 4, (3, 6, 7, 8), generator=g))  # (B, 3, D, H, W)
    logits = 3 * (target - 0.5) + 2.5 * torch.randn(target.shape, generator=g)  # a good but imperfect guess
    prediction = (torch.sigmoid(logits) > 0.5).float()
    theirs = DiceMetric(include_background=True, reduction="none")(prediction, target)  # (B, 3)
    torch.testing.assert_close(dice_per_region(prediction, target, per_sample=True), theirs.double())
    pooled = dice_per_region(logits > 0, target)  # (3,), the batch pooled
    tp = (prediction * target).sum((0, 2, 3, 4))
    torch.testing.assert_close(pooled, (2 * tp / (prediction.sum((0, 2, 3, 4)) + target.sum((0, 2, 3, 4)))).double())


def test_dice_per_region_scores_an_empty_region_found_empty_as_one_and_refuses_soft_maps():
    from unet_lessons.metrics import dice_per_region

    empty = torch.zeros(1, 3, 4, 4)
    assert dice_per_region(empty, empty).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"binary regions.*logits > 0"):
        dice_per_region(empty + 0.3, empty)
    with pytest.raises(ValueError, match="dice_per_class"):
        dice_per_region(empty[:, 0], empty[:, 0, 0])
