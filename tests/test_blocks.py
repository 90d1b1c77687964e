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
