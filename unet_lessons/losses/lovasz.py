"""3D U²-Net's loss: the Lovász-Softmax loss plus the focal loss, summed.

The authors' training step (github.com/huangmozhilv/u2net_torch, ``u2net_torch_src/train.py:317``)::

    loss = lovasz_softmax(output_softmax, batchLabel, ignore=10) + focal_loss(output, batchLabel)

with ``focal_loss = FocalLoss(gamma=2)`` (``train.py:221``).

* **Lovász-Softmax** (Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: a tractable
  surrogate for the optimization of the intersection-over-union measure in neural networks",
  CVPR 2018; the authors copied Berman's code into ``loss/lovasz_loss.py``): for each class
  ``c``, the errors ``|fg_c - p_c|`` of all voxels of the batch, sorted from the largest, are
  weighted by the steps of the Jaccard loss along that order (``lovasz_grad``), which makes the
  sum the Lovász extension of the Jaccard loss ``1 - IoU_c``; the loss is the mean over every
  class, absent ones included (``only_present=False``, ``per_image=False``: one sort over the
  whole batch). On one-hot probabilities it equals ``1 - IoU_c`` exactly, the property the tests use.
* **Focal loss** (Lin et al., ICCV 2017) with ``gamma = 2`` and no ``alpha``:
  ``-(1 - p_t)**2 * log p_t`` averaged over voxels (``loss/focal_loss.py:38-56``); it is MONAI's
  ``FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2)`` times the number of classes (MONAI
  averages over the classes too).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dice import _check_prediction

__all__ = ["lovasz_grad", "lovasz_softmax", "focal_loss", "LovaszFocalLoss"]


def lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """The steps of the Jaccard loss as the voxels of ``fg_sorted`` (0/1, sorted by error) join the prediction.

    Entry ``i`` is ``J(i + 1) - J(i)``, where ``J(i)`` is the Jaccard loss when the ``i`` voxels
    with the largest errors are mispredicted (Berman et al. 2018, Alg. 1).
    """
    total = fg_sorted.sum()
    intersection = total - fg_sorted.cumsum(0)
    union = total + (1 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(fg_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The Lovász-Softmax loss of class probabilities (B, C, *S) against class indices (B, *S): mean over classes."""
    classes = probabilities.shape[1]
    flat = probabilities.movedim(1, -1).reshape(-1, classes)
    labels = target.reshape(-1)
    losses = []
    for c in range(classes):
        fg = (labels == c).to(flat.dtype)
        errors = (fg - flat[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    return torch.stack(losses).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """``-(1 - p_t)**gamma * log p_t``, averaged over the voxels (``p_t``: the softmax probability of the true class)."""
    log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    return (-(1 - log_pt.exp().detach()) ** gamma * log_pt).mean()  # the authors' code detaches p_t in the weight


class LovaszFocalLoss(nn.Module):
    """3D U²-Net's training loss on logits: Lovász-Softmax of their softmax plus the focal loss (gamma 2), 1:1.

    Shape:
        input (B, C, *S) logits, target (B, *S) or (B, 1, *S) int -> scalar.
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = _check_prediction(input, target, softmax=True, loss=type(self).__name__)
        return lovasz_softmax(F.softmax(input, dim=1), labels) + focal_loss(input, labels, self.gamma)
