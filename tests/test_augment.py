"""Tests for unet_lessons.data.augment: shapes in 2D and 3D, exactness, alignment, scipy as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from unet_lessons.data.augment import elastic_deform, elastic_displacement, random_flip_rotate, warp

# (image shape, label shape): square, non-square and odd sizes, 2D and 3D, several channels.
SHAPES = [
    ((3, 1, 32, 32), (3, 32, 32)),
    ((2, 2, 13, 21), (2, 13, 21)),
    ((2, 1, 7, 16, 16), (2, 7, 16, 16)),
    ((1, 3, 5, 9, 11), (1, 5, 9, 11)),
]
IDS = ["2D-square", "2D-odd", "3D-square-HW", "3D-odd"]


def _pair(image_shape, label_shape, seed=0, values=(0, 1, 2)):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(image_shape, generator=g)
    label = torch.tensor(values)[torch.randint(0, len(values), label_shape, generator=g)]
    return image, label


def _blocky_label(shape, block=4, seed=0):
    """Class map of constant blocks, so most pixels are away from a class boundary."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 2, (shape[0],) + tuple(-(-n // block) for n in shape[1:]), generator=g)
    for axis in range(1, len(shape)):
        coarse = coarse.repeat_interleave(block, dim=axis)
    return coarse[(slice(None),) + tuple(slice(0, n) for n in shape[1:])].contiguous()


@pytest.mark.parametrize("shapes", SHAPES, ids=IDS)
@pytest.mark.parametrize("transform", [random_flip_rotate, elastic_deform])
def test_shapes_and_dtypes_are_kept(transform, shapes):
    image, label = _pair(*shapes)
    out_image, out_label = transform(image, label, generator=torch.Generator().manual_seed(1))
    assert out_image.shape == image.shape and out_image.dtype == image.dtype
    assert out_label.shape == label.shape and out_label.dtype == label.dtype


@pytest.mark.parametrize("shapes", SHAPES, ids=IDS)
@pytest.mark.parametrize("transform", [random_flip_rotate, elastic_deform])
def test_labels_stay_within_the_original_set(transform, shapes):
    image, label = _pair(*shapes, values=(0, 2, 5))
    _, out_label = transform(image, label, generator=torch.Generator().manual_seed(2))
    assert set(out_label.unique().tolist()) <= {0, 2, 5}


@pytest.mark.parametrize("shapes", SHAPES, ids=IDS)
@pytest.mark.parametrize("transform", [random_flip_rotate, elastic_deform])
def test_same_generator_seed_gives_same_output(transform, shapes):
    image, label = _pair(*shapes)
    first = transform(image, label, generator=torch.Generator().manual_seed(7))
    second = transform(image, label, generator=torch.Generator().manual_seed(7))
    other = transform(image, label, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("shapes", SHAPES, ids=IDS)
def test_sigma_zero_is_exactly_the_input_and_a_copy(shapes):
    image, label = _pair(*shapes)
    out_image, out_label = elastic_deform(image, label, sigma=0.0)
    assert torch.equal(out_image, image) and torch.equal(out_label, label)
    assert out_image.data_ptr() != image.data_ptr() and out_label.data_ptr() != label.data_ptr()


@pytest.mark.parametrize("shapes", SHAPES, ids=IDS)
def test_tiny_deformation_is_nearly_the_identity(shapes):
    # Runs the full resampling path: a wrong pixel -> normalised coordinate scaling, or x and y
    # swapped, would move pixels by far more than this on the non-square shapes.
    image, label = _pair(*shapes)
    out_image, out_label = elastic_deform(image, label, sigma=1e-6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_image, image, atol=1e-4, rtol=0)
    assert torch.equal(out_label, label)


@pytest.mark.parametrize("size", [(13, 21), (5, 9, 11)], ids=["2D", "3D"])
def test_warp_matches_scipy_map_coordinates(size):
    """scipy's map_coordinates (order 1 / order 0, mode "mirror") is the trusted reference."""
    image, label = _pair((2, 1) + size, (2,) + size, values=(0, 1, 2, 3))
    image = image.double()
    displacement = elastic_displacement(2, size, sigma=4.0, generator=torch.Generator().manual_seed(1)).double()
    out_image, out_label = warp(image, label, displacement)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"))  # (S, *size)
    for b in range(2):
        coordinates = grid + displacement[b].numpy()
        expected_image = ndimage.map_coordinates(image[b, 0].numpy(), coordinates, order=1, mode="mirror")
        expected_label = ndimage.map_coordinates(label[b].numpy(), coordinates, order=0, mode="mirror")
        np.testing.assert_allclose(out_image[b, 0].numpy(), expected_image, atol=1e-10)
        np.testing.assert_array_equal(out_label[b].numpy(), expected_label)


def test_displacement_has_the_requested_spread_and_is_smooth():
    displacement = elastic_displacement(400, (32, 32), grid=3, sigma=10.0, generator=torch.Generator().manual_seed(0))
    assert displacement.shape == (400, 2, 32, 32)
    # align_corners=True: the corner pixels carry the control-point draws themselves, N(0, 10^2).
    corners = displacement[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert 9.0 < corners.std().item() < 11.0
    # Neighbouring pixels move together: a smooth field, not per-pixel noise.
    step = (displacement[..., 1:] - displacement[..., :-1]).abs().mean().item()
    assert step < 1.0
    fields_3d = elastic_displacement(2, (4, 5, 6), sigma=3.0)
    assert fields_3d.shape == (2, 3, 4, 5, 6)


def test_elastic_deform_keeps_image_and_label_aligned():
    label = _blocky_label((4, 40, 40))
    image = label[:, None].float()  # an image that equals its label
    out_image, out_label = elastic_deform(image, label, sigma=6.0, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(out_label, label)  # it did deform
    # Where all bilinear neighbours agree, the image value is exactly a class; the nearest
    # label there must be that class. (Near boundaries bilinear and nearest may differ by design.)
    exact = (out_image[:, 0] == 0) | (out_image[:, 0] == 1)
    assert exact.float().mean() > 0.5
    assert torch.equal(out_image[:, 0][exact].long(), out_label[exact])


@pytest.mark.parametrize("shapes", SHAPES, ids=IDS)
def test_flip_rotate_keeps_image_and_label_aligned(shapes):
    _, label = _pair(*shapes)
    image = label[:, None].float().repeat(1, shapes[0][1], *[1] * (len(shapes[1]) - 1))  # every channel = label
    for seed in range(5):
        out_image, out_label = random_flip_rotate(image, label, generator=torch.Generator().manual_seed(seed))
        for channel in range(image.shape[1]):
            assert torch.equal(out_image[:, channel].long(), out_label)


def test_flip_rotate_reaches_all_eight_symmetries_of_the_square():
    image = torch.arange(9.0).view(1, 1, 3, 3).repeat(64, 1, 1, 1)
    label = torch.arange(9).view(1, 3, 3).repeat(64, 1, 1)
    out_image, _ = random_flip_rotate(image, label, generator=torch.Generator().manual_seed(0))
    outcomes = {tuple(sample.flatten().tolist()) for sample in out_image}
    square = image[0, 0]
    expected = set()
    for turns in range(4):
        for flipped in (square, square.flip(1)):
            expected.add(tuple(flipped.rot90(turns).flatten().tolist()))
    assert outcomes == expected


def test_flip_rotate_does_not_rotate_non_square_images():
    image, label = _pair((32, 1, 4, 6), (32, 4, 6))
    out_image, _ = random_flip_rotate(image, label, generator=torch.Generator().manual_seed(0))
    allowed = [image.flip(dims) for dims in ([], [2], [3], [2, 3])]
    for b in range(32):
        assert any(torch.equal(out_image[b], candidate[b]) for candidate in allowed)


def test_inputs_are_not_modified():
    image, label = _pair((2, 1, 16, 16), (2, 16, 16))
    image_copy, label_copy = image.clone(), label.clone()
    random_flip_rotate(image, label)
    elastic_deform(image, label)
    assert torch.equal(image, image_copy) and torch.equal(label, label_copy)


def test_clear_errors():
    image, label = _pair((2, 1, 16, 16), (2, 16, 16))
    with pytest.raises(ValueError, match="label must be"):
        elastic_deform(image, label[:, :8])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_flip_rotate(image[:, :, 0], label[:, 0])
    with pytest.raises(ValueError, match="sigma"):
        elastic_deform(image, label, sigma=-1.0)
    with pytest.raises(ValueError, match="grid"):
        elastic_deform(image, label, grid=1)
    with pytest.raises(ValueError, match="displacement must be"):
        warp(image, label, torch.zeros(2, 2, 8, 8))
