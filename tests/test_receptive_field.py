import numpy as np
import pytest
import torch.nn as nn

from unet_lessons.models import UNet
from unet_lessons.models.vnet import VNet
from unet_lessons.viz.receptive_field import (
    LayerSpec,
    analytic_receptive_field,
    draw_receptive_fields,
    gradient_receptive_field,
    layer_specs,
    stage_receptive_fields,
    textbook_receptive_field,
)


def test_textbook_recurrence_on_a_plain_chain():
    # conv3 -> pool2 -> conv3: r = 1 + 2 + 1 + 2*2 = 8, j = 2
    specs = [LayerSpec("c", "conv", 3), LayerSpec("p", "conv", 2, 2), LayerSpec("c", "conv", 3)]
    rows = textbook_receptive_field(specs)
    assert [row["r"] for row in rows] == [3, 4, 8]
    assert rows[-1]["j"] == 2


def test_paper_unet_textbook_field():
    """The textbook recurrence for the 2015 U-Net counts each pooling as if windows could shift."""
    specs = layer_specs(UNet(1, 2, norm=None, padding="valid").deepest_path())
    assert textbook_receptive_field(specs)[-1]["r"] == 200


CASES = [
    (dict(upsample="transpose"), 64, 3),
    (dict(upsample="interp"), 64, 3),
    (dict(upsample="interp", align_corners=True), 64, 3),
    (dict(upsample="transpose", padding="valid", norm=None), 220, 4),
    (dict(upsample="interp", padding="valid"), 220, 4),
]


@pytest.mark.parametrize("kwargs,size,depth", CASES)
def test_analytic_field_equals_gradient_field(kwargs, size, depth):
    model = UNet(1, 2, base_features=2, depth=depth, **kwargs)
    specs = layer_specs(model.deepest_path())
    out = model.output_size(size)
    for position in [(0, 1), (3, out // 2), (out // 2 + 1, out - 1), (out - 1, 2)]:
        analytic = analytic_receptive_field(specs, (size, size), position)
        mask, measured = gradient_receptive_field(model, (size, size), position)
        assert analytic == measured, (position, analytic, measured)
        # The field is a full box: every pixel inside it reaches the output pixel.
        (r0, r1), (c0, c1) = analytic
        assert mask.sum() == (r1 - r0 + 1) * (c1 - c0 + 1)


def test_analytic_field_equals_gradient_field_in_3d():
    model = UNet(1, 2, spatial_dims=3, base_features=2, depth=2)
    specs = layer_specs(model.deepest_path())
    for position in [(0, 5, 9), (15, 10, 3)]:
        assert analytic_receptive_field(specs, (16, 20, 24), position) == \
            gradient_receptive_field(model, (16, 20, 24), position)[1]


def test_valid_unet_field_depends_on_position_in_the_pooling_grid():
    """2015 U-Net: the textbook says 200 px; exactly, a pixel sees 188 or 204 px, repeating every 16 px."""
    model = UNet(1, 2, base_features=2, padding="valid", norm=None)
    specs = layer_specs(model.deepest_path())
    boxes = [analytic_receptive_field(specs, (252,), (p,))[0] for p in range(model.output_size(252))]
    sizes = [hi - lo + 1 for lo, hi in boxes]
    assert set(sizes) == {188, 204}
    assert sizes[:16] == [188] * 4 + [204] * 12
    assert all(sizes[p] == sizes[p + 16] for p in range(len(sizes) - 16))
    assert all(b[0] - a[0] == 16 for a, b in zip(boxes, boxes[16:]))


def test_border_clips_the_field():
    model = UNet(1, 2, base_features=2, depth=3)
    specs = layer_specs(model.deepest_path())
    (lo, hi), = analytic_receptive_field(specs, (64,), (0,))
    assert lo == 0 and hi < 63


def test_unsupported_layer_and_position_are_refused():
    with pytest.raises(ValueError, match="no receptive-field rule"):
        layer_specs([nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="outside the output"):
        analytic_receptive_field([LayerSpec("c", "conv", 3)], (8,), (8,))


def test_gradient_probe_leaves_model_unchanged():
    model = UNet(1, 2, base_features=2, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_receptive_field(model, (16, 16), (4, 4))
    assert all((before[k] == v).all() for k, v in model.state_dict().items())
    assert isinstance(model.downs[0].pool, nn.MaxPool2d)


def test_draw_receptive_fields_headless():
    model = UNet(1, 2, base_features=2, depth=2)
    specs = layer_specs(model.deepest_path())
    positions = [(2, 3), (10, 12)]
    boxes = [analytic_receptive_field(specs, (16, 16), p) for p in positions]
    masks = [gradient_receptive_field(model, (16, 16), p)[0] for p in positions]
    fig = draw_receptive_fields(np.zeros((16, 16)), positions, boxes, masks)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and ax.get_title() and ax.get_xlabel()
    width = boxes[0][1][1] - boxes[0][1][0] + 1
    assert ax.patches[0].get_width() == width


def test_transpose_rules_exact_and_paper():
    """A 2x2 stride-2 up-conv: each output reads one input (adds 0), but the paper counts its extent (adds j)."""
    specs = [LayerSpec("c", "conv", 3), LayerSpec("down", "conv", 2, 2), LayerSpec("up", "transpose", 2, 2),
             LayerSpec("c", "conv", 3)]
    exact = textbook_receptive_field(specs)
    assert exact == textbook_receptive_field(specs, transpose_rule="exact")  # the default is unchanged
    assert [row["r"] for row in exact] == [3, 4, 4, 6]
    paper = textbook_receptive_field(specs, transpose_rule="paper")
    assert [row["r"] for row in paper] == [3, 4, 5, 7]
    assert [row["j"] for row in paper] == [row["j"] for row in exact] == [1, 2, 1, 1]
    # A 3-wide stride-2 up-conv output reads up to 2 inputs: 2 coarse jumps exactly, 2 fine jumps for the paper.
    wide = [LayerSpec("down", "conv", 2, 2), LayerSpec("up", "transpose", 3, 2)]
    assert textbook_receptive_field(wide)[-1]["r"] == 4
    assert textbook_receptive_field(wide, transpose_rule="paper")[-1]["r"] == 4
    with pytest.raises(ValueError, match="transpose_rule"):
        textbook_receptive_field(specs, transpose_rule="kernel")


def test_stage_receptive_fields_of_a_small_vnet():
    # 3x3 convs, one per stage: 3, +1 (down) +2*2 = 8, then up (+0 exact, +1 paper) and +2.
    model = VNet(spatial_dims=2, base_features=1, kernel_size=3, encoder_depths=(1, 1), decoder_depths=(1,))
    assert dict(stage_receptive_fields(model)) == {"enc0": 3, "bottleneck": 8, "dec0": 10, "logits": 10}
    assert stage_receptive_fields(model, transpose_rule="paper")["dec0"] == 11
