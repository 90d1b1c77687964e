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


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_equals_monai_basic_unetplusplus_with_its_weights(spatial_dims):
    from monai.networks.nets import BasicUNetPlusPlus

    from unet_lessons.models.unetpp import load_monai_weights

    torch.manual_seed(0)
    theirs = BasicUNetPlusPlus(spatial_dims=spatial_dims, in_channels=1, out_channels=2, features=(4, 4, 8, 16, 32, 4),
                               deep_supervision=True, act=("LeakyReLU", {"negative_slope": 0.01}),
                               norm=("instance", {"affine": True})).eval()
    ours = UNetPlusPlus(1, 2, spatial_dims=spatial_dims, features=(4, 4, 8, 16, 32), norm="instance",
                        act="leakyrelu", deep_supervision=True).eval()
    assert _count(ours) == _count(theirs)
    load_monai_weights(ours, theirs)
    x = torch.randn(1, 1, *[32] * spatial_dims)
    feats = ours.forward_features(x)
    for j, output in enumerate(theirs(x), start=1):
        torch.testing.assert_close(feats[f"head_{j}"], output)


def test_monai_default_configuration_and_the_paper_difference():
    from monai.networks.nets import BasicUNetPlusPlus

    from unet_lessons.models.unetpp import load_monai_weights

    with torch.device("meta"):
        default = BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=1)
        ours = UNetPlusPlus(1, 1, features=(32, 32, 64, 128, 256), norm="instance", deep_supervision=True)
        # With the paper's doubling widths MONAI's row-0 up-convolutions keep 64 channels (ours: 64 -> 32).
        paper_monai = BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=1, norm=None,
                                        features=(32, 64, 128, 256, 512, 32))
        paper_ours = UNetPlusPlus(1, 1)
    assert _count(default) == _count(ours) == 2_410_180
    up_conv_extra = 4 * ((64 * 64 * 4 + 64) - (64 * 32 * 4 + 32))
    first_conv_extra = 4 * (32 * 32 * 9)
    extra_heads = 3 * 33
    assert _count(paper_monai) - _count(paper_ours) == up_conv_extra + first_conv_extra + extra_heads == 69_859
    with pytest.raises(ValueError, match="configured differently"):
        load_monai_weights(UNetPlusPlus(1, 1, features=(4, 8, 16, 32, 64)),
                           BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=1,
                                             features=(4, 4, 8, 16, 32, 4)))


def test_head_receptive_fields_match_a_unet_of_that_depth_and_the_gradient():
    from unet_lessons.viz import analytic_receptive_field, gradient_receptive_field, layer_specs, textbook_receptive_field

    model = UNetPlusPlus(1, 1, features=(2, 2, 2, 2, 2), deep_supervision=True)
    fields = []
    for k in range(1, 5):
        path = layer_specs(model.deepest_path(k))
        unet_path = layer_specs(UNet(1, 1, features=(2,) * (k + 1), norm=None).deepest_path())
        assert textbook_receptive_field(path)[-1]["r"] == textbook_receptive_field(unet_path)[-1]["r"]
        fields.append(textbook_receptive_field(path)[-1]["r"])
        if k <= 3:
            for position in [(32, 32), (37, 30)]:
                _, measured = gradient_receptive_field(model.prune(k), (64, 64), position)
                assert measured == analytic_receptive_field(path, (64, 64), position)
    assert fields == [18, 44, 96, 200]
    with pytest.raises(ValueError, match="between 1 and"):
        model.deepest_path(5)


def test_deep_supervision_trains_with_fit():
    from unet_lessons.losses import DiceCELoss
    from unet_lessons.models.unetpp import DeepSupervisionLoss
    from unet_lessons.train import TrainConfig, fit

    torch.manual_seed(0)
    model = UNetPlusPlus(1, 2, features=(4, 8, 16), deep_supervision=True)
    x = torch.randn(2, 1, 16, 16)
    y = (x[:, 0] > 0).long()
    history = fit(model, [(x, y)], DeepSupervisionLoss(DiceCELoss()),
                  TrainConfig(steps=60, lr=1e-2, progress=False, device="cpu", collapse_check=False))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert DeepSupervisionLoss(DiceCELoss(ignore_index=-1)).ignore_index == -1


def test_skip_pairs_of_a_forward_pass_are_the_nested_node_and_the_upsampled_node_below():
    torch.manual_seed(0)
    model = UNetPlusPlus(1, 2, features=(4, 8, 16), deep_supervision=True).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        feats = model.forward_features(x)
        pairs = model.skip_pairs_of(feats)
        assert list(pairs) == list(model.skip_pairs(x)) == ["level 0", "level 1"]
        for i, (skip, up) in enumerate(pairs.values()):  # depth 2: the decoder node X^{i,2-i}
            j = model.depth - i
            assert torch.equal(skip, feats[f"x_{i}_{j - 1}"])
            assert torch.equal(up, model.ups[f"x_{i}_{j}"](feats[f"x_{i + 1}_{j - 1}"]))
