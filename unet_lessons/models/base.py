"""Input checks shared by the networks, so that every model fails the same clear way."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


def check_input(x: torch.Tensor, *, model_name: str, spatial_dims: int, in_channels: int) -> None:
    """Raise a ``ValueError`` that names the expected layout when ``x`` does not fit a model.

    Args:
        x: the input tensor.
        model_name: shown in the message, e.g. ``"UNet"``.
        spatial_dims: 2 or 3.
        in_channels: channels the model was built for.
    """
    expected = f"(B, {in_channels}, {_AXES[spatial_dims]})"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} expects a torch.Tensor of shape {expected}; got {type(x).__name__}.")
    if x.dim() != spatial_dims + 2:
        hints = []
        if x.dim() == spatial_dims + 1:
            hints.append("if this is one sample, add the batch axis with x.unsqueeze(0)")
        if x.dim() == 4 and spatial_dims == 3:
            hints.append("if this is a 2D batch, build the model with spatial_dims=2")
        if x.dim() == 5 and spatial_dims == 2:
            hints.append("for a 3D volume, build the model with spatial_dims=3 or feed it slice by slice")
        hint = (" Hint: " + "; ".join(hints) + ".") if hints else ""
        raise ValueError(
            f"{model_name}(spatial_dims={spatial_dims}) expects a {spatial_dims + 2}-D input of shape {expected}; "
            f"got shape {tuple(x.shape)} ({x.dim()}-D).{hint}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{model_name} was built with in_channels={in_channels}, so it expects shape {expected}; "
            f"got {x.shape[1]} channels in shape {tuple(x.shape)}. Build the model with "
            f"in_channels={x.shape[1]}, or check the channel axis (it must be axis 1, channels-first)."
        )


def check_spatial_size(
    shape: Sequence[int],
    *,
    model_name: str,
    is_valid: Callable[[int], bool],
    nearest: Callable[[int], tuple[Optional[int], Optional[int]]],
    rule: str,
) -> None:
    """Raise a ``ValueError`` naming the nearest workable sizes for each axis that does not fit.

    Args:
        shape: the spatial sizes of the input.
        model_name: shown in the message.
        is_valid: says whether one axis length works.
        nearest: the nearest working lengths below and above a length (either may be ``None``).
        rule: a short sentence stating the rule the sizes must follow.
    """
    problems = []
    for axis, size in enumerate(shape):
        if not is_valid(size):
            below, above = nearest(size)
            options = " or ".join(str(s) for s in (below, above) if s is not None)
            problems.append(f"axis {axis} has size {size} (nearest sizes that work: {options})")
    if problems:
        raise ValueError(
            f"{model_name} cannot take spatial size {tuple(shape)}: " + "; ".join(problems) + f". {rule} "
            "Crop or pad the input to a listed size."
        )


def nearest_matching(size: int, is_valid: Callable[[int], bool], search: int = 4096) -> tuple[Optional[int], Optional[int]]:
    """The nearest lengths at or below and above ``size`` for which ``is_valid`` holds."""
    below = next((s for s in range(size, 0, -1) if is_valid(s)), None)
    above = next((s for s in range(size + 1, size + search) if is_valid(s)), None)
    return below, above
