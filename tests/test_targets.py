"""Targets: class-label checks, and region targets (BraTS' nested regions) both ways."""

import numpy as np
import pytest
import torch

from unet_lessons.data import brats_regions, make_brats_volume
from unet_lessons.targets import (check_class_labels, check_region_target, labels_to_regions,
                                  regions_to_labels)


@pytest.mark.parametrize("shape", [(2, 7, 9), (2, 5, 6, 7)])
def test_labels_to_regions_and_back_are_inverse(shape):
    labels = torch.randint(0, 4, shape, generator=torch.Generator().manual_seed(0))
    regions = labels_to_regions(labels)
    assert regions.shape == (shape[0], 3, *shape[1:]) and regions.dtype == torch.float32
    assert torch.equal(regions_to_labels(regions), labels)


def test_regions_follow_the_brats_definition():
    labels = torch.tensor([[0, 1, 2, 3]])
    regions = labels_to_regions(labels)[0]  # (3, 4)
    assert regions.tolist() == [[0, 1, 1, 1],   # whole tumour: necrotic core, edema, enhancing
                                [0, 1, 0, 1],   # tumour core: necrotic core, enhancing
                                [0, 0, 0, 1]]   # enhancing tumour
    check_region_target(labels_to_regions(labels), nested=True)


def test_the_data_module_uses_the_same_definition():
    _, label = make_brats_volume(24, seed=3)
    assert np.array_equal(brats_regions(label), labels_to_regions(torch.from_numpy(label)[None])[0].numpy())


def test_regions_from_a_real_volume_convert_back():
    _, label = make_brats_volume(24, seed=1)
    labels = torch.from_numpy(label)[None]
    assert torch.equal(regions_to_labels(labels_to_regions(labels)), labels)


def test_regions_that_are_not_nested_are_refused_with_the_count_and_first_voxel():
    regions = labels_to_regions(torch.zeros(1, 4, 4, dtype=torch.long))
    regions[0, 2, 1, 2] = 1  # an enhancing voxel outside the tumour core (and the whole tumour)
    regions[0, 2, 3, 3] = 1
    regions[0, 0, 1, 2] = regions[0, 0, 3, 3] = 1  # inside the whole tumour, so only the core is violated
    with pytest.raises(ValueError, match=r"2 voxels of 'enhancing tumour' lie outside 'tumour core' \(the first at "
                                         r"\(batch, \*spatial\) = \(0, 1, 2\)\).*labels_to_regions"):
        check_region_target(regions, nested=True, names=["whole tumour", "tumour core", "enhancing tumour"])
    with pytest.raises(ValueError, match="combination of regions that no class has"):
        regions_to_labels(regions)


def test_probabilities_are_refused_where_a_binary_target_is_expected():
    regions = labels_to_regions(torch.randint(0, 4, (1, 4, 4)))
    with pytest.raises(ValueError, match=r"must be binary.*probabilities or soft labels.*target > 0.5"):
        check_region_target(regions * 0.9)
    with pytest.raises(ValueError, match="2 channels .* predicts 3 regions"):
        check_region_target(regions[:, :2], num_regions=3)
    with pytest.raises(ValueError, match=r"\(B, R, \*S\).*labels_to_regions"):
        check_region_target(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="integer class indices"):
        labels_to_regions(regions)


def test_class_label_messages_name_the_fix():
    with pytest.raises(ValueError, match=r"\[255\].*0/255.*256 output channels"):
        check_class_labels(torch.tensor([0, 255]), 2)
    with pytest.raises(ValueError, match=r"\[4\].*out_channels=5"):
        check_class_labels(torch.tensor([0, 4]), 3)
    with pytest.raises(ValueError, match=r"\[-3\].*ignore_index=-3"):
        check_class_labels(torch.tensor([0, -3]), 3)
    check_class_labels(torch.tensor([0, -1, 2]), 3, ignore_index=-1)
