"""Reference solutions of lesson 08 (MultiResUNet), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from . import register


@register("lesson08.break_even_channels", task="break_even_channels(widths) -> the smallest number of input channels "
          "(an int >= 1) at which the chain of three 3×3 convolutions with widths (a, b, c) has fewer weights than the "
          "parallel 3×3, 5×5 and 7×7 block (no bias).",
          cases=lambda rng: [{"widths": (8, 17, 26)}, {"widths": (142, 284, 427)}, {"widths": (1, 1, 1)},
                             {"widths": tuple(int(w) for w in np.sort(rng.integers(2, 300, 3)))}],
          hint="write both weight counts as functions of the input channels with section 2.2's rule (k·k·c_in·c_out per "
               "convolution; in the chain each convolution reads the branch before it), subtract them, and find "
               "the first whole number of channels at which the difference favours the chain.")
def break_even_channels(widths: tuple) -> int:
    a, b, c = widths
    # parallel - chain = c_in·(25b + 49c) - 9b(a + c): the chain is lighter once this is positive
    return 9 * b * (a + c) // (25 * b + 49 * c) + 1


@register("lesson08.branch_widths", task="branch_widths(u, alpha) -> the three branch widths of a MultiRes block, "
          "as the authors' code computes them (a tuple of three ints).",
          cases=lambda rng: [{"u": 61, "alpha": 1.67}, {"u": 512, "alpha": 1.67}, {"u": 32, "alpha": 2.0},
                             {"u": int(rng.integers(10, 400)), "alpha": 1.67}],
          hint="read the lines of MultiResBlock in tensorflow/MultiResUNet.py that compute W and the filters of "
               "conv3x3, conv5x5 and conv7x7, and do exactly what they do, in the same order: the paper's fractions "
               "give other integers for some u.")
def branch_widths(u: int, alpha: float) -> tuple:
    w = alpha * u
    return int(w * 0.167), int(w * 0.333), int(w * 0.5)


def _unit_cases(rng: np.random.Generator) -> list[dict]:
    from ..blocks import ConvNormAct

    cases = []
    for c_in, c_out, side in ((3, 4, 9), (5, 2, 12)):
        torch.manual_seed(int(rng.integers(1 << 30)))
        conv = ConvNormAct(c_in, c_out, 3, norm=("batch", {"scale": False}), act="relu", bias=False)
        shortcut = ConvNormAct(c_in, c_out, 1, norm=("batch", {"scale": False}), act=None, bias=False)
        norm = nn.BatchNorm2d(c_out)
        modules = nn.ModuleList([conv, shortcut, norm])
        with torch.no_grad():  # running statistics and a scale away from the identity, so every step shows
            for name, buffer in modules.named_buffers():
                if name.endswith("running_mean"):
                    buffer.copy_(0.3 * torch.randn_like(buffer))
                elif name.endswith("running_var"):
                    buffer.copy_(0.5 + torch.rand_like(buffer))
            for parameter in modules.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
        modules.eval()  # eval mode: a batch norm in training mode would change its running statistics
        cases.append({"x": torch.randn(2, c_in, side, side), "conv": conv, "shortcut": shortcut, "norm": norm})
    return cases


@register("lesson08.res_path_unit", task="res_path_unit(x, conv, shortcut, norm) -> the output of one Res path unit, "
          "given its 3×3 conv2d_bn with ReLU (conv), its 1×1 conv2d_bn (shortcut) and its batch norm (norm).",
          cases=_unit_cases,
          hint="compare the order of your steps with ResPath in the authors' tensorflow/MultiResUNet.py, line by line: "
               "which layer takes which tensor.")
def res_path_unit(x: torch.Tensor, conv: nn.Module, shortcut: nn.Module, norm: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return norm(torch.relu(conv(x) + shortcut(x)))


@register("lesson08.block_counts", task="block_counts(in_channels, u) -> {'trainable': ..., 'non_trainable': ...}: "
          "what Keras's summary() counts for one MultiRes block (alpha 1.67).",
          cases=lambda rng: [{"in_channels": 3, "u": 32}, {"in_channels": 105, "u": 64},
                             {"in_channels": int(rng.integers(1, 300)), "u": int(rng.integers(8, 200))}],
          hint="list the layers of MultiResBlock in tensorflow/MultiResUNet.py: four conv2d_bn (a convolution without "
               "bias, then BatchNormalization(scale=False): one trainable and two non-trainable numbers per channel) "
               "and two plain BatchNormalization layers (two trainable and two non-trainable per channel).")
def block_counts(in_channels: int, u: int) -> dict:
    a, b, c = branch_widths(u, 1.67)
    out = a + b + c
    convs = 9 * (in_channels * a + a * b + b * c) + in_channels * out   # the chain and the 1x1 shortcut
    shifts = a + b + c + out                                            # the four conv2d_bn norms: beta only
    scaled = 2 * out + 2 * out                                          # the two plain norms: gamma and beta
    statistics = 2 * (a + b + c + out) + 2 * out + 2 * out              # moving mean and variance of all six norms
    return {"trainable": convs + shifts + scaled, "non_trainable": statistics}
