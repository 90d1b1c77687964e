"""Reference solutions of lesson 03 (the 3D U-Net), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register


def _conv(cin: int, cout: int, kernel: int = 3, bias: bool = True) -> int:
    return kernel**3 * cin * cout + (cout if bias else 0)


@register("lesson03.paper_parameters", task="paper_parameter_count(in_channels, out_channels) -> the weights of "
          "Çiçek et al.'s 3D U-Net (Fig. 1) for that many input channels and classes.",
          cases=lambda rng: [{"in_channels": 3, "out_channels": 3}, {"in_channels": 1, "out_channels": 2},
                             {"in_channels": int(rng.integers(2, 5)), "out_channels": int(rng.integers(2, 6))}],
          hint="encoder 32-64, 64-128, 128-256 (the first conv of a stage halves what the second outputs), "
               "bottleneck 256-512; 3×3×3 convolutions have a bias; the 2×2×2 up-convolutions keep the channels "
               "and have none; every decoder stage starts from the concatenation; the head is a 1×1×1 convolution.")
def paper_parameter_count(in_channels: int = 3, out_channels: int = 3) -> int:
    upconv = lambda c: 8 * c * c  # noqa: E731  2x2x2, channels kept, no bias
    encoder = (_conv(in_channels, 32) + _conv(32, 64) + _conv(64, 64) + _conv(64, 128)
               + _conv(128, 128) + _conv(128, 256))
    bottleneck = _conv(256, 256) + _conv(256, 512)
    decoder = (upconv(512) + _conv(512 + 256, 256) + _conv(256, 256)
               + upconv(256) + _conv(256 + 128, 128) + _conv(128, 128)
               + upconv(128) + _conv(128 + 64, 64) + _conv(64, 64))
    return encoder + bottleneck + decoder + _conv(64, out_channels, kernel=1)


@register("lesson03.valid_sides", task="valid_cubic_sides(start, stop) -> {input side: output side} for every side "
          "in [start, stop) that the unpadded 3D U-Net (three poolings) can take.",
          cases=lambda rng: [{"start": 100, "stop": 200}, {"start": 40, "stop": 100},
                             {"start": int(rng.integers(200, 260)), "stop": int(rng.integers(300, 360))}],
          hint="every stage's two unpadded 3×3×3 convolutions take 4 off the side, each pooling needs an even side "
               "and halves it; on the way up each up-convolution doubles it and two convolutions take 4 off again.")
def valid_cubic_sides(start: int, stop: int) -> dict[int, int]:
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


def _share_cases(rng) -> list[dict]:
    from ..models import build_model

    torch.manual_seed(int(rng.integers(1 << 30)))
    small = build_model("unet", in_channels=1, out_channels=2, spatial_dims=3, width=4).eval()
    return [{"model": small, "patch": 16}, {"model": small, "patch": 24}]


@register("lesson03.conv_output_bytes", task="conv_output_bytes(model, patch) -> the bytes of every convolution's "
          "output (transposed ones too) for one (1, C, patch, patch, patch) float32 input.",
          cases=_share_cases,
          hint="register a forward hook on every nn.modules.conv._ConvNd (both kinds derive from it) that adds "
               "output.numel() * output.element_size(); run one forward pass under torch.no_grad(), then remove "
               "the hooks.")
def conv_output_bytes(model: nn.Module, patch: int) -> int:
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model.eval()(torch.zeros(1, model.in_channels, patch, patch, patch, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total


@register("lesson03.labelled_fraction", task="labelled_fraction(k, side) -> the share of a side³ volume that k "
          "annotated planes per axis label (a float between 0 and 1).",
          cases=lambda rng: [{"k": 1, "side": 64}, {"k": 3, "side": 64}, {"k": int(rng.integers(2, 8)), "side": 40}],
          hint="inclusion–exclusion: add the three families of k planes, take off the lines where two families "
               "meet (each counted twice), and add back the points where all three meet.")
def labelled_fraction(k: int, side: int) -> float:
    planes = 3 * k * side**2            # three families of k planes
    lines = 3 * k**2 * side             # each pair of families meets in k·k lines, counted twice above
    points = k**3                       # the triple crossings: added 3x, removed 3x, so add once
    return (planes - lines + points) / side**3
