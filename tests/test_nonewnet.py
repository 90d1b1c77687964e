"""No New-Net (lesson 06): its layout against the authors' code, and the BraTS pieces around it."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from unet_lessons.data import PatchSampler, make_brats_volume, normalize_brain
from unet_lessons.inference import sliding_window_probabilities
from unet_lessons.metrics import BRATS_EMPTY_HD95, best_intensity_dice, hausdorff95_per_region
from unet_lessons.models import NoNewNet
from unet_lessons.targets import BRATS_REGION_CLASSES, labels_to_regions, remove_small_region
from unet_lessons.utils import count_parameters


def by_hand(in_channels=4, out_channels=3, widths=(30, 60, 120, 240, 320)):
    """Weights and biases of 3×3×3 convolutions, affine instance norms (2 per channel), a 1×1×1 head."""
    unit = lambda cin, cout: 27 * cin * cout + cout + 2 * cout  # noqa: E731
    depth = len(widths) - 1
    total = unit(in_channels, widths[0]) + unit(widths[0], widths[0])
    for level in range(1, depth + 1):
        out = widths[level - 1] if level == depth else widths[level]
        total += unit(widths[level - 1], widths[level]) + unit(widths[level], out)
    for level in reversed(range(depth)):
        out = widths[level - 1] if level > 0 else widths[0]
        total += unit(2 * widths[level], widths[level]) + unit(widths[level], out)
    return total + widths[0] * out_channels + out_channels


def test_paper_size_matches_a_count_by_hand():
    model = NoNewNet()
    assert model.features == (30, 60, 120, 240, 320)  # the authors' code caps the width at 320
    assert count_parameters(model) == by_hand() == 12_418_983
    assert count_parameters(NoNewNet(max_features=480)) == by_hand(widths=(30, 60, 120, 240, 480))


def test_layout_of_the_authors_code():
    model = NoNewNet(4, 3, width=4, depth=3)
    assert not any(isinstance(m, (nn.ConvTranspose3d, nn.BatchNorm3d)) for m in model.modules())
    assert all(m.affine for m in model.modules() if isinstance(m, nn.InstanceNorm3d))
    assert {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)} == {0.01}
    assert all(up.up.mode == "trilinear" for up in model.ups)
    # Fewer filters before upsampling: what goes up is as wide as the skip it meets.
    features = model.forward_features(torch.zeros(1, 4, 32, 32, 32))
    assert features["bottleneck"].shape[1] == features["enc2"].shape[1]
    assert [features[f"dec{level}"].shape[1] for level in (2, 1, 0)] == [8, 4, 4]


def test_size_rule_keeps_two_voxels_for_instance_norm():
    model = NoNewNet(4, 3, width=2, depth=2)
    assert model.output_size(7) is None and model.output_size(8) == 8
    model.train()(torch.zeros(1, 4, 8, 8, 8))
    with pytest.raises(ValueError, match="at least 2"):
        model.check_input(torch.zeros(1, 4, 4, 4, 4))


def test_synthetic_brats_defeats_a_threshold():
    scores = []
    for seed in range(4):
        image, label = make_brats_volume(48, seed=7000 + seed)
        regions = labels_to_regions(torch.from_numpy(label[None]))[0].numpy().astype(bool)
        brain = image[0] != 0
        scores.append([max(best_intensity_dice(image[c][brain], regions[r][brain]) for c in range(4))
                       if regions[r].any() else np.nan for r in range(3)])
    assert (np.nanmean(scores, axis=0) < 0.6).all(), scores


def test_tumours_without_enhancing_rim():
    _, label = make_brats_volume(32, seed=3, enhancing=False)
    assert not (label == 3).any() and (label == 1).any()
    rims = [bool((make_brats_volume(24, seed=s)[1] == 3).any()) for s in range(20)]
    assert 0 < rims.count(False) < 10


def test_normalize_brain_equals_monai():
    from monai.transforms import NormalizeIntensity

    image, _ = make_brats_volume(24, seed=1)
    np.testing.assert_allclose(normalize_brain(image), np.asarray(NormalizeIntensity(nonzero=True, channel_wise=True)(image)),
                               atol=1e-5)
    assert (normalize_brain(image)[:, image[0] == 0] == 0).all()
    with pytest.raises(ValueError, match="empty or all-zero"):
        normalize_brain(np.zeros((2, 4, 4, 4), np.float32))


def test_hd95_brats_conventions():
    prediction, truth = torch.zeros(1, 3, 10, 10, 10, dtype=torch.bool), torch.zeros(1, 3, 10, 10, 10, dtype=torch.bool)
    prediction[0, 0, 2:6, 2:6, 2:6] = truth[0, 0, 2:6, 2:6, 2:6] = True   # equal: 0 mm
    prediction[0, 1, 5, 5, 5] = True                                       # only predicted: the BraTS penalty
    distance = hausdorff95_per_region(prediction, truth)
    assert distance.tolist() == [[0.0, BRATS_EMPTY_HD95, 0.0]]           # region 2 absent from both: 0
    truth[0, 0, 2:6, 2:6, 7] = True                                       # one extra plane one voxel away
    assert 0 < hausdorff95_per_region(prediction, truth)[0, 0] <= 2.0


def test_remove_small_region():
    regions = torch.zeros(2, 3, 4, 4, 4, dtype=torch.bool)
    regions[0, 2, :2, :2, :2] = True    # 8 voxels
    regions[1, 2, :3, :3, :3] = True    # 27 voxels
    out = remove_small_region(regions, 2, 10)
    assert not out[0, 2].any() and out[1, 2].sum() == 27 and regions[0, 2].sum() == 8
    with pytest.raises(ValueError, match="channel 5"):
        remove_small_region(regions, 5, 10)


def test_sliding_window_mirroring_and_blending():
    torch.manual_seed(0)
    model = NoNewNet(4, 3, width=2, depth=1).eval()
    x = torch.randn(1, 4, 12, 12, 12)
    whole = sliding_window_probabilities(model, x, roi_size=12)
    with torch.no_grad():
        torch.testing.assert_close(whole, torch.sigmoid(model(x)))
        flipped = torch.flip(torch.sigmoid(model(torch.flip(x, (2,)))), (2,))
    torch.testing.assert_close(sliding_window_probabilities(model, x, roi_size=12, mirror_axes=(0,)),
                               (whole + flipped) / 2)
    gaussian = sliding_window_probabilities(model, x, roi_size=8, overlap=0.5)
    constant = sliding_window_probabilities(model, x, roi_size=8, overlap=0.5, mode="constant")
    assert gaussian.shape == constant.shape == (1, 3, 12, 12, 12) and not torch.allclose(gaussian, constant)
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window_probabilities(model, x, roi_size=8, mirror_axes=(3,))


def test_sampler_with_monai_transforms_and_region_targets():
    from monai.transforms import Compose, RandFlipd

    image, label = make_brats_volume(24, seed=0)
    transform = Compose([RandFlipd(["image", "label"], prob=0.5, spatial_axis=0)])
    sampler = PatchSampler(image[None], label[None], patch_size=16, batch_size=3, augment=False, mean=0.0, std=1.0,
                           transform=transform, regions=BRATS_REGION_CLASSES, seed=1)
    x, y = next(sampler)
    assert x.shape == (3, 4, 16, 16, 16) and y.shape == (3, 3, 16, 16, 16) and y.dtype == torch.float32
    assert type(x) is torch.Tensor and (y[:, 0] >= y[:, 1]).all() and (y[:, 1] >= y[:, 2]).all()
    state = sampler.state_dict()
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)   # saved runs read it back with weights_only=True
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    expected = next(sampler)
    sampler.load_state_dict(state)   # the MONAI transform's random state comes back with the sampler's
    again = next(sampler)
    torch.testing.assert_close(again[0], expected[0])
    torch.testing.assert_close(again[1], expected[1])


def test_the_sampler_state_holds_the_random_states_inside_monai_transforms():
    # RandScaleIntensityd draws its factor from its inner scaler's random state, not its own: a state_dict
    # without it rewinds the flips but not the intensities, and a saved run's first-batch check moved training on.
    from unet_lessons.benchmark.lesson07 import make_augmentation

    image, label = make_brats_volume(24, seed=0)
    sampler = PatchSampler(image[None], label[None], patch_size=16, batch_size=2, augment=False, mean=0.0, std=1.0,
                           transform=make_augmentation(), regions=BRATS_REGION_CLASSES, seed=3)
    state = sampler.state_dict()
    assert len(state["transform"]) == 8  # Compose, 2 × (dict transform + inner), 3 flips
    expected = [next(sampler) for _ in range(3)]
    sampler.load_state_dict(state)
    for (x, y), (x_again, y_again) in zip(expected, (next(sampler) for _ in range(3))):
        assert torch.equal(x, x_again) and torch.equal(y, y_again)
