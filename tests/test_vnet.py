"""Tests for unet_lessons.models.vnet: shapes, parameter counts (by hand and against MONAI),
the residual adds, input checks and the receptive fields of the paper's Table 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import VNet as MonaiVNet

from unet_lessons.models.vnet import VNET_PRESETS, VNet, VNetDown, parameter_counts
from unet_lessons.utils import count_parameters
from unet_lessons.viz.receptive_field import (
    analytic_receptive_field,
    gradient_receptive_field,
    layer_specs,
    stage_receptive_fields,
    textbook_receptive_field,
)

TINY = dict(base_features=2)  # every shape test runs on a narrow net

SHAPE_CASES = [
    (dict(spatial_dims=3), (2, 1, 16, 32, 48), (2, 2, 16, 32, 48)),  # non-cubic
    (dict(spatial_dims=3, downsample="maxpool", norm="batch"), (1, 1, 32, 16, 16), (1, 2, 32, 16, 16)),
    (dict(spatial_dims=3, encoder_depths=(1, 2, 1), decoder_depths=(2, 1), out_channels=4), (1, 1, 4, 8, 12),
     (1, 4, 4, 8, 12)),
    (dict(spatial_dims=2), (3, 1, 16, 80), (3, 2, 16, 80)),
    (dict(spatial_dims=2, in_channels=2, head="conv_pointwise", act="elu"), (1, 2, 48, 32), (1, 2, 48, 32)),
    (dict(spatial_dims=2, kernel_size=3, downsample="maxpool"), (2, 1, 32, 16), (2, 2, 32, 16)),
]


@pytest.mark.parametrize("kwargs,input_shape,expected", SHAPE_CASES)
def test_output_shape(kwargs, input_shape, expected):
    model = VNet(**{**TINY, **kwargs})
    assert model(torch.randn(input_shape)).shape == expected


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_forward_features_names_and_widths(spatial_dims):
    model = VNet(spatial_dims=spatial_dims, base_features=2)
    size = (16, 32, 48) if spatial_dims == 3 else (32, 48)
    feats = model.forward_features(torch.randn(1, 1, *size))
    assert list(feats) == ["enc0", "enc1", "enc2", "enc3", "bottleneck", "dec3", "dec2", "dec1", "dec0", "logits"]
    expected = {"enc0": (2, 1), "enc1": (4, 2), "enc2": (8, 4), "enc3": (16, 8), "bottleneck": (32, 16),
                # a decoder stage holds the up-conv output and the skip: twice the encoder width
                "dec3": (32, 8), "dec2": (16, 4), "dec1": (8, 2), "dec0": (4, 1), "logits": (2, 1)}
    for name, (channels, factor) in expected.items():
        assert feats[name].shape == (1, channels, *(s // factor for s in size)), name


def test_parameter_count_of_a_tiny_net_by_hand():
    # 2D, widths 2 and 4, one conv per stage, 5x5 kernels, bias and PReLU (one slope per channel).
    model = VNet(1, 2, spatial_dims=2, base_features=2, encoder_depths=(1, 1), decoder_depths=(1,))
    enc0 = (1 * 2 * 25 + 2) + 2  # conv 1->2, PReLU(2) after the add
    down = (2 * 4 * 4 + 4) + 4  # 2x2 stride-2 conv 2->4, PReLU(4)
    enc1 = (4 * 4 * 25 + 4) + 4  # conv 4->4, PReLU(4)
    up = (4 * 2 * 4 + 2) + 2  # 2x2 transposed conv 4->2, PReLU(2)
    dec0 = (4 * 4 * 25 + 4) + 4  # conv on the concatenation (2 + 2) -> 4, PReLU(4)
    head = 4 * 2 + 2  # 1x1 conv 4->2
    assert enc0 + down + enc1 + up + dec0 + head == 956
    assert count_parameters(model) == 956


def formula_count(in_channels, out_channels, spatial_dims, base, encoder_depths, decoder_depths, *, head,
                  kernel=5):
    """Parameters of a V-Net without norm, with bias and PReLU, written out independently of the model code."""
    kv, widths = kernel**spatial_dims, [base * 2**i for i in range(len(encoder_depths))]
    conv = lambda c_in, c_out, taps: c_in * c_out * taps + c_out  # noqa: E731
    total = conv(in_channels, widths[0], kv) + sum(conv(widths[0], widths[0], kv) for _ in range(encoder_depths[0] - 1))
    total += encoder_depths[0] * widths[0]  # PReLUs: between the convs and after the add
    for level in range(1, len(widths)):
        c = widths[level]
        total += conv(c // 2, c, 2**spatial_dims) + c + encoder_depths[level] * (conv(c, c, kv) + c)
    below = widths[-1]
    for level, num_convs in zip(reversed(range(len(widths) - 1)), decoder_depths):
        up, stage = widths[level], 2 * widths[level]
        total += conv(below, up, 2**spatial_dims) + up + num_convs * (conv(stage, stage, kv) + stage)
        below = stage
    if head == "conv_pointwise":
        total += conv(below, out_channels, kv) + out_channels
        below = out_channels
    return total + conv(below, out_channels, 1)


@pytest.mark.parametrize("name", ["milletari2016", "milletari2016_caffe"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_preset_counts_match_the_formula(name, spatial_dims):
    preset = VNET_PRESETS[name]
    with torch.device("meta"):
        model = VNet.preset(name, spatial_dims=spatial_dims)
    expected = formula_count(1, 2, spatial_dims, 16, preset["encoder_depths"], preset["decoder_depths"],
                             head=preset.get("head", "pointwise"))
    assert count_parameters(model) == expected


def test_presets_hold_the_papers_depths():
    assert VNET_PRESETS["milletari2016"]["encoder_depths"] == (1, 2, 3, 3, 3)
    assert VNET_PRESETS["milletari2016"]["decoder_depths"] == (3, 3, 2, 1)
    assert VNET_PRESETS["milletari2016_caffe"]["encoder_depths"] == (1, 1, 2, 3, 3)
    assert VNET_PRESETS["milletari2016_caffe"]["decoder_depths"] == (3, 2, 1, 1)
    model = VNet.preset("milletari2016", base_features=2)
    assert [len(model.encoder[0].convs)] + [len(level.stage.convs) for level in model.encoder[1:]] == [1, 2, 3, 3, 3]
    assert [len(up.stage.convs) for up in model.ups] == [3, 3, 2, 1]
    assert model.features == (2, 4, 8, 16, 32)
    with pytest.raises(KeyError, match="milletari2016"):
        VNet.preset("vnet2017")


def test_parameter_counts_side_by_side():
    counts = parameter_counts(1, 2)
    print("\nV-Net parameters (3D, in 1, out 2, 16 base channels):",
          ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    assert counts == {"milletari2016": 65_175_314, "milletari2016_caffe": 61_982_682,
                      "monai": 45_597_898, "monai.VNet": 45_597_898}
    assert parameter_counts(1, 3, spatial_dims=2)["monai"] == parameter_counts(1, 3, spatial_dims=2)["monai.VNet"]


def test_monai_preset_reproduces_monai_vnet():
    """Same parameters in the same order, and in eval mode (MONAI's dropout off) the same output."""
    with torch.device("meta"):  # 3D: compare the layout without allocating 45 M parameters twice
        shapes = [[v.shape for v in model.state_dict().values()]
                  for model in (VNet.preset("monai"), MonaiVNet(spatial_dims=3, in_channels=1, out_channels=2))]
    assert shapes[0] == shapes[1]
    torch.manual_seed(0)
    theirs = MonaiVNet(spatial_dims=2, in_channels=1, out_channels=3).eval()
    ours = VNet.preset("monai", out_channels=3, spatial_dims=2).eval()
    their_state = theirs.state_dict()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in their_state.values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), their_state.values())))
    x = torch.randn(1, 1, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_stages_are_residual():
    """With every conv of the stages zeroed, a stage passes act(input) on: the residual path."""
    model = VNet(spatial_dims=2, base_features=4, encoder_depths=(1, 2, 2), decoder_depths=(2, 1))
    with torch.no_grad():
        for stage in [model.encoder[0], *(level.stage for level in model.encoder[1:]), *(up.stage for up in model.ups)]:
            for param in stage.convs.parameters():
                param.zero_()
    x = torch.randn(2, 1, 16, 16)
    feats = model.forward_features(x)
    with torch.no_grad():
        # The first stage repeats its 1 input channel 4 times to match its 4 feature maps.
        torch.testing.assert_close(feats["enc0"], model.encoder[0].act(x.repeat(1, 4, 1, 1)))
        level1 = model.encoder[1]
        torch.testing.assert_close(feats["enc1"], level1.stage.act(level1.down(feats["enc0"])))
        up = model.ups[-1]  # to level 0: the residual is the concatenation (up-conv output, skip)
        torch.testing.assert_close(feats["dec0"], up.stage.act(torch.cat([up.up(feats["dec1"]), feats["enc0"]], 1)))
    # The paper's stages: PReLU between the convs, none on the last conv before the add.
    stage = VNet(base_features=2).encoder[2].stage
    assert [type(c.act) for c in stage.convs] == [nn.PReLU, nn.PReLU, nn.Identity]


def test_gradients_reach_every_parameter():
    model = VNet(spatial_dims=2, base_features=2, norm="batch", head="conv_pointwise")
    model(torch.randn(2, 1, 32, 32)).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_maxpool_variant_keeps_shapes_and_field_and_saves_weights():
    conv, pool = VNet(base_features=2), VNet(base_features=2, downsample="maxpool")
    assert isinstance(pool.encoder[1].down.pool, nn.MaxPool3d)
    x = torch.randn(1, 1, 16, 16, 16)
    assert all(a.shape == b.shape for a, b in zip(conv.forward_features(x).values(), pool.forward_features(x).values()))
    # A 2x2x2 window reduced by max then a 1x1x1 conv: 1/8 of the down-conv's weights, same field.
    saved = sum(7 * c * 2 * c for c in (2, 4, 8, 16))
    assert count_parameters(conv) - count_parameters(pool) == saved
    assert stage_receptive_fields(conv) == stage_receptive_fields(pool)


def test_input_errors_name_the_fix():
    model = VNet(spatial_dims=3, base_features=2)
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(1, 16, 16, 16))
    with pytest.raises(ValueError, match="spatial_dims=2"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match=r"axis 1 has size 40 \(nearest sizes that work: 32 or 48\).*2\*\*4 = 16"):
        model(torch.randn(1, 1, 16, 40, 16))
    with pytest.raises(ValueError, match="multiple of 2"):
        VNet(in_channels=2, base_features=3)
    with pytest.raises(ValueError, match="one decoder stage fewer"):
        VNet(encoder_depths=(1, 2, 3), decoder_depths=(1,))
    with pytest.raises(ValueError, match="odd"):
        VNet(kernel_size=4)
    with pytest.raises(ValueError, match="maxpool"):
        VNetDown(2, 4, mode="avg")
    with pytest.raises(ValueError, match="pointwise"):
        VNet(head="softmax")
    assert model.valid_sizes(1, 50) == [16, 32, 48] and model.output_size(24) is None


# ----------------------------------------------------------------------- receptive field


def test_paper_table1_receptive_fields():
    """Milletari et al. 2016, Table 1, counting each 2x2x2 up-conv as its kernel extent."""
    model = VNet.preset("milletari2016", base_features=1)
    paper = stage_receptive_fields(model, transpose_rule="paper")
    assert list(paper.values())[:9] == [5, 22, 72, 172, 372, 476, 528, 546, 551]
    assert paper["logits"] == 551  # the 1x1x1 head adds nothing
    # Counting exactly, an up-conv output voxel reads one input voxel: 8 + 4 + 2 + 1 = 15 voxels fewer.
    exact = stage_receptive_fields(model)
    assert list(exact.values())[4:9] == [372, 468, 516, 532, 536]
    # The Caffe prototxt: fewer convs, and its head's 5x5x5 conv adds 4 more (503 -> 507).
    caffe_model = VNet.preset("milletari2016_caffe", base_features=1)
    caffe = stage_receptive_fields(caffe_model, transpose_rule="paper")
    assert list(caffe.values()) == [5, 14, 48, 148, 348, 452, 488, 498, 503, 507]
    whole_path = textbook_receptive_field(layer_specs(caffe_model.deepest_path()), transpose_rule="paper")
    assert whole_path[-1]["r"] == caffe["logits"]


def test_measured_field_of_the_paper_depths_in_2d():
    """The gradient-measured field equals the exact walk: 532 or 548 px along an axis, by position.

    Neither textbook number is the true one. The recurrence lets every window sit anywhere, but
    after the stride-2 down- and up-convs the windows are tied to the coarse grid: pixels near a
    border of a 16-pixel bottleneck cell see more than the "exact" rule's 536, the others less;
    the paper's 551 is above both.
    """
    model = VNet.preset("milletari2016", spatial_dims=2, base_features=1)
    specs = layer_specs(model.deepest_path())
    shape = (576, 16)
    sizes = []
    for row in (288, 290):
        analytic = analytic_receptive_field(specs, shape, (row, 8))
        mask, measured = gradient_receptive_field(model, shape, (row, 8))
        assert analytic == measured
        (r0, r1), (c0, c1) = measured
        assert mask.sum() == (r1 - r0 + 1) * (c1 - c0 + 1) and 0 < r0 and r1 < shape[0] - 1
        sizes.append(r1 - r0 + 1)
    assert sizes == [548, 532]
    # Rows 14, 15, 0, 1 of every 16-row cell of the bottleneck's grid see 548 px, the other 12 see 532.
    period = [analytic_receptive_field(specs, (1024,), (p,))[0] for p in range(480, 512)]
    assert [hi - lo + 1 for lo, hi in period] == 2 * ([548] * 2 + [532] * 12 + [548] * 2)
