"""Reference solutions of lesson 04 (V-Net and the Dice loss), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import numpy as np
import torch

from . import register


@register("lesson04.table1", task="table1_by_hand(encoder_depths, decoder_depths) -> the receptive field at the end "
          "of every stage (encoder stages, then decoder stages), counted as in the paper's Table 1.",
          cases=lambda rng: [{"encoder_depths": (1, 2, 3, 3, 3), "decoder_depths": (3, 3, 2, 1)},
                             {"encoder_depths": (1, 2, 2), "decoder_depths": (2, 1)},
                             {"encoder_depths": (2, 2, 3, 3), "decoder_depths": (3, 2, 2)}],
          hint="5×5×5 convolutions add 4·j each; a 2×2×2 down-convolution adds 1·j and doubles j; on the way up the "
               "paper halves j first and then counts the 2×2×2 up-convolution at the finer step (1·j).")
def table1_by_hand(encoder_depths=(1, 2, 3, 3, 3), decoder_depths=(3, 3, 2, 1)) -> list[int]:
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


@register("lesson04.vnet_parameters", task="vnet_parameters(width) -> the parameters of the paper's V-Net "
          "(1 input channel, 2 classes) with `width` channels in its first stage.",
          cases=lambda rng: [{"width": 16}, {"width": 8}, {"width": int(rng.integers(2, 7))}],
          hint="a convolution has k³·c_in·c_out weights plus c_out biases and a PReLU one slope per channel. A stage "
               "of n 5×5×5 convolutions has a PReLU after each but the last, and one after the residual addition; "
               "down-convolutions (2×2×2) double the channels, up-convolutions halve them, and a decoder stage works "
               "on the concatenation, so it has twice the skip's channels.")
def vnet_parameters(width: int = 16, encoder_depths=(1, 2, 3, 3, 3), decoder_depths=(3, 3, 2, 1),
                    in_channels: int = 1, out_channels: int = 2) -> int:
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


def _dice_cases(rng: np.random.Generator) -> list[dict]:
    generator = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    truth = (torch.rand(500, generator=generator) < 0.2).float()
    binary = (torch.rand(500, generator=generator) < 0.3).float()
    soft = torch.rand(500, generator=generator)
    return [{"prediction": p, "truth": truth, "squared": squared} for p in (binary, soft) for squared in (True, False)]


@register("lesson04.vnet_dice", task="vnet_dice(prediction, truth, squared) -> the Dice coefficient D of Eq. 1: "
          "2·Σ p·g over Σ p² + Σ g² (squared=True) or over Σ p + Σ g (squared=False).",
          cases=_dice_cases,
          hint="truth is binary, so Σ g² = Σ g; only the prediction's sum changes with `squared`. Return a 0-d tensor.")
def vnet_dice(prediction: torch.Tensor, truth: torch.Tensor, squared: bool) -> torch.Tensor:
    denominator = ((prediction * prediction) if squared else prediction).sum() + (truth * truth).sum()
    return 2 * (prediction * truth).sum() / denominator
