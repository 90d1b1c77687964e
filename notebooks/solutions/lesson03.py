"""Solutions to the exercises of lesson 03 (the 3D U-Net). Each returns something a test can check."""

from __future__ import annotations

import torch
import torch.nn as nn


def paper_parameter_count() -> int:
    """Exercise 1: the weights of Çiçek et al.'s 3D U-Net (Fig. 1), summed layer by layer."""
    conv = lambda cin, cout: 27 * cin * cout + cout   # noqa: E731  3x3x3 kernel + bias
    upconv = lambda c: 8 * c * c                      # noqa: E731  2x2x2, channels kept, no bias
    encoder = conv(3, 32) + conv(32, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128) + conv(128, 256)
    bottleneck = conv(256, 256) + conv(256, 512)
    decoder = (upconv(512) + conv(512 + 256, 256) + conv(256, 256)
               + upconv(256) + conv(256 + 128, 128) + conv(128, 128)
               + upconv(128) + conv(128 + 64, 64) + conv(64, 64))
    head = 64 * 3 + 3
    return encoder + bottleneck + decoder + head


def valid_cubic_sides(start: int, stop: int) -> dict[int, int]:
    """Exercise 2: input side -> output side of the unpadded 3D U-Net, for every side it can take."""
    sides = {}
    for side in range(start, stop):
        n, ok = side, True
        for _ in range(3):              # two unpadded 3x3x3 convs trim 4, then pooling needs an even size
            n -= 4
            if n <= 0 or n % 2:
                ok = False
                break
            n //= 2
        if not ok:
            continue
        n -= 4                          # bottleneck
        for _ in range(3):
            n = 2 * n - 4               # up-conv doubles, two convs trim 4
        if n > 0:
            sides[side] = n
    return sides


def conv_output_share(model: nn.Module, patch: int) -> tuple[float, int]:
    """Exercise 3: bytes of all conv outputs for one patch, and their share of the estimated activations."""
    from unet_lessons.memory import estimate_memory

    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, model.in_channels, patch, patch, patch, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    estimate = estimate_memory(model, (model.in_channels, patch, patch, patch), batch_size=1)
    return total / estimate.activations, total


def labelled_fraction(k: int, side: int) -> float:
    """Exercise 4: labelled share of a side³ volume with k annotated planes per axis (inclusion–exclusion)."""
    planes = 3 * k * side**2            # three families of k planes
    lines = 3 * k**2 * side             # each pair of families meets in k·k lines, counted twice above
    points = k**3                       # the triple crossings: added 3x, removed 3x, so add once
    return (planes - lines + points) / side**3
