"""MultiResUNet against the authors' Keras code (nibtehaz/MultiResUNet, tensorflow/MultiResUNet.py).

The forward pass, layer for layer, is compared with an independent functional reference in
tests/test_reference_forward.py; here: the counts, the widths and the layout.
"""

import pytest
import torch
import torch.nn as nn

from unet_lessons.blocks import MultiResBlock, ResPath, make_norm, multires_widths
from unet_lessons.models import MultiResUNet, UNet, keras_counts

# What Keras's summary() printed for the official MultiResUnet(128, 128, n_channels), its layer functions
# unchanged (Keras 3.15.1, torch backend, 2026-12-07): tests/benchmarks/keras_multiresunet_counts.py, which
# needs Keras and is not part of the suite.
KERAS_SUMMARY = {3: {"total": 7_262_750, "trainable": 7_238_228, "non_trainable": 24_522},
                 1: {"total": 7_262_504, "trainable": 7_237_982, "non_trainable": 24_522}}


@pytest.mark.parametrize("channels", [3, 1])
def test_the_paper_configuration_has_the_counts_keras_prints(channels):
    with torch.device("meta"):
        model = MultiResUNet.preset("ibtehaz2020", in_channels=channels)
    assert keras_counts(model) == KERAS_SUMMARY[channels]


def test_keras_trainable_parameters_are_the_parameters_and_its_frozen_ones_the_running_statistics():
    model = MultiResUNet.preset("ibtehaz2020")
    parameters = sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert (parameters, statistics) == (KERAS_SUMMARY[3]["trainable"], KERAS_SUMMARY[3]["non_trainable"])
    model.head[0].weight.requires_grad_(False)  # a frozen weight moves to Keras's non-trainable figure
    counts = keras_counts(model)
    assert counts["non_trainable"] == statistics + model.head[0].weight.numel()
    assert counts["total"] == KERAS_SUMMARY[3]["total"]


def test_at_the_paper_sizes_multiresunet_is_slightly_smaller_than_the_unet():
    """Section 4: alpha = 1.67 "keeps the number of parameters in our model slightly below that of the U-Net"."""
    with torch.device("meta"):
        multires = MultiResUNet.preset("ibtehaz2020")
        unet = UNet(3, 1, width=32, norm=None, upsample="transpose")
    ours, theirs = (sum(p.numel() for p in m.parameters()) for m in (multires, unet))
    assert theirs == 7_760_097 and 0.9 < ours / theirs < 1


@pytest.mark.parametrize("u,widths", [(32, (8, 17, 26)), (64, (17, 35, 53)), (128, (35, 71, 106)),
                                      (256, (71, 142, 213)), (512, (142, 284, 427)), (16, (4, 8, 13))])
def test_block_widths_follow_the_official_decimals(u, widths):
    assert multires_widths(u) == widths
    block = MultiResBlock(3, u)
    convs = [block.conv3.conv, block.conv5.conv, block.conv7.conv]
    assert [c.out_channels for c in convs] == list(widths) and all(c.kernel_size == (3, 3) for c in convs)
    assert block.shortcut.conv.kernel_size == (1, 1) and block.shortcut.conv.out_channels == sum(widths)


def test_the_decimals_and_the_fractions_differ_at_some_widths():
    fractions = lambda u: (int(1.67 * u / 6), int(1.67 * u / 3), int(1.67 * u / 2))  # noqa: E731
    assert multires_widths(61) == (17, 33, 50) and fractions(61) == (16, 33, 50)
    assert multires_widths(512) == (142, 284, 427) and fractions(512) == (142, 285, 427)  # the paper's bottleneck


def test_a_width_too_small_for_a_branch_is_refused_with_the_smallest_that_works():
    with pytest.raises(ValueError, match=r"U=2 .*\(0, 1, 1\).*at least 4"):
        multires_widths(2)
    assert min(multires_widths(4)) == 1


def test_the_res_paths_have_four_three_two_one_units_of_u_filters():
    model = MultiResUNet.preset("ibtehaz2020")
    assert [len(path) for path in model.res_paths] == [4, 3, 2, 1]
    assert [path[-1].conv.conv.out_channels for path in model.res_paths] == [32, 64, 128, 256]
    assert [path[0].conv.conv.in_channels for path in model.res_paths] == [51, 105, 212, 426]  # block outputs
    assert model.block_channels == (51, 105, 212, 426, 853)


def test_every_conv_bn_has_no_bias_and_its_norm_no_scale_as_keras_conv2d_bn():
    block = MultiResBlock(3, 32)
    for unit in (block.conv3, block.conv5, block.conv7, block.shortcut):
        assert unit.conv.bias is None and unit.norm.weight is None and unit.norm.bias is not None
    for norm in (block.concat_norm, block.norm):  # the block's two plain BatchNormalization layers
        assert norm.weight is not None and norm.bias is not None
    path = ResPath(51, 32, 2)
    assert path.unit1.conv.conv.bias is None and path.unit1.norm.weight is not None


def test_up_convolutions_have_a_bias_and_the_output_is_batch_normalised_as_in_the_code():
    model = MultiResUNet.preset("ibtehaz2020")
    assert all(isinstance(up, nn.ConvTranspose2d) and up.bias is not None and up.kernel_size == (2, 2)
               for up in model.ups)
    conv, norm = model.head
    assert conv.bias is None and norm.weight is None
    text = MultiResUNet(3, 1, width=32, output_norm=False)
    assert len(text.head) == 1 and text.head[0].bias is not None


def test_the_ablations_change_only_what_they_name():
    plain = MultiResUNet(1, 2, width=16, res_paths=False)
    assert all(isinstance(path, nn.Identity) for path in plain.res_paths)
    assert "skip0" not in plain.forward_features(torch.zeros(1, 1, 32, 32))
    unet_blocks = MultiResUNet(1, 2, width=16, block="double_conv")
    assert unet_blocks.block_channels == (16, 32, 64, 128, 256)
    assert [len(path) for path in unet_blocks.res_paths] == [4, 3, 2, 1]
    with pytest.raises(ValueError, match="block must be one of"):
        MultiResUNet(1, 2, block="inception")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sizes_must_be_multiples_of_two_to_the_depth(spatial_dims):
    model = MultiResUNet(1, 2, width=4, depth=2, spatial_dims=spatial_dims)
    assert model.valid_sizes(1, 20) == [4, 8, 12, 16]
    with pytest.raises(ValueError, match="multiple of 2\\*\\*2 = 4"):
        model(torch.zeros(1, 1, *[6] * spatial_dims))


def test_batch_norm_without_scale_is_a_shift_only():
    norm = make_norm(("batch", {"scale": False}), 5, 2)
    assert norm.weight is None and norm.bias.shape == (5,)
    x = torch.randn(4, 5, 3, 3)
    with torch.no_grad():
        norm.bias.fill_(0.5)
        expected = nn.functional.batch_norm(x, None, None, None, None, training=True) + 0.5
        torch.testing.assert_close(norm(x), expected)
    with pytest.raises(ValueError, match="needs affine=True"):
        make_norm(("batch", {"scale": False, "affine": False}), 5, 2)
