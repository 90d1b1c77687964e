"""Solutions to the exercises of lesson 05 (UNet++). Each returns something a test can check."""

from __future__ import annotations

import torch


def unetpp_parameters(features=(32, 64, 128, 256, 512), in_channels: int = 1, out_channels: int = 1,
                      deep_supervision: bool = False) -> int:
    """Exercise 1: the parameters of UNet++ (no normalisation), node by node."""
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


def head_receptive_fields(depth: int = 4) -> list[int]:
    """Exercise 2: the textbook receptive field of each head X^{0,k}, k = 1 .. depth."""
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


def cka_invariances(seed: int = 0) -> dict[str, bool]:
    """Exercise 3: what linear CKA ignores, and what it does not."""
    from unet_lessons.similarity import linear_cka

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(500, 8, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    stretch = torch.diag(torch.logspace(-1, 1, 8, dtype=torch.float64))
    return {
        "rotation of the channels": abs(linear_cka(x, x @ rotation) - 1) < 1e-9,
        "scaling by 5": abs(linear_cka(x, 5 * x) - 1) < 1e-9,
        "stretching some channels changes it": linear_cka(x, x @ stretch) < 0.99,
        "more channels, same information": abs(linear_cka(x, torch.cat([x, x @ rotation], 1)) - 1) < 1e-9,
    }
