"""What a segmentation target may hold, checked in one place for the losses, the metrics and ``fit``.

Two kinds of target:

* **Class labels** (B, *S): one integer class index per voxel, ``0 .. K-1`` for a network
  with ``K`` output channels (a softmax over disjoint classes). A value such as ``-1`` may
  mark unlabelled voxels when the loss is told so (``ignore_index``, sparse annotation in
  lesson 03). The two mistakes that reach a loss most often are a binary mask stored as
  0/255 (an image file's values) and a label map with more classes than channels.
* **Region targets** (B, R, *S): one binary channel per region, regions that may overlap,
  predicted with one sigmoid per channel. BraTS evaluates three nested regions, whole
  tumour ⊃ tumour core ⊃ enhancing tumour, and the best BraTS networks predict them
  directly (Isensee et al., "No New-Net", 2018; Myronenko 2018). A region is a set of
  classes: :func:`labels_to_regions` and :func:`regions_to_labels` convert both ways.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["check_class_labels", "BRATS_REGION_CLASSES", "labels_to_regions", "regions_to_labels",
           "check_region_target", "remove_small_region"]

#: The classes of each BraTS region, for our labels 0 background, 1 necrotic core, 2 edema,
#: 3 enhancing tumour: whole tumour {1, 2, 3} ⊃ tumour core {1, 3} ⊃ enhancing tumour {3}.
BRATS_REGION_CLASSES: tuple[tuple[int, ...], ...] = ((1, 2, 3), (1, 3), (3,))


def _voxels(count: int) -> str:
    return f"{count} voxel{'s' * (count != 1)}"


def _shown(values: torch.Tensor, limit: int = 8) -> str:
    shown = values[:limit].tolist()
    return f"{shown}{' ...' if values.numel() > limit else ''}"


def check_class_labels(labels: torch.Tensor, num_classes: int, *, name: str = "target",
                       ignore_index: Optional[int] = None) -> None:
    """Raise a ``ValueError`` naming the offending values and the fix if a label is no class of ``num_classes``.

    Args:
        labels: integer class indices of any shape.
        num_classes: the network's output channels ``K``; labels must lie in ``0 .. K-1``.
        name: what the labels are called in the message (``"target"``, ``"prediction"``).
        ignore_index: a value that marks unlabelled voxels and is allowed anywhere.
    """
    outside = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        outside &= labels != ignore_index
    if not bool(outside.any()):
        return
    bad = torch.unique(labels[outside])
    message = f"{name} holds labels {_shown(bad)} outside [0, {num_classes - 1}] (num_classes={num_classes})."
    if bool((bad == 255).any()):
        message += (" A binary mask saved as 0/255 must be mapped to 0/1 first, e.g. "
                    "`target = (target > 0).long()`.")
    too_high = bad[bad >= num_classes]
    if too_high.numel() and bool((bad == 255).any()):
        message += (f" Otherwise map the labels to 0..{num_classes - 1} or give the network "
                    f"{int(too_high.max()) + 1} output channels.")
    elif too_high.numel():
        message += (f" Map the labels to 0..{num_classes - 1}, or build the model with "
                    f"out_channels={int(too_high.max()) + 1}.")
    negative = bad[bad < 0]
    if negative.numel():
        value = int(negative[0])
        message += (f" Negative values are no class: if {value} marks unlabelled voxels, tell the loss "
                    f"(e.g. `DiceCELoss(ignore_index={value})`)"
                    + ("" if ignore_index is None else f" instead of ignore_index={ignore_index}")
                    + f"; otherwise map the labels to 0..{num_classes - 1}.")
    raise ValueError(message)


def labels_to_regions(labels: torch.Tensor, region_classes: Sequence[Sequence[int]] = BRATS_REGION_CLASSES
                      ) -> torch.Tensor:
    """Class labels -> one binary channel per region (the voxels whose class is in the region).

    Args:
        labels: class indices (B, *S).
        region_classes: the classes of each region, e.g. :data:`BRATS_REGION_CLASSES`.

    Shape:
        (B, *S) int -> (B, R, *S) float32.
    """
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices (B, *S); got {labels.dtype}. A one-hot or region "
                         "target is already one channel per class or region.")
    classes = [torch.as_tensor(list(members), device=labels.device) for members in region_classes]
    return torch.stack([torch.isin(labels, members) for members in classes], dim=1).float()  # (B, R, *S)


def regions_to_labels(regions: torch.Tensor, region_classes: Sequence[Sequence[int]] = BRATS_REGION_CLASSES
                      ) -> torch.Tensor:
    """Binary regions -> class labels: each voxel gets the class whose region memberships it shows.

    The inverse of :func:`labels_to_regions` wherever the regions are consistent (for
    BraTS: nested). A pattern that no class has (an enhancing voxel outside the tumour
    core) is refused, since no class label can stand for it.

    Shape:
        (B, R, *S) binary -> (B, *S) int64.
    """
    check_region_target(regions, num_regions=len(region_classes))
    num_classes = max(max(members) for members in region_classes) + 1
    member = torch.tensor([[c in members for members in region_classes] for c in range(num_classes)])  # (K, R)
    # Each voxel's memberships as a bit code, and each class's: matching codes give the class.
    weights = 2 ** torch.arange(len(region_classes), device=regions.device)  # (R,)
    voxel_code = (regions.movedim(1, -1).long() * weights).sum(-1)  # (B, *S)
    class_code = (member.long().to(regions.device) * weights).sum(-1)  # (K,)
    lookup = torch.full((int(weights.sum()) + 1,), -1, dtype=torch.long, device=regions.device)
    lookup[class_code.flip(0)] = torch.arange(num_classes - 1, -1, -1, device=regions.device)  # lowest class wins
    labels = lookup[voxel_code]
    if bool((labels < 0).any()):
        raise ValueError(f"{_voxels(int((labels < 0).sum()))} show a combination of regions that no class has; the regions do not "
                         f"fit region_classes={tuple(tuple(m) for m in region_classes)}.")
    return labels


def check_region_target(target: torch.Tensor, *, num_regions: Optional[int] = None, nested: bool = False,
                        names: Optional[Sequence[str]] = None) -> None:
    """Raise a ``ValueError`` unless ``target`` is a binary region target (B, R, *S), nested if asked.

    Args:
        target: the target, bool or 0/1 values of any dtype.
        num_regions: the number of regions ``R`` the network predicts, if known.
        nested: each region must lie inside the one before it (BraTS: WT ⊃ TC ⊃ ET).
        names: region names for the message (default ``region 0``, ``region 1``, …).
    """
    if target.dim() < 3:
        raise ValueError(f"a region target has shape (B, R, *S), one binary channel per region; got shape "
                         f"{tuple(target.shape)}. Class labels (B, *S) become regions with labels_to_regions.")
    if num_regions is not None and target.shape[1] != num_regions:
        raise ValueError(f"the region target has {target.shape[1]} channels (axis 1) but the network predicts "
                         f"{num_regions} regions; give one binary channel per region, channels-first.")
    if target.dtype != torch.bool:
        off = (target != 0) & (target != 1)
        if bool(off.any()):
            example = float(target[off][0])
            raise ValueError(f"a region target must be binary (0 or 1), but {int(off.sum())} of its {target.numel()} "
                             f"values are not (e.g. {example:g}): probabilities or soft labels? Threshold them "
                             "(e.g. `target > 0.5`) or build the target with labels_to_regions.")
    if nested:
        names = list(names) if names is not None else [f"region {r}" for r in range(target.shape[1])]
        inside = target.bool()
        for outer in range(target.shape[1] - 1):
            outside = inside[:, outer + 1] & ~inside[:, outer]
            if bool(outside.any()):
                first = tuple(int(i) for i in torch.nonzero(outside)[0])
                count = int(outside.sum())
                raise ValueError(
                    f"the regions are not nested: {_voxels(count)} of '{names[outer + 1]}' "
                    f"{'lies' if count == 1 else 'lie'} outside "
                    f"'{names[outer]}' (the first at (batch, *spatial) = {first}). Each region must lie inside the "
                    "one before it; build the target from disjoint labels with labels_to_regions, which nests it.")


def remove_small_region(regions: torch.Tensor, channel: int, min_voxels: int) -> torch.Tensor:
    """Empty region ``channel`` of every sample in which it holds fewer than ``min_voxels`` voxels.

    The post-processing of small enhancing tumours in the nnU-Net team's BraTS code (``nnunet/
    dataset_conversion/Task082_BraTS_2020.py``; No New-Net's abstract names "a simple
    postprocessing technique"): BraTS scores a tumour without enhancing rim as a perfect
    enhancing Dice of 1 when none is predicted and 0 when any voxel is, so a small predicted
    enhancing tumour is replaced by non-enhancing core. With nested regions that is emptying
    the enhancing channel: its voxels stay in the tumour core. The threshold is chosen on the
    training cases.

    Shape:
        (B, R, *S) binary -> (B, R, *S), a copy.
    """
    if regions.dim() < 3 or not 0 <= channel < regions.shape[1]:
        raise ValueError(f"regions must be (B, R, *S) with a channel {channel}; got shape {tuple(regions.shape)}.")
    if min_voxels < 0:
        raise ValueError(f"min_voxels must be >= 0; got {min_voxels}.")
    out = regions.clone()
    small = out[:, channel].flatten(1).sum(1) < min_voxels  # (B,)
    out[small, channel] = 0
    return out
