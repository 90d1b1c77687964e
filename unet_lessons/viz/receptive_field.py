"""Receptive fields, three ways: the textbook formula, the exact per-pixel walk, and gradients.

* :func:`textbook_receptive_field` is the usual recurrence ``r += (k - 1) * d * j``,
  ``j *= s`` (Araujo et al., Distill 2019), extended to upsampling (``j /= 2``). It gives
  one size for the whole network and assumes every layer's window can fall anywhere.
* :func:`analytic_receptive_field` walks the layer list backwards from one output pixel
  and maps the index interval exactly through each layer, clipping at the image border.
  It shows what the formula hides: near a border the field is cut off, and after a
  pooling followed by an upsampling the field depends on where the pixel sits in the
  pooling grid, because the two pixels of one pooling cell share their coarse parent.
* :func:`gradient_receptive_field` measures the same set: the input pixels with a
  non-zero gradient of one output pixel, in a copy of the network with positive
  weights, average instead of max pooling and ``eval`` mode, so that no path can be
  hidden by a ReLU, a max or a cancellation.

Every op used in the U-Nets here acts on each spatial axis separately, so the walk runs
per axis and the field is a box. Built in ``notebooks/02_unet.ipynb``.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..blocks import avg_pool_type
from ..models.base import is_skip_stage, unpack_output

__all__ = [
    "LayerSpec",
    "layer_specs",
    "textbook_receptive_field",
    "stage_receptive_fields",
    "analytic_receptive_field",
    "model_receptive_field",
    "gradient_receptive_field",
    "draw_receptive_fields",
    "pooling_cover",
    "draw_pooling_phases",
]


@dataclass(frozen=True)
class LayerSpec:
    """One spatial layer seen along one axis.

    ``kind`` is ``"conv"`` (convolution or pooling), ``"transpose"``, ``"interp"``, ``"nearest"``
    or ``"pad"`` (constant padding of ``padding`` values at the start of the axis and ``pad_end``
    at its end: 3D U²-Net pads one voxel at the end before each strided convolution).
    """

    name: str
    kind: str
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    output_padding: int = 0
    scale: int = 1
    align_corners: bool = False
    pad_end: int = 0


def _first(value) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def layer_specs(layers: Sequence[nn.Module]) -> list[LayerSpec]:
    """Turn a list of modules (e.g. ``UNet.deepest_path()``) into per-axis :class:`LayerSpec` s.

    Assumes the same kernel, stride and padding on every axis (true for the networks here).
    """
    specs = []
    for module in layers:
        name = type(module).__name__
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            specs.append(LayerSpec(name, "transpose", _first(module.kernel_size), _first(module.stride),
                                   _first(module.padding), _first(module.dilation), _first(module.output_padding)))
        elif isinstance(module, nn.modules.conv._ConvNd):
            if isinstance(module.padding, str):
                raise ValueError("string padding is not supported; give integers")
            specs.append(LayerSpec(name, "conv", _first(module.kernel_size), _first(module.stride),
                                   _first(module.padding), _first(module.dilation)))
        elif isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
            stride = module.stride if module.stride is not None else module.kernel_size
            specs.append(LayerSpec(name, "conv", _first(module.kernel_size), _first(stride), _first(module.padding),
                                   _first(getattr(module, "dilation", 1))))
        elif isinstance(module, nn.modules.padding._ConstantPadNd):
            pads = tuple(module.padding)  # (start, end) of the last axis first, as F.pad
            if len(set(pads[0::2])) > 1 or len(set(pads[1::2])) > 1:
                raise ValueError(f"{name} pads its axes differently; give every axis the same padding")
            specs.append(LayerSpec(name, "pad", padding=int(pads[0]), pad_end=int(pads[1])))
        elif isinstance(module, nn.Upsample):
            if module.mode not in ("linear", "bilinear", "trilinear", "nearest"):
                raise ValueError(f"upsampling mode {module.mode!r} is not supported")
            scale = module.scale_factor
            scale = _first(scale) if isinstance(scale, (tuple, list)) else scale
            if scale is None or float(scale) != int(scale):
                raise ValueError("only integer scale_factor upsampling is supported")
            kind = "nearest" if module.mode == "nearest" else "interp"
            specs.append(LayerSpec(name, kind, scale=int(scale), align_corners=bool(module.align_corners)))
        else:
            raise ValueError(f"no receptive-field rule for {name}")
    return specs


def textbook_receptive_field(specs: Sequence[LayerSpec], *, transpose_rule: str = "exact") -> list[dict]:
    """The textbook recurrence, layer by layer.

    Args:
        specs: the layers, from :func:`layer_specs`.
        transpose_rule: how a transposed conv grows the field. ``"exact"`` (default): each
            output reads at most ``ceil(k / s)`` inputs, so it adds
            ``(ceil(k / s) - 1) * s * j_new``; a 2x2 stride-2 up-conv adds nothing, since every
            output pixel reads exactly one input pixel (through one of its taps).
            ``"paper"``: count the kernel's extent on the finer output grid, ``(k - 1) * j_new``,
            as if it were an ordinary conv there. That is how V-Net's Table 1 (Milletari et al.
            2016) gets 476, 528, 546, 551 for the decoder: each 2x2x2 up-conv adds one finer
            jump (8, 4, 2, 1). Neither rule gives the true field of a net that goes down and
            back up by stride-2 steps: that depends on where the pixel sits in the coarse grid
            (:func:`analytic_receptive_field`, confirmed by gradients). For the paper's V-Net it
            is 532 or 548 voxels per axis, against 536 ("exact") and 551 ("paper").

    Returns:
        One row per layer with the field size ``r`` and the jump ``j`` (distance in input
        pixels between neighbouring pixels of that layer's output).
    """
    if transpose_rule not in ("exact", "paper"):
        raise ValueError(f"transpose_rule must be 'exact' or 'paper'; got {transpose_rule!r}.")
    r, j = Fraction(1), Fraction(1)
    rows = []
    for spec in specs:
        if spec.kind == "conv":
            r += (spec.kernel - 1) * spec.dilation * j
            j *= spec.stride
        elif spec.kind == "transpose":
            j /= spec.stride
            if transpose_rule == "paper":
                r += (spec.kernel - 1) * spec.dilation * j
            else:  # each output reads ceil(k / s) inputs at most
                r += (math.ceil(spec.kernel / spec.stride) - 1) * j * spec.stride
        elif spec.kind == "interp":
            r += j  # linear interpolation reads two neighbouring inputs
            j /= spec.scale
        elif spec.kind == "nearest":
            j /= spec.scale
        rows.append({"layer": spec.name, "kernel": spec.kernel, "stride": spec.stride, "r": float(r), "j": float(j)})
    return rows


def stage_receptive_fields(model: nn.Module, *, transpose_rule: str = "exact") -> "OrderedDict[str, float]":
    """The textbook field at the end of every stage of a model with ``stage_paths()`` (e.g. ``VNet``).

    With ``transpose_rule="paper"`` the V-Net preset ``"milletari2016"`` gives Table 1 of the
    paper: 5, 22, 72, 172, 372 down, 476, 528, 546, 551 up.

    Args:
        model: a network whose ``stage_paths()`` maps stage names to their spatial layers.
        transpose_rule: see :func:`textbook_receptive_field`.

    Returns:
        Stage name -> field size in input pixels (per axis), in the order of the stages.
    """
    names, specs, ends = [], [], []
    for name, layers in model.stage_paths().items():
        if is_skip_stage(name):
            continue  # the layers on a skip branch off this chain (see SegmentationModel.receptive_paths)
        specs += layer_specs(layers)
        names.append(name)
        ends.append(len(specs) - 1)
    rows = textbook_receptive_field(specs, transpose_rule=transpose_rule)
    r_before = lambda end: rows[end]["r"] if end >= 0 else 1.0  # noqa: E731  (a stage without layers)
    return OrderedDict((name, r_before(end)) for name, end in zip(names, ends))


def _output_length(spec: LayerSpec, n: int) -> int:
    if spec.kind == "conv":
        return (n + 2 * spec.padding - spec.dilation * (spec.kernel - 1) - 1) // spec.stride + 1
    if spec.kind == "pad":
        return n + spec.padding + spec.pad_end
    if spec.kind == "transpose":
        return (n - 1) * spec.stride - 2 * spec.padding + spec.dilation * (spec.kernel - 1) + spec.output_padding + 1
    return n * spec.scale


def _source_interval(spec: LayerSpec, lo: int, hi: int, n_in: int) -> tuple[int, int]:
    """Input indices that output indices ``lo..hi`` read, clipped to ``0..n_in-1``."""
    if spec.kind == "conv":
        a = lo * spec.stride - spec.padding
        b = hi * spec.stride - spec.padding + spec.dilation * (spec.kernel - 1)
    elif spec.kind == "transpose":
        # output o = i * s - p + t * d for taps t = 0..k-1
        a = math.ceil((lo + spec.padding - spec.dilation * (spec.kernel - 1)) / spec.stride)
        b = (hi + spec.padding) // spec.stride
    elif spec.kind == "nearest":
        a, b = lo // spec.scale, hi // spec.scale
    elif spec.kind == "pad":
        a, b = lo - spec.padding, hi - spec.padding  # the padded values read no input
    else:  # linear interpolation: the two neighbours of the source coordinate, unless it hits one exactly
        n_out = n_in * spec.scale
        a, b = n_in, -1
        for o in range(lo, hi + 1):
            if spec.align_corners:
                src = Fraction(o * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
            else:
                src = max(Fraction(0), Fraction(2 * o + 1, 2 * spec.scale) - Fraction(1, 2))
            base = math.floor(src)
            a, b = min(a, base), max(b, base + (1 if src != base else 0))
    return max(a, 0), min(b, n_in - 1)


def analytic_receptive_field(specs: Sequence[LayerSpec], input_shape: Sequence[int],
                             position: Sequence[int]) -> list[tuple[int, int]]:
    """The exact input box that output pixel ``position`` depends on, per axis.

    Args:
        specs: the layers along the longest path, from :func:`layer_specs`.
        input_shape: spatial input size, e.g. ``(128, 128)``.
        position: the output pixel, one index per axis.

    Returns:
        ``[(first, last), ...]`` inclusive input indices per axis.
    """
    box = []
    for n, p in zip(input_shape, position):
        lengths = [n]
        for spec in specs:
            lengths.append(_output_length(spec, lengths[-1]))
        if not 0 <= p < lengths[-1]:
            raise ValueError(f"position {p} is outside the output length {lengths[-1]}")
        lo = hi = p
        for spec, n_in in zip(reversed(specs), reversed(lengths[:-1])):
            lo, hi = _source_interval(spec, lo, hi, n_in)
        box.append((lo, hi))
    return box


def model_receptive_field(model: nn.Module, input_shape: Sequence[int],
                          position: Sequence[int]) -> list[tuple[int, int]]:
    """The exact input box of one output pixel of a model: the union over its ``receptive_paths()``.

    For a U-Net this is the box of the deepest path; a model with layers on its skips
    (MultiResUNet) adds the path through each of them, which can reach further at the edges.

    Args:
        model: a model of the contract (``unet_lessons.models.base``).
        input_shape: spatial input size.
        position: the output pixel, one index per axis.

    Returns:
        ``[(first, last), ...]`` inclusive input indices per axis.
    """
    boxes = [analytic_receptive_field(layer_specs(path), input_shape, position)
             for path in model.receptive_paths().values()]
    return [(min(box[axis][0] for box in boxes), max(box[axis][1] for box in boxes)) for axis in range(len(input_shape))]


class _AffineOnly(nn.Module):
    """A norm that computes its statistics over the image, reduced to its per-channel scale and shift."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        channels = getattr(norm, "num_features", None) or getattr(norm, "num_channels", None)
        weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
        self.weight = nn.Parameter(weight.detach().clone() if weight is not None else torch.ones(channels))
        self.bias = nn.Parameter(bias.detach().clone() if bias is not None else torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


_IMAGE_STATISTICS = (nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)


def _replace_max_pools(module: nn.Module) -> None:
    """Max-pools become average pools, and norms with image-wide statistics keep only their scale and shift."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.pooling._MaxPoolNd):
            dims = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(child)]
            setattr(module, name, avg_pool_type(dims)(child.kernel_size, child.stride, child.padding))
        elif isinstance(child, _IMAGE_STATISTICS) and not getattr(child, "track_running_stats", False):
            # Instance and group norm take a mean and a variance over the whole map, so every output
            # depends a little on every input through those two numbers. The receptive field counts
            # the paths through the layers' windows, so the probe holds the statistics fixed.
            setattr(module, name, _AffineOnly(child))
        else:
            _replace_max_pools(child)


def gradient_receptive_field(model: nn.Module, input_shape: Sequence[int], position: Sequence[int],
                             *, in_channels: Optional[int] = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Measure the receptive field of one output pixel by back-propagation.

    A float64 copy of ``model`` is put in ``eval`` mode, its max-pools become average
    pools, every parameter is made positive and norm statistics are reset, and the input
    is all ones: then every activation is positive, no ReLU blocks and nothing cancels,
    so a gradient is non-zero exactly where a path exists. Instance and group norms, whose
    mean and variance are taken over the whole map, keep only their scale and shift: through
    those statistics every output depends on every input, which is not a path of the
    layers' windows and would make every field the whole image.

    Args:
        model: the network (left unchanged).
        input_shape: spatial input size.
        position: the output pixel.
        in_channels: input channels; defaults to ``model.in_channels``.

    Returns:
        The boolean mask of input pixels with non-zero gradient, and its bounding box.
    """
    probe = copy.deepcopy(model).double().eval()
    _replace_max_pools(probe)
    probe.double()  # the affine-only norms are new
    with torch.no_grad():
        for param in probe.parameters():
            param.copy_(param.abs() + 1e-3)
        for name, buffer in probe.named_buffers():
            if name.endswith("running_mean"):
                buffer.zero_()
            elif name.endswith("running_var"):
                buffer.fill_(1.0)
    channels = in_channels if in_channels is not None else model.in_channels
    x = torch.ones((1, channels, *input_shape), dtype=torch.float64, requires_grad=True)
    out = unpack_output(probe(x)).logits
    out[(0, slice(None), *position)].sum().backward()
    mask = (x.grad[0] != 0).any(dim=0).numpy()
    if not mask.any():
        raise RuntimeError("no input pixel reaches that output pixel")
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((int(hits[0]), int(hits[-1])))
    return mask, box


def draw_receptive_fields(image: np.ndarray, positions: Sequence[Sequence[int]],
                          analytic: Sequence[Sequence[tuple[int, int]]],
                          masks: Optional[Sequence[np.ndarray]] = None,
                          *, title: str = "Receptive fields on the input") -> Figure:
    """Draw 2D receptive fields on the input: the analytic box (outline), the gradient set (fill).

    Args:
        image: the 2D input image.
        positions: output pixels ``(row, col)``, drawn as crosses. For a valid-padded
            network give them in input coordinates (add the crop offset).
        analytic: per position, ``[(row_first, row_last), (col_first, col_last)]``.
        masks: per position, the boolean gradient mask (same size as ``image``).
        title: the figure title.
    """
    image = np.asarray(image, dtype=float)
    fig = Figure(figsize=(6, 6), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray")
    colours = ["tab:orange", "tab:cyan", "tab:green", "tab:pink", "tab:olive", "tab:purple"]
    for index, (pos, box) in enumerate(zip(positions, analytic)):
        colour = colours[index % len(colours)]
        if masks is not None:
            overlay = np.zeros((*image.shape, 4))
            overlay[masks[index]] = (*_rgb(colour), 0.25)
            ax.imshow(overlay)
        (r0, r1), (c0, c1) = box
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, lw=2,
                               ls="--", edgecolor=colour, label=f"pixel {tuple(pos)}: {r1 - r0 + 1}×{c1 - c0 + 1}"))
        ax.plot(pos[1], pos[0], marker="x", color=colour, markersize=10, mew=2)
    ax.set_title(title)
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    return fig


def pooling_cover(first: int, last: int, cell: int = 2) -> tuple[int, int]:
    """The fine pixels that the pooling cells holding pixels ``first..last`` cover: the interval widened to cell edges.

    Walking a receptive field back through an up-convolution and the pooling below it, an interval
    of fine pixels becomes its coarse parents (``first // cell`` to ``last // cell``), and each parent
    covers its whole pooling cell of ``cell`` pixels.
    """
    if last < first or first < 0 or cell < 1:
        raise ValueError(f"need 0 <= first <= last and cell >= 1; got first={first}, last={last}, cell={cell}.")
    return first // cell * cell, (last // cell + 1) * cell - 1


def draw_pooling_phases(intervals: Sequence[tuple[int, int]], *, pixels: int = 16, cell: int = 2,
                        title: str = "The same need, two phases of the pooling grid") -> Figure:
    """One row per interval of fine pixels: the pixels it needs, and those its pooling cells add (1-D).

    Args:
        intervals: ``(first, last)`` fine pixels, e.g. ``[(4, 9), (3, 8)]``: equally wide, one on
            the cell edges, one across them.
        pixels: fine pixels drawn per row.
        cell: pooling cell width (2 for a 2×2 pooling).
        title: the figure title.
    """
    fig = Figure(figsize=(0.42 * pixels + 2.6, 0.9 * len(intervals) + 1.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    needed_colour, added_colour = "tab:blue", "tab:orange"
    for row, (first, last) in enumerate(intervals):
        low, high = pooling_cover(first, last, cell)
        if high >= pixels:
            raise ValueError(f"interval {first}..{last} covers pixel {high}; draw at least {high + 1} pixels.")
        y = -row * 1.6
        for x in range(pixels):
            colour = needed_colour if first <= x <= last else added_colour if low <= x <= high else "white"
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="0.6", lw=0.8))
        for edge in range(0, pixels + 1, cell):  # the pooling grid
            ax.plot([edge, edge], [y - 0.15, y + 1.15], color="black", lw=2)
        ax.text(pixels + 0.4, y + 0.5, f"needs {last - first + 1} px,\nfield {high - low + 1} px", va="center",
                fontsize=9)
        ax.text(-0.4, y + 0.5, f"pixels {first}–{last}", va="center", ha="right", fontsize=9)
    ax.set_xlim(-3.2, pixels + 3.2)
    ax.set_ylim(-1.6 * (len(intervals) - 1) - 0.4, 1.5)
    ax.set_xticks(np.arange(pixels) + 0.5, [str(x) for x in range(pixels)], fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("fine pixel (input side of the pooling)")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor=needed_colour, label="pixels the layers above need"),
                       Patch(facecolor=added_colour, label="added: the rest of their pooling cells"),
                       Line2D([], [], color="black", lw=2, label=f"pooling cell edge ({cell} px)")],
              loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=8, frameon=False)
    ax.set_title(title)
    return fig


def _rgb(name: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(name)
