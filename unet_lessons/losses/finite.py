"""The check every loss makes first: logits with NaN or inf give a NaN loss, so say so, and what to do.

One ``torch.isfinite`` pass over the logits; nothing on the ``meta`` device, which holds no
values. Outside training it raises; in a training step (autograd recording through the logits)
it warns and lets the loss return NaN, so that ``train.fit`` can stop with its own diagnosis.
"""

from __future__ import annotations

import torch

from ..utils import package_warning

__all__ = ["NonFiniteLogitsWarning", "check_finite_logits"]


class NonFiniteLogitsWarning(RuntimeWarning):
    """A loss met NaN or inf logits in a training step (see :func:`check_finite_logits`)."""


def check_finite_logits(input: torch.Tensor, loss: str, *, what: str = "logits", always_raise: bool = False) -> None:
    """Say that ``input`` holds NaN or inf, naming ``loss``, how many values, and the fix.

    Raises a ``ValueError``; but while autograd records through ``input`` (a training step) it warns
    instead, unless ``always_raise``, and the loss goes on to return NaN: ``train.fit`` then stops with
    a ``NonFiniteLossError`` that also says whether the inputs or the weights went bad, which the
    loss cannot see. One ``isfinite`` pass; nothing on the ``meta`` device, which holds no values.

    Args:
        input: the logits (or probabilities) the loss was given, any shape.
        loss: the loss's name, e.g. ``"DiceCELoss"``, which starts the message.
        what: what ``input`` holds, for the message: ``"logits"`` or ``"probabilities"``.
        always_raise: raise even in a training step.
    """
    if input.device.type == "meta":
        return
    finite = torch.isfinite(input)
    if bool(finite.all()):
        return
    bad, nan = int((~finite).sum()), int(torch.isnan(input).sum())
    message = (f"{loss}: the {what} hold {bad} NaN or inf values of {input.numel()} ({nan} NaN, {bad - nan} inf), "
               "so the loss would be NaN. Usually the model diverged: lower the learning rate (or set grad_clip) "
               "and check that the inputs are finite (torch.isfinite(x).all()). To score these values anyway, "
               "clean them first, e.g. torch.nan_to_num(logits).")
    if not always_raise and torch.is_grad_enabled() and input.requires_grad:
        package_warning(message, NonFiniteLogitsWarning, source="unet_lessons.losses")
        return
    raise ValueError(message)
