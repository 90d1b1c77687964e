"""Everyday figures of the lessons: segmentations with their errors, training curves, image grids.

Every function returns a :class:`matplotlib.figure.Figure` built with the object API and
never touches ``pyplot``: JupyterLab runs widget callbacks on another thread, and
``pyplot``'s global state is not thread-safe there (see ``STYLE.md``). A returned figure
still shows inline when it is the last value of a cell; :func:`figure_to_png` renders it
to PNG bytes for an ``ipywidgets.Image``.

Segmentation figures follow the conventions of the lessons: images are ``(H, W)`` (or
``(1, H, W)``, or a batch ``(N, H, W)`` drawn one row per sample), labels and predictions
are integer class maps; for the EM data class 0 is membrane and class 1 cell interior.
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = [
    "plot_differences",
    "FP_COLOUR",
    "FN_COLOUR",
    "class_colour",
    "error_map",
    "figure_to_png",
    "show_segmentation",
    "plot_history",
    "show_images",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Error-map colours: far from each other and from the class colours (tab10 orange, green, ...).
FP_COLOUR = (1.0, 0.0, 1.0)  # magenta: predicted foreground, labelled otherwise
FN_COLOUR = (0.0, 1.0, 1.0)  # cyan: labelled foreground, predicted otherwise
_ERROR_ALPHA = 0.9
#: Widest figure we make, in inches: fits a laptop screen at 100 dpi.
MAX_WIDTH = 12.0


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def class_colour(index: int) -> tuple[float, float, float]:
    """The colour of class ``index``: tab10's, so class 1 is orange and class 2 green, as a ``tab10`` label map
    shows it (read from the colour map, not from the colour cycle, which a user's style may change)."""
    return to_rgb(matplotlib.colormaps["tab10"].colors[index % 10])


def figure_to_png(fig: Figure, *, dpi: Optional[float] = None) -> bytes:
    """Render ``fig`` with the Agg canvas (no ``pyplot``) and return the PNG bytes.

    Args:
        fig: the figure.
        dpi: resolution; the figure's own (100 in this package) when ``None``.

    The image is ``figsize * dpi`` pixels: no tight bounding box, so a widget showing
    successive frames keeps a constant size.
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_figure(buffer, format="png", dpi=dpi if dpi is not None else fig.dpi)
    return buffer.getvalue()


# ----- segmentation ------------------------------------------------------------------------
def _image_batch(image: ArrayLike) -> np.ndarray:
    """(H, W), (1, H, W), (N, H, W) or (N, 1, H, W) -> float (N, H, W)."""
    array = _to_numpy(image).astype(float)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"image must be (H, W), (N, H, W) or (N, 1, H, W); got shape {array.shape}.")
    return array


def _class_batch(x: Optional[ArrayLike], name: str, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """A class map (H, W), (N, H, W), (N, 1, H, W) or scores (N, C, H, W) -> int (N, H, W)."""
    if x is None:
        return None
    array = _to_numpy(x)
    if array.ndim == 4:
        # Scores or logits with a class axis: take the most likely class.
        array = array[:, 0] if array.shape[1] == 1 else array.argmax(axis=1)
    if array.ndim == 2:
        array = array[None]
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(array == np.round(array)):
            raise ValueError(f"{name} must be an integer class map; got non-integer values "
                             "(threshold probabilities or take .argmax(1) of the logits first).")
    array = array.astype(np.int64)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape} but the image batch is {shape}.")
    return array


def _overlay(classes: np.ndarray, coloured: Sequence[int], alpha: float) -> np.ndarray:
    """RGBA (H, W, 4): each coloured class in its colour at ``alpha``, the rest transparent."""
    rgba = np.zeros((*classes.shape, 4))
    for c in coloured:
        rgba[classes == c] = (*class_colour(c), alpha)
    return rgba


def error_map(label: np.ndarray, prediction: np.ndarray, foreground: int = 1) -> np.ndarray:
    """The errors of one class as an RGBA image for ``imshow``.

    Args:
        label: integer class map (H, W).
        prediction: integer class map (H, W).
        foreground: the class scored.

    Returns:
        (H, W, 4) floats: false positives magenta, false negatives cyan (both at alpha 0.9),
        every correct pixel fully transparent.
    """
    label_fg, pred_fg = label == foreground, prediction == foreground
    rgba = np.zeros((*label.shape, 4))
    rgba[pred_fg & ~label_fg] = (*FP_COLOUR, _ERROR_ALPHA)
    rgba[label_fg & ~pred_fg] = (*FN_COLOUR, _ERROR_ALPHA)
    return rgba


def _image_panel(ax, image: np.ndarray, *, dim: bool = False) -> None:
    ax.imshow(image, cmap="gray", alpha=0.55 if dim else 1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def show_segmentation(
    image: ArrayLike,
    label: Optional[ArrayLike] = None,
    prediction: Optional[ArrayLike] = None,
    *,
    class_names: Optional[Sequence[str]] = None,
    foreground: int = 1,
    title: Optional[str] = None,
    alpha: float = 0.4,
    row_names: Optional[Sequence[str]] = None,
) -> Figure:
    """Image, label overlay, prediction overlay and (with both) the foreground error map.

    Args:
        image: ``(H, W)``, ``(1, H, W)``, a batch ``(N, H, W)`` or ``(N, 1, H, W)``; a batch
            draws one row per sample.
        label: integer class map of the same size (or batch), or ``None``.
        prediction: integer class map, or scores ``(N, C, H, W)`` (then ``argmax`` over C).
        class_names: one name per class, e.g. ``["membrane", "cell"]`` for EM.
        foreground: the class whose errors are mapped. With two classes only this class is
            tinted in the overlays (the other shows the plain image); with more classes every
            class except the background (0, or 1 when ``foreground`` is 0) is tinted.
        title: figure title.
        alpha: opacity of the class tint.
        row_names: one name per row, written beside it (``"slice 25"``); default ``"sample i"``
            when there are several rows.

    Returns:
        A figure with N rows of panels "image", "label", "prediction" and "errors: FP / FN"
        (the last when both maps are given: magenta = false positive, cyan = false negative
        of the foreground class, correct pixels transparent). Under the prediction the
        foreground Dice is printed, under the error map the FP and FN pixel counts.
    """
    images = _image_batch(image)
    labels = _class_batch(label, "label", images.shape)
    predictions = _class_batch(prediction, "prediction", images.shape)
    maps = [m for m in (labels, predictions) if m is not None]
    num_classes = max([2, foreground + 1] + [int(m.max()) + 1 for m in maps])
    if class_names is not None:
        if len(class_names) < num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but the maps hold {num_classes} classes.")
        num_classes = len(class_names)
    names = list(class_names) if class_names is not None else [f"class {c}" for c in range(num_classes)]
    if num_classes <= 2:
        coloured = [foreground]
    else:
        background = 0 if foreground != 0 else 1
        coloured = [c for c in range(num_classes) if c != background]

    panels = ["image"]
    if labels is not None:
        panels.append("label")
    if predictions is not None:
        panels.append("prediction")
    with_errors = labels is not None and predictions is not None
    if with_errors:
        panels.append("errors: FP / FN")

    rows, cols = images.shape[0], len(panels)
    if row_names is not None and len(row_names) != rows:
        raise ValueError(f"row_names has {len(row_names)} names for {rows} rows; give one per image.")
    height, width = images.shape[1:]
    panel = min(3.2, MAX_WIDTH / cols, 9.0 / rows * width / height)
    fig = Figure(figsize=(panel * cols, panel * height / width * rows + 0.9 + 0.3 * (title is not None)),
                 dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    fg_name = names[foreground]
    for row in range(rows):
        for col, kind in enumerate(panels):
            ax = axes[row, col]
            if kind == "image":
                _image_panel(ax, images[row])
                if row_names is not None or rows > 1:
                    ax.set_ylabel(row_names[row] if row_names is not None else f"sample {row}")
            elif kind == "label":
                _image_panel(ax, images[row])
                ax.imshow(_overlay(labels[row], coloured, alpha), interpolation="nearest")
            elif kind == "prediction":
                _image_panel(ax, images[row])
                ax.imshow(_overlay(predictions[row], coloured, alpha), interpolation="nearest")
                if labels is not None:
                    pred_fg, label_fg = predictions[row] == foreground, labels[row] == foreground
                    total = pred_fg.sum() + label_fg.sum()
                    dice = 2 * (pred_fg & label_fg).sum() / total if total else 1.0
                    ax.set_xlabel(f"Dice ({fg_name}) = {dice:.3f}", fontsize=9)
            else:
                _image_panel(ax, images[row], dim=True)
                errors = error_map(labels[row], predictions[row], foreground)
                ax.imshow(errors, interpolation="nearest")
                pred_fg, label_fg = predictions[row] == foreground, labels[row] == foreground
                fp, fn = int((pred_fg & ~label_fg).sum()), int((label_fg & ~pred_fg).sum())
                ax.set_xlabel(f"FP {fp} px, FN {fn} px", fontsize=9)
            if row == 0:
                ax.set_title(kind)

    handles = []
    if labels is not None or predictions is not None:
        handles += [Patch(facecolor=(*class_colour(c), alpha), edgecolor=class_colour(c), label=names[c])
                    for c in coloured]
        if num_classes <= 2:
            handles += [Patch(facecolor="none", edgecolor="0.5", label=f"{names[c]} (no tint)")
                        for c in range(num_classes) if c not in coloured]
    if with_errors:
        handles += [Patch(facecolor=FP_COLOUR, label=f"FP: predicted {fg_name}, labelled not"),
                    Patch(facecolor=FN_COLOUR, label=f"FN: labelled {fg_name}, predicted not")]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=9,
                   frameon=False)
    if title is not None:
        fig.suptitle(title)
    return fig


# ----- training curves ---------------------------------------------------------------------
def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _held_out_label(name: str) -> str:
    """``"val_membrane Dice"`` -> ``"membrane Dice (held out)"``: the history's key as a reader would name it."""
    return f"{name.removeprefix('val_')} (held out)" if name.startswith("val_") else name


def plot_history(history: Mapping[str, Sequence[float]], *, metrics: Optional[Sequence[str]] = None,
                 title: str = "Training") -> Figure:
    """Training loss (left axis) and validation metrics (right axis) against the step.

    Args:
        history: as returned by ``train.fit``: ``"step"`` and ``"loss"`` lists, and
            optionally ``"val_step"`` with ``"val_<name>"`` lists. A ``"val_loss"`` is drawn
            on the loss axis.
        metrics: names of the lists for the right axis; by default every ``"val_*"`` list
            except ``val_step`` and ``val_loss``.
        title: axes title.

    The loss axis is logarithmic when the loss spans more than a decade. Long, noisy loss
    curves also get a moving average.
    """
    steps = np.asarray(history["step"], dtype=float)
    loss = np.asarray(history["loss"], dtype=float)
    val_steps = np.asarray(history.get("val_step", []), dtype=float)
    if metrics is None:
        metrics = [k for k in history if k.startswith("val_") and k not in ("val_step", "val_loss")
                   and isinstance(history[k], (list, tuple, np.ndarray)) and len(history[k]) == len(val_steps)
                   and len(val_steps) > 0]
    missing = [m for m in metrics if m not in history]
    if missing:
        raise KeyError(f"history has no {missing}; it has {sorted(history)}.")

    fig = Figure(figsize=(8, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    smooth = len(loss) >= 50
    ax.plot(steps, loss, color="C0", lw=1, alpha=0.35 if smooth else 1.0, label="train loss")
    if smooth:
        window = max(2, len(loss) // 20)
        ax.plot(steps[window - 1:], _moving_average(loss, window), color="C0", lw=2,
                label=f"train loss (mean of {window})")
    losses = [loss]
    if "val_loss" in history and len(history["val_loss"]) == len(val_steps) > 0:
        val_loss = np.asarray(history["val_loss"], dtype=float)
        ax.plot(val_steps, val_loss, "o-", color="C3", ms=4, label=_held_out_label("val_loss"))
        losses.append(val_loss)
    all_loss = np.concatenate(losses)
    all_loss = all_loss[np.isfinite(all_loss)]
    if all_loss.size and all_loss.min() > 0 and all_loss.max() / all_loss.min() > 10:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    handles = list(ax.get_lines())

    if metrics:
        right = ax.twinx()
        values_all = []
        for index, name in enumerate(metrics):
            values = np.asarray(history[name], dtype=float)
            x = val_steps if len(values) == len(val_steps) and len(val_steps) else steps[: len(values)]
            handles += right.plot(x, values, marker="os^Dv"[index % 5], ms=4, color=f"C{(index + 1) % 10}",
                                  label=_held_out_label(name))
            values_all.append(values)
        joined = np.concatenate(values_all)
        if joined.size and np.nanmin(joined) >= 0 and np.nanmax(joined) <= 1:
            right.set_ylim(0, 1.02)
        right.set_ylabel(", ".join(_held_out_label(name) for name in metrics))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)
    return fig


# ----- image grids -------------------------------------------------------------------------
def show_images(
    images: Union[ArrayLike, Sequence[ArrayLike]],
    titles: Optional[Sequence[str]] = None,
    *,
    cmap: Union[str, Sequence[str]] = "gray",
    suptitle: Optional[str] = None,
    ncols: Optional[int] = None,
    colorbar: Union[bool, Sequence[bool]] = False,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    class_names: Optional[Sequence[str]] = None,
) -> Figure:
    """A grid of images, e.g. weight maps or a checkerboard comparison.

    Args:
        images: a sequence of ``(H, W)`` (or ``(1, H, W)``, or RGB ``(H, W, 3)``) arrays or
            tensors, or one ``(N, H, W)`` array.
        titles: one title per image.
        cmap: colour map for all panels, or one per panel.
        suptitle: figure title.
        ncols: panels per row (default: up to 4).
        colorbar: add a colour bar to each panel, or, one flag per panel, to those flagged. A label map
            coloured by class (below) gets the class legend instead, never a colour bar.
        vmin, vmax: a shared colour range (default: each panel its own).
        class_names: for label maps (class indices): the name of each class. Every panel whose colour
            map is ``"tab10"`` is then coloured class ``c`` = the c-th colour of tab10 whatever the
            other panels hold, and one legend below the grid names the colours.
    """
    if class_names is not None and not 1 <= len(class_names) <= 10:
        raise ValueError(f"class_names colours label maps with tab10, which has 10 colours; got {len(class_names)} "
                         "names. Show a label map with more classes with another colour map and a colour bar.")
    if isinstance(images, (np.ndarray, torch.Tensor)):
        images = list(_to_numpy(images))
    arrays = []
    for item in images:
        array = _to_numpy(item).astype(float)
        while array.ndim > 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2 and not (array.ndim == 3 and array.shape[-1] in (3, 4)):
            raise ValueError(f"each image must be (H, W) or RGB (H, W, 3); got shape {array.shape}.")
        arrays.append(array)
    count = len(arrays)
    if count == 0:
        raise ValueError("show_images needs at least one image.")
    if titles is not None and len(titles) != count:
        raise ValueError(f"got {count} images but {len(titles)} titles.")
    cmaps = [cmap] * count if isinstance(cmap, str) else list(cmap)
    bars = [bool(colorbar)] * count if isinstance(colorbar, (bool, np.bool_)) else [bool(b) for b in colorbar]
    if len(cmaps) != count or len(bars) != count:
        raise ValueError(f"got {count} images, {len(cmaps)} colour maps and {len(bars)} colour-bar flags; give one "
                         "of each per image, or one for all.")
    ncols = ncols or min(count, 4)
    nrows = math.ceil(count / ncols)
    height, width = arrays[0].shape[:2]
    panel = min(3.0, MAX_WIDTH / ncols)
    extra = 0.7 if any(bars) else 0.0
    fig = Figure(figsize=(min(MAX_WIDTH, (panel + extra) * ncols), panel * height / width * nrows + 0.4 * nrows
                          + 0.4 * (suptitle is not None)), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= count:
            ax.set_axis_off()
            continue
        is_label_map = class_names is not None and cmaps[index] == "tab10"
        low, high = (-0.5, 9.5) if is_label_map else (vmin, vmax)  # tab10's c-th colour for class c
        shown = ax.imshow(arrays[index], cmap=cmaps[index], vmin=low, vmax=high, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[index], fontsize=10)
        if bars[index] and not is_label_map:
            fig.colorbar(shown, ax=ax, shrink=0.85)
    if suptitle is not None:
        fig.suptitle(suptitle)
    if class_names is not None:
        handles = [Patch(facecolor=class_colour(c), edgecolor="black", linewidth=0.5, label=name)
                   for c, name in enumerate(class_names)]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return fig


# ----- paired differences of a stored comparison ------------------------------------------------
def plot_differences(differences: Mapping[str, np.ndarray], judgements: Mapping[str, object], *,
                     labels: Optional[Mapping[str, str]] = None, unit: str = "Dice", ylabel: Optional[str] = None,
                     title: str = "Paired differences A − B") -> Figure:
    """One column per comparison: each held-out item's difference A − B (the mean of the seeds), and
    the family-wise interval of the mean difference, against the margin.

    Args:
        differences: comparison -> differences (seeds, items), as ``StoredTable.differences`` gives them.
        judgements: comparison -> its :class:`~unet_lessons.stats.Judgement` from ``judge`` (the
            interval and the margin drawn).
        labels: comparison -> the text under its column (default: the key).
        unit: the score's name, for the axis.
        ylabel: the axis label instead (a family of several scores, or gains where lower is better).
        title: the figure title.
    """
    keys = list(differences)
    if not keys or set(keys) - set(judgements):
        raise ValueError("plot_differences needs a judgement for every comparison it draws.")
    labels = {key: key for key in keys} | dict(labels or {})
    fig = Figure(figsize=(1.9 * len(keys) + 1.6, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    margins = {judgements[key].margin for key in keys}
    for margin in margins:
        ax.axhspan(-margin, margin, color="0.9", zorder=0)
    ax.axhline(0.0, color="0.5", lw=0.8, zorder=1)
    jitter = np.random.default_rng(0)  # a fixed spread, so that the stored figure does not change from run to run
    for column, key in enumerate(keys):
        per_item = np.asarray(differences[key], dtype=float).mean(axis=0)
        ax.scatter(column + jitter.uniform(-0.18, 0.18, len(per_item)), per_item, s=12, color="tab:blue",
                   alpha=0.6, zorder=2)
        judgement = judgements[key]
        low, high = ((judgement.interval.low, judgement.interval.high) if judgement.interval is not None
                     else (judgement.mean, judgement.mean))
        ax.errorbar(column + 0.32, judgement.mean, yerr=[[judgement.mean - low], [high - judgement.mean]], fmt="o",
                    color="black", capsize=5, lw=2, zorder=3)
        ax.annotate(judgement.verdict.replace(" at this budget", ""), (column, 1.0), xycoords=("data", "axes fraction"),
                    ha="center", va="bottom", fontsize=8)  # the verdict above its column
    ax.set_xticks(range(len(keys)), [labels[key] for key in keys], fontsize=9)
    ax.set_xlim(-0.6, len(keys) - 0.3)
    ax.set_ylabel(ylabel or f"A − B ({unit})")
    family = {judgements[key].family for key in keys}
    handles = [Patch(facecolor="tab:blue", alpha=0.6, label="one held-out item: its difference, mean of the seeds"),
               Line2D([], [], color="black", marker="o", lw=2,
                                       label=f"mean, and its 95 % interval (one family of {max(family)})"),
               Patch(facecolor="0.9", label=f"margin ±{max(margins):g}: no difference that matters")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(title, pad=16)  # room for the verdicts above the columns
    return fig
