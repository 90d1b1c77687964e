"""Sparse annotation: keep a few labelled slices per volume, as in the 3D U-Net paper.

Çiçek et al. 2016 (Sections 1 and 2.3) train on volumes where only some orthogonal slices
are annotated; the softmax loss gives unlabelled voxels weight 0, so the network learns
dense 3D segmentation from sparse 2D labels. Here unlabelled voxels get ``ignore_index``
(-1), which ``torch.nn.CrossEntropyLoss(ignore_index=-1)`` skips exactly as a 0 weight does.
Built in ``notebooks/03_unet3d.ipynb``.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

__all__ = ["IGNORE_INDEX", "sparsify_labels"]

#: Label value of an unannotated voxel.
IGNORE_INDEX = -1


def sparsify_labels(label: Union[np.ndarray, torch.Tensor], slices_per_axis: Union[int, Sequence[int]], *,
                    seed: int = 0, ignore_index: int = IGNORE_INDEX) -> Union[np.ndarray, torch.Tensor]:
    """Keep ``slices_per_axis`` evenly spread, randomly jittered slices along each axis of a 3D label map.

    Args:
        label: (D, H, W) or (N, D, H, W) class indices.
        slices_per_axis: annotated slices per axis, one int for all three axes or one per
            axis (D, H, W); 0 annotates none along that axis.
        seed: seeds the jitter of the slice positions (per volume: ``seed + n``).
        ignore_index: value written to unannotated voxels.

    Returns:
        The same type and shape, with every voxel outside the kept slices set to ``ignore_index``.
    """
    is_tensor = isinstance(label, torch.Tensor)
    array = label.cpu().numpy() if is_tensor else np.asarray(label)
    if array.ndim not in (3, 4) or np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"label must be an integer (D, H, W) or (N, D, H, W) class map; got shape "
                         f"{array.shape} and dtype {array.dtype}.")
    counts = [int(slices_per_axis)] * 3 if np.isscalar(slices_per_axis) else [int(c) for c in slices_per_axis]
    volumes = array[None] if array.ndim == 3 else array
    if len(counts) != 3 or any(c < 0 or c > n for c, n in zip(counts, volumes.shape[1:])):
        raise ValueError(f"slices_per_axis must be 3 counts between 0 and the axis lengths {volumes.shape[1:]}; "
                         f"got {slices_per_axis!r}.")
    out = np.full_like(volumes, ignore_index)
    for n, volume in enumerate(volumes):
        rng = np.random.default_rng(seed + n)
        for axis, count in enumerate(counts):
            if count == 0:
                continue
            length = volume.shape[axis]
            # Evenly spaced positions, each jittered within its own stretch of the axis.
            edges = np.linspace(0, length, count + 1)
            picks = [int(rng.integers(int(lo), max(int(lo) + 1, int(hi)))) for lo, hi in zip(edges[:-1], edges[1:])]
            index = [slice(None)] * 3
            index[axis] = picks
            out[n][tuple(index)] = volume[tuple(index)]
    out = out[0] if array.ndim == 3 else out
    return torch.from_numpy(out).to(label.device) if is_tensor else out
