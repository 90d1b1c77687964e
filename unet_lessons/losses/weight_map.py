"""Voxel-weighted cross-entropy and two weight maps for it.

* The pixel-wise weighted cross-entropy of Ronneberger et al., "U-Net", MICCAI 2015 (Section 3,
  eq. 1 and 2), which pushes the network to keep a thin membrane between touching cells:
  :func:`unet_weight_map` and :func:`weighted_cross_entropy`.
* The per-sample inverse-frequency weights of the official V-Net code (Milletari et al. 2016,
  github.com/faustomilletari/VNet, ``VNet.py``, ``prepareDataThread``), its "sample
  re-weighting": :func:`inverse_frequency_weight_map` and :class:`SampleBalancedCrossEntropy`.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from .dice import _check_prediction

__all__ = ["cell_distances", "separation_band", "unet_weight_map", "weighted_cross_entropy", "WeightedCrossEntropy",
           "inverse_frequency_weight_map", "SampleBalancedCrossEntropy"]

# unet_weight_map ignores cells farther than this many sigmas; see its docstring.
_CUTOFF_SIGMAS = 6.0


def unet_weight_map(label: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0,
                    class_weights: Union[str, Sequence[float], None] = "balanced") -> np.ndarray:
    """The border weight map of Ronneberger et al. 2015, eq. 2, for a 2D cell/membrane label map.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))``, where ``d1`` and
    ``d2`` are the distances from pixel ``x`` to the nearest and the second-nearest cell.
    Cells are the 4-connected components of class 1 (``scipy.ndimage.label``). Choices:

    * The border term is added on background (membrane, class 0) pixels only, as in the
      paper, where it marks the "separation border" between touching cells; a pixel
      inside a cell gets just ``w_c``.
    * Distances are Euclidean, pixel centre to the nearest pixel of the cell
      (``distance_transform_edt``), so a pixel touching a cell is at distance 1 and any
      pixel in a straight gap ``g`` pixels wide has ``d1 + d2 = g + 1``.
    * With fewer than two cells there is nothing to separate: the border term is 0.
    * Speed: each cell's distance map is computed only in its bounding box grown by
      ``6 * sigma`` pixels, and is exact there. A pixel outside every box but one has
      ``d2 > 6 sigma``, so the term dropped is below ``w0 * exp(-18)`` (1.5e-7 w0).
      A 512x512 slice with 150 cells takes well under a second.

    Args:
        label: 2D integer map, 1 = cell interior, 0 = membrane/background (bool allowed).
        w0: height of the border term (10 in the paper).
        sigma: width of the border term in pixels (5 in the paper).
        class_weights: ``w_c``. ``"balanced"`` gives class ``k`` the weight
            ``N / (K * n_k)`` (``N`` pixels, ``n_k`` of class ``k``, ``K`` classes present),
            so both classes carry equal total weight; a pair ``(w_membrane, w_cell)`` sets it
            by hand; ``None`` means 1 everywhere.

    Shape:
        (H, W) -> (H, W) float32.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be a 2D map (H, W); got shape {label.shape}. Call it per slice.")
    values = np.unique(label)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"label must hold 0 (membrane) and 1 (cell) only; found {values[:8].tolist()}. "
                         "Map a 0/255 mask with `(label > 0).astype(int)`.")
    if sigma <= 0 or w0 < 0:
        raise ValueError(f"need sigma > 0 and w0 >= 0; got sigma={sigma}, w0={w0}.")
    cells = label == 1

    if class_weights is None:
        class_w = np.ones(2)
    elif isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be 'balanced', a pair of weights or None; got {class_weights!r}.")
        counts = np.array([(~cells).sum(), cells.sum()], dtype=np.float64)
        present = counts > 0
        class_w = np.where(present, label.size / (present.sum() * np.maximum(counts, 1)), 0.0)
    else:
        class_w = np.asarray(class_weights, dtype=np.float64)
        if class_w.shape != (2,):
            raise ValueError(f"class_weights must be a pair (w_membrane, w_cell); got {class_weights!r}.")
    weight = np.where(cells, class_w[1], class_w[0])

    if w0 == 0:
        return weight.astype(np.float32)
    d1, d2 = cell_distances(label, reach=_CUTOFF_SIGMAS * sigma)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))  # exp(-inf) = 0 where d2 is unknown
    weight = weight + np.where(cells, 0.0, border)
    return weight.astype(np.float32)


def cell_distances(label: np.ndarray, *, reach: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """``d1`` and ``d2`` of the U-Net paper's eq. 2: each pixel's distance to the nearest and the second-nearest cell.

    Ronneberger et al. 2015, Section 3: "d1 : Ω → R denotes the distance to the border of the
    nearest cell and d2 : Ω → R the distance to the border of the second nearest cell". Cells are
    the 4-connected components of class 1; a distance is Euclidean, from the pixel's centre to the
    nearest pixel of the cell, so it is 0 inside a cell (for a cell pixel, ``d1 = 0`` and ``d2`` is
    the distance to the nearest *other* cell) and 1 for a membrane pixel touching one.

    Args:
        label: 2D map, 1 = cell, 0 = membrane.
        reach: each cell's distances are computed only within ``reach`` pixels of its bounding box,
            exactly there; farther, a distance stays ``inf`` (a pixel with no second cell within
            reach has ``d2 = inf``). :func:`unet_weight_map` uses ``6 sigma``.

    Returns:
        ``(d1, d2)``, float64 maps of the label's shape, ``d1 <= d2``.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be a 2D map (H, W); got shape {label.shape}. Call it per slice.")
    components, _ = ndimage.label(label == 1)
    d1 = np.full(label.shape, np.inf)
    d2 = np.full(label.shape, np.inf)
    margin = int(math.ceil(reach))
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        grown = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, label.shape))
        # The whole cell lies inside its box, so this distance is exact wherever it is computed.
        distance = ndimage.distance_transform_edt(components[grown] != index)
        near1, near2 = d1[grown], d2[grown]  # views: updated in place; keep the two smallest seen so far
        np.minimum(near2, np.maximum(near1, distance), out=near2)
        np.minimum(near1, distance, out=near1)
    return d1, d2


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                           weight_map: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
    """Pixel-wise cross-entropy times a weight map, averaged over pixels (U-Net eq. 1).

    The mean is over all pixels, ``mean(w * ce)``, not ``sum(w * ce) / sum(w)``: the
    paper's energy is the weighted sum, and dividing by the pixel count only rescales it.

    Args:
        logits: network output (B, C, *S).
        target: class indices (B, *S) or (B, 1, *S).
        weight_map: non-negative weights (B, *S), (B, 1, *S) or (*S) for one map shared by
            the batch, e.g. from :func:`unet_weight_map`; a NumPy array is converted.

    Shape:
        logits (B, C, *S), target (B, *S), weight_map (B, *S) -> scalar.
    """
    labels = _check_prediction(logits, target, softmax=True, loss="weighted_cross_entropy")  # (B, *S)
    weights = torch.as_tensor(weight_map, dtype=logits.dtype, device=logits.device)
    if weights.ndim == labels.ndim + 1 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape not in (labels.shape, labels.shape[1:]):
        raise ValueError(f"weight_map of shape {tuple(weights.shape)} fits neither the target (B, *S) = "
                         f"{tuple(labels.shape)} nor one image {tuple(labels.shape[1:])}; crop it like the target.")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weight_map must be finite and non-negative.")
    per_pixel = F.cross_entropy(logits, labels, reduction="none")  # (B, *S)
    return (per_pixel * weights).mean()


def separation_band(label: np.ndarray, *, max_gap: float = 5.0, width: int = 1) -> np.ndarray:
    """The pixels where the weight map should matter most: at the thinnest membranes between two cells.

    The separation border is every membrane pixel whose nearest and second-nearest cells are
    close, ``d1 + d2 <= max_gap`` (:func:`cell_distances`). There eq. 2's border term is largest:
    with the paper's ``sigma = 5`` and ``max_gap = 5`` it is at least ``w0 * exp(-1/2)`` (6.1 for
    ``w0 = 10``). On ISBI 2012 slice 0 the median membrane pixel has ``d1 + d2 = 6.2``, and
    ``max_gap = 5`` keeps the thinnest tenth to quarter of the membrane. The band is that border
    grown by ``width`` pixels in every direction (a (2 width + 1)-wide square), so that it holds
    the cell pixels on both sides too: a prediction that loses the membrane there, merging the
    two cells, is wrong inside the band.

    Args:
        label: 2D map, 1 = cell, 0 = membrane.
        max_gap: the largest ``d1 + d2`` of a separation-border pixel (a straight gap ``g`` pixels
            wide has ``d1 + d2 = g + 1``).
        width: how far the band reaches beyond the border, pixels.

    Returns:
        bool (H, W).
    """
    d1, d2 = cell_distances(label, reach=max_gap)
    border = (np.asarray(label) == 0) & (d1 + d2 <= max_gap)
    if width <= 0:
        return border
    return ndimage.binary_dilation(border, structure=np.ones((3, 3), bool), iterations=int(width))


class WeightedCrossEntropy(nn.Module):
    """The U-Net paper's loss (eq. 1): softmax cross-entropy, each pixel times its weight from the batch.

    The weight map travels with the batch (``PatchSampler(weights=...)`` yields ``{"image", "label",
    "weight"}``), and :func:`~unet_lessons.train.fit` hands ``weight`` to this loss. With a map of
    ones it is the plain cross-entropy.

    Shape:
        input (B, C, *S) logits, target (B, *S), weight (B, *S) -> scalar.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weighted_cross_entropy(input, target, weight)


def inverse_frequency_weight_map(target: torch.Tensor) -> torch.Tensor:
    """Each voxel's weight N / n_label, counted in its own sample, as the official V-Net code weights.

    For every sample of the batch, a voxel of label ``l`` gets ``N / n_l``: ``N`` voxels in the
    sample, ``n_l`` of them labelled ``l`` (``VNet.py``, ``prepareDataThread``, computed after each
    sample's deformation). Averaged over the sample's voxels, the weighted cross-entropy is then
    the sum, over the labels present, of each label's mean cross-entropy: every label present
    weighs the same, however few voxels it has.

    * A label absent from a sample adds nothing (it has no voxel to weigh): a patch with no
      organ is weighted 1 everywhere, its loss the plain cross-entropy of the background.
    * A label with a single voxel gives that voxel weight ``N``: the sum of the weights is
      still ``N`` per label present, but that one voxel's cross-entropy stands for the whole
      label, so nearly empty patches make the noisiest steps. The official code keeps them too.

    Args:
        target: class indices (B, *S) or (B, 1, *S), integer.

    Returns:
        float32 weights (B, *S).
    """
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices; got dtype {target.dtype}.")
    if target.ndim < 2:
        raise ValueError(f"target must be (B, *S) with at least one spatial axis; got shape {tuple(target.shape)}.")
    labels = target.long().flatten(1)  # (B, N)
    counts = torch.zeros(labels.shape[0], int(labels.max()) + 1, device=labels.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=counts.dtype))  # voxels of each label, per sample
    weights = labels.shape[1] / counts.gather(1, labels)  # every gathered count is at least 1: the voxel itself
    return weights.view(target.shape).float()


class SampleBalancedCrossEntropy(nn.Module):
    """Cross-entropy with the per-sample inverse-frequency weights of :func:`inverse_frequency_weight_map`.

    The V-Net paper's baseline, "a multinomial logistic loss with sample re-weighting" (Section 3),
    as its official code builds the weights. How the code's Caffe layer normalised the weighted
    sum is not in its repository; we average over voxels, as :func:`weighted_cross_entropy` does.

    Shape:
        input (B, C, *S) logits, target (B, *S) or (B, 1, *S) class indices -> scalar.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = _check_prediction(input, target, softmax=True, loss="SampleBalancedCrossEntropy")  # (B, *S)
        return weighted_cross_entropy(input, labels, inverse_frequency_weight_map(labels))
