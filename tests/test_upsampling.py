"""Tests for unet_lessons.upsampling: each view of transposed convolution against PyTorch's own."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unet_lessons.upsampling import (
    bilinear_kernel_2d,
    bilinear_weight,
    checkerboard_images,
    checkerboard_strength,
    conv_matrix,
    conv_transpose_output_size,
    conv_transpose_scatter,
)


def test_output_size_formula_matches_pytorch_and_refuses_what_pytorch_refuses():
    grid = itertools.product([1, 2, 5, 7], [1, 2, 3, 4, 5], [1, 2, 3], [0, 1, 2], [1, 2], [0, 1, 2])
    valid = invalid = 0
    for size, kernel, stride, padding, dilation, output_padding in grid:
        layer = nn.ConvTranspose2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation,
                                   output_padding=output_padding)
        try:
            expected = layer(torch.zeros(1, 1, size, size)).shape[-1]
        except RuntimeError:
            expected = None
        if expected == 0:
            # float32 on a 1x1 input takes the oneDNN path, which returns an empty tensor where
            # the other paths (float64, larger inputs) raise "Output size is too small".
            expected = None
        settings = (size, kernel, stride, padding, dilation, output_padding)
        if expected is None:
            invalid += 1
            with pytest.raises(ValueError):
                conv_transpose_output_size(*settings)
        else:
            valid += 1
            assert conv_transpose_output_size(*settings) == expected, settings
    assert valid > 300 and invalid > 100  # both branches are really exercised


def test_output_size_messages_say_why():
    with pytest.raises(ValueError, match="smaller than stride"):
        conv_transpose_output_size(4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="crops"):
        conv_transpose_output_size(1, 1, padding=1)
    assert conv_transpose_output_size(4, 3, stride=1, dilation=2, output_padding=1) == 9  # allowed via dilation


@pytest.mark.parametrize("in_shape,kernel,stride,padding", [
    ((1, 2, 2), (3, 3), 1, 0),
    ((1, 3, 3), (3, 3), 2, 0),
    ((2, 4, 5), (3, 3), 2, 1),
    ((3, 3, 4), (4, 4), 2, 1),
    ((2, 2, 3), (2, 3), 3, 0),
    ((1, 5, 5), (5, 5), 2, 2),
])
def test_scatter_view_equals_conv_transpose2d(in_shape, kernel, stride, padding):
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, in_shape, generator=generator).double()
    weight = torch.randint(-3, 4, (in_shape[0], 2, *kernel), generator=generator).double()
    expected = F.conv_transpose2d(x[None], weight, stride=stride, padding=padding)[0]
    assert torch.equal(conv_transpose_scatter(x, weight, stride, padding), expected)  # integers: exact
    x, weight = torch.randn(in_shape), torch.randn(in_shape[0], 2, *kernel)
    torch.testing.assert_close(conv_transpose_scatter(x, weight, stride, padding),
                               F.conv_transpose2d(x[None], weight, stride=stride, padding=padding)[0])


@pytest.mark.parametrize("channels,size,kernel,stride,padding", [
    ((1, 1), 4, 3, 1, 0),  # the lesson's example: 4x4 input, 3x3 kernel, C is 4 x 16
    ((1, 1), 4, 3, 2, 1),
    ((2, 3), 5, 3, 2, 1),
    ((1, 2), (4, 6), 2, 2, 0),
    ((1, 1), 5, 3, 2, 0),
])
def test_matrix_view_equals_conv_and_its_transpose(channels, size, kernel, stride, padding):
    c_out, c_in = channels
    height, width = (size, size) if isinstance(size, int) else size
    weight = torch.randn(c_out, c_in, kernel, kernel, dtype=torch.float64)
    x = torch.randn(c_in, height, width, dtype=torch.float64)
    matrix = conv_matrix(weight, size, stride, padding)
    conv = F.conv2d(x[None], weight, stride=stride, padding=padding)[0]
    assert matrix.shape == (conv.numel(), x.numel())
    torch.testing.assert_close(matrix @ x.flatten(), conv.flatten())

    y = torch.randn_like(conv)
    output_padding = (height + 2 * padding - kernel) % stride
    transposed = F.conv_transpose2d(y[None], weight, stride=stride, padding=padding,
                                    output_padding=output_padding)[0]
    assert transposed.shape == x.shape
    torch.testing.assert_close((matrix.T @ y.flatten()).reshape(x.shape), transposed)


def test_matrix_of_the_lesson_example_is_sparse_and_banded():
    matrix = conv_matrix(torch.arange(1.0, 10.0).reshape(1, 1, 3, 3), 4)
    assert matrix.shape == (4, 16)
    assert (matrix != 0).sum(1).tolist() == [9, 9, 9, 9]
    assert matrix[0, :4].tolist() == [1, 2, 3, 0] and matrix[3, -4:].tolist() == [0, 7, 8, 9]


def test_bilinear_kernel_by_hand():
    taps4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel_2d(4), torch.outer(taps4, taps4))
    taps3 = torch.tensor([0.5, 1.0, 0.5])
    torch.testing.assert_close(bilinear_kernel_2d(3), torch.outer(taps3, taps3))
    assert bilinear_kernel_2d(1).tolist() == [[1.0]]
    with pytest.raises(ValueError):
        bilinear_kernel_2d(0)


def test_bilinear_weight_is_channel_diagonal_and_interpolates():
    weight = bilinear_weight(3, 3, 4)
    assert weight.shape == (3, 3, 4, 4)
    for i in range(3):
        for j in range(3):
            expected = bilinear_kernel_2d(4) if i == j else torch.zeros(4, 4)
            assert torch.equal(weight[i, j], expected)
    with pytest.raises(ValueError, match="must equal"):
        bilinear_weight(3, 2, 4)
    # Stride 2, kernel 4, padding 1 is bilinear interpolation (align_corners=False) away from the border.
    y = torch.randn(1, 3, 6, 7)
    upsampled = F.conv_transpose2d(y, weight, stride=2, padding=1)
    reference = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1])


def test_checkerboard_strength_scores_patterns_not_smoothness():
    yy, xx = np.mgrid[0:32, 0:32]
    assert checkerboard_strength((yy + xx) % 2) == pytest.approx(1.0)
    assert checkerboard_strength(np.sin(xx / 5.0) + np.cos(yy / 7.0)) < 0.01
    assert checkerboard_strength(np.ones((8, 8))) == 0.0
    # It is the share of the 2D DFT energy at the three Nyquist frequencies.
    image = np.random.default_rng(0).normal(size=(8, 10))
    energy = np.abs(np.fft.fft2(image)) ** 2
    nyquist = energy[4, 0] + energy[0, 5] + energy[4, 5]
    assert checkerboard_strength(image) == pytest.approx(nyquist / (energy.sum() - energy[0, 0]))


@pytest.mark.parametrize("seed", range(5))
def test_transposed_conv_with_uneven_overlap_makes_a_checkerboard(seed):
    images = checkerboard_images(seed=seed)
    scores = {name: checkerboard_strength(image) for name, image in images.items()}
    assert images["transposed_k3"].shape == (32, 32) and images["input"].shape == (16, 16)
    assert scores["transposed_k3"] > 0.5
    assert scores["transposed_k3"] > 10 * scores["resize_conv"]
    assert scores["bilinear_k4"] < 1e-3


def test_checkerboard_images_are_deterministic_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = checkerboard_images(seed=1)
    assert torch.equal(torch.rand(3), before)
    second = checkerboard_images(seed=1)
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not np.array_equal(first["transposed_k3"], checkerboard_images(seed=2)["transposed_k3"])
