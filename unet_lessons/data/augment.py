"""The U-Net paper's data augmentation, on batched tensors, with one code path for 2D and 3D.

Ronneberger et al. 2015 (Section 3.1) trained on only 30 EM slices and called
augmentation "essential": shifts and rotations, and above all random elastic
deformations, "the key concept to train a segmentation network with very few annotated
images". Here:

- :func:`random_flip_rotate`: random flips over every spatial axis and a random
  multiple of 90 degrees in the last two axes. These are exact (no interpolation).
- :func:`elastic_deform`: the paper's smooth deformation. Random displacement vectors on
  a coarse 3 x 3 grid, drawn from a Gaussian with 10 pixels standard deviation, are
  interpolated to a per-pixel displacement field; the image is resampled bilinearly
  and the label by nearest neighbour, so labels stay valid class indices.

Both take the whole batch at once and an optional ``torch.Generator`` for reproducible
draws; the random numbers are drawn on the CPU, so a seed gives the same result on any device.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["random_flip_rotate", "elastic_displacement", "warp", "elastic_deform"]


def _check_pair(image: torch.Tensor, label: torch.Tensor) -> int:
    """Validate (B, C, *S) and (B, *S) with 2 or 3 spatial dims; return the number of spatial dims."""
    spatial_dims = image.ndim - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"image must be (B, C, H, W) or (B, C, D, H, W); got shape {tuple(image.shape)}.")
    if label.shape != image.shape[:1] + image.shape[2:]:
        raise ValueError(f"label must be (B, *spatial) = {tuple(image.shape[:1] + image.shape[2:])} "
                         f"to match image {tuple(image.shape)}; got {tuple(label.shape)}.")
    return spatial_dims


def random_flip_rotate(image: torch.Tensor, label: torch.Tensor, *,
                       generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample over each spatial axis with probability 1/2, then rotate it by k x 90 degrees.

    The rotation acts in the last two axes (H, W) and only when they are equal in size,
    so shapes never change. In 2D the flips and rotations together reach all 8
    symmetries of the square, each equally often.

    Args:
        image: a batch of images.
        label: the matching labels (any dtype).
        generator: a CPU ``torch.Generator`` for reproducible draws.

    Returns:
        New ``(image, label)`` tensors, each sample transformed the same way in both.

    Shape:
        image (B, C, *S), label (B, *S), S = (H, W) or (D, H, W); the outputs keep the shapes.
    """
    spatial_dims = _check_pair(image, label)
    batch = image.shape[0]
    flips = torch.rand((batch, spatial_dims), generator=generator) < 0.5  # (B, S)
    turns = torch.randint(0, 4, (batch,), generator=generator)  # (B,)
    can_rotate = image.shape[-1] == image.shape[-2]
    images, labels = [], []
    for b in range(batch):
        axes = [axis for axis in range(spatial_dims) if flips[b, axis]]
        x, y = image[b], label[b]  # (C, *S), (*S)
        if axes:
            x, y = x.flip([1 + axis for axis in axes]), y.flip(axes)
        if can_rotate and turns[b]:
            x, y = x.rot90(int(turns[b]), dims=(-2, -1)), y.rot90(int(turns[b]), dims=(-2, -1))
        images.append(x)
        labels.append(y)
    return torch.stack(images), torch.stack(labels)  # stack copies, so the inputs are never shared


def elastic_displacement(batch: int, size: tuple[int, ...], *, grid: int = 3, sigma: float = 10.0,
                         generator: Optional[torch.Generator] = None,
                         device: Optional[torch.device] = None) -> torch.Tensor:
    """Random smooth displacement fields, in pixels (Ronneberger et al. 2015, Section 3.1).

    Vectors on a coarse ``grid`` x ``grid`` (x ``grid``) grid are drawn from N(0, ``sigma``^2)
    pixels, one independent field per sample, and interpolated to every pixel: bicubic in
    2D, trilinear in 3D (torch has no tricubic). ``align_corners=True`` puts the outer
    control points on the corner pixels, so the coarse grid spans the image as in the paper.

    Args:
        batch: number of fields.
        size: spatial size, (H, W) or (D, H, W).
        grid: control points per axis (the paper: 3).
        sigma: standard deviation of the control-point displacements in pixels (the paper: 10).
        generator: a CPU ``torch.Generator`` for reproducible draws.
        device: where the returned field lives.

    Shape:
        output (B, S, *size): channel ``s`` is the displacement along spatial axis ``s``
        (the order of ``size``: (dy, dx) in 2D, (dz, dy, dx) in 3D).
    """
    spatial_dims = len(size)
    if grid < 2:
        raise ValueError(f"grid must be at least 2 control points per axis; got {grid}.")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}.")
    coarse = sigma * torch.randn((batch, spatial_dims) + (grid,) * spatial_dims, generator=generator)  # (B, S, g, ..)
    mode = "bicubic" if spatial_dims == 2 else "trilinear"
    return F.interpolate(coarse.to(device), size=tuple(size), mode=mode, align_corners=True)  # (B, S, *size)


def warp(image: torch.Tensor, label: torch.Tensor, displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``image`` and ``label`` so that output pixel ``p`` shows input position ``p + displacement(p)``.

    The image is interpolated bilinearly (trilinearly in 3D), the label by nearest
    neighbour so it stays a valid class map; outside the image, positions are reflected
    about the border pixels (``scipy.ndimage``'s ``mode="mirror"``).

    Args:
        image: a batch of images (resampled as float, returned in its own dtype).
        label: the matching class-index labels.
        displacement: per-pixel displacements in pixels, e.g. from :func:`elastic_displacement`.

    Shape:
        image (B, C, *S), label (B, *S), displacement (B, len(S), *S); outputs keep the shapes.
    """
    spatial_dims = _check_pair(image, label)
    size = tuple(image.shape[2:])
    if displacement.shape != (image.shape[0], spatial_dims) + size:
        raise ValueError(f"displacement must be {(image.shape[0], spatial_dims) + size}; "
                         f"got {tuple(displacement.shape)}.")
    # Sampling positions in pixels, then in grid_sample's normalised coordinates: with
    # align_corners=True, -1 and +1 are the centres of the first and last pixel of each
    # axis, so pixel i of an axis of n pixels sits at 2 i / (n - 1) - 1.
    axes = [torch.arange(n, device=image.device, dtype=displacement.dtype) for n in size]
    identity = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (S, *size)
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in size], device=image.device, dtype=displacement.dtype)
    normalised = (identity + displacement) * scale.view(1, -1, *[1] * spatial_dims) - 1.0  # (B, S, *size)
    # grid_sample wants the last dim ordered (x, y[, z]): the reverse of the tensor's axis order.
    sample_grid = normalised.flip(1).movedim(1, -1)  # (B, *size, S)

    source = image if image.is_floating_point() else image.float()
    common = dict(padding_mode="reflection", align_corners=True)
    warped_image = F.grid_sample(source, sample_grid.to(source.dtype), mode="bilinear", **common)  # (B, C, *size)
    # Labels go through grid_sample as floats; nearest-neighbour sampling copies values, so they stay exact.
    warped_label = F.grid_sample(label[:, None].float(), sample_grid.float(), mode="nearest", **common)[:, 0]
    return warped_image.to(image.dtype), warped_label.round().to(label.dtype)  # (B, C, *S), (B, *S)


def elastic_deform(image: torch.Tensor, label: torch.Tensor, *, grid: int = 3, sigma: float = 10.0,
                   generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random elastic deformation (Ronneberger et al. 2015, Section 3.1).

    :func:`elastic_displacement` draws one smooth random field per sample and :func:`warp`
    applies it: bilinear (trilinear in 3D) for the image, nearest neighbour for the label,
    reflection at the borders so that no empty corners appear.

    Args:
        image: a batch of images.
        label: the matching class-index labels.
        grid: control points per axis (the paper: 3).
        sigma: standard deviation of the control-point displacements, in pixels (the
            paper: 10). ``0`` returns copies of the inputs unchanged.
        generator: a CPU ``torch.Generator`` for reproducible draws.

    Returns:
        New ``(image, label)`` tensors.

    Shape:
        image (B, C, *S), label (B, *S), S = (H, W) or (D, H, W); the outputs keep the shapes.
    """
    _check_pair(image, label)
    if sigma == 0:  # exactly the input, not the input up to interpolation round-off
        return image.clone(), label.clone()
    displacement = elastic_displacement(image.shape[0], tuple(image.shape[2:]), grid=grid, sigma=sigma,
                                        generator=generator, device=image.device)
    return warp(image, label, displacement)
