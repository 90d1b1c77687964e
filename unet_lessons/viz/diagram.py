"""The U-Net architecture diagram, drawn from the model's real shapes.

Ronneberger et al. (2015) explain the network with one figure (Fig. 1): a U of boxes,
one per multi-channel feature map, labelled with its channels and size, joined by
coloured arrows. :func:`draw_unet` draws that figure for any model whose
``forward_features`` follows the ``"encoder_decoder"`` key scheme of the model contract
(``unet_lessons.models.base``), such as the U-Net and the V-Net:
the shapes come from running ``forward_features`` on the ``"meta"`` device, which
propagates shapes without computing anything, so the 572×572 paper network takes a few
milliseconds and the diagram can never disagree with the code. Built in
``notebooks/02_unet.ipynb``.

Layout (as in the paper): row ``l`` holds level ``l``. On the encoder side a row shows
the stage input (the image, or the max-pooled map) and, after the double conv, the stage
output; on the decoder side the join, concatenated or added (white: copied encoder map, blue: the
upsampled map) and the stage output. Box height grows with log2 of the spatial size,
box width with log2 of the channels.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Optional, Sequence

import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from ..models.base import check_feature_keys, is_skip_stage

__all__ = ["unet_diagram_data", "draw_unet", "meta_copy", "conv_counts", "residual_stages"]

# Colours of the paper's Fig. 1.
CONV_COLOUR = "#1f5fbf"   # blue: conv 3x3, ReLU
POOL_COLOUR = "#d62728"   # red: max-pool
UP_COLOUR = "#2ca02c"     # green: up-conv
SKIP_COLOUR = "#7f7f7f"   # grey: copy (and crop)
HEAD_COLOUR = "#17becf"   # teal: conv 1x1
RESIDUAL_COLOUR = "#7b3294"  # purple: the residual addition of a stage
SKIP_PATH_COLOUR = "#e6550d"  # orange: layers on a skip (MultiResUNet's Res paths)
MAP_FILL, MAP_EDGE = "#9ecae1", "#2b5d8a"
INPUT_FILL, OUTPUT_FILL = "#d9d9d9", "#fdd0a2"

# Geometry, in inches (the axes use one data unit per inch).
_GAP = 0.32        # length of a conv arrow between two boxes of a row
_SKIP_MIN = 0.9   # shortest skip arrow, room for its label
_BAND = 0.46       # vertical room between rows, for labels and the pool/up arrows
_FONT = 7


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the ``"meta"`` device.

    Unlike ``copy.deepcopy(model).to("meta")`` it never copies the weights, so it is
    instant even for the 31M-parameter paper network.
    """
    memo: dict = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"),
                                           requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def _full_shape(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    spatial_dims = model.spatial_dims
    if len(shape) == spatial_dims:
        shape = (1, model.in_channels) + shape
    elif len(shape) == spatial_dims + 1:
        shape = (1,) + shape
    if len(shape) != spatial_dims + 2:
        raise ValueError(f"input_shape {tuple(input_shape)} does not fit a {spatial_dims}D model; "
                         f"give (B, C, *S) or the spatial size only.")
    return shape


_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
_UPS = (nn.modules.conv._ConvTransposeNd, nn.Upsample)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def unet_diagram_data(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """The shapes of every U-Net stage for one input shape, computed on the meta device.

    Args:
        model: a U-Net with ``forward_features`` returning ``enc0`` … ``enc{depth-1}``,
            ``bottleneck``, ``dec{depth-1}`` … ``dec0``, ``logits``.
        input_shape: ``(B, C, *S)``, or just the spatial size ``S``.

    Returns:
        One dict per stage, in the order of ``forward_features``, with keys ``name``,
        ``channels``, ``spatial`` (tuple), ``column`` (``"encoder"``, ``"bottleneck"``,
        ``"decoder"`` or ``"head"``), ``level`` (0 = full resolution; the bottleneck is at
        ``depth``), and the map the stage's convs start from: ``in_channels`` and
        ``in_spatial`` (the input image for ``enc0``, the pooled map for deeper encoder
        stages and the bottleneck, the concatenation for decoder stages, ``dec0`` for the
        head). Decoder stages also give ``skip_channels`` and ``up_channels`` (the two
        parts of the concatenation) and ``up_spatial`` (the upsampled map before it is
        padded or the skip is cropped to match).
    """
    if model.feature_scheme != "encoder_decoder":
        raise ValueError(f"draw_unet draws models with feature_scheme 'encoder_decoder'; {type(model).__name__} "
                         f"declares {model.feature_scheme!r}. viz.draw_architecture picks the right drawing.")
    shape = _full_shape(model, input_shape)
    meta = meta_copy(model).eval()
    resampled: list[tuple[str, tuple[int, ...]]] = []

    def record(module, _inputs, output):
        down = isinstance(module, _POOLS) or not isinstance(module, _UPS)  # a pooling or a strided convolution
        resampled.append(("pool" if down else "up", tuple(output.shape)))

    downs = {id(layer) for layer in _down_layers(meta)}
    # Only the stages' layers: a branch off them (3D U²-Net's deep-supervision heads) upsamples too.
    staged = {id(layer) for path in _drawn_paths(meta).values() for layer in path}
    for module in meta.modules():
        if (isinstance(module, _POOLS + _UPS) and id(module) in staged) or id(module) in downs:
            module.register_forward_hook(record)
    with torch.no_grad():
        features = meta.forward_features(torch.empty(shape, device="meta"))
    check_feature_keys(model, list(features))
    pooled = [s for kind, s in resampled if kind == "pool"]
    upsampled = [s for kind, s in resampled if kind == "up"]

    depth = sum(1 for name in features if re.fullmatch(r"enc\d+", name))
    padding = model.padding
    stages: list[dict] = []
    by_name: dict[str, dict] = {}
    previous: Optional[dict] = None
    for name, tensor in features.items():
        channels, spatial = int(tensor.shape[1]), tuple(int(s) for s in tensor.shape[2:])
        stage = {"name": name, "channels": channels, "spatial": spatial}
        encoder, decoder = re.fullmatch(r"enc(\d+)", name), re.fullmatch(r"dec(\d+)", name)
        skip_path = re.fullmatch(r"skip(\d+)", name)
        if encoder or name == "bottleneck":
            level = int(encoder.group(1)) if encoder else depth
            stage.update(column="encoder" if encoder else "bottleneck", level=level)
            if level == 0:
                stage.update(in_channels=shape[1], in_spatial=tuple(shape[2:]))
            elif len(pooled) == depth:  # the map the downsampling layer gave: a strided conv may change the channels
                stage.update(in_channels=pooled[level - 1][1], in_spatial=tuple(pooled[level - 1][2:]))
            else:
                raise _cannot_draw(model, f"found {len(pooled)} downsampling layers (poolings or strided convolutions "
                                          f"first in their stage) for {depth} levels")
        elif skip_path:
            level = int(skip_path.group(1))
            source = by_name[f"enc{level}"]
            stage.update(column="skip", level=level, in_channels=source["channels"], in_spatial=source["spatial"])
        elif decoder:
            level = int(decoder.group(1))
            skip = by_name.get(f"skip{level}", by_name[f"enc{level}"])  # after the skip's own layers, if any
            index = depth - 1 - level
            if len(upsampled) != depth:
                raise _cannot_draw(model, f"found {len(upsampled)} upsampling layers (transposed convolutions or "
                                          f"nn.Upsample) for {depth} decoder levels")
            up_channels, up_spatial = upsampled[index][1], tuple(upsampled[index][2:])
            concat = up_spatial if padding == "valid" else skip["spatial"]
            joined = skip["channels"] if model.skip_join == "add" else skip["channels"] + up_channels
            stage.update(column="decoder", level=level, in_channels=joined,
                         in_spatial=tuple(concat), skip_channels=skip["channels"], up_channels=up_channels,
                         up_spatial=up_spatial)
        elif name == "logits":
            stage.update(column="head", level=0, in_channels=previous["channels"], in_spatial=previous["spatial"])
        else:
            raise _cannot_draw(model, f"forward_features returned {name!r}; draw_unet knows enc*, skip*, bottleneck, "
                                      "dec* and logits")
        stages.append(stage)
        by_name[name] = stage
        previous = stage
    return stages


def _cannot_draw(model: nn.Module, what: str) -> ValueError:
    return ValueError(f"draw_unet cannot draw {type(model).__name__}: it {what}. The drawing needs the stage layout "
                      "of the model contract (unet_lessons.models.base); draw this model another way, e.g. "
                      "print(model) or torchinfo.summary(model).")


# ----- drawing -------------------------------------------------------------------------------
def _size_text(spatial: Sequence[int]) -> str:
    if len(set(spatial)) == 1:
        return f"{spatial[0]}{'²' if len(spatial) == 2 else '³' if len(spatial) == 3 else ''}"
    return "×".join(str(s) for s in spatial)


def _height(spatial: Sequence[int]) -> float:
    mean = math.exp(sum(math.log(max(s, 1)) for s in spatial) / len(spatial))
    return max(0.14, 0.09 * math.log2(max(mean, 2)))


def _width(channels: int) -> float:
    return 0.05 + 0.035 * math.log2(max(channels, 1))


def _layer_text(layer: Optional[nn.Module], cube) -> str:
    """How one resampling layer reads in the legend: "max-pool 2×2", "up-conv 2×2", "bilinear ×2", ..."""
    if isinstance(layer, nn.modules.pooling._MaxPoolNd):
        return f"max-pool {cube(_first(layer.kernel_size))}"
    if isinstance(layer, nn.modules.pooling._AvgPoolNd):
        return f"avg-pool {cube(_first(layer.kernel_size))}"
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        return f"up-conv {cube(_first(layer.kernel_size))}"
    if isinstance(layer, nn.modules.conv._ConvNd) and _is_down(layer):
        return f"down-conv {cube(_first(layer.kernel_size))}, stride {_first(layer.stride)}"
    if isinstance(layer, nn.Upsample):
        return f"{layer.mode} ×2"
    if isinstance(layer, nn.modules.conv._ConvNd):
        return f"conv {cube(_first(layer.kernel_size))}"
    return "downsampling" if layer is not None else "?"


def _first(value) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


_ACTS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU)


def _is_down(layer: nn.Module) -> bool:
    """A pooling, or a convolution with a stride above one: the layer that starts a deeper stage."""
    if isinstance(layer, _POOLS):
        return True
    return (isinstance(layer, nn.modules.conv._ConvNd) and not isinstance(layer, nn.modules.conv._ConvTransposeNd)
            and max(_tuple(layer.stride)) > 1)


def _tuple(value) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def _drawn_paths(model: nn.Module) -> dict[str, list[nn.Module]]:
    """``model.stage_paths()`` without padding layers: a diagram draws the convolution the padding feeds
    (3D U²-Net pads each axis before its strided convolution)."""
    return {name: [layer for layer in path if not isinstance(layer, nn.modules.padding._ConstantPadNd)]
            for name, path in model.stage_paths().items()}


def _down_layers(model: nn.Module) -> list[nn.Module]:
    """The downsampling layer of each deeper encoder stage and of the bottleneck, in order."""
    paths = _drawn_paths(model)
    names = [f"enc{level}" for level in range(1, model.depth)] + ["bottleneck"]
    return [paths[name][0] for name in names if paths[name] and _is_down(paths[name][0])]


def _resampling_end(path: Sequence[nn.Module]) -> int:
    """How many leading layers of a stage's path resample: a down-layer, or an upsampling layer with the
    1×1 convolutions before it (Myronenko's "conv 1×1×1, then linear upsampling")."""
    if path and _is_down(path[0]):
        return 1
    for index, layer in enumerate(path):
        if isinstance(layer, _UPS):
            return index + 1
        if not (isinstance(layer, nn.modules.conv._ConvNd) and max(_tuple(layer.kernel_size)) == 1):
            return 0
    return 0


def conv_counts(model: nn.Module) -> dict[str, int]:
    """Convolutions per stage, not counting the stage's down- or up-sampling layers (``stage_paths``)."""
    counts = {}
    for name, path in _drawn_paths(model).items():
        if name == "logits" or is_skip_stage(name):  # a skip's layers are labelled on its arrow
            continue
        layers = path[_resampling_end(path):]
        counts[name] = sum(1 for m in layers if isinstance(m, nn.modules.conv._ConvNd))
    return counts


def residual_stages(model: nn.Module) -> list[str]:
    """Stages holding a module that declares ``residual = True`` (it adds its input to its output)."""
    return [name for name, modules in model.stage_modules().items() if not is_skip_stage(name)
            and any(getattr(m, "residual", False) for module in modules for m in module.modules())]


def _describe(model: nn.Module, spatial_dims: int) -> dict[str, str]:
    """Legend texts read from the layers of the model's stages (``model.stage_modules()``, the model contract).

    Every word names a layer the model holds: the kernel and count of its stage convolutions, its
    normalisation and activation types, its downsampling and upsampling layers, and the residual
    addition only where a stage declares one. ``tests/test_viz.py`` checks this for every model.
    """
    cube = lambda k: "×".join([str(k)] * spatial_dims)  # noqa: E731
    stages, paths = model.stage_modules(), _drawn_paths(model)
    main = lambda name: name != "logits" and not is_skip_stage(name)  # noqa: E731  (skips: on their arrows)
    everything = [m for name, modules in stages.items() if main(name) for module in modules
                  for m in module.modules()]
    stage_convs = [m for name, path in paths.items() if main(name) for m in path[_resampling_end(path):]
                   if isinstance(m, nn.modules.conv._ConvNd) and not _is_down(m) and not isinstance(m, _UPS)]
    kernels = sorted({_first(m.kernel_size) for m in stage_convs})
    counts = set(conv_counts(model).values())
    kernel_text = " / ".join(cube(k) for k in kernels)
    if len(counts) == 1:
        parts = [f"{counts.pop()}× conv {kernel_text}" if stage_convs else "stage"]
    else:
        parts = [f"conv {kernel_text} (×n per stage, on the arrow)"]
    if model.padding == "valid":
        parts[0] += " (unpadded)"
    norms = sorted({re.sub(r"\d+d$", "", type(m).__name__) for m in everything if isinstance(m, _NORMS)})
    acts = sorted({type(m).__name__ for m in everything if isinstance(m, _ACTS)})
    below = "bottleneck" if model.depth == 1 else "enc1"
    down = paths[below][0] if paths[below] else None
    up_path = paths[f"dec{model.depth - 1}"]
    up_layers = up_path[:max(1, _resampling_end(up_path))] if up_path else [None]
    head = " + ".join(f"conv {cube(_first(m.kernel_size))}" for m in paths["logits"]) or "conv"
    # Pre-activation blocks (norm, act, then conv; Myronenko 2018) are described in that order.
    pre_activation = any(getattr(m, "order", None) == "norm_act_conv" for m in everything)
    conv_text = (", ".join(norms + acts) + ", then " + ", ".join(parts) + " (pre-activation)" if pre_activation
                 else ", ".join(parts + norms + acts))
    texts = {"conv": conv_text, "pool": _layer_text(down, cube),
             "up": ", then ".join(_layer_text(layer, cube) for layer in up_layers), "head": head}
    on_skips = any(getattr(m, "residual", False) for modules in model.skip_modules().values()
                   for module in modules for m in module.modules())  # drawn as ⊕ on a skip's label
    if residual_stages(model) or on_skips:
        texts["residual"] = "residual addition (stage input + output)"
    return texts


def _skip_path_texts(model: nn.Module, spatial_dims: int) -> dict[int, str]:
    """Level -> a label for the layers on that skip (``model.skip_modules()``), for the skips that have any."""
    cube = lambda k: "×".join([str(k)] * spatial_dims)  # noqa: E731
    texts = {}
    for name, modules in model.skip_modules().items():
        convs = [m for module in modules for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        if not convs:
            continue
        kernels = sorted({_first(m.kernel_size) for m in convs}, reverse=True)
        residual = any(getattr(m, "residual", False) for module in modules for m in module.modules())
        texts[int(name.split()[1])] = (f"{len(convs)} conv {' / '.join(cube(k) for k in kernels)}"
                                       + (" ⊕" if residual else ""))
    return texts


def _arrow(ax, start, end, colour, lw=1.6) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>,head_length=0.45,head_width=0.22", mutation_scale=12,
                                 color=colour, lw=lw, shrinkA=0, shrinkB=0, zorder=3))


class _Box:
    def __init__(self, x: float, y: float, width: float, height: float) -> None:
        self.x, self.y, self.width, self.height = x, y, width, height  # y = vertical centre

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def centre(self) -> float:
        return self.x + self.width / 2

    @property
    def top(self) -> float:
        return self.y + self.height / 2

    @property
    def bottom(self) -> float:
        return self.y - self.height / 2


def draw_unet(model: nn.Module, input_shape: Sequence[int], *, title: Optional[str] = None) -> Figure:
    """Draw the U-Net of ``model`` for ``input_shape`` in the style of the paper's Fig. 1.

    Args:
        model: a model whose ``feature_scheme`` is ``"encoder_decoder"`` (see
            :func:`unet_diagram_data`); its ``padding`` and the layers of its
            ``stage_modules()`` choose the arrow labels.
        input_shape: ``(B, C, *S)`` or the spatial size ``S``.
        title: figure title; default e.g. ``"UNet, depth 4, padding='valid', input 572×572"``.

    Every box is one feature map, labelled with its channels and spatial size. Arrows:
    blue = the double conv of a stage, red = pooling, green = upsampling, grey = skip
    connection ("copy and crop" when the decoder map is smaller than the encoder map,
    as with valid padding, else "copy"), teal = the 1×1 conv head.
    """
    stages = unet_diagram_data(model, input_shape)
    shape = _full_shape(model, input_shape)
    spatial_dims = len(shape) - 2
    by_name = {s["name"]: s for s in stages}
    depth = by_name["bottleneck"]["level"]
    text = _describe(model, spatial_dims)
    counts = conv_counts(model)
    show_counts = len(set(counts.values())) > 1
    residual = set(residual_stages(model))

    def skip_text(cropped: bool) -> str:
        words = "copy and crop" if cropped else "copy"
        return words + (" and add (⊕)" if model.skip_join == "add" else "")

    path_texts = _skip_path_texts(model, spatial_dims)  # level -> what the layers on that skip are

    def conv_arrow(start: tuple[float, float], end: tuple[float, float], stage: str) -> None:
        """The blue arrow of a stage's convolutions, with their count when stages differ and ⊕ when residual."""
        _arrow(ax, start, end, CONV_COLOUR)
        middle = (start[0] + end[0]) / 2
        if show_counts:
            ax.text(middle, start[1] + 0.02, f"×{counts[stage]}", ha="center", va="bottom", fontsize=_FONT - 1,
                    color=CONV_COLOUR)
        if stage in residual:
            ax.text(middle, start[1] - 0.02, "⊕", ha="center", va="top", fontsize=_FONT + 2, color=RESIDUAL_COLOUR)

    # Vertical position of each row: rows are as tall as their tallest box.
    row_height = [0.0] * (depth + 1)
    for s in stages:
        row_height[s["level"]] = max(row_height[s["level"]], _height(s["spatial"]), _height(s["in_spatial"]))
    row_y = [0.0]
    for level in range(1, depth + 1):
        row_y.append(row_y[-1] - row_height[level - 1] / 2 - _BAND - row_height[level] / 2)

    def box(x: float, level: int, channels: int, spatial: Sequence[int]) -> _Box:
        return _Box(x, row_y[level], _width(channels), _height(spatial))

    # Encoder: the stage input (image or pooled map), a conv arrow, the stage output.
    boxes: dict[str, _Box] = {}
    enc0 = by_name["enc0"]
    boxes["input"] = box(0.0, 0, enc0["in_channels"], enc0["in_spatial"])
    boxes["enc0"] = box(boxes["input"].right + _GAP, 0, enc0["channels"], enc0["spatial"])
    for level in range(1, depth + 1):
        stage = by_name["bottleneck" if level == depth else f"enc{level}"]
        above = boxes[f"enc{level - 1}"]
        pooled = box(0.0, level, stage["in_channels"], stage["in_spatial"])
        pooled.x = above.centre - pooled.width / 2  # straight below: the pool arrow is vertical
        boxes[f"pool{level}"] = pooled
        if level < depth:
            boxes[f"enc{level}"] = box(pooled.right + _GAP, level, stage["channels"], stage["spatial"])

    # Decoder, bottom up: the upsampled part of each concatenation sits straight above the stage below.
    bottleneck = by_name["bottleneck"]
    for level in reversed(range(depth)):
        stage = by_name[f"dec{level}"]
        skip_width, up_width = _width(stage["skip_channels"]), _width(stage["up_channels"])
        left_min = boxes[f"enc{level}"].right + _SKIP_MIN
        if level == depth - 1:
            left = max(left_min, boxes[f"pool{depth}"].right + _GAP + _width(bottleneck["channels"]) / 2
                       - up_width / 2 - skip_width)
            up_centre = left + skip_width + up_width / 2
            boxes["bottleneck"] = box(up_centre - _width(bottleneck["channels"]) / 2, depth,
                                      bottleneck["channels"], bottleneck["spatial"])
        else:
            below = boxes[f"dec{level + 1}"]
            left = max(left_min, below.centre - up_width / 2 - skip_width)
        boxes[f"skip{level}"] = _Box(left, row_y[level], skip_width, _height(stage["in_spatial"]))
        boxes[f"up{level}"] = _Box(left + skip_width, row_y[level], up_width, _height(stage["in_spatial"]))
        boxes[f"dec{level}"] = box(boxes[f"up{level}"].right + _GAP, level, stage["channels"], stage["spatial"])
    logits = by_name["logits"]
    boxes["logits"] = box(boxes["dec0"].right + _GAP + 0.12, 0, logits["channels"], logits["spatial"])

    # Figure size from the extent of the drawing (one data unit = one inch).
    label_room = 0.55
    x_min, x_max = -label_room, boxes["logits"].right + label_room
    y_max = boxes["enc0"].top + 0.35
    y_min = min(b.bottom for b in boxes.values()) - 0.35
    width_in, height_in = x_max - x_min, y_max - y_min
    fig_width = min(12.0, max(6.0, width_in + 0.3))  # at least as wide as a 3-column legend
    items = 5 + ("residual" in text) + bool(_skip_path_texts(model, spatial_dims))
    columns = 5 if fig_width >= 8.5 and items == 5 else 3
    if max(len(t) for t in text.values()) > 40 and fig_width < 10:  # long entries would run off the figure
        columns = 2
    fig = Figure(figsize=(fig_width, height_in + 0.9 + 0.2 * math.ceil(items / columns)), dpi=100,
                 layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    ax.set_aspect("equal")
    ax.set_axis_off()

    def rect(b: _Box, fill: str, edge: str = MAP_EDGE) -> None:
        ax.add_patch(Rectangle((b.x, b.bottom), b.width, b.height, facecolor=fill, edgecolor=edge, lw=0.8, zorder=2))

    def label(b: _Box, channels: str, spatial: Sequence[int], where: str) -> None:
        words = f"{channels}\n{_size_text(spatial)}"
        if where == "above":
            ax.text(b.centre, b.top + 0.03, words, ha="center", va="bottom", fontsize=_FONT, linespacing=1.05)
        elif where == "below":
            ax.text(b.centre, b.bottom - 0.03, words, ha="center", va="top", fontsize=_FONT, linespacing=1.05)
        elif where == "left":
            ax.text(b.x - 0.05, b.y, words, ha="right", va="center", fontsize=_FONT, linespacing=1.05)
        else:
            ax.text(b.right + 0.05, b.y, words, ha="left", va="center", fontsize=_FONT, linespacing=1.05)

    # Boxes and their labels: each label goes on the side no arrow uses.
    rect(boxes["input"], INPUT_FILL, "#555555")
    label(boxes["input"], str(enc0["in_channels"]), enc0["in_spatial"], "left")
    ax.text(boxes["input"].centre, boxes["input"].bottom - 0.04, "input", ha="center", va="top",
            fontsize=_FONT, style="italic")
    for level in range(depth + 1):
        name = "bottleneck" if level == depth else f"enc{level}"
        stage = by_name[name]
        rect(boxes[name], MAP_FILL)
        label(boxes[name], str(stage["channels"]), stage["spatial"], "below" if level == depth else "above")
        start = boxes["input"] if level == 0 else boxes[f"pool{level}"]
        if level > 0:
            rect(start, MAP_FILL)
            label(start, str(stage["in_channels"]), stage["in_spatial"], "below")
            above = boxes[f"enc{level - 1}"]
            _arrow(ax, (above.centre, above.bottom), (above.centre, start.top), POOL_COLOUR)
        conv_arrow((start.right, start.y), (boxes[name].x, boxes[name].y), name)
    for level in range(depth):
        stage, skip, up, dec = by_name[f"dec{level}"], boxes[f"skip{level}"], boxes[f"up{level}"], boxes[f"dec{level}"]
        rect(skip, "white", SKIP_COLOUR)
        rect(up, MAP_FILL)
        rect(dec, MAP_FILL)
        joined = _Box(skip.x, skip.y, skip.width + up.width, skip.height)
        join = "⊕" if model.skip_join == "add" else "+"  # added maps, or the channels of a concatenation
        label(joined, f"{stage['skip_channels']}{join}{stage['up_channels']}", stage["in_spatial"], "above")
        label(dec, str(stage["channels"]), stage["spatial"], "below")
        below = boxes["bottleneck" if level == depth - 1 else f"dec{level + 1}"]
        _arrow(ax, (below.centre, below.top), (up.centre, up.bottom), UP_COLOUR)
        conv_arrow((up.right, up.y), (dec.x, dec.y), f"dec{level}")
        encoder = boxes[f"enc{level}"]
        cropped = tuple(stage["in_spatial"]) != tuple(by_name[f"enc{level}"]["spatial"])
        on_path = path_texts.get(level)
        _arrow(ax, (encoder.right, encoder.y), (skip.x, skip.y), SKIP_PATH_COLOUR if on_path else SKIP_COLOUR,
               lw=1.6 if on_path else 1.3)
        ax.text((encoder.right + skip.x) / 2, encoder.y + 0.03, on_path or skip_text(cropped),
                ha="center", va="bottom", fontsize=_FONT, color=SKIP_PATH_COLOUR if on_path else "#404040")
    rect(boxes["logits"], OUTPUT_FILL, "#a0522d")
    label(boxes["logits"], str(logits["channels"]), logits["spatial"], "right")
    ax.text(boxes["logits"].centre, boxes["logits"].bottom - 0.04, "output", ha="center", va="top",
            fontsize=_FONT, style="italic")
    _arrow(ax, (boxes["dec0"].right, boxes["dec0"].y), (boxes["logits"].x, boxes["logits"].y), HEAD_COLOUR)

    any_crop = any(tuple(s["in_spatial"]) != tuple(by_name[f"enc{s['level']}"]["spatial"])
                   for s in stages if s["column"] == "decoder")
    handles = [Line2D([], [], color=c, lw=2, label=t) for c, t in [
        (CONV_COLOUR, text["conv"]), (POOL_COLOUR, text["pool"]), (UP_COLOUR, text["up"]),
        (SKIP_COLOUR, skip_text(any_crop)), (HEAD_COLOUR, text["head"])]]
    if "residual" in text:
        handles.append(Line2D([], [], color=RESIDUAL_COLOUR, lw=0, marker="$⊕$", markersize=9, label=text["residual"]))
    if path_texts:
        handles.append(Line2D([], [], color=SKIP_PATH_COLOUR, lw=2, label="layers on the skip, then join"))
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, fontsize=8,
               frameon=False)
    if title is None:
        title = (f"{type(model).__name__}, depth {depth}, padding={model.padding!r}, "
                 f"input {'×'.join(str(s) for s in shape[2:])}")
    fig.suptitle(title, fontsize=11)
    return fig
