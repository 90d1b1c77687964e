"""FCN (Long, Shelhamer and Darrell 2015): VGG16 encoder, convolutionalization, bilinear
upsampling, FCN-32s/16s/8s and the seed decoder, checked against the paper's figures."""

from itertools import combinations

import pytest
import torch
import torch.nn.functional as F
from matplotlib.patches import Circle, Rectangle
from matplotlib.text import Text

from unet_lessons.models import FCN, MODELS, build_model
from unet_lessons.upsampling import bilinear_weight as bilinear_kernel
from unet_lessons.models.fcn import (
    FCN32sSeed,
    VGGClassifier,
    VGGEncoder,
    convolutionalize,
    make_upsample,
    ceiling_scores,
    stride_ceiling,
    transplant,
    upsample_matrix,
)
from unet_lessons.utils import count_parameters
from unet_lessons.viz import draw_fcn, figure_to_png
from unet_lessons.viz.receptive_field import (
    analytic_receptive_field,
    gradient_receptive_field,
    layer_specs,
    textbook_receptive_field,
)

SMALL = dict(width=4, fc_width=16)


def meta_fcn(**kwargs) -> FCN:
    with torch.device("meta"):
        return FCN(**kwargs)


# ----- VGG16 and the paper's numbers ----------------------------------------------------------
def test_vgg16_receptive_fields_textbook():
    """44 px at pool3, 100 at pool4, 212 at pool5; fc6 (7x7 at jump 32) makes it 404 (Table 1)."""
    model = meta_fcn(num_classes=21)
    path = model.deepest_path()
    rows = textbook_receptive_field(layer_specs(path))
    field = {module: row["r"] for module, row in zip(path, rows)}
    encoder = model.encoder
    assert field[encoder.stage3.pool] == 44
    assert field[encoder.stage4.pool] == 100
    assert field[encoder.stage5.pool] == 212
    assert field[model.fc6.conv] == 212 + 6 * 32
    assert field[model.fc7.conv] == 404
    assert rows[path.index(model.fc7.conv)]["j"] == 32


def test_fcn32s_parameter_count():
    """VGG16 convs 14,714,688 + fc6 102,764,544 + fc7 16,781,312 + score_fr 86,037."""
    model = meta_fcn(num_classes=21)
    assert count_parameters(model.encoder) == 14_714_688
    assert count_parameters(model) == 134_346_581
    # The x32 bilinear deconvolution is there but fixed, as in voc-fcn32s (lr_mult 0).
    assert count_parameters(model, trainable_only=False) - count_parameters(model) == 21 * 21 * 64 * 64
    # 16s adds score_pool4 (512*21 + 21) and a learned 4x4 upscore2 (21*21*16); 8s the same again on pool3.
    assert count_parameters(meta_fcn(num_classes=21, variant="16s")) == 134_346_581 + 10_773 + 7_056
    assert count_parameters(meta_fcn(num_classes=21, variant="8s")) == 134_346_581 + 10_773 + 5_397 + 2 * 7_056


def test_encoder_strides_and_names():
    encoder = VGGEncoder(width=8)
    features = encoder(torch.randn(1, 3, 64, 96))
    assert list(features) == ["x1", "x2", "x3", "x4", "x5"]
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (8, 32, 48), (16, 16, 24), (32, 8, 12), (64, 4, 6), (64, 2, 3)]
    assert [len(getattr(encoder, f"stage{i}")) - 1 for i in range(1, 6)] == [2, 2, 3, 3, 3]  # 13 convs
    assert "(stage1): VGGStage" in repr(encoder) and "(pool): MaxPool2d" in repr(encoder)


# ----- convolutionalization (Section 3.1) ------------------------------------------------------
def test_convolutionalize_gives_the_classifier_logits_and_a_coarse_map():
    classifier = VGGClassifier(10, **SMALL).eval()
    fully_conv = convolutionalize(classifier).eval()
    assert fully_conv.encoder is classifier.encoder  # shared, not copied
    x = torch.randn(2, 3, 224, 224)
    out = fully_conv(x)
    assert out.shape == (2, 10, 1, 1)
    torch.testing.assert_close(out.flatten(1), classifier(x))
    assert fully_conv(torch.randn(1, 3, 320, 384)).shape == (1, 10, 320 // 32 - 6, 384 // 32 - 6)
    with pytest.raises(ValueError, match="224x224.*convolutionalize"):
        classifier(torch.randn(1, 3, 256, 256))


def test_transplant_copies_encoder_fc6_fc7():
    classifier = VGGClassifier(10, **SMALL).eval()
    fcn = transplant(FCN(5, **SMALL), classifier).eval()
    x = torch.randn(1, 3, 224, 224)
    conv = convolutionalize(classifier)
    expected = conv.relu7(conv.fc7(conv.relu6(conv.fc6(classifier.encoder(x)["x5"]))))  # (1, 16, 1, 1)
    # FCN's fc6 is padded by 3, so the centre of its 7x7 map sees exactly the unpadded window.
    torch.testing.assert_close(fcn.forward_features(x)["fc7"][:, :, 3:4, 3:4], expected)
    with pytest.raises(ValueError, match="norm=None"):
        transplant(FCN(5, norm="batch", **SMALL), classifier)


# ----- the seed decoder ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 96), (224, 224), (32, 160)])
def test_seed_decoder_maps_x5_to_full_size(size):
    height, width = size
    decoder = FCN32sSeed(VGGEncoder(), n_class=7)
    x5 = torch.randn(2, 512, height // 32, width // 32)
    assert decoder.decode(x5).shape == (2, 7, height, width)


@pytest.mark.parametrize("size", [(64, 96), (32, 160)])
def test_seed_decoder_narrow_end_to_end(size):
    model = FCN32sSeed(VGGEncoder(width=8), n_class=3, width=8)
    assert model.channels == (64, 64, 32, 16, 8, 4)
    assert model(torch.randn(2, 3, *size)).shape == (2, 3, *size)
    with pytest.raises(ValueError, match=r"\(B, 64, h, w\)"):
        model.decode(torch.randn(1, 512, 2, 2))


def test_seed_decoder_names_and_relu_before_batchnorm():
    model = FCN32sSeed(VGGEncoder(width=8), 3, width=8).train()
    names = [name for name, _ in model.named_children()]
    stages = [f"{kind}{i}" for i in range(1, 6) for kind in ("deconv", "bn")]
    assert names == ["pretrained_net", "relu", *stages, "classifier"]
    deconv = model.deconv1
    assert (deconv.kernel_size, deconv.stride, deconv.padding) == ((3, 3), (2, 2), (1, 1))
    assert deconv.output_padding == (1, 1)
    features = model.forward_features(torch.randn(4, 3, 64, 64))
    # BatchNorm comes last, so in training mode every channel is centred and half of it negative;
    # with BN before ReLU nothing would be negative.
    first = features["deconv1"]
    assert (first < 0).any()
    torch.testing.assert_close(first.mean(dim=(0, 2, 3)), torch.zeros(first.shape[1]), atol=1e-5, rtol=0)
    assert list(features)[-6:] == ["deconv1", "deconv2", "deconv3", "deconv4", "deconv5", "logits"]


# ----- bilinear upsampling (Section 3.3) -------------------------------------------------------
def test_bilinear_kernel_by_hand():
    weight = bilinear_kernel(2, 2, 4)
    taps = torch.tensor([1, 3, 3, 1]) / 4  # factor 2, centre 1.5: 1 - |i - 1.5| / 2
    expected = torch.tensor([[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]]) / 16
    torch.testing.assert_close(torch.outer(taps, taps), expected)
    torch.testing.assert_close(weight[0, 0], expected)
    torch.testing.assert_close(weight[1, 1], expected)
    assert not weight[0, 1].any() and not weight[1, 0].any()
    # odd size: factor 2, centre 1 -> (1/2, 1, 1/2)
    torch.testing.assert_close(bilinear_kernel(1, 1, 3)[0, 0], torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4)
    with pytest.raises(ValueError, match="in_channels"):
        bilinear_kernel(2, 3, 4)


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 16, 32])
def test_fixed_upsampler_is_bilinear_interpolation_inside(factor):
    x = torch.rand(1, 2, 5, 7) + 0.5
    layer = make_upsample(2, factor, learnable=False)
    assert not layer.weight.requires_grad and layer.bias is None
    out = layer(x)
    assert out.shape == (1, 2, 5 * factor, 7 * factor)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    border = factor // 2
    inner = (..., slice(border, -border), slice(border, -border))
    torch.testing.assert_close(out[inner], reference[inner])
    # At the border interpolate repeats the edge pixel; the transposed conv reads zeros there.
    assert (out[..., 0, :] < reference[..., 0, :]).all()


def test_upsampler_border_on_a_constant_map():
    out = make_upsample(1, 2, learnable=True)(torch.ones(1, 1, 3, 3))
    assert out[0, 0, 0, 0] == 0.75 * 0.75 and out[0, 0, 0, 2] == 0.75 and out[0, 0, 2, 2] == 1.0


# ----- FCN-32s / 16s / 8s ----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (100, 75), (31, 47)])
def test_fcn_output_size_equals_input(variant, size):
    model = FCN(3, variant=variant, **SMALL)
    assert model(torch.randn(2, 3, *size)).shape == (2, 3, *size)


def test_fcn_forward_features():
    model = FCN(3, variant="8s", **SMALL).eval()
    x = torch.randn(1, 3, 100, 75)  # padded to 128 x 96
    features = model.forward_features(x)
    assert list(features) == ["x1", "x2", "x3", "x4", "x5", "fc6", "fc7", "score_fr", "upscore2", "score_pool4",
                              "fuse_pool4", "upscore_pool4", "score_pool3", "fuse_pool3", "logits"]
    assert features["x5"].shape[2:] == features["score_fr"].shape[2:] == (4, 3)
    assert features["fuse_pool4"].shape == (1, 3, 8, 6) and features["fuse_pool3"].shape == (1, 3, 16, 12)
    assert torch.equal(features["logits"], model(x))
    assert list(FCN(3, **SMALL).forward_features(x))[-2:] == ["score_fr", "logits"]


def test_fcn_skips_start_at_zero_and_final_upsampling_is_fixed():
    model = FCN(3, variant="8s", **SMALL)
    for name in ("score_pool4", "score_pool3"):
        layer = getattr(model, name)
        assert not layer.weight.any() and not layer.bias.any() and layer.weight.requires_grad
    assert model.upscore2.weight.requires_grad and model.upscore_pool4.weight.requires_grad
    assert not model.upscore8.weight.requires_grad
    assert not FCN(3, variant="16s", **SMALL).upscore16.weight.requires_grad
    assert not FCN(3, variant="8s", learnable_upsampling=False, **SMALL).upscore2.weight.requires_grad
    with torch.no_grad():
        features = model.eval().forward_features(torch.randn(1, 3, 64, 64))
    torch.testing.assert_close(features["fuse_pool4"], features["upscore2"])
    torch.testing.assert_close(features["fuse_pool3"], features["upscore_pool4"])
    coarse = model.upscore_pool4(model.upscore2(features["score_fr"]))
    torch.testing.assert_close(features["logits"], model.upscore8(coarse))


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_gradient_reaches_every_learnable_parameter(variant):
    model = FCN(3, variant=variant, norm="batch", **SMALL)
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_fcn_input_errors():
    strict = FCN(3, pad_to_multiple=False, **SMALL)
    with pytest.raises(ValueError, match=r"axis 0 has size 100 \(nearest sizes that work: 96 or 128\)"):
        strict(torch.randn(1, 3, 100, 64))
    with pytest.raises(ValueError, match="pad_to_multiple=True"):
        strict(torch.randn(1, 3, 64, 70))
    assert strict(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match=r"in_channels=3.*got 1 channels"):
        FCN(3, **SMALL)(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"expects a 4-D input of shape \(B, 3, H, W\).*unsqueeze"):
        FCN(3, **SMALL)(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="variant"):
        FCN(3, variant="4s")


def test_registry_builds_fcn():
    assert MODELS["fcn"] is FCN
    model = build_model("fcn", num_classes=4, variant="16s", in_channels=1, **SMALL)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4, 32, 32)


@pytest.mark.parametrize("variant", ["32s", "8s"])
def test_fcn_analytic_field_equals_gradient_field(variant):
    model = FCN(2, variant=variant, width=2, fc_width=4)
    specs = layer_specs(model.deepest_path())
    for position in [(0, 0), (150, 161), (319, 40)]:
        analytic = analytic_receptive_field(specs, (320, 320), position)
        mask, measured = gradient_receptive_field(model, (320, 320), position)
        assert analytic == measured, (position, analytic, measured)
    (r0, r1), (c0, c1) = analytic_receptive_field(specs, (640, 640), (320, 320))
    assert r1 - r0 + 1 > 404  # the bilinear steps widen fc7's 404 px


# ----- the diagram -----------------------------------------------------------------------------
def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


@pytest.mark.parametrize("variant,sums", [("32s", 0), ("16s", 1), ("8s", 2)])
def test_draw_fcn_paper_labels(variant, sums):
    fig = draw_fcn(meta_fcn(num_classes=21, variant=variant), (224, 224))
    texts = _texts(fig)
    for label in ["3\n224²", "pool1 /2\n64\n112²", "pool3 /8\n256\n28²", "pool5 /32\n512\n7²",
                  "fc6\n4096\n7²", "fc7\n4096\n7²", "score_fr\n21\n7²", "21\n224²"]:
        assert label in texts, label
    assert f"×{variant[:-1]} bilinear\n(fixed)" in texts
    assert ("score_pool4\n21\n14²" in texts) == (sums >= 1)
    assert ("upscore_pool4\n21\n28²" in texts) == (sums == 2)
    ax = fig.axes[0]
    assert sum(isinstance(p, Circle) for p in ax.patches) == texts.count("+") == sums
    assert fig._suptitle.get_text() == f"FCN-{variant}, input 224×224"
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 10 + 2 * sums  # input, 5 stages, fc6, fc7, score_fr, output + (upscore, skip) per sum
    for a, b in combinations(boxes, 2):
        assert not a.get_bbox().overlaps(b.get_bbox())
    figure_to_png(fig)
    renderer = fig.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
    for a, b in combinations(extents, 2):
        assert not a.overlaps(b)
    assert fig.get_size_inches()[0] <= 12


def test_draw_fcn_odd_input_and_seed():
    fig = draw_fcn(FCN(3, variant="8s", norm="batch", **SMALL), (1, 3, 100, 75))
    texts = _texts(fig)
    assert "zero-padded to\n128×96" in texts and "×8 bilinear\n(fixed), crop" in texts and "3\n100×75" in texts
    assert any("BatchNorm" in t for t in texts)
    seed = draw_fcn(FCN32sSeed(VGGEncoder(), 21), (224, 224))
    texts = _texts(seed)
    assert "deconv1 /16\n512\n14²" in texts and "deconv5 /1\n32\n224²" in texts and "21\n224²" in texts
    assert not any(isinstance(p, Circle) for p in seed.axes[0].patches)


# ----- what an output stride allows at best -----------------------------------------------------
@pytest.mark.parametrize("factor", [2, 3, 8, 32])
def test_upsample_matrix_is_the_fixed_bilinear_layer_along_each_axis(factor):
    x = torch.randn(2, 1, 3, 5, generator=torch.Generator().manual_seed(factor))
    layer = make_upsample(1, factor, learnable=False)
    matrix_form = upsample_matrix(3, factor) @ x @ upsample_matrix(5, factor).T
    torch.testing.assert_close(matrix_form, layer(x))


def _disc_and_bar(size=64):
    """A disc of radius 10 (class 1) and a 2-pixel bar (class 2) on background."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros(1, size, size, dtype=torch.int64)
    labels[0][(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    labels[0, 45:47, 8:56] = 2
    return labels


def test_stride_ceiling_at_stride_1_is_the_label_and_the_fit_beats_the_area_average():
    labels = _disc_and_bar()
    assert torch.equal(stride_ceiling(labels, 3, 1), labels)
    area = stride_ceiling(labels, 3, 16)
    fitted = stride_ceiling(labels, 3, 16, fit_steps=100, lr=0.3)
    assert area.shape == fitted.shape == labels.shape and area.dtype == torch.int64
    # Area-averaged, the 2-pixel bar has an eighth of every 16-pixel cell it crosses: it never wins the argmax.
    assert not (area == 2).any()
    iou = lambda p, c: float(((p == c) & (labels == c)).sum() / ((p == c) | (labels == c)).sum())  # noqa: E731
    # The disc fills under half of most cells on its rim: its shares lose them, fitted scores win them back.
    assert iou(area, 1) < 0.4 and iou(fitted, 1) > 0.8
    # At stride 8 the fit wins part of the bar, which the shares never place.
    assert not (stride_ceiling(labels, 3, 8) == 2).any() and iou(stride_ceiling(labels, 3, 8, fit_steps=100, lr=0.3), 2) > 0
    # The area map is the upsampled class shares, argmaxed: built by hand with the 2D layer.
    shares = F.avg_pool2d(F.one_hot(labels, 3).permute(0, 3, 1, 2).float(), 16)
    with torch.no_grad():
        by_hand = make_upsample(3, 16, learnable=False)(shares)
    torch.testing.assert_close(ceiling_scores(labels, 3, 16), by_hand)
    assert torch.equal(ceiling_scores(labels, 3, 16).argmax(1), area)


@pytest.mark.parametrize("labels, stride, message", [
    (torch.zeros(64, 64, dtype=torch.int64), 16, "labels\\[None\\]"),
    (torch.zeros(1, 64, 64), 16, "int64"),
    (torch.zeros(1, 60, 64, dtype=torch.int64), 16, "multiple of the output stride 16"),
    (torch.full((1, 32, 32), 3, dtype=torch.int64), 8, "0 … 2"),
])
def test_stride_ceiling_refuses_bad_labels_naming_the_fix(labels, stride, message):
    with pytest.raises(ValueError, match=message):
        stride_ceiling(labels, 3, stride)
