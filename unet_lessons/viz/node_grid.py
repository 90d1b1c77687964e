"""The UNet++ grid of nodes, drawn from the model's own wiring and shapes.

Zhou et al. (2018) explain UNet++ with one figure (Fig. 1a): the nodes ``X^{i,j}`` on a
triangle, the encoder down its left edge, the U-Net's decoder up its right edge, and the
nested, densely connected nodes in between. :func:`draw_node_grid` draws that figure from
``UNetPlusPlus.node_grid()`` (which node reads which) and a ``forward_features`` pass on
the ``"meta"`` device (channels and sizes, computed for free), so it cannot disagree with
the code. Built in ``notebooks/05_unetpp.ipynb``.

Layout: node ``X^{i,j}`` sits at column ``2j + i`` and row ``i``. Colours follow the
paper's figure: black for the nodes a U-Net of the same depth has, green for the nested
nodes, blue dashed for the dense skip connections, red for the deep-supervision heads;
purple for the max-pools and grey for the up-convolutions, with a legend for each.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

from ..models.base import check_feature_keys
from .diagram import meta_copy

__all__ = ["node_grid_data", "draw_node_grid"]

BACKBONE_COLOUR = "#222222"   # nodes a U-Net also has
NESTED_COLOUR = "#2ca02c"     # the nested nodes of the skip pathways
SKIP_COLOUR = "#1f77b4"       # dense skip connections
POOL_COLOUR = "#9467bd"       # purple: down (max-pool)
UP_COLOUR = "#7f7f7f"         # grey: up (transposed convolution)
HEAD_COLOUR = "#d62728"       # red, as in the paper's figure: deep supervision heads
PRUNED_ALPHA = 0.18
SKIP_ARC = 0.22               # a dense skip longer than one step arcs by this fraction of its span (arc3's rad)


def _indices(name: str) -> tuple[int, int]:
    _, i, j = name.split("_")
    return int(i), int(j)


def node_grid_data(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """One record per node: ``name``, ``i``, ``j``, ``inputs`` (names), ``channels``, ``spatial``.

    Args:
        model: a model with the ``"nested"`` feature scheme, e.g. :class:`~unet_lessons.models.UNetPlusPlus`.
        input_shape: ``(B, C, *S)`` or the spatial size ``S``.
    """
    return _records(model, _meta_features(model, input_shape))


def _meta_features(model: nn.Module, input_shape: Sequence[int]) -> dict:
    if getattr(model, "feature_scheme", None) != "nested":
        raise TypeError(f"draw_node_grid draws models whose feature_scheme is 'nested' (with node_grid()), such as "
                        f"UNet++; got {type(model).__name__}. For a U-Net use draw_unet.")
    shape = tuple(input_shape)
    if len(shape) == model.spatial_dims:
        shape = (1, model.in_channels, *shape)
    feats = meta_copy(model).forward_features(torch.empty(shape, device="meta"))
    check_feature_keys(model, list(feats))
    return feats


def _records(model: nn.Module, feats: dict) -> list[dict]:
    records = []
    for name, inputs in model.node_grid().items():
        i, j = _indices(name)
        records.append(dict(name=name, i=i, j=j, inputs=list(inputs), channels=int(feats[name].shape[1]),
                            spatial=tuple(int(s) for s in feats[name].shape[2:])))
    return records


def draw_node_grid(model: nn.Module, input_shape: Sequence[int], *, pruned: Optional[int] = None,
                   title: Optional[str] = None) -> Figure:
    """Draw the UNet++ grid of ``model`` for ``input_shape``, as in the paper's Fig. 1a.

    Args:
        model: a model with the ``"nested"`` feature scheme, e.g. :class:`~unet_lessons.models.UNetPlusPlus`.
        input_shape: ``(B, C, *S)`` or the spatial size ``S``.
        pruned: fade every node that the network pruned to this depth does not compute
            (``i + j > pruned``), as in the paper's Fig. 1c.
        title: figure title.

    Every box is one node ``X^{i,j}``, with its channels and size written inside it, where no
    arrow can cross them. The legend under the grid names every kind of node and arrow:
    down (max-pool, then the node's two convolutions), up (transposed convolution), dense
    skip connections along a row, and the deep-supervision heads.
    """
    feats = _meta_features(model, input_shape)
    records = _records(model, feats)
    depth = model.depth
    if pruned is not None and not 1 <= pruned <= depth:
        raise ValueError(f"pruned must be between 1 and the model's depth {depth}; got {pruned}.")
    position = {r["name"]: (2 * r["j"] + r["i"], -1.4 * r["i"]) for r in records}
    alive = {r["name"]: pruned is None or r["i"] + r["j"] <= pruned for r in records}
    heads = [int(key.split("_")[1]) for key in feats if key.startswith("head_")]

    fig = Figure(figsize=(1.05 * (2 * depth + 1) + 1.6, 1.45 * depth + 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    half_width, half_height = 0.68, 0.36
    boxes = {}
    for r in records:
        x, y = position[r["name"]]
        backbone = r["j"] == 0 or r["i"] + r["j"] == depth
        boxes[r["name"]] = ax.add_patch(FancyBboxPatch(
            (x - half_width, y - half_height), 2 * half_width, 2 * half_height, boxstyle="round,pad=0,rounding_size=0.12",
            facecolor="white", edgecolor=BACKBONE_COLOUR if backbone else NESTED_COLOUR, lw=2.0,
            alpha=1.0 if alive[r["name"]] else PRUNED_ALPHA, zorder=3))

    def arrow(start: str, end: str, colour: str, style: str = "-", rad: float = 0.0) -> None:
        faded = not (alive[start] and alive[end])
        ax.add_patch(FancyArrowPatch(position[start], position[end], arrowstyle="-|>", mutation_scale=9,
                                     color=colour, linestyle=style, lw=1.2, patchA=boxes[start], patchB=boxes[end],
                                     shrinkA=1, shrinkB=1, connectionstyle=f"arc3,rad={rad}",
                                     alpha=PRUNED_ALPHA if faded else 1.0, zorder=2))

    for r in records:
        for source in r["inputs"]:
            si, sj = _indices(source)
            if sj == r["j"] and si == r["i"] - 1:
                arrow(source, r["name"], POOL_COLOUR)
            elif si == r["i"] + 1:
                arrow(source, r["name"], UP_COLOUR)
            else:  # a same-row dense skip; longer ones arc above the row so they do not hide the nodes between
                arrow(source, r["name"], SKIP_COLOUR, "--", rad=0.0 if r["j"] - sj == 1 else -SKIP_ARC)
    for r in records:
        x, y = position[r["name"]]
        alpha = 1.0 if alive[r["name"]] else PRUNED_ALPHA
        size = "×".join(str(s) for s in r["spatial"])
        ax.text(x, y + 0.13, f"$X^{{{r['i']},{r['j']}}}$", ha="center", va="center", fontsize=9, alpha=alpha, zorder=4)
        ax.text(x, y - 0.17, f"{r['channels']} ch, {size}", ha="center", va="center", fontsize=7, color="#333333",
                alpha=alpha, zorder=4)
    # The longest dense skip of the top row spans 2·depth columns and its arc rises SKIP_ARC / 2 of that (the
    # apex of arc3's curve): the heads reach above it.
    head_top = SKIP_ARC * depth + 0.55
    for j in heads:
        x, y = position[f"x_0_{j}"]
        alpha = 1.0 if pruned is None or j <= pruned else PRUNED_ALPHA
        ax.annotate("", xy=(x, y + head_top), xytext=(x, y + half_height), alpha=alpha,
                    arrowprops=dict(arrowstyle="-|>", color=HEAD_COLOUR, lw=1.6, alpha=alpha))
        ax.text(x, y + head_top + 0.08, f"head {j}", ha="center", va="bottom", fontsize=8, color=HEAD_COLOUR,
                alpha=alpha, bbox=dict(facecolor="white", edgecolor="none", pad=1.0, alpha=alpha))
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    ax.set_ylim(min(ys) - 0.6, max(ys) + head_top + 0.6)
    legend = [Patch(facecolor="white", edgecolor=BACKBONE_COLOUR, lw=2, label="node a U-Net of this depth also has"),
              Patch(facecolor="white", edgecolor=NESTED_COLOUR, lw=2, label="nested node (UNet++'s skip pathways)"),
              Line2D([], [], color=POOL_COLOUR, lw=1.4, label="2×2 max-pool, then the node's two 3×3 convs"),
              Line2D([], [], color=UP_COLOUR, lw=1.4, label="2×2 up-convolution (transposed)"),
              Line2D([], [], color=SKIP_COLOUR, lw=1.4, ls="--", label="dense skip: concatenated into the node")]
    if heads:
        legend.append(Line2D([], [], color=HEAD_COLOUR, lw=1.6, label="deep-supervision head: 1×1 conv to the classes"))
    if pruned is not None:
        legend.append(Patch(facecolor="white", edgecolor=BACKBONE_COLOUR, alpha=PRUNED_ALPHA, lw=2,
                            label=f"faded: not computed by the network pruned to L{pruned}"))
    fig.legend(handles=legend, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    if title is None:
        size = "×".join(str(s) for s in records[0]["spatial"])
        title = f"UNet++ L{depth if pruned is None else pruned}: nodes and connections, input {size}"
    ax.set_title(title, fontsize=10)
    return fig
