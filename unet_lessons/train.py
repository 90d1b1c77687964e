"""A short training loop that a lesson can read in one sitting: ``TrainConfig``, ``fit``, ``evaluate``.

No framework: an optimizer, a learning-rate schedule, a fixed number of steps (so that a
lesson reruns to the same numbers), a progress line that leaves a one-line summary
(``unet_lessons.progress``) and a history dict. It also
watches for the failure U-Net users report most: predictions that collapse to one class
(the "all-black prediction"), and says what usually causes it.

Built in ``notebooks/02_unet.ipynb``.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import torch
import torch.nn as nn

from .models.base import loss_terms, unpack_output
from .progress import StepProgress
from .runs import SavedRun, atomic_save
from .targets import check_class_labels, check_region_target
from .utils import get_device, package_warning

__all__ = [
    "TrainConfig",
    "PredictionCollapseWarning",
    "collapse_message",
    "check_labels",
    "predicted_map",
    "NonFiniteLossError",
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
        progress: show live progress, then one summary line ("700/700 steps in 93 s, ...").
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
    """A warning text if the prediction collapsed while the target did not, else ``None``.

    Class maps (B, *S): one class everywhere while the labels hold several. Region maps
    (B, R, *S), binary: a region predicted nowhere, or everywhere, while the target has it
    in some voxels and not in others.
    """
    if prediction.dim() == target.dim() and target.dim() >= 3 and prediction.shape[1:2] == target.shape[1:2] \
            and (target.is_floating_point() or target.dtype == torch.bool):
        for region in range(target.shape[1]):
            predicted, present = torch.unique(prediction[:, region].bool()), torch.unique(target[:, region].bool())
            if len(predicted) == 1 and len(present) == 2:
                where = "everywhere" if bool(predicted[0]) else "nowhere"
                return (f"Predictions collapsed: region {region} is predicted {where}, while the targets hold it in "
                        "some voxels only. Usual causes: unnormalised inputs; a learning rate that is too high; a "
                        "region too small for plain cross-entropy (add a Dice term); or simply too few steps.")
        return None
    predicted, present = torch.unique(prediction), torch.unique(target)
    present = present[present >= 0]  # negative values mark unlabelled voxels (sparse annotation)
    if len(predicted) != 1 or len(present) < 2:
        return None
    return (f"Predictions collapsed to class {int(predicted[0])} on every pixel, while the labels hold classes "
            f"{present.tolist()} (the 'all-black prediction'). Usual causes: labels stored as 0/255 instead of "
            "class indices 0/1; unnormalised inputs; a learning rate that is too high; strong class imbalance "
            "(use a Dice or Dice+CE loss, or class weights); or simply too few steps.")


def predicted_map(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The prediction in the target's kind: a class map (argmax) for class labels, binary
    regions (sigmoid > 0.5, i.e. logits > 0) for a region target (B, R, *S)."""
    return logits > 0 if target.dim() == logits.dim() else logits.argmax(1)


def check_labels(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: Optional[int] = None) -> None:
    """Raise a ``ValueError`` if the target does not fit the network's output channels.

    Args:
        logits: (B, K, *S) network output.
        target: class indices (B, *S), each a class of the K, or a binary region target
            (B, K, *S), one channel per region (see :mod:`unet_lessons.targets`).
        ignore_index: a label value that marks unlabelled voxels (e.g. sparse annotation).
    """
    if target.dim() == logits.dim():
        check_region_target(target, num_regions=logits.shape[1])
    elif not target.is_floating_point() and target.dim() == logits.dim() - 1:
        check_class_labels(target, logits.shape[1], ignore_index=ignore_index)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and the likely cause."""


def non_finite_message(step: int, segmentation_loss: torch.Tensor, aux_loss: Optional[torch.Tensor],
                       loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, model: nn.Module,
                       config: "TrainConfig") -> str:
    """Why the loss of ``step`` is not finite: which term went non-finite (the segmentation loss, or the
    model's auxiliary loss), and whether bad inputs, weights that diverged or the term itself are to blame."""
    loss_name = getattr(getattr(loss_fn, "func", loss_fn), "__qualname__", type(loss_fn).__name__)  # partial: its func
    segmentation = f"the segmentation loss ({loss_name})"
    auxiliary = "the model's auxiliary loss (aux_loss, e.g. the VAE's KL and reconstruction terms)"
    terms = {segmentation: segmentation_loss, auxiliary: aux_loss}
    values = {term: torch.as_tensor(value).detach() for term, value in terms.items() if value is not None}
    bad = {term: value.item() for term, value in values.items() if not bool(torch.isfinite(value).all())}
    where = f"Training stopped at step {step}: " + (
        " and ".join(f"{term} is {value}" for term, value in bad.items()) + "." if bad else
        f"{segmentation} and {auxiliary} are each finite, but their sum overflowed.")
    bad_inputs = int((~torch.isfinite(x)).sum()) if x.is_floating_point() else 0
    if bad_inputs:
        return (f"{where} The input batch holds NaN or inf in {bad_inputs} of its {x.numel()} values: clean or "
                "re-normalise the images (a division by a zero standard deviation gives NaN).")
    if any(not bool(torch.isfinite(p).all()) for p in model.parameters()):
        return (f"{where} The weights became NaN or inf in an earlier update: the learning rate "
                f"(lr={config.lr}) is too high for this model and loss. Try one ten times smaller, or set grad_clip.")
    if bad and segmentation not in bad:
        return (f"{where} The inputs and weights are finite, so the model's auxiliary term itself overflowed "
                f"(in a VAE, a log-variance grown so large that its exponential is inf): a learning rate too high "
                f"(lr={config.lr}) or too large a weight on the auxiliary loss. Try a smaller one, or set grad_clip.")
    empty = "" if y.is_floating_point() or bool((y > 0).any()) else (
        " This batch's target holds no foreground at all; a loss that divides by the foreground size "
        "(a Dice without smoothing) is undefined there.")
    return (f"{where} The inputs and weights are finite, so the loss itself overflowed: a learning rate "
            f"too high (lr={config.lr}) or a loss evaluated on empty targets.{empty}")


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
        val_fn: Optional[Callable[[nn.Module], dict]] = None, *, run: Optional[str] = None) -> dict:
    """Train ``model`` for ``config.steps`` steps on ``batches`` and return the history.

    Args:
        model: the network; moved to the chosen device. Its output may be any kind of the
            model contract (``unet_lessons.models.base``): logits, deep-supervision heads, or a dict.
        batches: an iterable of ``(image, target)`` pairs or of dicts ``{"image": x, "label": y, ...}``
            (MONAI's keys; the other fields that ``model.forward`` accepts, such as ``domain``, reach it as
            keyword arguments, those the loss accepts, such as ``weight``, reach the loss, and the rest,
            such as ``image_meta_dict``, are left out): an endless
            one such as a ``PatchSampler``, or a finite ``DataLoader``, started again when it runs out.
        loss_fn: ``loss_fn(logits, target) -> scalar``; under deep supervision it receives the
            list of heads (see ``DeepSupervisionLoss``); a model's auxiliary loss is added to it. A
            loss that is a module moves to the model's device (with its class weights).
        config: the :class:`TrainConfig`.
        val_fn: optional ``val_fn(model) -> {name: value}``, run every ``config.eval_every``
            steps and at the end, with the model in ``eval`` mode.
        run: a name for this training run, e.g. ``"04-dice"``: with saved runs switched on
            (:mod:`unet_lessons.runs`), a matching saved run is loaded instead of trained.

    Returns:
        ``{"step": [...], "loss": [...], "lr": [...], "val_step": [...], "val_<name>": [...],
        "seconds": float}``.

    Raises:
        NonFiniteLossError: at the first NaN or infinite loss, naming the step, the term that went
            non-finite (the segmentation loss or the model's auxiliary loss) and the likely cause.
    """
    if not isinstance(config.steps, int) or config.steps < 1:
        raise ValueError(f"TrainConfig.steps must be a whole number of at least 1; got {config.steps!r}.")
    device = torch.device(config.device) if config.device else get_device()
    model.to(device)
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)  # its class weights must sit beside the logits
    saved_run = SavedRun(run, model, config, loss_fn, batches, val_fn)  # nothing happens unless run= and saved runs on
    if (saved_history := saved_run.load()) is not None:
        return saved_history
    batches = saved_run.batches  # the same batches (a stream whose first batch it drew to compare starts with it)
    optimizer, history = _optimizer(model, config), {"step": [], "loss": [], "lr": [], "val_step": []}
    scheduler = _schedule(optimizer, config)
    stream: Iterator = iter(batches)
    collapsed_checks, warned, start = 0, False, time.perf_counter()
    progress = StepProgress(config.steps, enabled=config.progress, label=run)
    for step in range(1, config.steps + 1):
        stream, batch = _next_batch(stream, batches)
        x, y, extra, loss_inputs = _unpack_batch(batch, device, model, loss_fn)
        model.train()
        output = unpack_output(model(x, **extra))  # the logits, the heads the loss sees, an auxiliary loss
        check_labels(output.logits, y, ignore_index=getattr(loss_fn, "ignore_index", None))
        loss, segmentation_loss = loss_terms(output, y, loss_fn, **loss_inputs)
        if not torch.isfinite(loss):
            progress.finish(step, None, note=": stopped, the loss is not finite")
            raise NonFiniteLossError(non_finite_message(step, segmentation_loss, output.aux_loss, loss_fn, x, y,
                                                        model, config))
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
            message = collapse_message(predicted_map(output.logits.detach(), y), y)
            collapsed_checks = collapsed_checks + 1 if message else 0
            if collapsed_checks >= 3 and not warned:
                package_warning(message, PredictionCollapseWarning, source="unet_lessons.train")
                warned = True
        out_of_time = bool(config.max_seconds) and time.perf_counter() - start > config.max_seconds
        last = step == config.steps or out_of_time
        if val_fn is not None and ((config.eval_every and step % config.eval_every == 0) or last):
            model.eval()
            history["val_step"].append(step)
            for name, value in val_fn(model).items():
                history.setdefault(f"val_{name}", []).append(float(value))
        progress.update(step, history["loss"][-1])
        if out_of_time:
            break
    progress.finish(step, history["loss"][-1], note=" (stopped at max_seconds)" if step < config.steps else "")
    model.eval()
    history["seconds"] = time.perf_counter() - start
    saved_run.save(history)
    return history


def _next_batch(stream: Iterator, batches: Iterable) -> tuple[Iterator, Any]:
    """The next batch and the stream to go on with: a finite loader starts its next epoch."""
    try:
        return stream, next(stream)
    except StopIteration:
        stream = iter(batches)
        try:
            return stream, next(stream)
        except StopIteration:
            raise ValueError("the batches iterable gave no batch; pass a non-empty DataLoader or sampler.") from None


def _unpack_batch(batch: Any, device: torch.device, model: nn.Module, loss_fn: Callable
                  ) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """``(image, target)`` or ``{"image": x, "label": y, **extra}`` -> x, y, the extra fields ``model``
    takes and those ``loss_fn`` takes (see :func:`_accepted_inputs`), on ``device``."""
    if isinstance(batch, Mapping):
        if "image" not in batch or "label" not in batch:
            raise ValueError(f"a dict batch needs the keys 'image' and 'label' (MONAI's names); got {sorted(batch)}.")
        fields = [k for k in batch if k not in ("image", "label")]
        for_model = _accepted_inputs(model.forward, fields, skip=1)  # after the image
        for_loss = _accepted_inputs(loss_fn.forward if isinstance(loss_fn, nn.Module) else loss_fn, fields, skip=2,
                                    everything_if_unreadable=False)  # after the prediction and the target
        # Only the fields someone takes go to the device: metadata that nobody reads stays where it is.
        on_device = {k: batch[k].to(device) if isinstance(batch[k], torch.Tensor) else batch[k]
                     for k in for_model | for_loss}
        if "weight" in fields and "weight" not in for_loss:  # training unweighted while meaning to weigh is silent
            raise ValueError(f"the batches carry a per-pixel 'weight', but the loss {type(loss_fn).__name__} takes no "
                             "`weight` argument, so it would be ignored. Use a loss that takes it (unet_lessons."
                             "losses.WeightedCrossEntropy), or build the sampler without weights.")
        return (batch["image"].to(device), batch["label"].to(device),
                {k: on_device[k] for k in for_model}, {k: on_device[k] for k in for_loss})
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0].to(device), batch[1].to(device), {}, {}
    raise ValueError(f"a batch must be (image, target) or a dict with 'image' and 'label'; got "
                     f"{type(batch).__name__}{f' of length {len(batch)}' if isinstance(batch, (list, tuple)) else ''}.")


def _accepted_inputs(function: Callable, fields: list[str], *, skip: int,
                     everything_if_unreadable: bool = True) -> set[str]:
    """The batch fields that ``function`` (a model's ``forward``, or a loss) takes by name (all, if it takes ``**kwargs``).

    A MONAI batch carries metadata (``image_meta_dict``) that no network takes: passing it would
    raise a ``TypeError``, while a multi-domain network must still receive ``domain``, and a
    weighted loss its ``weight``. ``skip``: the leading parameters that are not batch fields.
    """
    if not fields:
        return set()
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a function Python cannot read the signature of
        return set(fields) if everything_if_unreadable else set()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return set(fields)
    by_name = {p.name for p in parameters[skip:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return by_name & set(fields)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 4) -> torch.Tensor:
    """Logits of ``model`` for ``images`` (N, C, *S), in eval mode, batch by batch, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    outputs = [unpack_output(model(images[i:i + batch_size].to(device))).logits.cpu()
               for i in range(0, len(images), batch_size)]
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
        package_warning(message, PredictionCollapseWarning, source="unet_lessons.train")
    return segmentation_report(prediction, labels, class_names)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, model_name: Optional[str] = None,
                    model_kwargs: Optional[dict] = None, config: Optional[TrainConfig] = None,
                    history: Optional[dict] = None) -> Path:
    """Save weights, and what they are (the model's class and arguments), atomically.

    Args:
        path: the file to write.
        model: the network.
        model_name: its name in ``MODELS``, so that :func:`load_checkpoint` can rebuild it.
        model_kwargs: the arguments to rebuild it with; by default those the model recorded.
        config: the training settings, kept for the record.
        history: the training history, kept for the record.
    """
    kwargs = model_kwargs if model_kwargs is not None else getattr(model, "arguments", None)
    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "model_name": model_name,
               "model_class": type(model).__qualname__, "model_kwargs": dict(kwargs) if kwargs else None,
               "config": asdict(config) if config else None, "history": history}
    return atomic_save(payload, path)


def load_checkpoint(path: str | os.PathLike, model: Optional[nn.Module] = None,
                    map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint into ``model``, or rebuild the model from the saved name and arguments.

    Loads tensors and plain values only (``weights_only=True``): a checkpoint cannot run code.

    Returns:
        The model and the whole checkpoint dict (config, history).

    Raises:
        FileNotFoundError, ValueError: naming the file, what it holds and what was asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; save one with save_checkpoint(path, model).")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError("it holds no 'state_dict'")
    except Exception as error:  # noqa: BLE001 - every way a file can be unreadable gets the same advice
        detail = (str(error).split(". ")[0].splitlines() or ["no detail"])[0]  # torch's first sentence
        raise ValueError(f"{path} is not a readable checkpoint of this package ({type(error).__name__}: "
                         f"{detail}). The file may be truncated "
                         "or corrupt, or written by something else: save it again with save_checkpoint.") from None
    holds = (f"{checkpoint.get('model_class') or checkpoint.get('model_name') or 'an unnamed model'}"
             f"({_arguments_text(checkpoint.get('model_kwargs'))})")
    if model is None:
        if not checkpoint.get("model_name"):
            raise ValueError(f"{path} holds {holds} but not its registered name; pass the model to load it into.")
        from .models import build_model

        model = build_model(checkpoint["model_name"], **(checkpoint["model_kwargs"] or {}))
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if mine != theirs:
        differ = sorted(k for k in mine.keys() & theirs.keys() if mine[k] != theirs[k])
        detail = "; ".join(
            [f"{k}: {theirs[k]} in the file, {mine[k]} in the model" for k in differ[:3]]
            + [f"{len(theirs.keys() - mine.keys())} weights only in the file"] * bool(theirs.keys() - mine.keys())
            + [f"{len(mine.keys() - theirs.keys())} weights only in the model"] * bool(mine.keys() - theirs.keys()))
        passed = f"{type(model).__qualname__}({_arguments_text(getattr(model, 'arguments', None))})"
        raise ValueError(f"{path} holds {holds}, which does not fit the model passed, {passed}: {detail}. "
                         "Build the model with the checkpoint's arguments, or call load_checkpoint(path) "
                         "without a model to rebuild it.")
    model.load_state_dict(checkpoint["state_dict"])
    return model, checkpoint


def _arguments_text(arguments: Optional[dict]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted((arguments or {}).items())) or "arguments not recorded"
