"""Solutions to the exercises of lesson 04 (V-Net and the Dice loss). Each returns something a test can check."""

from __future__ import annotations

import torch


def table1_by_hand(encoder_depths=(1, 2, 3, 3, 3), decoder_depths=(3, 3, 2, 1)) -> list[int]:
    """Exercise 1: the receptive field at the end of every stage, counted as in the paper's Table 1."""
    r, j, fields = 1, 1, []
    for level, depth in enumerate(encoder_depths):
        if level > 0:
            r += (2 - 1) * j        # 2x2x2 down-convolution, stride 2
            j *= 2
        r += depth * (5 - 1) * j    # `depth` 5x5x5 convolutions
        fields.append(r)
    for depth in decoder_depths:
        j //= 2
        r += (2 - 1) * j            # the paper counts the 2x2x2 up-convolution at the finer step
        r += depth * (5 - 1) * j
        fields.append(r)
    return fields


def vnet_parameters(width: int = 16, encoder_depths=(1, 2, 3, 3, 3), decoder_depths=(3, 3, 2, 1),
                    in_channels: int = 1, out_channels: int = 2) -> int:
    """Exercise 2: parameters of the paper's V-Net, stage by stage (conv weights + biases + PReLU slopes)."""
    conv = lambda cin, cout, k: k**3 * cin * cout + cout  # noqa: E731
    prelu = lambda c: c                                   # noqa: E731  one slope per channel

    def stage(cin, c, n):
        # n convs; a PReLU after every conv but the last, and one after the residual add.
        return conv(cin, c, 5) + sum(conv(c, c, 5) for _ in range(n - 1)) + (n - 1) * prelu(c) + prelu(c)

    widths = [width * 2**level for level in range(len(encoder_depths))]
    total = stage(in_channels, widths[0], encoder_depths[0])
    for level in range(1, len(encoder_depths)):
        total += conv(widths[level - 1], widths[level], 2) + prelu(widths[level])  # down-conv + PReLU
        total += stage(widths[level], widths[level], encoder_depths[level])
    below = widths[-1]
    for level, depth in zip(reversed(range(len(encoder_depths) - 1)), decoder_depths):
        skip = widths[level]
        total += 8 * below * skip + skip + prelu(skip)     # 2x2x2 up-conv with bias + PReLU
        total += stage(2 * skip, 2 * skip, depth)
        below = 2 * skip
    return total + conv(below, out_channels, 1)


def squared_versus_plain(seed: int = 0) -> bool:
    """Exercise 3: binary p -> both denominators equal; soft p -> sum(p**2) < sum(p), so the squared D is larger."""
    g = torch.Generator().manual_seed(seed)
    truth = (torch.rand(1000, generator=g) < 0.2).float()
    binary = (torch.rand(1000, generator=g) < 0.3).float()
    soft = torch.rand(1000, generator=g)
    dice = lambda p, squared: 2 * (p * truth).sum() / (((p * p) if squared else p).sum() + truth.sum())  # noqa: E731
    return bool(torch.isclose(dice(binary, True), dice(binary, False)) and dice(soft, True) > dice(soft, False))
