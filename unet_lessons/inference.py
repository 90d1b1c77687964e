"""Whole-image prediction by tiles: the overlap-tile strategy of the U-Net paper.

Ronneberger et al. 2015, Section 2 and Fig. 2: a valid-padded network predicts an output
tile from a larger input tile, and the missing context at the image border is filled by
mirroring the image. Tiles then join seamlessly, because every output pixel saw exactly
the context it would have seen in one huge forward pass. A same-padded network can use the
same trick with a chosen ``margin``; with ``margin=0`` each tile is zero-padded at its own
edges and the seams show.

Built in ``notebooks/02_unet.ipynb``. For 3D sliding windows with blending the lessons use
MONAI's ``sliding_window_inference``.
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.base import unpack_output
from .utils import mirror_pad

__all__ = ["valid_margin", "predict_tiled", "predict_slicewise", "sliding_window_probabilities"]


def valid_margin(model: nn.Module, tile: int) -> int:
    """Context a valid-padded ``model`` needs on each side to output a ``tile``-long tile.

    Raises:
        ValueError: if no input length gives exactly ``tile`` outputs, naming tiles that work.
    """
    for size in range(tile, tile + 4096):
        out = model.output_size(size)
        if out == tile:
            return (size - tile) // 2
        if out is not None and out > tile:
            break
    workable = [model.output_size(s) for s in model.valid_sizes(1, tile + 1024)]
    near = sorted({o for o in workable if o}, key=lambda o: abs(o - tile))[:2]
    raise ValueError(f"no input gives a {tile}-pixel output tile; output tiles that work nearby: {sorted(near)}.")


@torch.no_grad()
def predict_tiled(model: nn.Module, image: torch.Tensor, tile: Union[int, Sequence[int]], *,
                  margin: Optional[Union[int, Sequence[int]]] = None, pad_mode: str = "reflect") -> torch.Tensor:
    """Predict a whole image tile by tile and stitch the output tiles.

    Args:
        model: a 2D or 3D network following the model contract (``spatial_dims``,
            ``padding``, ``output_size``). With ``padding == "valid"`` the ``margin`` is
            derived from it (the paper's overlap-tile); otherwise ``margin`` defaults to 0.
        image: (C, *S) one image or volume, already normalised.
        tile: output tile size per axis.
        margin: input context added on each side of every tile.
        pad_mode: how the image border is extended: ``"reflect"`` (the paper's mirroring)
            or ``"constant"`` (zeros).

    Returns:
        Logits (K, *S) for the whole image.

    Shape:
        (C, *S) -> (K, *S)
    """
    model.eval()
    spatial_dims = model.spatial_dims
    if image.dim() != spatial_dims + 1:
        raise ValueError(f"predict_tiled takes one image of shape (C, {', '.join('DHW'[-spatial_dims:])}) for a "
                         f"{spatial_dims}D model; got shape {tuple(image.shape)}. For a batch, call it per image, "
                         "e.g. predict_tiled(model, batch[0], ...).")
    dims = image.dim() - 1
    tiles = [tile] * dims if isinstance(tile, int) else list(tile)
    valid = model.padding == "valid"
    if valid:
        if margin is not None:
            raise ValueError("a valid-padded model fixes its own margin; leave margin=None.")
        margins = [valid_margin(model, t) for t in tiles]
    else:
        margins = [0] * dims if margin is None else ([margin] * dims if isinstance(margin, int) else list(margin))
    sizes = list(image.shape[1:])
    # Pad the far end up to a whole number of tiles, and every side by the margin.
    extra = [(-s) % t for s, t in zip(sizes, tiles)]
    pads: list[int] = []
    for m, e in zip(reversed(margins), reversed(extra)):
        pads += [m, m + e]
    device = next(model.parameters()).device
    if pad_mode == "reflect":
        padded = mirror_pad(image[None], [(m, m + e) for m, e in zip(margins, extra)], first_axis=2)
    else:
        padded = F.pad(image[None], pads, mode=pad_mode)
    padded = padded.to(device)  # (1, C, *(S + extra + 2m))
    output: Optional[torch.Tensor] = None
    for starts in itertools.product(*(range(0, s + e, t) for s, e, t in zip(sizes, extra, tiles))):
        window = tuple(slice(a, a + t + 2 * m) for a, t, m in zip(starts, tiles, margins))
        logits = unpack_output(model(padded[(slice(None), slice(None), *window)])).logits[0]  # (K, *tile_in or *tile)
        if not valid:
            logits = logits[(slice(None), *(slice(m, m + t) for m, t in zip(margins, tiles)))]
        if output is None:
            output = torch.empty((logits.shape[0], *(s + e for s, e in zip(sizes, extra))), dtype=logits.dtype)
        output[(slice(None), *(slice(a, a + t) for a, t in zip(starts, tiles)))] = logits.cpu()
    return output[(slice(None), *(slice(0, s) for s in sizes))]


@torch.no_grad()
def predict_slicewise(model: nn.Module, volume: torch.Tensor, *, axis: int = 0, batch_size: int = 16) -> torch.Tensor:
    """Segment a volume with a 2D network, one slice at a time: the approach 3D nets replace.

    Each slice is predicted on its own, so nothing links neighbouring slices: the
    prediction can jump from slice to slice where a 3D net sees the shape's continuity.

    Args:
        model: a 2D network (``spatial_dims == 2``), same-padded.
        volume: (C, D, H, W) one volume, already normalised.
        axis: the spatial axis to slice along (0 = D, axial; 1 = H; 2 = W).
        batch_size: slices per forward pass.

    Returns:
        Logits (K, D, H, W).
    """
    if model.spatial_dims != 2:
        raise ValueError(f"predict_slicewise needs a 2D model; this one has spatial_dims={model.spatial_dims}. "
                         "Give a 3D model the whole volume (or use sliding_window_inference).")
    if volume.dim() != 4:
        raise ValueError(f"volume must be one (C, D, H, W) volume; got shape {tuple(volume.shape)}. "
                         "For a batch, call it per volume.")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (D, H, W); got {axis}.")
    model.eval()
    device = next(model.parameters()).device
    slices = volume.movedim(axis + 1, 0)  # (N, C, h, w): the sliced axis becomes the batch
    logits = torch.cat([unpack_output(model(slices[i:i + batch_size].to(device))).logits.cpu()
                        for i in range(0, len(slices), batch_size)])  # (N, K, h, w)
    return logits.movedim(0, axis + 1)  # (K, D, H, W)


def sliding_window_probabilities(model: nn.Module, images: torch.Tensor, *, roi_size: Union[int, Sequence[int]],
                                 overlap: float = 0.5, mode: str = "gaussian", mirror_axes: Sequence[int] = (),
                                 activation: str = "sigmoid", sw_batch_size: int = 4) -> torch.Tensor:
    """Class or region probabilities of whole volumes: MONAI's sliding window, with optional mirroring.

    The window slides with ``overlap``; where windows overlap their outputs are blended,
    ``mode="gaussian"`` weighting each window's centre above its border (its border saw the
    least context), ``"constant"`` averaging them equally. With ``mirror_axes`` (spatial axes,
    0 = the first) the volume is also predicted flipped along every combination of those
    axes, each prediction flipped back, and the probabilities averaged: test-time mirroring,
    2^len(mirror_axes) passes (nnU-Net mirrors all three axes: 8 passes).

    Args:
        model: any model of the contract (logits, heads or a dict; the logits are used).
        images: (N, C, *S) volumes, normalised as in training.
        roi_size: the window, an int or one per axis (the training patch size).
        activation: ``"sigmoid"`` (regions) or ``"softmax"`` (classes), applied before averaging.

    Returns:
        (N, K, *S) probabilities, on the CPU.
    """
    from monai.inferers import sliding_window_inference

    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be 'sigmoid' (regions) or 'softmax' (classes); got {activation!r}.")
    spatial = images.dim() - 2
    if any(not 0 <= a < spatial for a in mirror_axes):
        raise ValueError(f"mirror_axes are spatial axes 0..{spatial - 1}; got {tuple(mirror_axes)}.")
    device = next(model.parameters()).device
    model.eval()

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        return unpack_output(model(x)).logits

    flips = [tuple(2 + a for a in combo) for r in range(len(mirror_axes) + 1)
             for combo in itertools.combinations(mirror_axes, r)]
    total = None
    with torch.no_grad():
        for dims in flips:
            x = images.to(device)
            x = torch.flip(x, dims) if dims else x
            logits = sliding_window_inference(x, roi_size=roi_size, sw_batch_size=sw_batch_size, predictor=logits_of,
                                              overlap=overlap, mode=mode)
            logits = torch.as_tensor(logits).as_subclass(torch.Tensor)
            probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, 1)
            probs = (torch.flip(probs, dims) if dims else probs).cpu()
            total = probs if total is None else total + probs
    return total / len(flips)
