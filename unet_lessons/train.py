"""A short training loop that a lesson can read in one sitting: ``TrainConfig``, ``fit``, ``evaluate``.

No framework: an optimizer, a learning-rate schedule, a fixed number of steps (so that a
lesson reruns to the same numbers), a ``tqdm`` progress bar and a history dict. It also
watches for the failure U-Net users report most: predictions that collapse to one class
(the "all-black prediction"), and says what usually causes it.

Built in ``notebooks/02_unet.ipynb``.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .fit_cache import FitCache, random_states, set_random_states
from .utils import get_device

__all__ = [
    "TrainConfig",
    "PredictionCollapseWarning",
    "collapse_message",
    "check_labels",
    "fit",
    "predict",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
]


@dataclass
class TrainConfig:
    """Settings of one training run.

    Args:
        steps: number of optimizer steps (fixed, so that runs are reproducible).
        lr: peak learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (the paper: SGD, momentum 0.99).
        momentum: SGD momentum.
        schedule: ``"onecycle"`` (warm up, then anneal; fast on a small budget),
            ``"poly"`` (nnU-Net's ``(1 - t)^0.9``) or ``"constant"``.
        eval_every: run ``val_fn`` every this many steps (and at the end); 0 = only at the end.
        grad_clip: clip the gradient norm to this value, or ``None``.
        max_seconds: a safety cap on wall time; lessons rely on ``steps``, not on this.
        device: ``None`` picks the best device (:func:`~unet_lessons.utils.get_device`).
        progress: show a ``tqdm`` bar.
        collapse_check: warn when the predictions collapse to a single class.
    """

    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.99
    schedule: str = "onecycle"
    eval_every: int = 0
    grad_clip: Optional[float] = None
    max_seconds: Optional[float] = None
    device: Optional[str] = None
    progress: bool = True
    collapse_check: bool = True


class PredictionCollapseWarning(UserWarning):
    """The network predicts a single class everywhere although the labels hold several."""


def collapse_message(prediction: torch.Tensor, target: torch.Tensor) -> Optional[str]:
    """A warning text if ``prediction`` (class map) holds one class while ``target`` holds more, else ``None``."""
    predicted, present = torch.unique(prediction), torch.unique(target)
    present = present[present >= 0]  # negative values mark unlabelled voxels (sparse annotation)
    if len(predicted) != 1 or len(present) < 2:
        return None
    return (f"Predictions collapsed to class {int(predicted[0])} on every pixel, while the labels hold classes "
            f"{present.tolist()} (the 'all-black prediction'). Usual causes: labels stored as 0/255 instead of "
            "class indices 0/1; unnormalised inputs; a learning rate that is too high; strong class imbalance "
            "(use a Dice or Dice+CE loss, or class weights); or simply too few steps.")


def check_labels(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: Optional[int] = None) -> None:
    """Raise a ``ValueError`` if integer labels name a class the network has no output channel for.

    Args:
        logits: (B, K, *S) network output.
        target: (B, *S) class indices; other targets (one-hot, regions) are not checked.
        ignore_index: a label value that marks unlabelled voxels (e.g. sparse annotation).
    """
    if target.is_floating_point() or target.dim() != logits.dim() - 1:
        return
    labelled = target if ignore_index is None else target[target != ignore_index]
    if labelled.numel() == 0:
        return
    low, high, num_classes = int(labelled.min()), int(labelled.max()), logits.shape[1]
    if high >= num_classes or low < 0:
        raise ValueError(f"the labels hold classes {low}..{high}, but the network outputs {num_classes} channels "
                         f"(classes 0..{num_classes - 1}). Build the model with out_channels={max(high + 1, num_classes)}, "
                         "or map the labels to 0..K-1 (e.g. 255 -> 1)"
                         + ("" if ignore_index is None else f"; unlabelled voxels must be {ignore_index}") + ".")


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True,
                               weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd'; got {config.optimizer!r}.")


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "onecycle" and config.steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # too short to warm up and anneal
    if config.schedule == "onecycle":
        # At least two warm-up steps, so that short runs do not divide by zero.
        pct_start = min(0.5, max(0.2, 2 / config.steps))
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=pct_start)
    if config.schedule == "poly":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / config.steps) ** 0.9)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"schedule must be 'onecycle', 'poly' or 'constant'; got {config.schedule!r}.")


def fit(model: nn.Module, batches: Iterable, loss_fn: Callable, config: TrainConfig,
        val_fn: Optional[Callable[[nn.Module], dict]] = None) -> dict:
    """Train ``model`` for ``config.steps`` steps on ``batches`` and return the history.

    Args:
        model: the network; moved to the chosen device.
        batches: an iterable of ``(x, y)`` batches: an endless one such as a ``PatchSampler``,
            or a finite one such as a ``DataLoader``, which is started again when it runs out.
        loss_fn: ``loss_fn(logits, y) -> scalar``; with deep supervision ``logits`` is the list of
            the heads' outputs (see ``unet_lessons.models.unetpp.deep_supervision_loss``).
        config: the :class:`TrainConfig`.
        val_fn: optional ``val_fn(model) -> {name: value}``, run every ``config.eval_every``
            steps and at the end, with the model in ``eval`` mode.

    Returns:
        ``{"step": [...], "loss": [...], "lr": [...], "val_step": [...], "val_<name>": [...],
        "seconds": float}``.

    Under ``make test`` (the environment variable ``UNET_LESSONS_FIT_CACHE``), runs on the CPU are
    stored by the notebook tests and replayed by the browser tests: see :mod:`unet_lessons.fit_cache`.
    """
    if not isinstance(config.steps, int) or config.steps < 1:
        raise ValueError(f"TrainConfig.steps must be a whole number of at least 1; got {config.steps!r}.")
    device = torch.device(config.device) if config.device else get_device()
    model.to(device)
    optimizer, history = _optimizer(model, config), {"step": [], "loss": [], "lr": [], "val_step": []}
    scheduler = _schedule(optimizer, config)
    stream: Iterator = iter(batches)
    pending = None  # a batch drawn before the loop (to fingerprint the run), trained on first
    # Off unless make test turns it on (see fit_cache.py); CPU only, where the random states are all known.
    cache = FitCache.from_environment() if device.type == "cpu" else None
    if cache is not None:
        start_states = random_states()
        stream, pending = _next_batch(stream, batches)
        try:
            run_key = cache.fingerprint(model, loss_fn, config, val_fn, start_states, pending)
        except Exception as error:  # noqa: BLE001 - a run that cannot be fingerprinted is trained, not stored
            warnings.warn(f"This training run cannot be stored or replayed ({error}); training it.", stacklevel=2)
            cache = None
    if cache is not None:
        stored = cache.load(run_key, model)
        if stored is not None:
            cache.log("replayed", run_key)
            return _replay(model, stored, stream, batches, config)
    collapsed_checks, warned, start = 0, False, time.perf_counter()
    # One refresh a second: in a notebook every refresh is a widget message, and a flood of them can
    # overflow the kernel's message queue (nbval then misses the end of the cell).
    bar = tqdm(range(1, config.steps + 1), desc="training", disable=not config.progress, mininterval=1.0)
    for step in bar:
        if pending is not None:
            (x, y), pending = pending, None
        else:
            stream, (x, y) = _next_batch(stream, batches)
        x, y = x.to(device), y.to(device)
        model.train()
        logits = model(x)
        # Deep supervision returns one output per head (UNet++): the loss takes them all, the checks the last.
        final = logits[-1] if isinstance(logits, (list, tuple)) else logits
        check_labels(final, y, ignore_index=getattr(loss_fn, "ignore_index", None))
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(optimizer.param_groups[0]["lr"])  # the rate this step used
        scheduler.step()
        if config.collapse_check and step > config.steps // 4:
            # Three collapsed batches in a row past the first quarter is no longer a warm-up blip.
            message = collapse_message(final.detach().argmax(1), y)
            collapsed_checks = collapsed_checks + 1 if message else 0
            if collapsed_checks >= 3 and not warned:
                warnings.warn(message, PredictionCollapseWarning, stacklevel=2)
                warned = True
        out_of_time = bool(config.max_seconds) and time.perf_counter() - start > config.max_seconds
        last = step == config.steps or out_of_time
        if val_fn is not None and ((config.eval_every and step % config.eval_every == 0) or last):
            model.eval()
            history["val_step"].append(step)
            for name, value in val_fn(model).items():
                history.setdefault(f"val_{name}", []).append(float(value))
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if out_of_time:
            break
    bar.close()
    model.eval()
    history["seconds"] = time.perf_counter() - start
    if cache is not None:
        cache.store(run_key, model, history)
        cache.log("stored" if cache.mode == "write" else "trained", run_key)
    return history


def _next_batch(stream: Iterator, batches: Iterable) -> tuple[Iterator, tuple]:
    """The next ``(x, y)`` and the stream to go on with: a finite loader starts its next epoch."""
    try:
        return stream, next(stream)
    except StopIteration:
        stream = iter(batches)
        try:
            return stream, next(stream)
        except StopIteration:
            raise ValueError("the batches iterable gave no batch; pass a non-empty DataLoader or sampler.") from None


def _replay(model: nn.Module, stored: dict, stream: Iterator, batches: Iterable, config: TrainConfig) -> dict:
    """Finish ``fit`` from a stored run: its weights, history and final random states, and its
    batches drawn from the stream (one was drawn already) so that the stream ends where it did."""
    model.load_state_dict(stored["state_dict"])
    model.eval()
    steps = len(stored["history"]["step"])
    for _ in tqdm(range(1, steps), desc="replaying a stored run", disable=not config.progress, mininterval=1.0):
        stream, _ = _next_batch(stream, batches)
    set_random_states(stored["random_states"])
    return dict(stored["history"])


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 4) -> torch.Tensor:
    """Logits of ``model`` for ``images`` (N, C, *S), in eval mode, batch by batch, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    outputs = [model(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outputs)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, class_names: list[str],
             batch_size: int = 4, warn_on_collapse: bool = True) -> dict[str, float]:
    """Predict ``images`` and report per-class Dice and IoU and the pixel error against ``labels``.

    Args:
        model: a network whose output has the same spatial size as its input.
        images: (N, C, *S) normalised inputs.
        labels: (N, *S) class indices.
        class_names: one name per class, used as keys (``"membrane Dice"``).
        batch_size: images per forward pass.
        warn_on_collapse: warn with :class:`PredictionCollapseWarning` if every pixel gets one class.
    """
    from .metrics import segmentation_report

    prediction = predict(model, images, batch_size=batch_size).argmax(1)
    if warn_on_collapse and (message := collapse_message(prediction, labels)):
        warnings.warn(message, PredictionCollapseWarning, stacklevel=2)
    return segmentation_report(prediction, labels, class_names)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, model_name: Optional[str] = None,
                    model_kwargs: Optional[dict] = None, config: Optional[TrainConfig] = None,
                    history: Optional[dict] = None) -> Path:
    """Save weights (and how to rebuild the model) atomically: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": model.state_dict(), "model_name": model_name, "model_kwargs": model_kwargs,
               "config": asdict(config) if config else None, "history": history}
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def load_checkpoint(path: str | os.PathLike, model: Optional[nn.Module] = None,
                    map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint into ``model``, or rebuild the model from the saved name and kwargs.

    Returns:
        The model and the whole checkpoint dict (config, history).
    """
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    if model is None:
        if not checkpoint.get("model_name"):
            raise ValueError(f"{path} does not say which model it holds; pass the model to load it into.")
        from .models import build_model

        model = build_model(checkpoint["model_name"], **(checkpoint["model_kwargs"] or {}))
    model.load_state_dict(checkpoint["state_dict"])
    return model, checkpoint

