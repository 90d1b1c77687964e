"""Segmentation metrics on hard predictions: Dice, IoU, pixel error and boundary IoU.

Every metric takes integer class maps, ``prediction`` and ``target`` of the same shape
``(B, *S)`` or ``(*S)`` (NumPy arrays or tensors), e.g. ``logits.argmax(1)``. Counts are
pooled over the whole batch before dividing, so a small image weighs as much as its
pixels and not more; MONAI's ``DiceMetric`` instead scores every image separately and
then averages.

* Dice (Sørensen 1948) and IoU (Jaccard 1912), per class; ``Dice = 2 IoU / (1 + IoU)``.
* Pixel error: the fraction of wrong pixels, ``1 - accuracy``, as in the ISBI 2012 EM
  segmentation challenge (Arganda-Carreras et al., Front. Neuroanat. 2015).
* Boundary IoU: Cheng et al., "Boundary IoU: Improving Object-Centric Image
  Segmentation Evaluation", CVPR 2021; IoU restricted to a band along each mask's contour,
  so it notices shifted or blurred borders that region IoU forgives.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from scipy import ndimage

from .targets import check_class_labels

__all__ = [
    "BRATS_EMPTY_HD95",
    "hausdorff95_per_region",
    "best_intensity_dice",
    "ConfusionCounts",
    "confusion_counts",
    "dice_per_class",
    "dice_per_region",
    "iou_per_class",
    "pixel_error",
    "boundary_iou",
    "segmentation_report",
]

ArrayLike = Union[torch.Tensor, np.ndarray]


class ConfusionCounts(NamedTuple):
    """Per-class pixel counts, each a (C,) int64 tensor, pooled over the batch."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tn: torch.Tensor


def _as_labels(x: ArrayLike, name: str) -> torch.Tensor:
    """NumPy or torch class map -> int64 tensor on the CPU, rejecting scores and probabilities."""
    tensor = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bool:
        return tensor.long()
    if tensor.is_floating_point():
        if not torch.equal(tensor, tensor.round()):
            raise ValueError(f"{name} must hold class indices, but it has fractional values (scores or "
                             f"probabilities?). Take the class map first, e.g. `logits.argmax(1)`.")
    return tensor.long()


def _check_range(labels: torch.Tensor, name: str, num_classes: int) -> None:
    check_class_labels(labels, num_classes, name=name)


def _check_pair(prediction: ArrayLike, target: ArrayLike,
                num_classes: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    pred, truth = _as_labels(prediction, "prediction"), _as_labels(target, "target")
    if pred.shape != truth.shape:
        hint = ""
        if pred.ndim == truth.ndim + 1:
            hint = " The prediction looks like per-class scores (B, C, *S): take `prediction.argmax(1)`."
        elif truth.ndim == pred.ndim + 1 and truth.shape[1] == 1:
            hint = " Drop the target's channel axis: `target[:, 0]`."
        else:
            hint = " With padding='valid' the output is smaller than the label: crop the target (centre crop)."
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(truth.shape)} must have the "
                         f"same shape.{hint}")
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1; got {num_classes}.")
        _check_range(pred, "prediction", num_classes)
        _check_range(truth, "target", num_classes)
    return pred, truth


def confusion_counts(prediction: ArrayLike, target: ArrayLike, num_classes: int) -> ConfusionCounts:
    """True/false positives and negatives of every class, one-vs-rest, pooled over all pixels.

    Args:
        prediction: predicted class map (B, *S) or (*S).
        target: true class map of the same shape.
        num_classes: number of classes ``C``; labels must lie in [0, C - 1].

    Shape:
        (B, *S), (B, *S) -> four (C,) int64 tensors.
    """
    pred, truth = _check_pair(prediction, target, num_classes)
    # One bincount of (true, predicted) pairs gives the full C x C confusion matrix.
    matrix = torch.bincount(truth.flatten() * num_classes + pred.flatten(),
                            minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = matrix.diagonal()
    fp = matrix.sum(0) - tp  # predicted c, truly something else
    fn = matrix.sum(1) - tp  # truly c, predicted something else
    tn = truth.numel() - tp - fp - fn
    return ConfusionCounts(tp, fp, fn, tn)


def _ratio_or_one(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and 1.0 where both are 0 (nothing to find, nothing found)."""
    numerator, denominator = numerator.double(), denominator.double()
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.ones_like(denominator))


def dice_per_class(prediction: ArrayLike, target: ArrayLike, num_classes: int) -> torch.Tensor:
    """Dice ``2 TP / (2 TP + FP + FN)`` of each class, over the whole batch pooled.

    A class absent from both the prediction and the target scores 1.0: there was nothing
    to find and nothing was found. (MONAI's ``DiceMetric`` returns NaN there by default,
    ``ignore_empty=True``, and drops it from its mean.)

    Args:
        prediction: predicted class map (B, *S) or (*S).
        target: true class map of the same shape.
        num_classes: number of classes ``C``.

    Shape:
        (B, *S), (B, *S) -> (C,) float64.
    """
    tp, fp, fn, _ = confusion_counts(prediction, target, num_classes)
    return _ratio_or_one(2 * tp, 2 * tp + fp + fn)


def dice_per_region(prediction: ArrayLike, target: ArrayLike, *, per_sample: bool = False) -> torch.Tensor:
    """Dice of each region of a region prediction (one binary channel per region, overlaps allowed).

    Binarise a network's region logits first: ``logits > 0``, i.e. sigmoid > 0.5. A region
    absent from both prediction and target scores 1.0, as in :func:`dice_per_class`
    (MONAI's ``DiceMetric`` returns NaN there).

    Args:
        prediction: predicted regions (B, R, *S), bool or 0/1.
        target: true regions of the same shape (see ``unet_lessons.targets.labels_to_regions``).
        per_sample: one Dice per (sample, region), as MONAI's ``DiceMetric(reduction="none")``,
            instead of one per region over the whole batch pooled.

    Shape:
        (B, R, *S), (B, R, *S) -> (R,) float64, or (B, R) with ``per_sample``.
    """
    pred, truth = torch.as_tensor(prediction).detach().cpu(), torch.as_tensor(target).detach().cpu()
    if pred.shape != truth.shape or pred.dim() < 3:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(truth.shape)} must both be region maps "
                         "(B, R, *S) of one shape. For class maps use dice_per_class.")
    for tensor, name in ((pred, "prediction"), (truth, "target")):
        if tensor.dtype != torch.bool and bool(((tensor != 0) & (tensor != 1)).any()):
            raise ValueError(f"the {name} must be binary regions (0/1); binarise logits with `logits > 0` "
                             "(sigmoid > 0.5) first.")
    pred, truth = pred.bool(), truth.bool()
    dims = list(range(2, pred.dim())) if per_sample else [0, *range(2, pred.dim())]
    tp = (pred & truth).sum(dims)
    return _ratio_or_one(2 * tp, pred.sum(dims) + truth.sum(dims))


#: BraTS' HD95 when a region is in the prediction or the reference but not both: the diagonal of the
#: 240×240×155 mm BraTS volume, sqrt(240² + 240² + 155²) mm (as nnU-Net's BraTS evaluation uses it).
BRATS_EMPTY_HD95 = 373.12866


def hausdorff95_per_region(prediction: ArrayLike, target: ArrayLike, *,
                           spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """The 95 % Hausdorff distance in mm per (sample, region), scored the BraTS way.

    The distances come from MONAI's ``compute_hausdorff_distance(percentile=95)``. MONAI
    returns NaN (or inf) when either side is empty; BraTS scores 0 when the region is absent
    from both the prediction and the reference, and :data:`BRATS_EMPTY_HD95` when it is in
    only one of them. Those two cases are filled in here.

    Shape:
        (B, R, *S), (B, R, *S) binary -> (B, R) float64, in mm.
    """
    import warnings

    from monai.metrics import compute_hausdorff_distance

    pred, truth = torch.as_tensor(prediction).detach().cpu().bool(), torch.as_tensor(target).detach().cpu().bool()
    if pred.shape != truth.shape or pred.dim() < 3:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(truth.shape)} must both be region maps "
                         "(B, R, *S) of one shape.")
    with warnings.catch_warnings():  # MONAI warns once per empty region; the cases are handled below
        warnings.simplefilter("ignore")
        distance = compute_hausdorff_distance(pred.float(), truth.float(), include_background=True, percentile=95,
                                              spacing=list(spacing)).double()
    found, present = pred.flatten(2).any(2), truth.flatten(2).any(2)
    distance[~found & ~present] = 0.0
    distance[found ^ present] = BRATS_EMPTY_HD95
    return distance


def iou_per_class(prediction: ArrayLike, target: ArrayLike, num_classes: int) -> torch.Tensor:
    """IoU (Jaccard) ``TP / (TP + FP + FN)`` of each class, pooled; 1.0 for a class absent from both.

    Args:
        prediction: predicted class map (B, *S) or (*S).
        target: true class map of the same shape.
        num_classes: number of classes ``C``.

    Shape:
        (B, *S), (B, *S) -> (C,) float64.
    """
    tp, fp, fn, _ = confusion_counts(prediction, target, num_classes)
    return _ratio_or_one(tp, tp + fp + fn)


def pixel_error(prediction: ArrayLike, target: ArrayLike) -> float:
    """Fraction of pixels whose predicted class is wrong: ``1 - accuracy`` (ISBI 2012 "pixel error").

    Args:
        prediction: predicted class map (B, *S) or (*S).
        target: true class map of the same shape.
    """
    pred, truth = _check_pair(prediction, target)
    if truth.numel() == 0:
        raise ValueError("pixel_error of an empty array is undefined.")
    return float((pred != truth).double().mean())


def _batched(labels: torch.Tensor, spatial_dims: Optional[int]) -> np.ndarray:
    """Class map -> (B, *S) NumPy array, deciding which axes are spatial."""
    if spatial_dims is None:
        if labels.ndim not in (2, 3, 4):
            raise ValueError(f"cannot tell the spatial axes of shape {tuple(labels.shape)}; pass spatial_dims.")
        spatial_dims = 2 if labels.ndim in (2, 3) else 3
    if labels.ndim == spatial_dims:
        labels = labels[None]
    elif labels.ndim != spatial_dims + 1:
        raise ValueError(f"shape {tuple(labels.shape)} is neither (*S) nor (B, *S) with {spatial_dims} "
                         "spatial dims.")
    return labels.numpy()


def _inner_band(mask: np.ndarray, dilation: int, structure: np.ndarray) -> np.ndarray:
    """Mask pixels within ``dilation`` (chessboard distance) of the mask's contour."""
    # border_value=0 treats the image edge as contour, like the reference code's zero padding.
    eroded = ndimage.binary_erosion(mask, structure=structure, iterations=dilation, border_value=0)
    return mask & ~eroded


def boundary_iou(prediction: ArrayLike, target: ArrayLike, num_classes: int, dilation: int = 2, *,
                 spatial_dims: Optional[int] = None) -> torch.Tensor:
    """Boundary IoU of each class (Cheng et al. 2021), pooled over the batch.

    For each class the masks ``G`` (target) and ``P`` (prediction) are reduced to their
    inner contour bands ``G_d`` and ``P_d``: the mask pixels within ``dilation`` pixels of
    the mask's edge, i.e. the mask minus its erosion by a (2d+1)-wide square or cube, as
    the reference code does with a 3x3 kernel applied ``d`` times. The image edge counts
    as contour. The score is ``|G_d & P_d| / |G_d | P_d|``; intersections and unions are
    summed over the batch, and a class absent from both scores 1.0. Each image or volume
    is eroded on its own, never across the batch axis.

    Args:
        prediction: predicted class map (B, *S) or (*S), 2 or 3 spatial dims.
        target: true class map of the same shape.
        num_classes: number of classes ``C``.
        dilation: band width ``d`` in pixels (>= 1). The paper uses 2% of the image
            diagonal; a fixed width is easier to read on small crops.
        spatial_dims: 2 or 3. ``None`` reads (H, W) and (B, H, W) as 2D and (B, D, H, W)
            as 3D; pass 3 for a single volume (D, H, W).

    Shape:
        (B, *S), (B, *S) -> (C,) float64.
    """
    if int(dilation) != dilation or dilation < 1:
        raise ValueError(f"dilation must be a whole number of pixels >= 1; got {dilation!r}.")
    pred, truth = _check_pair(prediction, target, num_classes)
    pred_np, truth_np = _batched(pred, spatial_dims), _batched(truth, spatial_dims)
    structure = ndimage.generate_binary_structure(pred_np.ndim - 1, pred_np.ndim - 1)  # full 3x3(x3)
    intersection = torch.zeros(num_classes, dtype=torch.int64)
    union = torch.zeros(num_classes, dtype=torch.int64)
    for pred_one, truth_one in zip(pred_np, truth_np):
        for c in range(num_classes):
            band_p = _inner_band(pred_one == c, int(dilation), structure)
            band_t = _inner_band(truth_one == c, int(dilation), structure)
            intersection[c] += int(np.count_nonzero(band_p & band_t))
            union[c] += int(np.count_nonzero(band_p | band_t))
    return _ratio_or_one(intersection, union)


def segmentation_report(prediction: ArrayLike, target: ArrayLike, class_names: Sequence[str], *,
                        boundary_dilation: Optional[int] = None) -> dict[str, float]:
    """Per-class Dice and IoU plus the pixel error, as one flat dict for printing or logging.

    Args:
        prediction: predicted class map (B, *S) or (*S).
        target: true class map of the same shape.
        class_names: one name per class, in label order, e.g. ``("membrane", "cell")``.
        boundary_dilation: if given, also report ``"{name} boundary IoU"`` with this band width.

    Returns:
        ``{"membrane Dice": ..., "membrane IoU": ..., "cell Dice": ..., "cell IoU": ...,
        "pixel error": ...}`` (all Python floats).
    """
    names = list(class_names)
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"class_names must be non-empty and distinct; got {names}.")
    num_classes = len(names)
    dice = dice_per_class(prediction, target, num_classes)
    iou = iou_per_class(prediction, target, num_classes)
    boundary = (boundary_iou(prediction, target, num_classes, boundary_dilation)
                if boundary_dilation is not None else None)
    report: dict[str, float] = {}
    for c, name in enumerate(names):
        report[f"{name} Dice"] = float(dice[c])
        report[f"{name} IoU"] = float(iou[c])
        if boundary is not None:
            report[f"{name} boundary IoU"] = float(boundary[c])
    report["pixel error"] = pixel_error(prediction, target)
    return report


def best_intensity_dice(image: ArrayLike, target: ArrayLike, *, bins: int = 40) -> float:
    """The best Dice that any intensity interval ``lo <= image < hi`` reaches for a binary ``target``.

    A baseline that a segmentation task must beat to be worth a network: if one interval of
    grey values already scored well, a threshold would do. The interval ends are searched
    over ``bins + 1`` quantiles of the image.

    Args:
        image: intensities, any shape.
        target: boolean (or 0/1) mask of the same shape.
        bins: number of quantile steps searched.
    """
    values = np.asarray(image, dtype=np.float64).ravel()
    mask = np.asarray(target).astype(bool).ravel()
    if values.shape != mask.shape:
        raise ValueError(f"image and target must have the same number of elements; got {values.size} and {mask.size}.")
    if not mask.any():
        raise ValueError("target is empty; the baseline is defined for a class that is present.")
    order = np.argsort(values, kind="stable")
    positives = np.concatenate([[0], np.cumsum(mask[order])])  # positives among the k smallest values
    cuts = np.searchsorted(values[order], np.quantile(values, np.linspace(0, 1, bins + 1)), side="left")
    cuts = np.unique(np.append(cuts, values.size))
    inside = positives[cuts][None, :] - positives[cuts][:, None]  # (lo, hi): positives in [lo, hi)
    chosen = cuts[None, :] - cuts[:, None]
    dice = np.where(chosen > 0, 2 * inside / np.maximum(chosen + mask.sum(), 1), 0.0)
    return float(dice.max())
