"""Tests for unet_lessons.data.shapes: the multi-class shapes task of lesson 01 (FCN)."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from unet_lessons.data import SHAPE_CLASSES, SyntheticShapes2D, make_shapes_2d, make_shapes_batch
from unet_lessons.metrics import iou_per_class

NUM_CLASSES = len(SHAPE_CLASSES)
BAR, CROSS, DISC = SHAPE_CLASSES.index("bar"), SHAPE_CLASSES.index("cross"), SHAPE_CLASSES.index("disc")


@pytest.fixture(scope="module")
def batch():
    """16 images of 128 x 128, as NumPy arrays: (16, 3, 128, 128) float32 and (16, 128, 128) int64."""
    images, labels = make_shapes_batch(16, 128, seed=0)
    return images.numpy(), labels.numpy()


def test_image_and_label_types_shapes_and_range():
    image, label = make_shapes_2d(96, seed=3)
    assert image.shape == (3, 96, 96) and image.dtype == np.float32
    assert label.shape == (96, 96) and label.dtype == np.int64
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert set(np.unique(label)) <= set(range(NUM_CLASSES))


def test_same_seed_same_image_other_seed_other_image():
    first, second = make_shapes_2d(seed=7), make_shapes_2d(seed=7)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[1], make_shapes_2d(seed=8)[1])


def test_arguments_are_checked_and_obeyed():
    with pytest.raises(ValueError, match="size"):
        make_shapes_2d(8)
    image, label = make_shapes_2d(64, seed=0, num_shapes=0, noise=0.0)
    assert not label.any()
    assert image.std() < 0.2  # background only
    noisy = make_shapes_2d(64, seed=0, noise=1.0)[0]
    clean = make_shapes_2d(64, seed=0, noise=0.0)[0]
    assert 0.2 < np.abs(noisy - clean).mean() < 0.3  # noise=1 is one contrast (0.3) std: mean |N| ~ 0.24


def test_every_class_appears_with_a_reasonable_share(batch):
    _, labels = batch
    fractions = np.bincount(labels.ravel(), minlength=NUM_CLASSES) / labels.size
    assert 0.15 <= 1 - fractions[0] <= 0.40, fractions
    assert (fractions[1:] > 0.03).all(), dict(zip(SHAPE_CLASSES, fractions))
    assert fractions[1:].max() < 2 * fractions[1:].min()  # roughly balanced foreground classes


def test_thin_structures_are_thin(batch):
    _, labels = batch
    def near_background(cls):
        """Share of the class's pixels within 2 px of the nearest pixel of another label."""
        depth = np.concatenate([ndimage.distance_transform_edt(label == cls)[label == cls] for label in labels])
        return (depth <= 2).mean()
    assert near_background(BAR) > 0.9
    assert near_background(CROSS) > 0.85
    assert near_background(DISC) < 0.6  # the measure does tell thin from thick


def test_objects_never_touch(batch):
    _, labels = batch
    for label in labels:
        for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
            assert not ((a != b) & (a > 0) & (b > 0)).any()


def test_colour_alone_does_not_tell_the_class(batch):
    """A nearest-class-mean colour classifier, fitted on one set, is near chance (25%) on another."""
    images, labels = batch
    pixels, classes = images.transpose(0, 2, 3, 1)[labels > 0], labels[labels > 0]  # (P, 3), (P,)
    means = np.stack([pixels[classes == c].mean(0) for c in range(1, NUM_CLASSES)])  # (4, 3)
    test_images, test_labels = (t.numpy() for t in make_shapes_batch(16, 128, seed=1))
    test_pixels, test_classes = test_images.transpose(0, 2, 3, 1)[test_labels > 0], test_labels[test_labels > 0]
    predicted = 1 + ((test_pixels[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == test_classes).mean() < 0.5


def test_a_coarse_prediction_cannot_draw_the_thin_classes(batch):
    """The best stride-s map (the majority class per cell, upsampled) loses bars as s grows."""
    _, labels = batch
    labels = torch.from_numpy(labels)
    fractions = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()  # (B, C, H, W)
    bar_iou = {}
    for stride in (32, 8, 2):
        coarse = F.avg_pool2d(fractions, stride)  # (B, C, H/s, W/s)
        prediction = F.interpolate(coarse, scale_factor=stride, mode="bilinear", align_corners=False).argmax(1)
        bar_iou[stride] = float(iou_per_class(prediction, labels, NUM_CLASSES)[BAR])
    assert bar_iou[32] < 0.05 and bar_iou[8] < 0.2 and bar_iou[2] > 0.8, bar_iou


def test_dataset_items_match_the_generator_and_the_batch():
    dataset = SyntheticShapes2D(5, 64, seed=2, noise=0.1)
    assert len(dataset) == 5 and dataset.classes == SHAPE_CLASSES
    image, label = dataset[3]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert label.shape == (64, 64) and label.dtype == torch.int64
    expected = make_shapes_2d(64, seed=dataset.item_seed(3), noise=0.1)
    assert np.array_equal(image.numpy(), expected[0]) and np.array_equal(label.numpy(), expected[1])
    assert torch.equal(dataset[-1][1], dataset[4][1])
    with pytest.raises(IndexError):
        dataset[5]
    images, labels = make_shapes_batch(5, 64, seed=2, noise=0.1)
    assert images.shape == (5, 3, 64, 64) and labels.shape == (5, 64, 64)
    assert torch.equal(images[3], image) and torch.equal(labels[3], label)
    assert not torch.equal(labels[0], SyntheticShapes2D(1, 64, seed=3, noise=0.1)[0][1])

