import numpy as np
import pytest
import torch

from unet_lessons.metrics import best_intensity_dice
from unet_lessons.data.volumes import (BRATS_CLASSES, MODALITIES, ORGAN_CLASSES, SyntheticBraTS3D, SyntheticOrgans3D,
                                       brats_regions, make_brats_volume, make_brats_volumes, make_organ_volume,
                                       normalize_brain, scanner_shift)


def test_organ_volume_shapes_types_and_classes():
    image, label = make_organ_volume((20, 32, 40), seed=1, in_channels=2)
    assert image.shape == (2, 20, 32, 40) and image.dtype == np.float32
    assert label.shape == (20, 32, 40) and label.dtype == np.int64
    assert set(np.unique(label)) == {0, 1, 2} and len(ORGAN_CLASSES) == 3
    assert not np.allclose(image[0], image[1])  # the second channel has its own contrast
    assert set(np.unique(make_organ_volume(32, seed=1, num_classes=2)[1])) == {0, 1}


def test_organ_volume_is_deterministic_by_seed():
    first, second, other = (make_organ_volume(32, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("fraction", [0.01, 0.02, 0.1, 0.3])
def test_foreground_fraction_is_hit(fraction):
    _, label = make_organ_volume(48, seed=3, foreground_fraction=fraction)
    assert (label > 0).mean() == pytest.approx(fraction, rel=0.02)


def test_lesions_lie_inside_the_organ():
    _, label = make_organ_volume(48, seed=2)
    from scipy import ndimage
    organ_and_lesions = ndimage.binary_fill_holes(label > 0)
    assert (label == 2).sum() > 0 and organ_and_lesions[label == 2].all()
    # A lesion voxel's 6-neighbours are lesion or organ, never background.
    lesion = label == 2
    assert not (ndimage.binary_dilation(lesion) & (label == 0)).any()


def test_intensity_alone_does_not_solve_the_organ_task():
    volumes = [make_organ_volume(40, seed=s) for s in range(6)]
    values = np.concatenate([image[0].ravel() for image, _ in volumes])
    labels = np.concatenate([label.ravel() for _, label in volumes])
    for cls in (1, 2):
        assert best_intensity_dice(values, labels == cls) < 0.6


def test_anisotropic_spacing_squashes_the_anatomy_along_the_thick_axis():
    _, label = make_organ_volume((64, 64, 64), seed=4, spacing=(3.0, 1.0, 1.0), foreground_fraction=0.05)
    extent = [np.ptp(np.nonzero((label > 0).any(axis=tuple(a for a in range(3) if a != axis)))[0])
              for axis in range(3)]
    # The organ is sized in mm, so it spans about a third as many voxels along D.
    assert extent[0] < 0.6 * min(extent[1], extent[2])


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape=(32, 32)), "three ints"),
    (dict(foreground_fraction=2.0), "fraction"),
    (dict(num_classes=1), "num_classes"),
    (dict(in_channels=0), "in_channels"),
    (dict(spacing=(1.0, -1.0, 1.0)), "spacing"),
])
def test_bad_arguments_say_what_to_change(kwargs, message):
    kwargs = {"shape": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_organ_volume(**kwargs)


def test_brats_volume_channels_labels_and_background():
    image, label = make_brats_volume(48, seed=0)
    assert image.shape == (4, 48, 48, 48) and len(MODALITIES) == 4
    assert set(np.unique(label)) == {0, 1, 2, 3} and len(BRATS_CLASSES) == 4
    assert (image[:, 0, 0, 0] == 0).all()  # outside the head
    np.testing.assert_array_equal(make_brats_volume(48, seed=0)[1], label)


def test_brats_regions_are_nested():
    _, label = make_brats_volume(48, seed=5)
    whole, core, enhancing = brats_regions(label)
    assert (whole >= core).all() and (core >= enhancing).all()
    assert enhancing.sum() > 0 and core.sum() > enhancing.sum() and whole.sum() > core.sum()
    torch.testing.assert_close(brats_regions(torch.from_numpy(label[None]))[0], torch.from_numpy(np.stack([whole, core, enhancing])))


def test_each_modality_orders_the_tumour_parts_differently():
    image, label = make_brats_volume(48, seed=1)
    orders = {tuple(np.argsort([image[c][label == k].mean() for k in (1, 2, 3)])) for c in range(4)}
    assert len(orders) >= 3
    t1c, flair = MODALITIES.index("T1c"), MODALITIES.index("FLAIR")
    assert image[t1c][label == 3].mean() > image[t1c][label == 2].mean()  # enhancing rim: bright in T1c
    assert image[flair][label == 2].mean() > image[flair][label == 1].mean()  # oedema: bright in FLAIR


def test_datasets_index_deterministic_items():
    organs = SyntheticOrgans3D(3, 24, seed=1)
    image, label = organs[1]
    assert len(organs) == 3 and image.shape == (1, 24, 24, 24) and label.dtype == torch.int64
    torch.testing.assert_close(organs[1][0], image)
    brats = SyntheticBraTS3D(2, (16, 24, 24), seed=0, regions=True)
    image, regions = brats[0]
    assert image.shape == (4, 16, 24, 24) and regions.shape == (3, 16, 24, 24) and regions.dtype == torch.float32
    with pytest.raises(IndexError):
        organs[3]


def test_make_brats_volumes_stacks_normalised_volumes_in_seed_order():
    from unet_lessons.data import make_brats_volumes, normalize_brain

    images, labels = make_brats_volumes(24, [3, 1])
    assert images.shape == (2, 4, 24, 24, 24) and labels.shape == (2, 24, 24, 24) and images.dtype == np.float32
    for n, seed in enumerate([3, 1]):
        image, label = make_brats_volume(24, seed=seed)
        np.testing.assert_array_equal(images[n], normalize_brain(image))
        np.testing.assert_array_equal(labels[n], label)


def test_tumour_size_scales_the_tumour_and_leaves_the_rest_of_the_volume_drawn_alike():
    image, label = make_brats_volume(32, seed=5, enhancing=True)
    same_image, same_label = make_brats_volume(32, seed=5, enhancing=True, tumour_size=1.0)
    assert np.array_equal(image, same_image) and np.array_equal(label, same_label)
    _, small = make_brats_volume(32, seed=5, enhancing=True, tumour_size=0.55)
    assert 0 < (small == 3).sum() < 0.5 * (label == 3).sum()
    with pytest.raises(ValueError, match="tumour_size"):
        make_brats_volume(32, seed=5, tumour_size=0.0)


def test_scanner_shift_changes_the_contrast_inside_the_head_only():
    image, _ = make_brats_volume(32, seed=1)
    shifted = scanner_shift(image, seed=1)
    head = image != 0
    assert np.array_equal(shifted != 0, head)  # zero outside the head stays zero, the head stays non-zero
    assert np.array_equal(shifted, scanner_shift(image, seed=1)) and not np.array_equal(shifted, scanner_shift(image, seed=2))
    ratio = shifted[head] / image[head]
    assert ratio.std() > 0.1  # a field and a gamma, not a constant factor
    assert np.allclose(scanner_shift(image, seed=1, bias=0.0, gamma=1.0), image, atol=1e-6)
    normalised, _ = make_brats_volumes(32, [1], shift={})  # the volume's seed is the shift's; default settings
    np.testing.assert_allclose(normalised[0], normalize_brain(shifted), atol=1e-5)
    with pytest.raises(ValueError, match="C, D, H, W"):
        scanner_shift(image[0], seed=1)
    with pytest.raises(ValueError, match="bias"):
        scanner_shift(image, seed=1, gamma=0.0)


def test_make_organ_volumes_stacks_the_volumes_in_seed_order():
    from unet_lessons.data import make_organ_volumes

    images, labels = make_organ_volumes(24, [3, 1], num_classes=2)
    for n, seed in enumerate([3, 1]):
        image, label = make_organ_volume(24, seed=seed, num_classes=2)
        assert np.array_equal(images[n], image) and np.array_equal(labels[n], label)
    assert images.shape == (2, 1, 24, 24, 24) and labels.shape == (2, 24, 24, 24)


def test_vessel_volumes_are_deterministic_thin_and_not_found_by_a_threshold():
    from unet_lessons.data import make_vessel_volume
    from unet_lessons.metrics import best_intensity_dice

    image, label = make_vessel_volume(40, seed=3)
    again, label_again = make_vessel_volume(40, seed=3)
    assert image.shape == (1, 40, 40, 40) and image.dtype == np.float32 and set(np.unique(label)) == {0, 1}
    assert np.array_equal(image, again) and np.array_equal(label, label_again)
    assert 0.002 < label.mean() < 0.05  # a thin tree, a few per cent of the voxels at most
    assert best_intensity_dice(image[0], label) < 0.6
    with pytest.raises(ValueError, match="non-negative"):
        make_vessel_volume(40, branches=-1)
