"""Deep supervision: one loss per decoder head, averaged (Zhou et al., "UNet++", 2018, Section 2).

A deep-supervised network returns the list of its heads' logits in training (the model
contract's list output, ``unet_lessons.models.base``); the loss of each head is averaged.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn as nn

__all__ = ["deep_supervision_loss", "DeepSupervisionLoss"]


def deep_supervision_loss(outputs: Union[torch.Tensor, Sequence[torch.Tensor]], target: torch.Tensor,
                          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The loss averaged over the heads (Zhou et al. 2018, Section 2); one tensor passes straight through."""
    if isinstance(outputs, torch.Tensor):
        return loss_fn(outputs, target)
    if len(outputs) == 0:
        raise ValueError("no head outputs to supervise; build the model with deep_supervision=True.")
    return sum(loss_fn(output, target) for output in outputs) / len(outputs)


class DeepSupervisionLoss(nn.Module):
    """``loss_fn`` averaged over the heads, as a module that ``fit`` can take like any loss.

    Args:
        loss_fn: the loss of one head, ``loss_fn(logits, target)``; its ``ignore_index``
            (sparse labels) is passed on.
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.ignore_index = getattr(loss_fn, "ignore_index", None)

    def forward(self, outputs: Union[torch.Tensor, Sequence[torch.Tensor]], target: torch.Tensor) -> torch.Tensor:
        return deep_supervision_loss(outputs, target, self.loss_fn)
