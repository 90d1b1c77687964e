"""What a segmentation target may hold, checked in one place for the losses, the metrics and ``fit``.

Class-label targets hold one integer class index per voxel, ``0 .. K-1`` for a network
with ``K`` output channels; a value such as ``-1`` may mark unlabelled voxels when the
loss is told so (``ignore_index``, sparse annotation in lesson 03). The two mistakes
that reach a loss most often are a binary mask stored as 0/255 (an image file's values)
and a label map with more classes than the network has channels.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["check_class_labels"]


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
