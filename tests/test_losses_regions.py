"""Region losses against MONAI: DiceLoss(sigmoid=True), and that plus BCEWithLogitsLoss."""

import pytest
import torch
from monai.losses import DiceCELoss as MonaiDiceCELoss
from monai.losses import DiceLoss as MonaiDiceLoss

from unet_lessons.losses import RegionDiceBCELoss, RegionDiceLoss
from unet_lessons.targets import labels_to_regions


def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (shape[0], *shape[2:]), generator=g)
    return torch.randn(shape, generator=g, requires_grad=True), labels_to_regions(labels)


@pytest.mark.parametrize("shape", [(2, 3, 8, 9), (2, 3, 5, 6, 7)])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("squared_pred", [False, True])
def test_region_dice_equals_monai_dice_with_sigmoid(shape, batch, squared_pred):
    logits, target = _pair(shape)
    ours = RegionDiceLoss(batch=batch, squared_pred=squared_pred)(logits, target)
    theirs = MonaiDiceLoss(sigmoid=True, batch=batch, squared_pred=squared_pred)(logits, target)
    torch.testing.assert_close(ours, theirs)
    grad_ours, = torch.autograd.grad(ours, logits)
    grad_theirs, = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(grad_ours, grad_theirs)


@pytest.mark.parametrize("shape", [(2, 3, 8, 9), (1, 3, 5, 6, 7)])
def test_region_dice_bce_equals_monai_dice_plus_torch_bce(shape):
    logits, target = _pair(shape, seed=1)
    ours = RegionDiceBCELoss(lambda_dice=0.7, lambda_bce=1.3)(logits, target)
    theirs = 0.7 * MonaiDiceLoss(sigmoid=True)(logits, target) + 1.3 * torch.nn.BCEWithLogitsLoss()(logits, target)
    torch.testing.assert_close(ours, theirs)


def test_monai_dice_ce_with_sigmoid_is_not_the_region_loss():
    """Why the reference is DiceLoss + BCEWithLogitsLoss: MONAI's DiceCELoss(sigmoid=True) uses a softmax
    cross-entropy over the channels when there are several, treating overlapping regions as rival classes."""
    logits, target = _pair((2, 3, 8, 8), seed=2)
    monai_dice_ce = MonaiDiceCELoss(sigmoid=True)(logits, target)
    assert not torch.allclose(RegionDiceBCELoss()(logits, target), monai_dice_ce, atol=1e-3)


def test_region_losses_refuse_class_labels_probabilities_and_unnested_targets():
    logits, target = _pair((1, 3, 6, 6))
    with pytest.raises(ValueError, match="looks like class labels.*labels_to_regions"):
        RegionDiceLoss()(logits, target.argmax(1))
    with pytest.raises(ValueError, match="must be binary"):
        RegionDiceBCELoss()(logits, target * 0.5)
    broken = target.clone()
    broken[0, :, 0, 0] = torch.tensor([0.0, 0.0, 1.0])
    RegionDiceLoss()(logits, broken)  # nesting is not asked for by default
    with pytest.raises(ValueError, match="not nested: 1 voxel of 'ET' lies"):
        RegionDiceLoss(nested=True, names=["WT", "TC", "ET"])(logits, broken)


@pytest.mark.parametrize("loss", [RegionDiceLoss(), RegionDiceBCELoss()], ids=["RegionDiceLoss", "RegionDiceBCELoss"])
def test_region_losses_refuse_nan_logits_naming_themselves(loss):
    logits, target = _pair((2, 3, 6, 6))
    logits = logits.detach().clone()
    logits[1, 2] = float("nan")  # one whole region map of one sample
    with pytest.raises(ValueError) as error:
        loss(logits, target)
    message = str(error.value)
    assert message.startswith(f"{type(loss).__name__}: the logits hold 36 NaN or inf values of 216 (36 NaN, 0 inf)")
    assert "lower the learning rate" in message


def test_region_losses_keep_their_finite_values_bit_for_bit(monkeypatch):
    from unet_lessons.losses import regions

    logits, target = _pair((2, 3, 5, 6, 7), seed=3)
    def losses():
        return [RegionDiceLoss()(logits.clone(), target), RegionDiceBCELoss()(logits.clone(), target)]

    checked = losses()
    monkeypatch.setattr(regions, "check_finite_logits", lambda *args, **kwargs: None)
    assert all(torch.equal(a, b) for a, b in zip(checked, losses()))
