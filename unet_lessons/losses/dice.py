"""Soft Dice and Dice + cross-entropy on class labels (softmax over disjoint classes).

* :class:`SoftDiceLoss`: the soft Dice loss of Milletari et al., "V-Net", 3DV 2016,
  written out by hand and checked against ``monai.losses.DiceLoss(to_onehot_y=True)``;
  :func:`vnet_dice_gradient` is the paper's closed-form gradient (eq. 2).
* :class:`DiceCELoss`: Dice + cross-entropy, the default of nnU-Net (Isensee et al.,
  Nature Methods 2021); equal to ``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)``.

Conventions: networks output logits ``(B, C, *S)``; targets are int64 class indices
``(B, *S)`` or ``(B, 1, *S)``; the same code serves 2D and 3D.
"""


from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..targets import check_class_labels
from .finite import check_finite_logits

__all__ = ["one_hot", "SoftDiceLoss", "vnet_dice_gradient", "DiceCELoss", "soft_dice_terms"]

WeightLike = Union[Sequence[float], torch.Tensor, None]

# Tolerances for "is this a probability map?" when softmax=False.
_PROB_RANGE_TOL = 1e-4
_PROB_SUM_TOL = 1e-3


def _as_class_indices(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Check that ``target`` holds integer labels in [0, num_classes - 1]; return it as int64."""
    if target.dtype == torch.bool:
        target = target.long()
    elif target.is_floating_point():
        if not torch.equal(target, target.round()):
            raise ValueError(
                "target must hold class indices, but it has fractional values. A one-hot or soft target "
                "is not accepted here; pass integer labels, e.g. `target.argmax(1)` for a one-hot target."
            )
        target = target.long()
    elif target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"target must be an integer tensor of class indices; got dtype {target.dtype}.")
    check_class_labels(target, num_classes)
    return target.long()


def _squeeze_channel(target: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """(B, *S) or (B, 1, *S) -> (B, *S), for targets with ``spatial_dims`` spatial axes."""
    if target.ndim == spatial_dims + 1:
        return target
    if target.ndim == spatial_dims + 2:
        if target.shape[1] == 1:
            return target[:, 0]
        raise ValueError(
            f"target of shape {tuple(target.shape)} has {target.shape[1]} channels; it looks one-hot. "
            "Pass class indices (B, *S) or (B, 1, *S) instead, e.g. `target.argmax(1)`."
        )
    raise ValueError(
        f"target of shape {tuple(target.shape)} does not fit {spatial_dims} spatial dims: "
        f"expected (B, *S) or (B, 1, *S) with len(S) = {spatial_dims}."
    )


def one_hot(target: torch.Tensor, num_classes: int, *, spatial_dims: Optional[int] = None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Class indices -> one channel per class, holding 1 where the pixel has that class.

    Args:
        target: integer class indices, ``(B, *S)`` or ``(B, 1, *S)``.
        num_classes: number of classes ``C``; labels must lie in ``[0, C - 1]``.
        spatial_dims: number of spatial axes. ``None`` infers it: 3 dims -> ``(B, H, W)``,
            5 dims -> ``(B, 1, D, H, W)``, 4 dims -> ``(B, 1, H, W)`` if axis 1 has size 1,
            else ``(B, D, H, W)``. Pass it to remove the ambiguity of a depth-1 volume.
        dtype: floating dtype of the result.

    Shape:
        (B, *S) or (B, 1, *S) -> (B, C, *S).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1; got {num_classes}.")
    if spatial_dims is None:
        if target.ndim == 3:
            spatial_dims = 2
        elif target.ndim == 4:
            spatial_dims = 2 if target.shape[1] == 1 else 3
        elif target.ndim == 5:
            spatial_dims = 3
        else:
            raise ValueError(f"target of shape {tuple(target.shape)}: expected (B, *S) or (B, 1, *S) with "
                             "2 or 3 spatial dims; pass spatial_dims for other cases.")
    labels = _as_class_indices(_squeeze_channel(target, spatial_dims), num_classes)  # (B, *S)
    return F.one_hot(labels, num_classes).movedim(-1, 1).to(dtype)  # (B, C, *S)


def _check_prediction(input: torch.Tensor, target: torch.Tensor, *, softmax: bool,
                      ignore_index: Optional[int] = None, loss: str = "SoftDiceLoss") -> torch.Tensor:
    """Validate logits/probabilities against the target; return the target as (B, *S) int64.

    Voxels labelled ``ignore_index`` are returned as class 0; the caller masks them out. ``loss``
    names the loss in the message about NaN or inf values.
    """
    if input.ndim < 3 or not input.is_floating_point():
        raise ValueError(f"input must be float logits or probabilities (B, C, *S); got {input.dtype} "
                         f"of shape {tuple(input.shape)}.")
    num_classes = input.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"input has {num_classes} channel; this loss needs one channel per class, background included "
            "(at least 2). For a binary task give the network 2 output channels (background, foreground)."
        )
    labels = _squeeze_channel(target, input.ndim - 2)
    if labels.shape[0] != input.shape[0] or labels.shape[1:] != input.shape[2:]:
        raise ValueError(
            f"prediction {tuple(input.shape)} and target {tuple(target.shape)} disagree in batch or spatial "
            f"size: expected target (B, *S) = {(input.shape[0], *input.shape[2:])}. A network with "
            "padding='valid' outputs a smaller map: crop the target to the output size (centre crop), "
            "or use padding='same'."
        )
    if ignore_index is not None:
        labels = labels.masked_fill(labels == ignore_index, 0)
    labels = _as_class_indices(labels, num_classes)
    # Probabilities (softmax=False) are refused even in a training step, as they always were.
    check_finite_logits(input, loss, what="logits" if softmax else "probabilities", always_raise=not softmax)
    if not softmax:
        # The target is one-hot over all C channels (background included, even if it is later
        # dropped), so true probabilities sum to 1 over the channels. Multi-label (sigmoid)
        # outputs, whose channels overlap, do not fit this loss and are refused here.
        with torch.no_grad():
            low, high = float(input.min()), float(input.max())
            sums = input.sum(dim=1)
            worst = float((sums - 1).abs().max())
        if low < -_PROB_RANGE_TOL or high > 1 + _PROB_RANGE_TOL or worst > _PROB_SUM_TOL:
            raise ValueError(
                f"softmax=False expects probabilities, but the input has values in [{low:.3g}, {high:.3g}] "
                f"and channel sums up to {worst:.3g} away from 1. If the input is raw network output "
                "(logits), use softmax=True."
            )
    return labels


def soft_dice_terms(probs: torch.Tensor, truth: torch.Tensor, *, batch: bool = False, squared_pred: bool = False,
                    smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> torch.Tensor:
    """``1 - (2 sum(p g) + smooth_nr) / (sum(p) + sum(g) + smooth_dr)`` per channel: the one
    formula behind the class-label and the region Dice losses.

    Args:
        probs: probabilities (B, C, *S): a softmax over classes, or a sigmoid per region.
        truth: the binary target of the same shape.
        batch: sum over the batch too, one term per channel.
        squared_pred: ``sum(p**2) + sum(g**2)`` in the denominator (V-Net).
        smooth_nr, smooth_dr: added to the numerator and the denominator.

    Shape:
        (B, C, *S), (B, C, *S) -> (B, C), or (C,) with ``batch``.
    """
    # Sum over the spatial axes, and over the batch too for batch Dice.
    dims = [0, *range(2, probs.ndim)] if batch else list(range(2, probs.ndim))
    intersection = (probs * truth).sum(dims)
    if squared_pred:
        areas = (probs * probs).sum(dims) + (truth * truth).sum(dims)
    else:
        areas = probs.sum(dims) + truth.sum(dims)
    return 1 - (2 * intersection + smooth_nr) / (areas + smooth_dr)


class SoftDiceLoss(nn.Module):
    """Soft Dice loss (Milletari et al. 2016), one term per class and (unless ``batch``) per sample.

    For class ``c`` with probabilities ``p`` and one-hot target ``g``, summed over pixels::

        loss_c = 1 - (2 * sum(p * g) + smooth_nr) / (sum(p) + sum(g) + smooth_dr)

    (``sum(p**2) + sum(g**2)`` in the denominator when ``squared_pred``). The options and
    their defaults match ``monai.losses.DiceLoss(to_onehot_y=True, softmax=True)``.

    Empty classes: a class absent from the target and predicted nowhere has
    ``sum(p) = sum(g) = 0``, so its loss is ``1 - smooth_nr / smooth_dr`` = 0 with the default
    (equal) smoothing, never NaN; with ``smooth_nr=0`` it would be 1, punishing a correct
    answer. With softmax the prediction is never exactly 0, so a class missing from one
    sample still costs ``~ sum(p) / (sum(p) + smooth_dr)``: ``batch=True`` softens this.

    Args:
        softmax: apply softmax over the channels to the logits. ``False`` means the input
            already holds probabilities, one channel per class (checked: finite, in [0, 1]
            within 1e-4, channels summing to 1 within 1e-3, as a softmax output does).
        include_background: keep channel 0 in the loss. Dropping it helps when the
            foreground is small, since the easy background Dice would dominate the mean.
        batch: sum the intersection and the areas over the whole batch before dividing,
            one Dice per class instead of one per (sample, class). This steadies the
            loss when a class is small or missing in some samples (nnU-Net's "batch Dice").
        squared_pred: V-Net's form, with ``sum(p**2) + sum(g**2)`` in the denominator.
        smooth_nr: added to the numerator, so that an empty class predicted empty scores 0, not 1.
        smooth_dr: added to the denominator, so that it is never 0 (must be > 0).
        reduction: ``"mean"`` or ``"sum"`` over the kept (sample, class) terms, or
            ``"none"`` to return them as ``(B, C')`` (``(C',)`` with ``batch``); MONAI's
            ``"none"`` adds trailing singleton spatial axes to the same numbers.
        weight: optional per-class multipliers, one per class *including* the background
            (dropped with it when ``include_background=False``; MONAI's DiceLoss wants the
            shortened list instead). As in MONAI, the weighted terms are then averaged, not
            normalised by the sum of the weights.
        ignore_index: a target value that marks unlabelled voxels (sparse annotation,
            Çiçek et al. 2016): they count in neither the intersection nor the areas.

    Shape:
        input (B, C, *S) float, target (B, *S) or (B, 1, *S) int -> scalar, or (B, C') / (C',)
        with ``reduction="none"``; C' = C - 1 without the background.
    """

    def __init__(
        self,
        *,
        softmax: bool = True,
        include_background: bool = True,
        batch: bool = False,
        squared_pred: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        weight: WeightLike = None,
        ignore_index: Optional[int] = None,
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}.")
        if smooth_dr <= 0 or smooth_nr < 0:
            raise ValueError(f"need smooth_dr > 0 (else an empty class gives 0/0 = NaN) and smooth_nr >= 0; "
                             f"got smooth_nr={smooth_nr}, smooth_dr={smooth_dr}.")
        self.softmax = softmax
        self.include_background = include_background
        self.batch = batch
        self.squared_pred = squared_pred
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.reduction = reduction
        self.ignore_index = ignore_index
        class_weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32).flatten()
        if class_weight is not None and bool((class_weight < 0).any()):
            raise ValueError(f"class weights must be >= 0; got {class_weight.tolist()}.")
        self.register_buffer("class_weight", class_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss(input, target, type(self).__name__)

    def _loss(self, input: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
        labels = _check_prediction(input, target, softmax=self.softmax, ignore_index=self.ignore_index, loss=name)
        num_classes = input.shape[1]
        probs = torch.softmax(input, dim=1) if self.softmax else input  # (B, C, *S)
        truth = F.one_hot(labels, num_classes).movedim(-1, 1).to(probs.dtype)  # (B, C, *S)
        if self.ignore_index is not None:
            labelled = (_squeeze_channel(target, input.ndim - 2) != self.ignore_index).unsqueeze(1).to(probs.dtype)
            probs, truth = probs * labelled, truth * labelled  # unlabelled voxels drop out of every sum
        if not self.include_background:
            probs, truth = probs[:, 1:], truth[:, 1:]  # (B, C', *S)

        loss = soft_dice_terms(probs, truth, batch=self.batch, squared_pred=self.squared_pred,
                               smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr)  # (B, C') or (C',)

        if self.class_weight is not None:
            if self.class_weight.numel() != num_classes:
                raise ValueError(f"weight has {self.class_weight.numel()} entries but the input has "
                                 f"{num_classes} classes; give one weight per class, background included.")
            kept = self.class_weight if self.include_background else self.class_weight[1:]
            loss = loss * kept.to(loss)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def vnet_dice_gradient(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """V-Net's closed-form gradient of its Dice ``D = 2 sum(p g) / (sum(p**2) + sum(g**2))``.

    Milletari et al. 2016, eq. 2, with the sums over all voxels of one volume and one class::

        dD/dp_j = 2 [g_j (sum(p**2) + sum(g**2)) - 2 p_j sum(p g)] / (sum(p**2) + sum(g**2))**2

    No smoothing: an empty target with an empty prediction gives 0/0, refused here
    (:class:`SoftDiceLoss` adds ``smooth_nr``/``smooth_dr`` for that case).

    Args:
        p: foreground probabilities, any shape.
        g: binary ground truth, same shape.

    Shape:
        p (*S), g (*S) -> (*S), the gradient at every voxel.
    """
    if p.shape != g.shape:
        raise ValueError(f"p {tuple(p.shape)} and g {tuple(g.shape)} must have the same shape.")
    g = g.to(p.dtype)
    areas = (p * p).sum() + (g * g).sum()
    if float(areas) == 0:
        raise ValueError("D is 0/0 when p and g are both all zero; add smoothing as SoftDiceLoss does.")
    return 2 * (g * areas - 2 * p * (p * g).sum()) / areas**2


class DiceCELoss(nn.Module):
    """``lambda_dice * SoftDiceLoss + lambda_ce * cross-entropy``, on logits.

    Dice looks at each class as a whole and copes with class imbalance; cross-entropy
    gives every pixel a well-behaved gradient from the first step. nnU-Net trains with
    their sum. Equal to ``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True, ...)``:
    MONAI's single ``weight`` argument weights both terms, which here is
    ``ce_weight=w, dice_weight=w``.

    The input must be logits, because cross-entropy applies its own log-softmax; so
    there is no ``softmax`` switch.

    Args:
        include_background, batch, squared_pred, smooth_nr, smooth_dr: passed to
            :class:`SoftDiceLoss`; they do not affect the cross-entropy, which always
            covers every class and pixel.
        ignore_index: target value of unlabelled voxels, left out of both terms.
        reduction: ``"mean"`` (Dice terms averaged; cross-entropy averaged over pixels,
            a weighted average ``sum(w_y * ce) / sum(w_y)`` when ``ce_weight`` is given,
            as in ``torch.nn.CrossEntropyLoss``) or ``"sum"`` (both summed, so the
            cross-entropy, summed over every pixel, dwarfs the Dice term).
        lambda_dice: weight of the Dice term (>= 0).
        lambda_ce: weight of the cross-entropy term (>= 0).
        ce_weight: optional class weights for the cross-entropy, one per class.
        dice_weight: optional class weights for the Dice terms, one per class (background
            included), see :class:`SoftDiceLoss`.
        label_smoothing: passed to ``torch.nn.functional.cross_entropy``.

    Shape:
        input (B, C, *S) logits, target (B, *S) or (B, 1, *S) int -> scalar.
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        batch: bool = False,
        squared_pred: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        ce_weight: WeightLike = None,
        dice_weight: WeightLike = None,
        label_smoothing: float = 0.0,
        ignore_index: Optional[int] = None,
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum' (the two terms have different shapes "
                             f"before reduction); got {reduction!r}.")
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0; got {lambda_dice}, {lambda_ce}.")
        self.dice = SoftDiceLoss(softmax=True, include_background=include_background, batch=batch,
                                 squared_pred=squared_pred, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
                                 reduction=reduction, weight=dice_weight, ignore_index=ignore_index)
        self.ignore_index = ignore_index
        ce_w = None if ce_weight is None else torch.as_tensor(ce_weight, dtype=torch.float32).flatten()
        self.register_buffer("ce_weight", ce_w)
        self.reduction = reduction
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice = self.dice._loss(input, target, type(self).__name__)  # validates input and target
        labels = _squeeze_channel(target, input.ndim - 2).long()  # (B, *S)
        weight = None if self.ce_weight is None else self.ce_weight.to(input)
        ce = F.cross_entropy(input, labels, weight=weight, reduction=self.reduction,
                             label_smoothing=self.label_smoothing,
                             ignore_index=-100 if self.ignore_index is None else self.ignore_index)
        return self.lambda_dice * dice + self.lambda_ce * ce
