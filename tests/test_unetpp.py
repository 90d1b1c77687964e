import pytest
import torch

from unet_lessons.models import UNet
from unet_lessons.models.unetpp import UNetPlusPlus, deep_supervision_loss


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_paper_configuration_counts_match_the_official_code():
    with torch.device("meta"):
        unet = UNet(1, 1, features=(32, 64, 128, 256, 512), norm=None, upsample="transpose")
        wide = UNet(1, 1, features=(35, 70, 140, 280, 560), norm=None, upsample="transpose")
        nested = UNetPlusPlus(1, 1)
        supervised = UNetPlusPlus(1, 1, deep_supervision=True)
    assert _count(unet) == 7_759_521
    assert _count(wide) == 9_282_246
    assert _count(nested) == 9_041_601
    assert _count(supervised) == 9_041_601 + 3 * 33  # three more 1x1 heads of 32 weights and a bias


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_and_node_rule(spatial_dims):
    model = UNetPlusPlus(2, 3, spatial_dims=spatial_dims, features=(2, 4, 8), deep_supervision=True)
    x = torch.randn(1, 2, *[8] * (spatial_dims - 1), 16)
    feats = model.forward_features(x)
    assert feats["x_1_1"].shape == (1, 4, *[s // 2 for s in x.shape[2:]])
    assert feats["x_0_2"].shape == (1, 2, *x.shape[2:])
    assert model.node_grid()["x_0_2"] == ["x_0_0", "x_0_1", "x_1_1"]
    assert model.nodes["x_0_2"].conv1.conv.in_channels == 2 * 3  # two same-row nodes + the upsampled one
    model.train()
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) == 2 and outputs[0].shape == (1, 3, *x.shape[2:])
    model.eval()
    assert model(x).shape == (1, 3, *x.shape[2:])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pruned_model_equals_the_head_of_the_full_model(spatial_dims):
    torch.manual_seed(0)
    model = UNetPlusPlus(1, 2, spatial_dims=spatial_dims, features=(2, 4, 8, 16), deep_supervision=True).eval()
    x = torch.randn(2, 1, *[16] * spatial_dims)
    full = model.forward_features(x)
    for k in (1, 2, 3):
        pruned = model.prune(k).eval()
        assert torch.equal(pruned(x), full[f"head_{k}"])
        assert torch.equal(model(x, head=k), full[f"head_{k}"])
        assert _count(pruned) < _count(model) or k == 3


def test_bad_requests_name_the_fix():
    model = UNetPlusPlus(1, 1, features=(2, 4, 8))
    with pytest.raises(ValueError, match="between 1 and"):
        model.prune(3)
    with pytest.raises(ValueError, match="deep_supervision=True"):
        model.prune(1)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*2"):
        model(torch.randn(1, 1, 10, 12))
    with pytest.raises(ValueError, match="deep_supervision=True"):
        deep_supervision_loss([], torch.zeros(1), torch.nn.functional.mse_loss)


def test_deep_supervision_loss_averages_the_heads():
    outputs, target = [torch.zeros(2, 2), torch.ones(2, 2)], torch.ones(2, 2)
    assert deep_supervision_loss(outputs, target, torch.nn.functional.mse_loss) == 0.5
