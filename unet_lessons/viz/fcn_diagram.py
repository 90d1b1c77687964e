"""The FCN architecture diagram (Long et al. 2015, Fig. 3), drawn from the model's real shapes.

The top row is the VGG16 encoder as the paper draws it: one box per pooled map, shrinking
from left to right with its stride (/2 … /32), then fc6, fc7 and the class scores
``score_fr``. FCN-32s upsamples those scores by 32 in one fixed bilinear step. FCN-16s
and FCN-8s bring the scores down a staircase instead: each step upsamples them x2 with a
learned transposed conv and adds (⊕) the scores that a zero-initialised 1x1 conv predicts
from pool4, then from pool3, before the final fixed x16 or x8 step. The seed decoder
(:class:`~unet_lessons.models.fcn.FCN32sSeed`) is drawn as one row: the encoder, then
five growing up-conv maps.

As in :mod:`~unet_lessons.viz.diagram`, the shapes come from ``forward_features`` run
on the ``"meta"`` device, so the figure cannot disagree with the code. Box height grows
with log2 of the spatial size, box width with log2 of the channels. Built in
``notebooks/01_fcn.ipynb``.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Sequence

import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Rectangle

from .diagram import (
    CONV_COLOUR,
    HEAD_COLOUR,
    INPUT_FILL,
    MAP_EDGE,
    MAP_FILL,
    OUTPUT_FILL,
    UP_COLOUR,
    _arrow,
    _Box,
    _full_shape,
    _size_text,
    _width,
    meta_copy,
)

__all__ = ["fcn_diagram_data", "draw_fcn"]

FC_COLOUR = "#9467bd"      # purple: the convolutionalized fc6, fc7
FIXED_COLOUR = "#ff7f0e"   # orange: fixed bilinear upsampling
SCORE_FILL = "#c7e9c0"     # class-score maps
_GAP = 0.42                # arrow between two boxes of the top row
_DROP = 0.28               # vertical arrows of the staircase
_PLUS = 0.09               # radius of a sum node
_FONT = 7


def fcn_diagram_data(model: nn.Module, input_shape: Sequence[int]) -> dict[str, dict]:
    """The shape of every named map of ``model`` for one input, computed on the meta device.

    Args:
        model: a model whose ``forward_features`` follows the ``"fcn"`` key scheme of the
            model contract (e.g. ``FCN``), or the seed decoder ``FCN32sSeed``.
        input_shape: ``(B, C, H, W)``, or just ``(H, W)``.

    Returns:
        ``{"input": {...}, name: {...}, ...}`` in the order of ``forward_features``, each
        with ``channels`` and ``spatial``; encoder maps ``x1`` … ``x5`` also give ``stride``.
    """
    shape = _full_shape(model, input_shape)
    with torch.no_grad():
        features = meta_copy(model).eval().forward_features(torch.empty(shape, device="meta"))
    data = {"input": {"channels": shape[1], "spatial": tuple(shape[2:])}}
    for name, tensor in features.items():
        data[name] = {"channels": int(tensor.shape[1]), "spatial": tuple(int(s) for s in tensor.shape[2:])}
        if re.fullmatch(r"x\d", name):
            data[name]["stride"] = 2 ** int(name[1])
    return data


def _height(spatial: Sequence[int]) -> float:
    # Steeper than the U-Net diagram's, so that the encoder visibly shrinks by 32.
    mean = math.exp(sum(math.log(max(s, 1)) for s in spatial) / len(spatial))
    return max(0.14, 0.22 * math.log2(max(mean, 2)) - 0.4)


def _legend_texts(model: nn.Module) -> dict[str, str]:
    """Legend texts read from the layers of the model's stages (``model.stage_modules()``)."""
    stages = model.stage_modules()

    def norms(*names: str) -> str:
        modules = [m for name in names for module in stages.get(name, []) for m in module.modules()]
        found = sorted({re.sub(r"\d+d$", "", type(m).__name__) for m in modules
                        if isinstance(m, nn.modules.batchnorm._BatchNorm)})
        return "".join(f", {n}" for n in found)

    learned = any(p.requires_grad for module in stages.get("upscore2", []) for p in module.parameters())
    return {"stage": f"VGG stage: 2–3× (conv 3×3{norms(*(f'x{i}' for i in range(1, 6)))}, ReLU), max-pool 2×2",
            "fc": f"fc6 conv 7×7, fc7 conv 1×1{norms('fc6', 'fc7')}, ReLU",
            "score": "conv 1×1 to class scores",
            "up": f"×2 up-conv 4×4, bilinear init, {'learned' if learned else 'fixed'}"}


def draw_fcn(model: nn.Module, input_shape: Sequence[int], *, title: Optional[str] = None) -> Figure:
    """Draw FCN-32s/16s/8s (or the seed decoder) for ``input_shape`` in the style of the paper's Fig. 3.

    Args:
        model: an :class:`~unet_lessons.models.fcn.FCN` or :class:`~unet_lessons.models.fcn.FCN32sSeed`.
        input_shape: ``(B, C, H, W)`` or ``(H, W)``.
        title: figure title; default e.g. ``"FCN-8s, input 224×224"``.

    Every box is one feature map, labelled with its name, channels and size. Arrows: blue =
    a VGG stage, purple = fc6/fc7, teal = a 1×1 score conv, green = a learned x2
    up-conv, orange = the fixed bilinear upsampling to the output; ⊕ = elementwise sum.
    """
    data = fcn_diagram_data(model, input_shape)
    seed = "deconv1" in data
    variant = "8s" if "fuse_pool3" in data else "16s" if "fuse_pool4" in data else "32s"
    texts = _legend_texts(model)

    boxes: dict[str, _Box] = {}
    x = 0.0
    top_row = ["input", "x1", "x2", "x3", "x4", "x5"]
    if seed:
        top_row += [f"deconv{i}" for i in range(1, 6)] + ["logits"]
    else:
        top_row += ["fc6", "fc7", "score_fr"]
    for name in top_row:
        if name == "logits":
            x += 0.15
        boxes[name] = _Box(x, 0.0, _width(data[name]["channels"]), _height(data[name]["spatial"]))
        x = boxes[name].right + _GAP

    # The staircase of 16s/8s: down from score_fr, x2, then a sum with a skip from the left.
    plus: dict[str, tuple[float, float]] = {}
    if not seed:
        column = boxes["score_fr"].centre
        y = boxes["score_fr"].bottom
        for skip, up, pool in (("score_pool4", "upscore2", "x4"), ("score_pool3", "upscore_pool4", "x3")):
            if skip not in data:
                break
            height = _height(data[up]["spatial"])
            y -= _DROP + height / 2 + (0.25 if up == "upscore2" else 0.0)  # room for the row-0 labels
            boxes[up] = _Box(column - _width(data[up]["channels"]) / 2, y, _width(data[up]["channels"]), height)
            y -= height / 2 + _DROP + _PLUS
            y = min(y, boxes[pool].bottom - 0.75)
            plus[skip] = (column, y)
            skip_width = _width(data[skip]["channels"])
            boxes[skip] = _Box(column - _PLUS - 0.55 - skip_width, y, skip_width, _height(data[skip]["spatial"]))
            y -= _PLUS + 0.25
        last = list(plus.values())[-1] if plus else None
        start_x = last[0] + _PLUS if last else boxes["score_fr"].right
        boxes["logits"] = _Box(start_x + 1.45, last[1] if last else 0.0, _width(data["logits"]["channels"]),
                               _height(data["logits"]["spatial"]))

    # Inputs that are not multiples of 32 are zero-padded first, and the output is cropped back.
    padded = tuple(32 * math.ceil(s / 32) for s in data["input"]["spatial"])
    crop = not seed and padded != data["input"]["spatial"]

    # Figure size from the extent of the drawing (one data unit = one inch).
    x_min, x_max = -0.55, boxes["logits"].right + 0.6
    y_max = max(b.top for b in boxes.values()) + 0.5
    y_min = min(min(b.bottom for b in boxes.values()) - 0.3, boxes["input"].bottom - (0.55 if crop else 0.3))
    fig_width = min(12.0, max(6.5, x_max - x_min + 0.3))
    fig = Figure(figsize=(fig_width, y_max - y_min + 1.25), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    ax.set_aspect("equal")
    ax.set_axis_off()

    def rect(name: str, fill: str = MAP_FILL, edge: str = MAP_EDGE) -> None:
        b = boxes[name]
        ax.add_patch(Rectangle((b.x, b.bottom), b.width, b.height, facecolor=fill, edgecolor=edge, lw=0.8, zorder=2))

    def dims(name: str) -> str:
        return f"{data[name]['channels']}\n{_size_text(data[name]['spatial'])}"

    def text(x: float, y: float, words: str, **kwargs) -> None:
        kwargs = {"ha": "center", "va": "bottom", "fontsize": _FONT, "linespacing": 1.05, **kwargs}
        ax.text(x, y, words, **kwargs)

    # Top row: input, encoder stages (name, stride, channels, size above each box), fc6/fc7, scores.
    rect("input", INPUT_FILL, "#555555")
    text(boxes["input"].x - 0.05, 0.0, dims("input"), ha="right", va="center")
    text(boxes["input"].centre, boxes["input"].bottom - 0.04, "input", va="top", style="italic")
    if crop:
        text(boxes["input"].centre, boxes["input"].bottom - 0.2, f"zero-padded to\n{_size_text(padded)}",
             va="top", color="#404040")
    names = {"fc6": "fc6", "fc7": "fc7", "score_fr": "score_fr"}
    names.update({f"x{i}": f"pool{i} /{2**i}" for i in range(1, 6)})
    names.update({f"deconv{i}": f"deconv{i} /{2**(5 - i)}" for i in range(1, 6)})
    for previous, name in zip(top_row[:-1], top_row[1:]):
        a, b = boxes[previous], boxes[name]
        if name == "logits":
            continue
        colour = CONV_COLOUR if name.startswith("x") else FC_COLOUR if name.startswith("fc") else \
            UP_COLOUR if name.startswith("deconv") else HEAD_COLOUR
        _arrow(ax, (a.right, 0.0), (b.x, 0.0), colour)
        fill = SCORE_FILL if name == "score_fr" else MAP_FILL
        rect(name, fill)
        text(b.centre, b.top + 0.03, f"{names[name]}\n{dims(name)}")

    # The staircase (16s, 8s): x2 up-conv, skip score, sum.
    for skip, up, pool in (("score_pool4", "upscore2", "x4"), ("score_pool3", "upscore_pool4", "x3")):
        if skip not in plus:
            continue
        source = boxes["score_fr"] if up == "upscore2" else None
        top = source.bottom if source else plus["score_pool4"][1] - _PLUS
        u, s, (px, py) = boxes[up], boxes[skip], plus[skip]
        _arrow(ax, (px, top), (px, u.top), UP_COLOUR)
        text(px - 0.06, (top + u.top) / 2, "×2", ha="right", va="center", color=UP_COLOUR)
        rect(up, SCORE_FILL)
        text(u.right + 0.05, u.y, f"{up}\n{dims(up)}", ha="left", va="center")
        _arrow(ax, (px, u.bottom), (px, py + _PLUS), "#404040", lw=1.2)
        ax.add_patch(Circle((px, py), _PLUS, facecolor="white", edgecolor="#404040", lw=1.2, zorder=3))
        text(px, py, "+", va="center_baseline", fontsize=10, zorder=4)
        fuse = "fuse_" + skip.split("_")[1]
        text(px + _PLUS + 0.05, py - _PLUS - 0.02, f"{fuse}\n{dims(fuse)}", ha="left", va="top", color="#404040")
        p = boxes[pool]
        ax.plot([p.centre, p.centre], [p.bottom, py], color=HEAD_COLOUR, lw=1.6, zorder=1, solid_capstyle="butt")
        _arrow(ax, (p.centre - 0.008, py), (s.x, py), HEAD_COLOUR)
        rect(skip, SCORE_FILL)
        text(s.centre, s.top + 0.03, f"{skip}\n{dims(skip)}")
        _arrow(ax, (s.right, py), (px - _PLUS, py), HEAD_COLOUR)

    # Output: the last score map, upsampled to the input size.
    out = boxes["logits"]
    rect("logits", OUTPUT_FILL, "#a0522d")
    text(out.right + 0.05, out.y, dims("logits"), ha="left", va="center")
    text(out.centre, out.bottom - 0.04, "output", va="top", style="italic")
    if seed:
        head = boxes["deconv5"]
        _arrow(ax, (head.right, 0.0), (out.x, 0.0), HEAD_COLOUR)
        up_text = "up-conv 3×3 ×2, ReLU, BatchNorm (learned)"
    else:
        stride = {"32s": 32, "16s": 16, "8s": 8}[variant]
        start = (plus[max(plus)][0] + _PLUS, out.y) if plus else (boxes["score_fr"].right, 0.0)
        _arrow(ax, start, (out.x, out.y), FIXED_COLOUR)
        text((start[0] + out.x) / 2, out.y + 0.04, f"×{stride} bilinear\n(fixed)" + (", crop" if crop else ""),
             color=FIXED_COLOUR)
        up_text = texts["up"]

    handles = [Line2D([], [], color=CONV_COLOUR, lw=2, label=texts["stage"])]
    if seed:
        handles += [Line2D([], [], color=UP_COLOUR, lw=2, label=up_text),
                    Line2D([], [], color=HEAD_COLOUR, lw=2, label=texts["score"])]
    else:
        score = texts["score"] + (" (skips: zero init)" if plus else "")
        handles += [Line2D([], [], color=FC_COLOUR, lw=2, label=texts["fc"]),
                    Line2D([], [], color=HEAD_COLOUR, lw=2, label=score)]
        if plus:
            handles += [Line2D([], [], color=UP_COLOUR, lw=2, label=up_text),
                        Line2D([], [], color="#404040", marker="$+$", ls="none", markersize=8, label="sum")]
        handles.append(Line2D([], [], color=FIXED_COLOUR, lw=2, label="bilinear upsampling, fixed"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if fig_width < 9 else 3, fontsize=8, frameon=False)
    if title is None:
        name = "FCN-32s (seed decoder)" if seed else f"FCN-{variant}"
        title = f"{name}, input {'×'.join(str(s) for s in data['input']['spatial'])}"
    fig.suptitle(title, fontsize=11)
    return fig
