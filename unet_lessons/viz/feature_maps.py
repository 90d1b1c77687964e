"""What the network computes inside: collect intermediate feature maps and draw them.

:func:`feature_maps` uses a model's ``forward_features`` (every U-Net here has one) or,
for any other module, forward hooks on named layers. :func:`plot_feature_maps` draws,
for each map, the channels that vary most across the image, one row per map, so that a
lesson can show edges at ``enc0``, blobs at the bottleneck and the class evidence at
``logits``. Used in ``notebooks/02_unet.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure

__all__ = ["feature_maps", "plot_feature_maps", "top_variance_channels"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_input(model: nn.Module, x: ArrayLike) -> torch.Tensor:
    """NumPy or tensor -> a tensor with the model's device and dtype, with batch/channel axes added if missing."""
    tensor = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    spatial_dims = getattr(model, "spatial_dims", None)
    if spatial_dims is not None:
        while tensor.dim() < spatial_dims + 2:
            tensor = tensor.unsqueeze(0)  # (H, W) -> (1, H, W) -> (1, 1, H, W)
    parameter = next(model.parameters(), None)
    if parameter is None:
        return tensor.to(dtype=torch.float32)
    return tensor.to(device=parameter.device, dtype=parameter.dtype)


def feature_maps(model: nn.Module, x: ArrayLike, *, layers: Optional[Sequence[str]] = None
                 ) -> "OrderedDict[str, torch.Tensor]":
    """Run ``model`` on ``x`` in eval mode without gradients and return its feature maps.

    Args:
        model: a network. Without ``layers`` it must have ``forward_features(x)``.
        x: input ``(B, C, *S)``; an unbatched ``(H, W)`` or ``(C, H, W)`` gets its missing
            axes when the model has ``spatial_dims``.
        layers: module names (as in ``model.named_modules()``, e.g. ``"inc.conv1"``) to
            record with forward hooks, in this order. Use it to look inside a stage, or for
            models without ``forward_features``.

    Returns:
        name -> detached CPU tensor ``(B, C, *S)``.

    The mode of every submodule (train or eval) is restored afterwards.
    """
    modes = {module: module.training for module in model.modules()}
    x = _as_input(model, x)
    handles = []
    try:
        model.eval()
        with torch.no_grad():
            if layers is None:
                if not hasattr(model, "forward_features"):
                    raise ValueError(f"{type(model).__name__} has no forward_features; pass layers=[...] "
                                     "with module names from model.named_modules().")
                out = model.forward_features(x)
                return OrderedDict((name, t.detach().cpu()) for name, t in out.items())
            modules = dict(model.named_modules())
            unknown = [name for name in layers if name not in modules]
            if unknown:
                raise KeyError(f"no module named {unknown}; some names: {list(modules)[1:12]}")
            recorded: dict[str, torch.Tensor] = {}
            for name in layers:
                def hook(_module, _inputs, output, name=name):
                    recorded[name] = (output[0] if isinstance(output, (tuple, list)) else output).detach().cpu()
                handles.append(modules[name].register_forward_hook(hook))
            model(x)
            return OrderedDict((name, recorded[name]) for name in layers if name in recorded)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode


def top_variance_channels(feature: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` channels of ``feature`` (C, *S) with the largest spatial variance, largest first."""
    variance = feature.reshape(feature.shape[0], -1).var(axis=1)
    return np.argsort(-variance, kind="stable")[:k]


def _format_shape(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape)


def plot_feature_maps(
    features: Mapping[str, ArrayLike],
    *,
    num_channels: int = 6,
    sample: int = 0,
    slice_index: Optional[int] = None,
    title: str = "Feature maps",
) -> Figure:
    """One row per feature map: its ``num_channels`` most varied channels for one sample.

    Args:
        features: name -> ``(B, C, H, W)`` or ``(B, C, D, H, W)``, e.g. from :func:`feature_maps`.
        num_channels: panels per row (fewer when a map has fewer channels).
        sample: which item of the batch.
        slice_index: for 3D maps, the D slice in the coordinates of the deepest map (the
            input resolution); it is scaled to each map's depth. Default: the middle slice.
        title: the start of the figure title.

    Each panel is scaled to its own range (channels differ by orders of magnitude), is
    titled with its channel index, and each row is labelled with the map's name and its
    ``(C, H, W)`` shape.
    """
    arrays = OrderedDict()
    for name, value in features.items():
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if array.ndim not in (4, 5):
            raise ValueError(f"feature map {name!r} must be (B, C, H, W) or (B, C, D, H, W); got {array.shape}.")
        arrays[name] = array[sample]  # (C, *S)
    if not arrays:
        raise ValueError("no feature maps given.")
    depths = [a.shape[1] for a in arrays.values() if a.ndim == 4]
    reference_depth = max(depths) if depths else None
    if slice_index is not None and reference_depth is not None and not 0 <= slice_index < reference_depth:
        raise ValueError(f"slice_index {slice_index} is outside the depth {reference_depth}.")

    rows = len(arrays)
    cols = max(1, min(num_channels, max(a.shape[0] for a in arrays.values())))
    panel = min(1.7, 11.0 / (cols + 0.5), max(0.9, 8.5 / rows))
    fig = Figure(figsize=(panel * (cols + 0.5), panel * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for row, (name, array) in enumerate(arrays.items()):
        label = f"{name}\n({array.shape[0]}, {_format_shape(array.shape[1:])})"
        if array.ndim == 4:  # (C, D, H, W): one D slice, at the same relative depth in every map
            depth = array.shape[1]
            index = depth // 2 if slice_index is None else min(depth - 1, int((slice_index + 0.5) * depth / reference_depth))
            array = array[:, index]
            label += f"\nD slice {index} of {depth}"
        chosen = top_variance_channels(array, min(cols, array.shape[0]))
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(chosen):
                ax.set_axis_off()
                continue
            channel = int(chosen[col])
            ax.imshow(array[channel], cmap="viridis", interpolation="nearest")
            ax.set_title(f"ch {channel}", fontsize=8, pad=2)
        axes[row, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
    where = "middle D slice, " if depths and slice_index is None else ""
    fig.suptitle(f"{title}: sample {sample}, {where}the {cols} channels with the largest spatial variance\n"
                 "(each panel scaled to its own range)", fontsize=10)
    return fig
