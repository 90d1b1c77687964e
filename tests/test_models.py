import pytest
import torch

from unet_lessons.models import MODELS, UNet, build_model
from unet_lessons.utils import count_parameters


@pytest.mark.parametrize("upsample", ["transpose", "interp"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_same_padding_keeps_any_size(upsample, depth, spatial_dims):
    model = UNet(2, 3, spatial_dims=spatial_dims, base_features=2, depth=depth, upsample=upsample)
    side = 2**depth
    sizes = [side + 1, side + 3, side * 2 + 5][:spatial_dims]  # odd sizes on purpose
    out = model(torch.randn(2, 2, *sizes))
    assert out.shape == (2, 3, *sizes)


@pytest.mark.parametrize("upsample", ["transpose", "interp"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_valid_padding_shapes_follow_output_size(upsample, depth, spatial_dims):
    model = UNet(1, 2, spatial_dims=spatial_dims, base_features=2, depth=depth, upsample=upsample,
                 padding="valid").to("meta")
    sizes = model.valid_sizes(1, 1200)
    assert sizes, "some input size must work"
    first, second = sizes[0], sizes[1]
    shape = [first, second, first][:spatial_dims]
    out = model(torch.empty(1, 1, *shape, device="meta"))
    assert out.shape == (1, 2, *(model.output_size(s) for s in shape))
    # Every output is smaller than its input by the same border.
    assert first - model.output_size(first) == second - model.output_size(second)


def test_paper_unet_parameters_and_tile():
    """Ronneberger et al. 2015, Fig. 1: 1 channel in, 2 classes, no norm, valid convs, up-convs."""
    model = UNet(1, 2, norm=None, padding="valid", upsample="transpose")
    assert count_parameters(model) == 31_030_658
    out = model.to("meta")(torch.empty(1, 1, 572, 572, device="meta"))
    assert out.shape == (1, 2, 388, 388)
    assert model.output_size(572) == 388


def test_seed_unet_widths():
    """The seed's bilinear U-Net halves the bottleneck (512) so each concat has 2 x skip channels."""
    model = UNet(3, 2, upsample="interp")
    assert model.downs[-1].conv.conv2.conv.out_channels == 512
    assert [up.conv.conv1.conv.in_channels for up in model.ups] == [1024, 512, 256, 128]
    assert [up.conv.conv2.conv.out_channels for up in model.ups] == [256, 128, 64, 64]


def test_forward_features_names_and_shapes():
    model = UNet(1, 2, base_features=4, depth=3).eval()
    x = torch.randn(1, 1, 32, 32)
    feats = model.forward_features(x)
    assert list(feats) == ["enc0", "enc1", "enc2", "bottleneck", "dec2", "dec1", "dec0", "logits"]
    assert feats["bottleneck"].shape == (1, 32, 4, 4)
    assert feats["dec0"].shape == (1, 4, 32, 32)
    assert torch.equal(feats["logits"], model(x))


@pytest.mark.parametrize("kwargs", [dict(), dict(upsample="interp"), dict(padding="valid", norm=None),
                                    dict(spatial_dims=3, norm="instance")])
def test_gradient_reaches_every_parameter(kwargs):
    model = UNet(1, 2, base_features=4, depth=2, **kwargs)
    size = 76 if kwargs.get("padding") == "valid" else 16
    shape = (2, 1, *([size] * kwargs.get("spatial_dims", 2)))
    model(torch.randn(shape)).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_wrong_dimensions_are_named():
    with pytest.raises(ValueError, match=r"expects a 4-D input of shape \(B, 1, H, W\); got shape \(1, 64, 64\).*unsqueeze"):
        UNet(1, 2)(torch.randn(1, 64, 64))
    with pytest.raises(ValueError, match="5-D.*spatial_dims=2"):
        UNet(1, 2, spatial_dims=3, base_features=2)(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="spatial_dims=3"):
        UNet(1, 2, base_features=2)(torch.randn(1, 1, 16, 16, 16))


def test_wrong_channels_are_named():
    with pytest.raises(ValueError, match="in_channels=1.*got 3 channels"):
        UNet(1, 2, base_features=2)(torch.randn(1, 3, 32, 32))


def test_valid_size_error_names_nearest_sizes():
    model = UNet(1, 2, base_features=2, padding="valid")
    with pytest.raises(ValueError, match="570.*556 or 572"):
        model(torch.randn(1, 1, 570, 572))


def test_same_size_error_names_minimum():
    with pytest.raises(ValueError, match="at least 2\\*\\*4 = 16"):
        UNet(1, 2, base_features=2)(torch.randn(1, 1, 8, 32))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="upsample"):
        UNet(upsample="nearest")
    with pytest.raises(ValueError, match="padding"):
        UNet(padding="reflect")
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


def test_registry_builds_and_names_choices():
    assert isinstance(build_model("UNet", base_features=2, depth=1), UNet)
    assert "unet" in MODELS
    with pytest.raises(KeyError, match="registered models"):
        build_model("segformer")


# ----- the 3D U-Net (Çiçek et al. 2016) as a preset of the same class --------------------------
def _count_without_norm(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".norm." not in name)


def test_cicek2016_preset_matches_the_paper():
    model = UNet.preset("cicek2016")
    # Biased 3x3x3 convs, bias-free 2x2x2 up-convs, BatchNorm parameters not counted.
    assert _count_without_norm(model) == 19_069_955
    assert _count_without_norm(UNet.preset("cicek2016", norm=None)) == 19_069_955
    assert model.output_size(132) == 44 and model.output_size(116) == 28
    with torch.device("meta"):
        meta = UNet.preset("cicek2016")
    out = meta(torch.empty(1, 3, 132, 132, 116, device="meta"))
    assert tuple(out.shape) == (1, 3, 44, 44, 28)


def test_unet3d_channel_plan_doubles_before_pooling_and_keeps_channels_on_upsampling():
    model = UNet.preset("cicek2016")
    widths = [(m.in_channels, m.out_channels) for m in model.inc.modules() if isinstance(m, torch.nn.Conv3d)]
    assert widths == [(3, 32), (32, 64)]
    assert [(m.conv.conv1.conv.out_channels, m.conv.conv2.conv.out_channels) for m in model.downs] == [
        (64, 128), (128, 256), (256, 512)]
    ups = [(up.up.in_channels, up.up.out_channels, up.up.bias is None) for up in model.ups]
    assert ups == [(512, 512, True), (256, 256, True), (128, 128, True)]
    assert [up.conv.conv1.conv.in_channels for up in model.ups] == [768, 384, 192]


@pytest.mark.parametrize("upsample", ["transpose", "interp"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet3d_channel_plan_same_padding_shapes(spatial_dims, upsample):
    model = UNet(2, 3, spatial_dims=spatial_dims, features=(4, 8, 16), channel_plan="unet3d", upsample=upsample)
    x = torch.randn(1, 2, *([20] * (spatial_dims - 1)), 12)
    assert model(x).shape == (1, 3, *x.shape[2:])


def test_presets_reject_unknown_names_and_plans():
    with pytest.raises(KeyError, match="cicek2016"):
        UNet.preset("cicek")
    with pytest.raises(ValueError, match="channel_plan"):
        UNet(channel_plan="3d")
    assert UNet.preset("cicek2016", in_channels=1).inc.conv1.conv.in_channels == 1


# ----- the core arguments of the model contract, and the old names ------------------------------
def test_every_model_takes_the_core_arguments_and_old_names():
    from unet_lessons.models import FCN, UNetPlusPlus, VNet

    for name in MODELS:
        dims = MODELS[name].spatial_dims_supported[-1]
        model = build_model(name, in_channels=2, out_channels=3, spatial_dims=dims, width=4,
                            **MODELS[name].example_arguments[0])
        assert (model.in_channels, model.out_channels, model.spatial_dims) == (2, 3, dims)
    # Old names, positional calls and the paper defaults build the same networks as before.
    assert UNet(1, 2, base_features=8).features == UNet(1, 2, width=8).features == (8, 16, 32, 64, 128)
    assert VNet(base_features=4).features == VNet(width=4).features == (4, 8, 16, 32, 64)
    assert UNetPlusPlus().features == (32, 64, 128, 256, 512)
    assert UNetPlusPlus(width=4, depth=2).features == (4, 8, 16)
    assert UNetPlusPlus(1, 2, features=(8, 16)).features == (8, 16)
    assert FCN(5, width=2, fc_width=8).out_channels == FCN(out_channels=5, width=2, fc_width=8).num_classes == 5
    with pytest.raises(TypeError, match="base_features is the old name of width"):
        UNet(base_features=8, width=8)
    with pytest.raises(TypeError, match="unexpected keyword argument 'widht'"):
        UNet(widht=8)
    with pytest.raises(ValueError, match=r"FCN is 2D only.*spatial_dims=3.*predict_slicewise"):
        build_model("fcn", spatial_dims=3)


def test_arguments_record_the_call_by_name_with_defaults():
    from unet_lessons.models import FCN

    model = UNet(1, 2, base_features=8, upsample="interp")
    assert model.arguments == UNet(in_channels=1, out_channels=2, width=8, upsample="interp").arguments
    assert model.arguments["width"] == 8 and model.arguments["depth"] == 4 and "base_features" not in model.arguments
    assert FCN(21, width=2, fc_width=8).arguments["out_channels"] == 21
    assert "num_classes" not in FCN(num_classes=21, width=2, fc_width=8).arguments  # recorded under the core name
    assert UNet.preset("ronneberger2015").arguments["padding"] == "valid"
    assert "arguments" not in UNet(1, 2, width=2).state_dict()


def test_a_subclass_records_its_own_arguments():
    class Wide(UNet):
        def __init__(self, factor: int = 2) -> None:
            super().__init__(1, 2, base_features=2 * factor, depth=1)

    assert Wide(3).arguments == {"factor": 3}
    assert Wide(3).features == (6, 12)
