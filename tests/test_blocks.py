import pytest
import torch
import torch.nn as nn

from unet_lessons.blocks import ConvNormAct, DoubleConv, conv_type, make_act, make_norm


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_conv_type_matches_dims(spatial_dims):
    assert conv_type(spatial_dims) is {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def test_unknown_names_are_refused_with_choices():
    with pytest.raises(ValueError, match="spatial_dims"):
        conv_type(4)
    with pytest.raises(ValueError, match="batch"):
        make_norm("layer", 8, 2)
    with pytest.raises(ValueError, match="relu"):
        make_act("swishy")
    with pytest.raises(ValueError, match="padding"):
        ConvNormAct(1, 2, padding="full")


@pytest.mark.parametrize("norm,expected", [("batch", nn.BatchNorm3d), ("instance", nn.InstanceNorm3d),
                                           ("group", nn.GroupNorm), (None, nn.Identity)])
def test_norm_by_name(norm, expected):
    assert isinstance(make_norm(norm, 12, 3), expected)


def test_group_norm_groups_divide_channels():
    assert make_norm("group", 12, 2, num_groups=8).num_groups == 6


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 3, 17, 20)), (3, (1, 3, 9, 10, 11))])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_double_conv_shapes(spatial_dims, shape, padding):
    block = DoubleConv(3, 8, spatial_dims=spatial_dims, padding=padding)
    out = block(torch.randn(shape))
    trim = 0 if padding == "same" else 4
    assert out.shape == (shape[0], 8, *(s - trim for s in shape[2:]))


def test_double_conv_reads_well_and_counts_like_the_seed():
    block = DoubleConv(1, 64)
    assert [name for name, _ in block.named_children()] == ["conv1", "conv2"]
    # Seed: Conv(1->64, bias) + BN(64) + Conv(64->64, bias) + BN(64)
    expected = (64 * 9 + 64) + 2 * 64 + (64 * 64 * 9 + 64) + 2 * 64
    assert sum(p.numel() for p in block.parameters()) == expected


def test_bias_auto_drops_bias_before_norm():
    assert ConvNormAct(2, 4, bias=None).conv.bias is None
    assert ConvNormAct(2, 4, bias=None, norm=None).conv.bias is not None


# ----- norms and activations with options (MONAI's (name, options) form) --------------------

def test_norms_and_activations_take_options():
    assert make_norm(("group", {"num_groups": 4}), 12, 3).num_groups == 4
    assert make_norm(("instance", {"affine": False}), 8, 3).affine is False
    assert make_norm("instance", 8, 3).affine is True  # nnU-Net's default
    assert make_act(("leakyrelu", {"negative_slope": 0.2})).negative_slope == 0.2
    assert make_act("leakyrelu").negative_slope == 0.01
    with pytest.raises(ValueError, match="num_groups=5 cannot split 12 channels"):
        make_norm(("group", {"num_groups": 5}), 12, 2)
    with pytest.raises(ValueError, match=r"name, a \(name, options\) pair"):
        make_norm(("group", 8), 12, 2)


@pytest.mark.parametrize("spatial_dims, mode", [(1, "linear"), (2, "bilinear"), (3, "trilinear")])
def test_one_interpolation_mode_per_dimension(spatial_dims, mode):
    from unet_lessons.blocks import interpolation_mode

    assert interpolation_mode(spatial_dims) == mode


# ----- the units in 2D and 3D: shapes, parameter counts, gradients ---------------------------

def _count(module):
    return sum(p.numel() for p in module.parameters())


def _gradients_reach_every_parameter(module, x):
    module(x).square().mean().backward()
    return all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pre_activation_unit_normalises_its_input(spatial_dims):
    unit = ConvNormAct(4, 8, spatial_dims=spatial_dims, norm=("group", {"num_groups": 2}), order="norm_act_conv")
    assert [name for name, _ in unit.named_children()] == ["norm", "act", "conv"]
    assert unit.norm.num_channels == 4 and unit.conv.bias is not None  # no norm after the conv: keep its bias
    x = torch.randn(2, 4, *(6,) * spatial_dims)
    assert unit(x).shape == (2, 8, *(6,) * spatial_dims)
    assert _count(unit) == 2 * 4 + 8 * 4 * 3**spatial_dims + 8
    assert _gradients_reach_every_parameter(unit, x)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("in_channels, out_channels", [(8, 8), (4, 8)])
@pytest.mark.parametrize("order", ["norm_act_conv", "conv_norm_act"])
def test_residual_block_shapes_counts_and_gradients(spatial_dims, in_channels, out_channels, order):
    from unet_lessons.blocks import ResidualBlock

    block = ResidualBlock(in_channels, out_channels, spatial_dims=spatial_dims, norm=("group", {"num_groups": 4}),
                          order=order, bias=False)
    x = torch.randn(2, in_channels, *(5,) * spatial_dims)
    assert block(x).shape == (2, out_channels, *(5,) * spatial_dims)
    kernel = 3**spatial_dims
    norms = 2 * (in_channels if order == "norm_act_conv" else out_channels) + 2 * out_channels
    projection = 0 if in_channels == out_channels else in_channels * out_channels
    assert _count(block) == in_channels * out_channels * kernel + out_channels**2 * kernel + norms + projection
    assert isinstance(block.shortcut, nn.Identity) == (in_channels == out_channels)
    assert _gradients_reach_every_parameter(block, x)


def test_residual_block_equals_monai_resblock_weight_for_weight():
    """Myronenko's block (GroupNorm 8, ReLU, 3×3×3 conv, twice, plus the identity) as MONAI builds it for SegResNet."""
    from monai.networks.blocks.segresnet_block import ResBlock

    from unet_lessons.blocks import ResidualBlock

    torch.manual_seed(0)
    theirs = ResBlock(3, 16, norm=("GROUP", {"num_groups": 8})).eval()
    ours = ResidualBlock(16, 16, spatial_dims=3, norm=("group", {"num_groups": 8}), bias=False).eval()
    assert _count(ours) == _count(theirs)
    mapping = {"body.unit1.norm": "norm1", "body.unit1.conv": "conv1.conv", "body.unit2.norm": "norm2",
               "body.unit2.conv": "conv2.conv"}
    state = theirs.state_dict()
    ours.load_state_dict({k: state[mapping[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]] for k in ours.state_dict()})
    x = torch.randn(1, 16, 6, 6, 6)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_strided_down_halves_the_size(spatial_dims, kernel_size):
    from unet_lessons.blocks import StridedDown

    down = StridedDown(4, 8, spatial_dims=spatial_dims, kernel_size=kernel_size)
    x = torch.randn(1, 4, *(8,) * spatial_dims)
    assert down(x).shape == (1, 8, *(4,) * spatial_dims)
    assert _count(down) == 4 * 8 * kernel_size**spatial_dims + 8
    assert _gradients_reach_every_parameter(down, x)


def test_bad_orders_are_named():
    with pytest.raises(ValueError, match="order must be one of"):
        ConvNormAct(1, 2, order="act_conv")


# ----- the stages: U-Net's Down and Up, V-Net's residual stage -------------------------------

@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet_down_and_up_shapes_counts_and_gradients(spatial_dims):
    from unet_lessons.blocks import Down, Up

    down = Down(4, 8, spatial_dims=spatial_dims, norm=None)
    x = torch.randn(2, 4, *(8,) * spatial_dims)
    assert down(x).shape == (2, 8, *(4,) * spatial_dims)
    k = 3**spatial_dims
    assert _count(down) == (4 * 8 * k + 8) + (8 * 8 * k + 8)
    assert _gradients_reach_every_parameter(down, x)
    up = Up(8, 4, 4, spatial_dims=spatial_dims, norm=None)  # transposed conv 8 -> 4, then DoubleConv(4 + 4 -> 4)
    below, skip = torch.randn(2, 8, *(4,) * spatial_dims), torch.randn(2, 4, *(8,) * spatial_dims)
    assert up(below, skip).shape == (2, 4, *(8,) * spatial_dims)
    assert _count(up) == (8 * 4 * 2**spatial_dims + 4) + (8 * 4 * k + 4) + (4 * 4 * k + 4)
    up(below, skip).square().mean().backward()
    assert all(p.grad is not None for p in up.parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_vnet_stage_shapes_counts_and_gradients(spatial_dims):
    from unet_lessons.blocks import VNetStage

    stage = VNetStage(1, 4, 2, spatial_dims=spatial_dims)  # the first stage: the input repeated 4 times
    x = torch.randn(2, 1, *(6,) * spatial_dims)
    assert stage(x).shape == (2, 4, *(6,) * spatial_dims)
    k = 5**spatial_dims
    assert _count(stage) == (1 * 4 * k + 4) + 4 + (4 * 4 * k + 4) + 4  # two convs, a PReLU between, one after the add
    assert _gradients_reach_every_parameter(stage, x)


def test_center_crop_refuses_to_grow():
    from unet_lessons.blocks import center_crop

    assert center_crop(torch.zeros(1, 1, 9, 8), (5, 4)).shape == (1, 1, 5, 4)
    with pytest.raises(ValueError, match="larger size"):
        center_crop(torch.zeros(1, 1, 4, 4), (6, 4))
