"""Reference solutions of lesson 01 (FCN), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.fcn import make_upsample
from ..upsampling import conv_transpose_output_size
from . import register, same


@register("lesson01.exact_x4", task="exact_x4_settings(max_kernel) -> sorted list of (kernel, padding) pairs "
          "with stride 4 and no output padding whose output is exactly 4 n for every input size n.",
          cases=lambda rng: [{"max_kernel": 8}, {"max_kernel": 5}, {"max_kernel": int(rng.integers(9, 14))}],
          hint="write the output size (n - 1)·s - 2p + (k - 1) + 1 with s = 4 and ask when it equals 4n for "
               "every n; keep only paddings 0 ≤ p < k and list (kernel, padding) in increasing order.")
def exact_x4_settings(max_kernel: int = 8) -> list[tuple[int, int]]:
    """(n - 1)·4 - 2p + (k - 1) + 1 = 4n for every n  <=>  k - 2p = 4; checked on a few sizes."""
    return [(k, p) for k in range(1, max_kernel + 1) for p in range(k)
            if k - 2 * p == 4 and all(conv_transpose_output_size(n, k, 4, p) == 4 * n for n in (1, 3, 8))]


@register("lesson01.vgg_fields", task="vgg_receptive_fields(convs_per_stage) -> {'pool3': r, 'pool4': r, 'pool5': r, "
          "'fc7': r} for a VGG net with that many 3×3 convolutions before each of its five 2×2 pools.",
          cases=lambda rng: [{"convs_per_stage": (2, 2, 4, 4, 4)}, {"convs_per_stage": (1, 1, 2, 2, 2)},
                             {"convs_per_stage": tuple(int(n) for n in rng.integers(1, 5, 5))}],
          hint="start from r = 1, j = 1; every layer adds (k - 1)·j, then a stride multiplies j. Each stage has its "
               "3×3 convolutions (stride 1), then a 2×2 pool with stride 2; fc6 is a 7×7 convolution and fc7 a 1×1.")
def vgg_receptive_fields(convs_per_stage: tuple[int, ...] = (2, 2, 3, 3, 3)) -> dict[str, int]:
    r, j, fields = 1, 1, {}
    for stage, num_convs in enumerate(convs_per_stage, start=1):
        r += num_convs * 2 * j      # 3x3 convs, stride 1
        r += 1 * j                  # 2x2 pool, stride 2
        j *= 2
        if stage >= 3:
            fields[f"pool{stage}"] = r
    r += 6 * j                      # fc6 as a 7x7 conv
    fields["fc7"] = r               # fc7 is 1x1
    return fields


@register("lesson01.fcn32s_parameters", task="count_fcn32s_parameters(num_classes) -> the learnable parameters of FCN-32s.",
          # Not 21: the lesson prints that count (section 4.3), for the student to check a formula against.
          cases=lambda rng: [{"num_classes": 2}, {"num_classes": 11}, {"num_classes": int(rng.integers(22, 60))}],
          hint="a convolution has k·k·c_in·c_out weights plus c_out biases; fc6 is a 7×7 convolution from 512 to 4096 "
               "channels, fc7 a 1×1 from 4096 to 4096, score_fr a 1×1 to the classes; the ×32 upsampler is fixed, "
               "so it adds nothing.")
def count_fcn32s_parameters(num_classes: int = 21) -> int:
    total, previous = 0, 3
    for channels, num_convs in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
        for _ in range(num_convs):
            total += previous * channels * 3 * 3 + channels
            previous = channels
    total += 512 * 7 * 7 * 4096 + 4096         # fc6
    total += 4096 * 4096 + 4096                # fc7
    total += 4096 * num_classes + num_classes  # score_fr; the x32 upsampler is fixed
    return total


def _interior_matches(answer, expected) -> bool:
    """The ×3 upsampler must have the right shape and equal bilinear interpolation 3 pixels in from the border."""
    inner = (..., slice(3, -3), slice(3, -3))
    return (isinstance(answer, torch.Tensor) and answer.shape == expected.shape
            and same(answer[inner], expected[inner], rtol=1e-5, atol=1e-6))


@register("lesson01.bilinear_x3", task="upsample_x3(x) -> x upsampled ×3 by a fixed transposed convolution "
          "built with make_upsample (kernel 5, stride 3).",
          cases=lambda rng: [{"x": torch.from_numpy(rng.random((1, 1, n, n), dtype=np.float32))} for n in (9, 12)]
          + [{"x": torch.from_numpy(rng.random((2, 3, 8, 10), dtype=np.float32))}],
          hint="make_upsample(channels, 3, learnable=False) builds it; call it under torch.no_grad() on x. "
               "It is compared with bilinear interpolation away from the outer 3 pixels.",
          compare=_interior_matches)
def upsample_x3(x: torch.Tensor) -> torch.Tensor:
    """The reference compared against: ``F.interpolate`` bilinear ×3 (equal to the fixed up-conv inside)."""
    return F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)


def fixed_upsample_x3(x: torch.Tensor) -> torch.Tensor:
    """The worked solution: the fixed ×3 transposed convolution of ``make_upsample``."""
    with torch.no_grad():
        return make_upsample(x.shape[1], 3, learnable=False)(x)

