"""Tests for unet_lessons.losses: our hand-written losses against MONAI, and the U-Net weight map."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss as MonaiDiceCELoss
from monai.losses import DiceLoss as MonaiDiceLoss
from scipy import ndimage

from unet_lessons.losses import (SampleBalancedCrossEntropy, inverse_frequency_weight_map, DiceCELoss, SoftDiceLoss, one_hot, unet_weight_map, vnet_dice_gradient,
                                  weighted_cross_entropy, WeightedCrossEntropy, cell_distances, separation_band)

SPATIAL = {2: (9, 7), 3: (5, 6, 7)}  # odd, unequal sizes catch axis mix-ups
NUM_CLASSES = 3
BATCH = 2


def make_case(spatial_dims: int, seed: int = 0, num_classes: int = NUM_CLASSES):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(BATCH, num_classes, *SPATIAL[spatial_dims], generator=generator, dtype=torch.float64)
    target = torch.randint(0, num_classes, (BATCH, *SPATIAL[spatial_dims]), generator=generator)
    return logits, target


DICE_GRID = list(itertools.product(
    (True, False),  # softmax
    (True, False),  # include_background
    (True, False),  # batch
    (True, False),  # squared_pred
    ((1e-5, 1e-5), (0.0, 1e-3), (1.0, 1.0)),  # (smooth_nr, smooth_dr)
    (2, 3),  # spatial_dims
    (False, True),  # target given with a channel axis
))


@pytest.mark.parametrize("softmax,include_background,batch,squared_pred,smooth,spatial_dims,channel_axis", DICE_GRID)
def test_soft_dice_matches_monai_value_and_gradient(softmax, include_background, batch, squared_pred, smooth,
                                                    spatial_dims, channel_axis):
    logits, target = make_case(spatial_dims, seed=spatial_dims)
    options = dict(include_background=include_background, batch=batch, squared_pred=squared_pred,
                   smooth_nr=smooth[0], smooth_dr=smooth[1])
    ours = SoftDiceLoss(softmax=softmax, **options)
    theirs = MonaiDiceLoss(to_onehot_y=True, softmax=softmax, **options)

    def run(loss, our_target):
        x = logits.clone().requires_grad_(True)
        # softmax=False: both losses receive the same probabilities, and the gradient still flows to the logits.
        value = loss(x if softmax else torch.softmax(x, 1), our_target)
        (grad,) = torch.autograd.grad(value, x)
        return value, grad

    our_value, our_grad = run(ours, target[:, None] if channel_axis else target)
    their_value, their_grad = run(theirs, target[:, None])  # MONAI wants (B, 1, *S)
    torch.testing.assert_close(our_value, their_value)
    torch.testing.assert_close(our_grad, their_grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("batch", [False, True])
def test_soft_dice_reductions_and_weights_match_monai(reduction, batch):
    logits, target = make_case(2, seed=5)
    weight = [0.5, 2.0, 1.5]
    for include_background in (True, False):
        ours = SoftDiceLoss(reduction=reduction, batch=batch, include_background=include_background, weight=weight)
        # MONAI's DiceLoss wants the weights of the kept classes only.
        theirs = MonaiDiceLoss(to_onehot_y=True, softmax=True, reduction=reduction, batch=batch,
                               include_background=include_background,
                               weight=weight if include_background else weight[1:])
        our_value, their_value = ours(logits, target), theirs(logits, target[:, None])
        kept = NUM_CLASSES if include_background else NUM_CLASSES - 1
        if reduction == "none":
            assert our_value.shape == ((kept,) if batch else (BATCH, kept))
            their_value = their_value.reshape(our_value.shape)  # MONAI adds singleton spatial axes
        torch.testing.assert_close(our_value, their_value)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("include_background,batch,squared_pred", [(True, False, False), (False, True, True),
                                                                   (False, False, False), (True, True, False)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dice_ce_matches_monai(spatial_dims, include_background, batch, squared_pred, weighted, reduction):
    logits, target = make_case(spatial_dims, seed=11)
    weight = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64) if weighted else None
    options = dict(include_background=include_background, batch=batch, squared_pred=squared_pred,
                   reduction=reduction, lambda_dice=0.7, lambda_ce=1.3)
    ours = DiceCELoss(ce_weight=weight, dice_weight=weight, **options)
    theirs = MonaiDiceCELoss(to_onehot_y=True, softmax=True, weight=weight, **options)
    x1, x2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    our_value, their_value = ours(x1, target), theirs(x2, target[:, None])
    torch.testing.assert_close(our_value, their_value)
    our_value.backward()
    their_value.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_dice_ce_pieces_and_label_smoothing():
    logits, target = make_case(2, seed=3)
    weight = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    ce_only = DiceCELoss(lambda_dice=0.0, ce_weight=weight)(logits, target)
    # torch's weighted "mean" divides by the summed weights of the true classes, not by the pixel count.
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(ce_only, (per_pixel * weight[target]).sum() / weight[target].sum())
    ours = DiceCELoss(label_smoothing=0.1)(logits, target)
    theirs = MonaiDiceCELoss(to_onehot_y=True, softmax=True, label_smoothing=0.1)(logits, target[:, None])
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("squared_pred", [False, True])
def test_empty_target_and_empty_prediction_give_zero_loss(include_background, batch, squared_pred):
    target = torch.zeros(2, 8, 8, dtype=torch.long)  # no foreground anywhere
    probs = one_hot(target, 2)  # and none predicted
    options = dict(include_background=include_background, batch=batch, squared_pred=squared_pred)
    loss = SoftDiceLoss(softmax=False, **options)(probs, target)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-12)
    # The empty class scores 1 - smooth_nr / smooth_dr: here 1 - 1/2 for the foreground term.
    halved = SoftDiceLoss(softmax=False, include_background=False, squared_pred=squared_pred, smooth_nr=1.0,
                          smooth_dr=2.0)(probs, target)
    assert halved.item() == pytest.approx(0.5)
    # Without the numerator smoothing the same correct answer would cost 1 for the empty class.
    unsmoothed = SoftDiceLoss(softmax=False, include_background=False, smooth_nr=0.0)(probs, target)
    assert unsmoothed.item() == pytest.approx(1.0)
    # With logits the empty class is never predicted exactly 0, but confident logits get close, with finite gradients.
    logits = torch.stack([torch.full((2, 8, 8), 20.0), torch.full((2, 8, 8), -20.0)], dim=1).requires_grad_(True)
    value = SoftDiceLoss(**options)(logits, target)
    value.backward()
    assert torch.isfinite(value) and value.item() < 1e-6
    assert torch.isfinite(logits.grad).all()


def test_shape_mismatch_names_the_crop():
    logits = torch.randn(2, 2, 16, 16)
    with pytest.raises(ValueError, match="crop the target"):
        SoftDiceLoss()(logits, torch.zeros(2, 12, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="batch or spatial"):
        DiceCELoss()(logits, torch.zeros(3, 1, 16, 16, dtype=torch.long))


def test_labels_out_of_range_say_how_to_map_a_255_mask():
    logits = torch.randn(1, 2, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.long)
    mask[0, :2] = 255
    with pytest.raises(ValueError, match=r"\[255\].*\(target > 0\)\.long\(\)"):
        SoftDiceLoss()(logits, mask)
    with pytest.raises(ValueError, match="outside"):
        one_hot(torch.tensor([[[-1, 0]]]), 2)


def test_non_probabilities_with_softmax_false_suggest_softmax_true():
    logits, target = make_case(2)
    with pytest.raises(ValueError, match="softmax=True"):
        SoftDiceLoss(softmax=False)(logits, target)
    squashed = torch.sigmoid(logits)  # in [0, 1] but the channels do not sum to 1
    with pytest.raises(ValueError, match="softmax=True"):
        SoftDiceLoss(softmax=False)(squashed, target)


def test_probability_checks_name_what_is_wrong():
    target = torch.tensor([[[0, 1], [1, 0]]])
    probs = one_hot(target, 2, dtype=torch.float64)  # (1, 2, 2, 2), a valid probability map
    SoftDiceLoss(softmax=False, include_background=False)(probs, target)  # accepted, background dropped or not
    out_of_range = probs.clone()
    out_of_range[0, :, 0, 0] = torch.tensor([1.2, -0.2], dtype=torch.float64)  # sums to 1, still not probabilities
    with pytest.raises(ValueError, match=r"values in \[-0.2, 1.2\]"):
        SoftDiceLoss(softmax=False)(out_of_range, target)
    with pytest.raises(ValueError, match="channel sums up to 0.5"):
        SoftDiceLoss(softmax=False)(probs * 0.5, target)  # in [0, 1], but the channels sum to 0.5
    poisoned = probs.clone()
    poisoned[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        SoftDiceLoss(softmax=False)(poisoned, target)
    # A float32 softmax output sums to 1 only within rounding: accepted.
    confident = torch.softmax(torch.randn(2, 5, 16, 16) * 30, 1)
    SoftDiceLoss(softmax=False)(confident, torch.zeros(2, 16, 16, dtype=torch.long))


BINARY_GRID = list(itertools.product((True, False), (True, False), ((1e-5, 1e-5), (0.0, 1e-6), (1.0, 1.0))))


@pytest.mark.parametrize("include_background,batch,smooth", BINARY_GRID)
def test_vnet_binary_dice_matches_monai(include_background, batch, smooth):
    """The V-Net setting: two classes, squared denominators, softmax on the logits."""
    logits, target = make_case(3, seed=21, num_classes=2)
    options = dict(squared_pred=True, include_background=include_background, batch=batch,
                   smooth_nr=smooth[0], smooth_dr=smooth[1])
    x1, x2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = SoftDiceLoss(softmax=True, **options)(x1, target)
    theirs = MonaiDiceLoss(to_onehot_y=True, softmax=True, **options)(x2, target[:, None])
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_vnet_dice_gradient_is_the_autograd_gradient():
    generator = torch.Generator().manual_seed(4)
    p = torch.rand(4, 5, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    g = (torch.rand(4, 5, 6, generator=generator) > 0.7).double()
    dice = 2 * (p * g).sum() / ((p * p).sum() + (g * g).sum())
    (autograd,) = torch.autograd.grad(dice, p)
    torch.testing.assert_close(vnet_dice_gradient(p.detach(), g), autograd)
    # SoftDiceLoss(squared_pred=True) without smoothing is 1 - D on the foreground channel.
    probs = torch.stack([1 - p.detach(), p.detach()])[None].requires_grad_(True)  # (1, 2, 4, 5, 6)
    loss = SoftDiceLoss(softmax=False, include_background=False, squared_pred=True, smooth_nr=0.0,
                        smooth_dr=1e-300)(probs, g.long()[None])
    loss.backward()
    torch.testing.assert_close(loss, 1 - dice.detach())
    torch.testing.assert_close(probs.grad[0, 1], -vnet_dice_gradient(p.detach(), g))
    assert not probs.grad[0, 0].any()  # the dropped background gets no gradient
    with pytest.raises(ValueError, match="0/0"):
        vnet_dice_gradient(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        vnet_dice_gradient(torch.zeros(3), torch.zeros(4))


def test_other_misuse_is_caught():
    with pytest.raises(ValueError, match="2 output channels"):
        SoftDiceLoss(include_background=False)(torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="argmax"):  # a one-hot target
        SoftDiceLoss()(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="smooth_dr"):
        SoftDiceLoss(smooth_dr=0.0)
    with pytest.raises(ValueError, match="one weight per class"):
        SoftDiceLoss(weight=[1.0, 2.0])(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("shape,num_classes,expected", [
    ((2, 5, 6), 3, (2, 3, 5, 6)),
    ((2, 1, 5, 6), 3, (2, 3, 5, 6)),
    ((2, 4, 5, 6), 2, (2, 2, 4, 5, 6)),
    ((2, 1, 4, 5, 6), 2, (2, 2, 4, 5, 6)),
])
def test_one_hot_shapes_and_values(shape, num_classes, expected):
    target = torch.randint(0, num_classes, shape)
    encoded = one_hot(target, num_classes)
    assert encoded.shape == expected and encoded.dtype == torch.float32
    torch.testing.assert_close(encoded.argmax(1), target.reshape(encoded.argmax(1).shape))
    assert torch.all(encoded.sum(1) == 1)


# ---------------------------------------------------------------- U-Net weight map


def two_cells() -> np.ndarray:
    label = np.zeros((20, 30), dtype=np.int64)
    label[5:15, 3:11] = 1  # cell A, last column 10
    label[5:15, 15:23] = 1  # cell B, first column 15: a gap of 4 membrane pixels (columns 11-14)
    return label


def test_weight_map_two_cells_by_hand():
    label = two_cells()
    weight = unet_weight_map(label, w0=10.0, sigma=5.0)
    # Balanced class weights by hand: 160 cell pixels, 440 membrane pixels, 600 in all.
    w_membrane, w_cell = 600 / (2 * 440), 600 / (2 * 160)
    # Any gap pixel (r, x) is x - 10 from A and 15 - x from B: d1 + d2 = 5 = gap + 1 (centre-to-centre).
    expected_gap = w_membrane + 10.0 * math.exp(-(5.0**2) / (2 * 5.0**2))
    np.testing.assert_allclose(weight[5:15, 11:15], expected_gap, rtol=1e-6)
    np.testing.assert_allclose(weight[label == 1], w_cell, rtol=1e-6)
    assert weight[12, 12] > weight[0, 29] > w_membrane - 1e-6  # far corner: small border term only
    assert weight.dtype == np.float32 and weight.shape == label.shape


def test_cell_distances_are_eq2s_d1_and_d2_by_hand():
    label = two_cells()
    d1, d2 = cell_distances(label)
    assert np.all(d1[label == 1] == 0)  # inside a cell, its own border is the nearest
    np.testing.assert_allclose((d1 + d2)[5:15, 11:15], 5.0)  # every gap pixel: d1 + d2 = gap + 1
    np.testing.assert_allclose(d2[5:15, 10], 5.0)  # A's last column is 5 px from B's first
    assert np.all(d1 <= d2)
    # One cell: nothing is second-nearest.
    assert np.isinf(cell_distances(np.pad(np.ones((4, 4), int), 3))[1]).all()


def test_separation_band_is_the_thin_gap_grown_by_its_width():
    label = two_cells()
    border = np.zeros(label.shape, bool)
    border[5:15, 11:15] = True  # the gap, d1 + d2 = 5; the corners above and below it have d1 + d2 > 5
    assert np.array_equal(separation_band(label, max_gap=5, width=0), border)
    grown = np.zeros(label.shape, bool)
    grown[4:16, 10:16] = True
    assert np.array_equal(separation_band(label, max_gap=5, width=1), grown)
    assert not separation_band(label, max_gap=4.5, width=1).any()  # a 4 px gap is wider than that


def test_weighted_cross_entropy_module_takes_the_weight_from_the_batch():
    logits, target = torch.randn(2, 2, 6, 6), torch.randint(0, 2, (2, 6, 6))
    weight = torch.rand(2, 6, 6) * 3
    torch.testing.assert_close(WeightedCrossEntropy()(logits, target, weight), weighted_cross_entropy(logits, target, weight))
    torch.testing.assert_close(WeightedCrossEntropy()(logits, target, torch.ones(2, 6, 6)), F.cross_entropy(logits, target))


def test_weight_map_class_weights_none_and_pair():
    label = two_cells()
    assert np.all(unet_weight_map(label, class_weights=None)[label == 1] == 1.0)
    weight = unet_weight_map(label, class_weights=(0.5, 3.0), w0=0.0)
    assert set(np.unique(weight).tolist()) == {0.5, 3.0}


@pytest.mark.parametrize("label", [np.zeros((16, 16), int), np.ones((16, 16), int),
                                   np.pad(np.ones((6, 6), int), 5)], ids=["no cells", "all cell", "one cell"])
def test_weight_map_with_fewer_than_two_cells_has_no_border_term(label):
    weight = unet_weight_map(label)
    assert np.isfinite(weight).all()
    # Balanced weights give each present class the same total weight; no border term is added.
    for value in (0, 1):
        if (label == value).any():
            np.testing.assert_allclose(weight[label == value], label.size / (np.unique(label).size * (label == value).sum()))


def test_weight_map_cutoff_matches_brute_force():
    rng = np.random.default_rng(0)
    label = np.zeros((64, 80), dtype=np.int64)
    for _ in range(12):
        r, c = rng.integers(0, 56), rng.integers(0, 72)
        label[r:r + rng.integers(3, 9), c:c + rng.integers(3, 9)] = 1
    components, count = ndimage.label(label)
    assert count >= 3
    # Brute force: every cell's distance over the whole image, then the two smallest per pixel.
    distances = np.sort(np.stack([ndimage.distance_transform_edt(components != i) for i in range(1, count + 1)]), 0)
    sigma, w0 = 3.0, 10.0
    border = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    expected = unet_weight_map(label, w0=0.0, sigma=sigma) + np.where(label == 1, 0.0, border)
    np.testing.assert_allclose(unet_weight_map(label, w0=w0, sigma=sigma), expected, atol=1e-5)


def test_weight_map_validation():
    with pytest.raises(ValueError, match="0/255"):
        unet_weight_map(np.array([[0, 255], [255, 0]]))
    with pytest.raises(ValueError, match="2D"):
        unet_weight_map(np.zeros((2, 4, 4), int))


def test_weighted_cross_entropy():
    logits, target = make_case(2, seed=7)
    ones = np.ones(SPATIAL[2], dtype=np.float32)  # one map shared by the batch, as NumPy
    torch.testing.assert_close(weighted_cross_entropy(logits, target, ones), F.cross_entropy(logits, target))
    weight = torch.rand(BATCH, *SPATIAL[2], dtype=torch.float64)
    expected = (F.cross_entropy(logits, target, reduction="none") * weight).mean()
    torch.testing.assert_close(weighted_cross_entropy(logits, target[:, None], weight[:, None]), expected)
    with pytest.raises(ValueError, match="crop"):
        weighted_cross_entropy(logits, target, np.ones((3, 3)))


def test_ignore_index_leaves_unlabelled_voxels_out_of_both_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 6, 7))
    sparse = target.clone()
    sparse[:, 1:4] = -1  # unlabelled slices
    keep = sparse != -1
    loss = DiceCELoss(ignore_index=-1)(logits, sparse)
    # Reference: Dice sums over labelled voxels only, CE averaged over labelled voxels.
    probs = torch.softmax(logits, 1) * keep[:, None]
    truth = F.one_hot(target, 3).movedim(-1, 1).float() * keep[:, None]
    inter, areas = (probs * truth).sum((2, 3, 4)), probs.sum((2, 3, 4)) + truth.sum((2, 3, 4))
    dice = (1 - (2 * inter + 1e-5) / (areas + 1e-5)).mean()
    ce = F.cross_entropy(logits.movedim(1, -1)[keep], target[keep])
    torch.testing.assert_close(loss, dice + ce)
    loss.backward()
    assert logits.grad[:, :, 1:4].abs().max() == 0  # no signal from unlabelled voxels
    with pytest.raises(ValueError, match="outside"):
        DiceCELoss()(logits, sparse)  # without ignore_index, -1 is an error


# ----- NaN and inf logits ------------------------------------------------------------------------

def _class_losses():
    from unet_lessons.losses import DeepSupervisionLoss

    return {"SoftDiceLoss": SoftDiceLoss(), "DiceCELoss": DiceCELoss(),
            "weighted_cross_entropy": lambda x, y: weighted_cross_entropy(x, y, torch.ones(y.shape)),
            "DeepSupervisionLoss": DeepSupervisionLoss(DiceCELoss())}


@pytest.mark.parametrize("name", ["SoftDiceLoss", "DiceCELoss", "weighted_cross_entropy", "DeepSupervisionLoss"])
def test_non_finite_logits_are_refused_with_the_count_and_the_fix(name):
    logits, target = make_case(2)
    logits[0, 1, 2, 3], logits[1, 0, 0, 0], logits[1, 2, 4, 4] = float("nan"), float("inf"), -float("inf")
    with pytest.raises(ValueError) as error:
        _class_losses()[name](logits, target)
    message = str(error.value)
    # DeepSupervisionLoss passes each head to the loss it wraps, which names itself.
    assert message.startswith(f"{'DiceCELoss' if name == 'DeepSupervisionLoss' else name}: the logits hold 3 NaN or "
                              f"inf values of {logits.numel()} (1 NaN, 2 inf)"), message
    assert "lower the learning rate" in message and "torch.nan_to_num" in message


def test_in_a_training_step_the_loss_warns_and_leaves_the_diagnosis_to_fit():
    """While autograd records, the loss returns NaN after a warning: fit's NonFiniteLossError then says
    whether the inputs or the weights went bad, which the loss cannot see (tests/test_train.py)."""
    from unet_lessons.losses import NonFiniteLogitsWarning

    logits, target = make_case(3)
    logits[0, 0, 0, 0, 0] = float("nan")
    logits.requires_grad_(True)
    with pytest.warns(NonFiniteLogitsWarning, match=r"DiceCELoss: the logits hold 1 NaN or inf values"):
        loss = DiceCELoss()(logits, target)
    assert loss.isnan()
    with torch.no_grad(), pytest.raises(ValueError, match="DiceCELoss: the logits hold 1 NaN"):
        DiceCELoss()(logits, target)
    # Probabilities (softmax=False) were always refused, training step or not.
    probabilities = torch.softmax(logits.detach(), 1).requires_grad_(True)
    with pytest.raises(ValueError, match="SoftDiceLoss: the probabilities hold"):
        SoftDiceLoss(softmax=False)(probabilities, target)


@pytest.mark.parametrize("name", ["SoftDiceLoss", "DiceCELoss", "weighted_cross_entropy", "DeepSupervisionLoss"])
def test_the_finite_check_leaves_finite_values_bit_for_bit(name, monkeypatch):
    from unet_lessons.losses import dice

    logits, target = make_case(3, seed=4)
    checked = _class_losses()[name](logits.clone(), target)
    monkeypatch.setattr(dice, "check_finite_logits", lambda *args, **kwargs: None)
    assert torch.equal(checked, _class_losses()[name](logits.clone(), target))


def test_the_finite_check_is_skipped_on_the_meta_device():
    from unet_lessons.losses.finite import check_finite_logits

    check_finite_logits(torch.empty(2, 3, 4, 4, device="meta"), "SoftDiceLoss")  # no values to look at: no error
    with pytest.raises(ValueError, match="SoftDiceLoss: the logits hold 96 NaN"):
        check_finite_logits(torch.full((2, 3, 4, 4), float("nan")), "SoftDiceLoss")


# ---- the official V-Net code's per-sample inverse-frequency weights (losses/weight_map.py) ----

def _official_vnet_weights(label: np.ndarray) -> np.ndarray:
    """VNet.py, prepareDataThread, as written there: N / n_label for every label of one sample."""
    weight = np.zeros_like(label, dtype=float)
    for value in np.unique(label):
        weight[label == value] = np.prod(label.shape) / np.sum((label == value).astype(np.float32))
    return weight


@pytest.mark.parametrize("shape", [(3, 6, 7), (3, 4, 5, 6)])
def test_inverse_frequency_weight_map_equals_the_official_code_per_sample(shape):
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 3, size=shape)
    labels[0] = 0  # an empty sample: weight 1 everywhere
    labels[1].flat[0] = 2
    labels[1][labels[1] == 2] = 1
    labels[1].flat[0] = 2  # a label with one voxel: weight N
    weights = inverse_frequency_weight_map(torch.from_numpy(labels))
    expected = np.stack([_official_vnet_weights(sample) for sample in labels])
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    assert weights.dtype == torch.float32
    assert float(weights[0].max()) == 1.0 and float(weights[1].flatten()[0]) == labels[1].size
    # (B, 1, *S) targets give the same weights, in that shape
    assert torch.equal(inverse_frequency_weight_map(torch.from_numpy(labels)[:, None])[:, 0], weights)


def test_sample_balanced_cross_entropy_is_the_sum_of_each_labels_mean_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 5, 6, 7), (torch.rand(2, 5, 6, 7) < 0.05).long()
    target[1] = 0  # no foreground in the second sample: its term is the background's mean alone
    per_voxel = F.cross_entropy(logits, target, reduction="none")
    expected = torch.stack([sum(per_voxel[b][target[b] == k].mean() for k in target[b].unique())
                            for b in range(2)]).mean()
    torch.testing.assert_close(SampleBalancedCrossEntropy()(logits, target), expected)
    # it differs from one batch-wide class weight, which is what the lesson replaced
    fraction = target.float().mean()
    batch_wide = F.cross_entropy(logits, target, weight=torch.tensor([1.0, float((1 - fraction) / fraction)]))
    assert not torch.isclose(SampleBalancedCrossEntropy()(logits, target), batch_wide)


def test_inverse_frequency_weight_map_refuses_float_targets():
    with pytest.raises(TypeError, match="integer class indices"):
        inverse_frequency_weight_map(torch.zeros(1, 4, 4))


# ----- 3D U²-Net's loss: Lovász-Softmax + focal ---------------------------------------------------------
def test_lovasz_softmax_of_one_hot_probabilities_is_one_minus_the_iou_of_each_class():
    from unet_lessons.losses import lovasz_softmax

    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 6, 6, 6))
    prediction = torch.randint(0, 3, (2, 6, 6, 6))
    probabilities = torch.nn.functional.one_hot(prediction, 3).movedim(-1, 1).float()
    ious = [((prediction == c) & (target == c)).sum() / ((prediction == c) | (target == c)).sum() for c in range(3)]
    torch.testing.assert_close(lovasz_softmax(probabilities, target), 1 - torch.stack(ious).mean())
    assert lovasz_softmax(torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float(), target) == 0


def test_focal_loss_is_monais_times_the_classes_and_the_sum_trains():
    from monai.losses import FocalLoss

    from unet_lessons.losses import LovaszFocalLoss, focal_loss

    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 5, 5, 5), torch.randint(0, 4, (2, 5, 5, 5))
    monai = FocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True)(logits, target[:, None])
    torch.testing.assert_close(focal_loss(logits, target), 4 * monai)
    logits.requires_grad_(True)
    loss = LovaszFocalLoss()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one channel per class"):
        LovaszFocalLoss()(torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
