"""Reference solutions of lesson 05 (UNet++), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import numpy as np
import torch

from . import register


@register("lesson05.unetpp_parameters", task="unetpp_parameters(features, deep_supervision) -> the parameters of "
          "UNet++ without normalisation, 1 input channel and 1 output channel.",
          cases=lambda rng: [{"features": (32, 64, 128, 256, 512), "deep_supervision": False},
                             {"features": (32, 64, 128, 256, 512), "deep_supervision": True},
                             {"features": (8, 16, 32), "deep_supervision": False}],
          hint="every node X^{i,j} is two 3×3 convolutions; a nested node (j ≥ 1) reads j maps of its row plus the "
               "2×2 up-convolution of X^{i+1,j-1}, which maps features[i+1] to features[i] channels; one 1×1 head, "
               "or one per X^{0,j} under deep supervision.")
def unetpp_parameters(features=(32, 64, 128, 256, 512), in_channels: int = 1, out_channels: int = 1,
                      deep_supervision: bool = False) -> int:
    conv = lambda cin, cout, k: k * k * cin * cout + cout  # noqa: E731  a 2D convolution with bias
    unit = lambda cin, cout: conv(cin, cout, 3) + conv(cout, cout, 3)  # noqa: E731  H: two 3x3 convs
    depth = len(features) - 1
    total = sum(unit(in_channels if i == 0 else features[i - 1], features[i]) for i in range(depth + 1))
    for j in range(1, depth + 1):
        for i in range(depth + 1 - j):
            total += conv(features[i + 1], features[i], 2)          # the 2x2 up-convolution into X^{i,j}
            total += unit(features[i] * (j + 1), features[i])       # j same-row maps + the upsampled one
    heads = depth if deep_supervision else 1
    return total + heads * conv(features[0], out_channels, 1)


@register("lesson05.head_fields", task="head_receptive_fields(depth) -> the textbook receptive field of each head "
          "X^{0,k}, k = 1 .. depth, as a list.",
          cases=lambda rng: [{"depth": 4}, {"depth": 2}, {"depth": 5}],
          hint="head k goes down the encoder to X^{k,0} (two 3×3 convolutions per node, a 2×2 pool between nodes "
               "that doubles j) and back up the diagonal X^{k-1,1} … X^{0,k} (each up-convolution halves j, then "
               "two 3×3 convolutions).")
def head_receptive_fields(depth: int = 4) -> list[int]:
    fields = []
    for k in range(1, depth + 1):
        r, jump = 1, 1
        for level in range(k + 1):             # down the encoder to X^{k,0}
            if level:
                r += (2 - 1) * jump            # 2x2 max-pool, stride 2
                jump *= 2
            r += 2 * (3 - 1) * jump            # the node's two 3x3 convolutions
        for _ in range(k):                     # up the diagonal X^{k-1,1} ... X^{0,k}
            jump //= 2                         # a 2x2 stride-2 up-convolution reads one input per output
            r += 2 * (3 - 1) * jump
        fields.append(r)
    return fields


def _cka_cases(rng: np.random.Generator) -> list[dict]:
    generator = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    x = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    y = torch.randn(300, 4, generator=generator, dtype=torch.float64) + x[:, :4]
    return [{"x": x, "y": x @ rotation}, {"x": x, "y": y}, {"x": x, "y": torch.cat([x, 3 * x], 1)}]


@register("lesson05.linear_cka", task="linear_cka(x, y) -> the linear CKA (a float) of two (N, P) and (N, Q) "
          "representations of the same N samples.",
          cases=_cka_cases,
          hint="centre each column, then CKA = ‖yᵀx‖²_F / (‖xᵀx‖_F · ‖yᵀy‖_F), with Frobenius norms.")
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))
