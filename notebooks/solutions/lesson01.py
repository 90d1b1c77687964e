"""Solutions to the exercises of lesson 01 (FCN). Each returns something a test can check."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from unet_lessons.models.fcn import make_upsample


def exact_x4_settings(max_kernel: int = 8) -> list[tuple[int, int]]:
    """Exercise 1: (kernel, padding) with stride 4 and n_out = 4 n for every n.

    (n - 1) * 4 - 2p + (k - 1) + 1 = 4n  <=>  k - 2p = 4. Checked against PyTorch on several sizes.
    """
    found = []
    for kernel in range(1, max_kernel + 1):
        for padding in range(0, kernel):
            if kernel - 2 * padding != 4:
                continue
            layer = nn.ConvTranspose2d(1, 1, kernel, stride=4, padding=padding)
            if all(layer(torch.zeros(1, 1, n, n)).shape[-1] == 4 * n for n in (1, 3, 8)):
                found.append((kernel, padding))
    return found


def vgg16_receptive_fields() -> dict[str, int]:
    """Exercise 2: r += (k - 1) * j, j *= s along VGG16 (3x3 convs, 2x2 pools, fc6 7x7, fc7 1x1)."""
    r, j, fields = 1, 1, {}
    for stage, num_convs in enumerate((2, 2, 3, 3, 3), start=1):
        r += num_convs * 2 * j      # 3x3 convs, stride 1
        r += 1 * j                  # 2x2 pool
        j *= 2
        if stage >= 3:
            fields[f"pool{stage}"] = r
    r += 6 * j                      # fc6 as a 7x7 conv
    fields["fc7"] = r               # fc7 is 1x1
    return fields


def count_fcn32s_parameters(num_classes: int = 21) -> int:
    """Exercise 3: learnable parameters of FCN-32s from the layer shapes alone."""
    total, previous = 0, 3
    for channels, num_convs in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
        for _ in range(num_convs):
            total += previous * channels * 3 * 3 + channels
            previous = channels
    total += 512 * 7 * 7 * 4096 + 4096      # fc6
    total += 4096 * 4096 + 4096             # fc7
    total += 4096 * num_classes + num_classes  # score_fr; the x32 upsampler is fixed
    return total


def check_bilinear_x3(seed: int = 0) -> bool:
    """Exercise 4: a fixed x3 transposed conv equals bilinear interpolation away from the border."""
    upsampler = make_upsample(1, 3, learnable=False)
    x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = upsampler(x)
    reference = F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    return ours.shape == reference.shape and bool(torch.allclose(ours[inner], reference[inner], atol=1e-6))
