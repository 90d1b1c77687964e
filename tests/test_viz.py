"""The figures of ``unet_lessons.viz``, built headless and checked for what they contain.

No test calls ``matplotlib.use``: the package never imports ``pyplot``, so no backend is
chosen; ``figure_to_png`` renders with the Agg canvas directly.
"""

import struct
import subprocess
import sys
from itertools import combinations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.text import Text

from unet_lessons.models import UNet
from unet_lessons.viz import (
    draw_pooling_phases,
    draw_unet,
    feature_maps,
    figure_to_png,
    meta_copy,
    plot_feature_maps,
    plot_history,
    pooling_cover,
    show_images,
    show_segmentation,
    top_variance_channels,
    unet_diagram_data,
)
from unet_lessons.viz.plots import FN_COLOUR, FP_COLOUR


def all_text(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


# ----- show_segmentation -------------------------------------------------------------------
def tiny_case():
    """8x8: label foreground in the left half; prediction shifted by one column and with a hole."""
    image = np.linspace(0, 1, 64).reshape(8, 8)
    label = np.zeros((8, 8), dtype=int)
    label[:, :4] = 1
    prediction = np.zeros((8, 8), dtype=int)
    prediction[:, 1:5] = 1
    prediction[2, 2] = 0
    fp = (prediction == 1) & (label == 0)
    fn = (label == 1) & (prediction == 0)
    return image, label, prediction, fp, fn


def test_show_segmentation_panels_and_titles():
    image, label, prediction, _, _ = tiny_case()
    fig = show_segmentation(image, label, prediction, class_names=["membrane", "cell"], title="tiny")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["image", "label", "prediction", "errors: FP / FN"]
    assert fig._suptitle.get_text() == "tiny"
    assert fig.get_size_inches()[0] <= 12.5
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "cell" in legend and any(t.startswith("FP") for t in legend) and any(t.startswith("FN") for t in legend)

    fig = show_segmentation(image, label)
    assert [ax.get_title() for ax in fig.axes] == ["image", "label"]
    fig = show_segmentation(torch.tensor(image)[None])  # (1, H, W) tensor: one row, image only
    assert [ax.get_title() for ax in fig.axes] == ["image"]


def test_error_map_marks_exactly_fp_and_fn():
    image, label, prediction, fp, fn = tiny_case()
    assert fp.sum() == 8 and fn.sum() == 9  # the example has both kinds
    fig = show_segmentation(torch.tensor(image), torch.tensor(label), torch.tensor(prediction))
    rgba = np.asarray(fig.axes[3].images[-1].get_array())
    assert rgba.shape == (8, 8, 4)
    np.testing.assert_allclose(rgba[fp][:, :3], np.tile(FP_COLOUR, (fp.sum(), 1)))
    np.testing.assert_allclose(rgba[fn][:, :3], np.tile(FN_COLOUR, (fn.sum(), 1)))
    assert np.all(rgba[fp | fn][:, 3] > 0.5)
    assert np.all(rgba[~(fp | fn)][:, 3] == 0), "correct pixels stay transparent"
    assert FP_COLOUR != FN_COLOUR
    assert "FP 8 px, FN 9 px" in all_text(fig)


def test_label_overlay_tints_only_the_foreground_class():
    image, label, _, _, _ = tiny_case()
    rgba = np.asarray(show_segmentation(image, label, foreground=1).axes[1].images[-1].get_array())
    assert np.all(rgba[label == 1][:, 3] > 0) and np.all(rgba[label == 0][:, 3] == 0)
    rgba = np.asarray(show_segmentation(image, label, foreground=0).axes[1].images[-1].get_array())
    assert np.all(rgba[label == 0][:, 3] > 0) and np.all(rgba[label == 1][:, 3] == 0)


def test_show_segmentation_batch_rows_and_logits():
    images = torch.rand(3, 1, 8, 8)
    labels = torch.randint(0, 2, (3, 8, 8))
    logits = torch.randn(3, 2, 8, 8)
    fig = show_segmentation(images, labels, logits)
    assert len(fig.axes) == 12
    rgba = np.asarray(fig.axes[-1].images[-1].get_array())  # last row's error map
    wrong = (logits.argmax(1)[2] != labels[2]).numpy()
    assert np.array_equal(rgba[..., 3] > 0, wrong)
    with pytest.raises(ValueError):
        show_segmentation(images, torch.randint(0, 2, (2, 8, 8)))
    with pytest.raises(ValueError, match="integer class map"):
        show_segmentation(images[0, 0], torch.rand(8, 8))


# ----- plot_history ------------------------------------------------------------------------
def test_plot_history_with_validation():
    steps = list(range(1, 101))
    history = {"step": steps, "loss": [1.0 / s for s in steps], "lr": [1e-3] * 100,
               "val_step": [50, 100], "val_loss": [0.05, 0.02], "val_dice": [0.7, 0.8], "seconds": 1.0}
    fig = plot_history(history, title="Run 1")
    left, right = fig.axes
    assert left.get_xlabel() == "step" and left.get_ylabel() == "loss"
    assert left.get_title() == "Run 1"
    assert right.get_ylabel() == "dice (held out)"
    assert left.get_yscale() == "log", "the loss spans two decades"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "train loss" in labels and "loss (held out)" in labels and "dice (held out)" in labels


def test_plot_history_without_validation():
    fig = plot_history({"step": [1, 2, 3], "loss": [0.9, 0.8, 0.7]})
    (ax,) = fig.axes
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    assert ax.get_yscale() == "linear"
    with pytest.raises(KeyError):
        plot_history({"step": [1], "loss": [1.0]}, metrics=["val_dice"])


# ----- show_images, figure_to_png ----------------------------------------------------------
def test_show_images_grid():
    images = [np.random.rand(6, 6) for _ in range(5)]
    fig = show_images(images, [f"w{i}" for i in range(5)], ncols=3, suptitle="weights", colorbar=True)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [f"w{i}" for i in range(5)]
    assert len(fig.axes) == 6 + 5  # 2x3 grid plus one colour bar per image
    with pytest.raises(ValueError):
        show_images(images, ["only one title"])


def test_show_images_colours_label_maps_by_class_and_names_them_in_one_legend():
    label = np.array([[0, 1], [2, 4]])
    only_classes_0_and_2 = np.array([[0, 2], [2, 0]])
    fig = show_images([np.random.rand(2, 2), label, only_classes_0_and_2], cmap=["gray", "tab10", "tab10"],
                      class_names=["background", "disc", "bar", "cross", "star"])
    panels = [ax for ax in fig.axes if ax.images]
    # Every label panel maps class c to tab10's c-th colour, whatever classes the panel holds.
    for ax in panels[1:]:
        assert ax.images[0].get_clim() == (-0.5, 9.5)
    assert panels[0].images[0].get_clim() != (-0.5, 9.5)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == ["background", "disc", "bar", "cross", "star"]
    assert np.allclose(legend.get_patches()[2].get_facecolor()[:3], panels[1].images[0].cmap(2 / 10 + 0.05)[:3])
    with pytest.raises(ValueError, match="10 colours"):
        show_images([label], cmap="tab10", class_names=[str(i) for i in range(11)])


def test_show_images_colour_bars_per_panel_and_never_on_a_label_map():
    weights, label = np.random.rand(4, 4), np.array([[0, 1], [1, 0]])
    fig = show_images([np.random.rand(4, 4), weights, label], cmap=["gray", "magma", "tab10"],
                      colorbar=[False, True, True], class_names=["outside", "inside"])
    assert len(fig.axes) == 3 + 1  # one colour bar: the weights'; the label map has the legend instead
    with pytest.raises(ValueError, match="colour-bar flags"):
        show_images([weights, weights], colorbar=[True])


def test_show_segmentation_names_its_rows():
    images, labels = np.random.rand(2, 8, 8), np.random.randint(0, 2, (2, 8, 8))
    fig = show_segmentation(images, labels, labels, row_names=["slice 25", "slice 26"])
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["slice 25", "slice 26"]
    with pytest.raises(ValueError, match="one per image"):
        show_segmentation(images, labels, row_names=["slice 25"])


def test_pooling_phases_widen_an_interval_to_its_cells_edges():
    assert pooling_cover(4, 9) == (4, 9) and pooling_cover(3, 8) == (2, 9) and pooling_cover(5, 5, cell=4) == (4, 7)
    fig = draw_pooling_phases([(4, 9), (3, 8)], pixels=12)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "needs 6 px,\nfield 6 px" in texts and "needs 6 px,\nfield 8 px" in texts
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][0] == "pixels the layers above need"
    with pytest.raises(ValueError, match="at least 12 pixels"):
        draw_pooling_phases([(8, 10)], pixels=10)


def test_figure_to_png_bytes_and_size():
    fig = Figure(figsize=(3, 2), dpi=100)
    fig.add_subplot().plot([0, 1], [1, 0])
    png = figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (300, 200)
    assert struct.unpack(">II", figure_to_png(fig, dpi=50)[16:24]) == (150, 100)


# ----- feature maps --------------------------------------------------------------------------
def test_feature_maps_from_forward_features_restore_mode():
    model = UNet(1, 2, base_features=4, depth=2)
    model.train()
    feats = feature_maps(model, torch.randn(1, 1, 16, 16))
    assert list(feats) == ["enc0", "enc1", "bottleneck", "dec1", "dec0", "logits"]
    assert feats["enc1"].shape == (1, 8, 8, 8)
    assert not feats["logits"].requires_grad
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    expected = model(torch.ones(1, 1, 16, 16))
    torch.testing.assert_close(feature_maps(model, np.ones((16, 16), dtype=np.float32))["logits"], expected)
    assert not model.training


def test_feature_maps_with_hooks():
    model = UNet(1, 2, base_features=4, depth=2)
    feats = feature_maps(model, torch.randn(2, 1, 16, 16), layers=["inc.conv1", "downs.0.pool", "head"])
    assert list(feats) == ["inc.conv1", "downs.0.pool", "head"]
    assert feats["downs.0.pool"].shape == (2, 4, 8, 8)
    assert all(len(m._forward_hooks) == 0 for m in model.modules()), "hooks are removed"
    with pytest.raises(KeyError):
        feature_maps(model, torch.randn(1, 1, 16, 16), layers=["no.such.layer"])
    with pytest.raises(ValueError):
        feature_maps(torch.nn.Conv2d(1, 1, 3), torch.randn(1, 1, 8, 8))


def test_top_variance_channels():
    feature = np.zeros((4, 5, 5))
    feature[2] = np.random.rand(5, 5) * 10
    feature[0] = np.random.rand(5, 5)
    assert list(top_variance_channels(feature, 2)) == [2, 0]


def test_plot_feature_maps_grid_2d_and_3d():
    model = UNet(1, 2, base_features=4, depth=2)
    feats = feature_maps(model, torch.randn(1, 1, 16, 16))
    fig = plot_feature_maps(feats, num_channels=3)
    assert len(fig.axes) == len(feats) * 3
    assert fig.axes[0].get_ylabel() == "enc0\n(4, 16×16)"
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == 5 * 3 + 2  # logits has only 2 channels
    assert all(t.startswith("ch ") for t in titles)
    assert "each panel scaled to its own range" in fig._suptitle.get_text()

    model3 = UNet(1, 2, spatial_dims=3, base_features=4, depth=2)
    feats3 = feature_maps(model3, torch.randn(1, 1, 16, 16, 16))
    fig = plot_feature_maps(feats3, num_channels=2, slice_index=15)
    assert len(fig.axes) == len(feats3) * 2
    assert fig.axes[0].images[0].get_array().shape == (16, 16)
    assert "D slice 15 of 16" in fig.axes[0].get_ylabel()
    assert "D slice 3 of 4" in fig.axes[2 * 2].get_ylabel()  # the bottleneck is 4 deep


# ----- architecture diagram ------------------------------------------------------------------
PAPER = dict(in_channels=1, out_channels=2, norm=None, padding="valid")


def test_diagram_data_matches_paper_figure_1():
    model = UNet(**PAPER)
    data = unet_diagram_data(model, (1, 1, 572, 572))
    assert all(p.device.type == "cpu" for p in model.parameters()), "the model itself stays where it was"
    stages = {d["name"]: d for d in data}
    assert [d["name"] for d in data] == ["enc0", "enc1", "enc2", "enc3", "bottleneck",
                                         "dec3", "dec2", "dec1", "dec0", "logits"]
    assert (stages["enc0"]["channels"], stages["enc0"]["spatial"]) == (64, (568, 568))
    assert (stages["bottleneck"]["channels"], stages["bottleneck"]["spatial"]) == (1024, (28, 28))
    assert (stages["dec0"]["channels"], stages["dec0"]["spatial"]) == (64, (388, 388))
    assert (stages["logits"]["channels"], stages["logits"]["spatial"]) == (2, (388, 388))
    assert [stages[f"enc{i}"]["column"] for i in range(4)] == ["encoder"] * 4
    assert stages["bottleneck"]["column"] == "bottleneck" and stages["bottleneck"]["level"] == 4
    assert stages["dec2"]["column"] == "decoder" and stages["dec2"]["level"] == 2
    # The stage inputs of Fig. 1: pooled 284², concatenation 512+512 at 56² (cropped from 64²).
    assert stages["enc1"]["in_spatial"] == (284, 284) and stages["enc1"]["in_channels"] == 64
    assert (stages["dec3"]["skip_channels"], stages["dec3"]["up_channels"], stages["dec3"]["in_spatial"]) == (512, 512, (56, 56))
    assert next(model.parameters()).device.type == "cpu", "the model itself is untouched"


def test_meta_copy_has_no_weights():
    model = UNet(1, 2, base_features=4, depth=2)
    copy_ = meta_copy(model)
    assert all(p.device.type == "meta" for p in copy_.parameters())
    assert all(b.device.type == "meta" for b in copy_.buffers())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_draw_unet_paper_labels():
    fig = draw_unet(UNet(**PAPER), (1, 1, 572, 572))
    texts = all_text(fig)
    for label in ["1\n572²", "64\n568²", "1024\n28²", "64\n388²", "2\n388²", "512+512\n56²"]:
        assert label in texts, label
    assert [t.get_text() for t in fig.axes[0].texts].count("copy and crop") == 4  # one per skip arrow
    assert "copy and crop" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert "up-conv 2×2" in texts and "max-pool 2×2" in texts and "conv 1×1" in texts
    assert fig._suptitle.get_text() == "UNet, depth 4, padding='valid', input 572×572"
    assert fig.get_size_inches()[0] <= 12


def test_draw_unet_same_padding_says_copy():
    fig = draw_unet(UNet(1, 2, upsample="interp"), (256, 256))
    texts = all_text(fig)
    assert "copy" in texts and "copy and crop" not in texts
    assert "bilinear ×2" in texts and "up-conv 2×2" not in texts
    assert "64\n256²" in texts


def _first_size(model: UNet, spatial_dims: int) -> tuple[int, ...]:
    side = model.valid_sizes(1, 2000)[0] if model.padding == "valid" else 2 * 2**model.depth
    return (side,) * spatial_dims


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_draw_unet_every_configuration(depth, spatial_dims, padding):
    model = UNet(1, 3, spatial_dims=spatial_dims, base_features=8, depth=depth, padding=padding)
    size = _first_size(model, spatial_dims)
    fig = draw_unet(model, size)
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    # input, depth+1 stage outputs down the left, depth pooled maps, depth x (skip, up, decoder), logits
    assert len(boxes) == 5 * depth + 3
    # 2 depth + 1 double convs, depth pools, depth ups, depth skips, one head
    assert len(arrows) == 5 * depth + 2
    # No two boxes overlap (the skip and upsampled halves of a concatenation only touch).
    for a, b in combinations(boxes, 2):
        (ax0, ay0), (ax1, ay1) = a.get_bbox().get_points()
        (bx0, by0), (bx1, by1) = b.get_bbox().get_points()
        overlap = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
        assert overlap < 1e-9
    # No two text labels overlap on the rendered figure.
    figure_to_png(fig)
    renderer = fig.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in fig.axes[0].texts if t.get_text()]
    for a, b in combinations(extents, 2):
        assert not a.overlaps(b)
    assert fig.get_size_inches()[0] <= 12
    size_text = f"{size[0]}{'²' if spatial_dims == 2 else '³'}"
    assert f"1\n{size_text}" in all_text(fig)


def test_viz_never_imports_pyplot():
    code = (
        "import sys, torch\n"
        "import unet_lessons.viz as viz\n"
        "from unet_lessons.models import UNet\n"
        "fig = viz.draw_unet(UNet(1, 2, base_features=4, depth=2), (16, 16))\n"
        "viz.figure_to_png(fig)\n"
        "viz.figure_to_png(viz.show_segmentation(torch.rand(8, 8), torch.zeros(8, 8, dtype=torch.long)))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_node_grid_is_drawn_from_the_model():
    from matplotlib.patches import FancyBboxPatch

    from unet_lessons.models import UNetPlusPlus
    from unet_lessons.viz import draw_node_grid, node_grid_data

    model = UNetPlusPlus(1, 2, features=(4, 8, 16, 32), deep_supervision=True)
    records = node_grid_data(model, (32, 48))
    assert len(records) == 10  # (L + 1)(L + 2) / 2 nodes for L = 3
    by_name = {r["name"]: r for r in records}
    assert by_name["x_1_1"]["channels"] == 8 and by_name["x_1_1"]["spatial"] == (16, 24)
    assert by_name["x_0_2"]["inputs"] == ["x_0_0", "x_0_1", "x_1_1"]
    fig = draw_node_grid(model, (1, 1, 32, 48))
    circles = [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert len(circles) == 10 and all(c.get_alpha() == 1.0 for c in circles)
    edges = sum(len(r["inputs"]) for r in records)
    assert len([p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]) == edges
    pruned = draw_node_grid(model, (32, 48), pruned=1)
    faded = [c for c in pruned.axes[0].patches if isinstance(c, FancyBboxPatch) and c.get_alpha() < 1]
    assert len(faded) == 10 - 3  # X^{0,0}, X^{1,0}, X^{0,1} remain
    with pytest.raises(TypeError, match="draw_unet"):
        draw_node_grid(UNet(1, 2, depth=2), (32, 32))
    with pytest.raises(ValueError, match="between 1 and"):
        draw_node_grid(model, (32, 32), pruned=4)


def test_draw_unet_reads_the_layers_of_any_encoder_decoder_model():
    from unet_lessons.models import UNetPlusPlus, VNet
    from unet_lessons.viz import draw_architecture

    vnet = VNet(1, 2, spatial_dims=3, width=2, encoder_depths=(1, 2, 3), decoder_depths=(2, 1))
    legend = [t.get_text() for t in draw_unet(vnet, (16, 16, 16)).legends[0].get_texts()]
    assert legend == ["conv 5×5×5 (×n per stage, on the arrow), PReLU", "down-conv 2×2×2, stride 2", "up-conv 2×2×2",
                      "copy", "conv 1×1×1", "residual addition (stage input + output)"]
    seed = UNet(1, 2, base_features=4, depth=2, upsample="interp")
    legend = [t.get_text() for t in draw_unet(seed, (16, 16)).legends[0].get_texts()]
    assert legend == ["2× conv 3×3, BatchNorm, ReLU", "max-pool 2×2", "bilinear ×2", "copy", "conv 1×1"]
    assert draw_architecture(UNetPlusPlus(1, 2, width=2, depth=2), (16, 16)).axes[0].get_title().startswith("UNet++")
    with pytest.raises(ValueError, match="feature_scheme 'encoder_decoder'"):
        draw_unet(UNetPlusPlus(1, 2, width=2, depth=2), (16, 16))
    with pytest.raises(TypeError, match="feature schemes"):
        draw_architecture(torch.nn.Conv2d(1, 1, 1), (8, 8))


# ----- the diagram names only what the model holds ---------------------------------------------
def _configurations():
    from unet_lessons.models import MODELS

    for name, constructor in MODELS.items():
        if constructor.feature_scheme != "encoder_decoder":
            continue
        for index, arguments in enumerate(constructor.example_arguments):
            for spatial_dims in constructor.spatial_dims_supported:
                yield pytest.param(name, index, spatial_dims, id=f"{name}-{index}-{spatial_dims}d")


def _named_layers_exist(model, legend: str) -> None:
    """Every layer the legend names is in the model; every count it gives matches the stages."""
    import re

    import torch.nn as nn

    from unet_lessons.viz.diagram import conv_counts

    modules = list(model.modules())
    has = lambda kind: any(isinstance(m, kind) for m in modules)  # noqa: E731
    strided = [m for m in modules if isinstance(m, nn.modules.conv._ConvNd)
               and not isinstance(m, nn.modules.conv._ConvTransposeNd) and max(np.atleast_1d(m.stride)) > 1]
    assert ("max-pool" in legend) <= has(nn.modules.pooling._MaxPoolNd), legend
    assert ("avg-pool" in legend) <= has(nn.modules.pooling._AvgPoolNd), legend
    assert ("down-conv" in legend) <= bool(strided), legend
    assert ("up-conv" in legend) <= has(nn.modules.conv._ConvTransposeNd), legend
    for mode in re.findall(r"(\w+) ×2", legend):
        assert any(isinstance(m, nn.Upsample) and m.mode == mode for m in modules), (mode, legend)
    for layer in ("BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm", "ReLU", "LeakyReLU", "PReLU", "ELU"):
        if re.search(rf"\b{layer}\b", legend):
            assert any(type(m).__name__.startswith(layer) for m in modules), (layer, legend)
    assert ("residual" in legend) == any(getattr(m, "residual", False) for m in modules), legend
    kernels = {int(k) for k in re.findall(r"conv (\d+)×", legend)}
    present = {int(np.atleast_1d(m.kernel_size)[0]) for m in modules if isinstance(m, nn.modules.conv._ConvNd)}
    assert kernels <= present, (kernels, present)
    if match := re.search(r"(\d+)× conv", legend):
        assert set(conv_counts(model).values()) == {int(match.group(1))}, legend


@pytest.mark.parametrize("name, index, spatial_dims", list(_configurations()))
def test_diagram_names_only_layers_the_model_holds(name, index, spatial_dims):
    from unet_lessons.models import MODELS, build_model
    from unet_lessons.viz import draw_architecture

    model = build_model(name, in_channels=1, out_channels=2, spatial_dims=spatial_dims, width=4,
                        **MODELS[name].example_arguments[index])
    if model.domains:  # a multi-domain model is drawn as one domain sees it
        model = model.for_domain(sorted(model.domains)[0])
    side = model.valid_sizes(1, 400)[0]
    fig = draw_architecture(model, (side,) * spatial_dims)
    legend = " | ".join(t.get_text() for t in fig.legends[0].get_texts())
    _named_layers_exist(model, legend)


def test_vnet_diagram_draws_its_strided_convolutions_residuals_and_real_maps():
    from unet_lessons.models import VNet
    from unet_lessons.viz import draw_architecture
    from unet_lessons.viz.diagram import unet_diagram_data

    model = VNet(base_features=16, encoder_depths=(1, 2, 3, 3), decoder_depths=(3, 2, 1))
    fig = draw_architecture(model, (32, 32, 32))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "down-conv 2×2×2, stride 2" in legend and not any("max-pool" in t for t in legend)
    assert "residual addition (stage input + output)" in legend
    axis_texts = [t.get_text() for t in fig.axes[0].texts]
    assert axis_texts.count("⊕") == 7 and sorted(t for t in axis_texts if t.startswith("×")) == sorted(
        ["×1", "×2", "×3", "×3", "×3", "×2", "×1"])
    # The down-convolution doubles the channels: the map after it has 32 channels, not the 16 above it.
    enc1 = next(s for s in unet_diagram_data(model, (32, 32, 32)) if s["name"] == "enc1")
    assert (enc1["in_channels"], enc1["in_spatial"]) == (32, (16, 16, 16))


def test_plot_differences_draws_every_item_and_the_family_interval():
    from unet_lessons.stats import judge
    from unet_lessons.viz import plot_differences

    rng = np.random.default_rng(0)
    differences = {"skips": 0.1 + 0.02 * rng.standard_normal((5, 30)), "elastic": 0.01 * rng.standard_normal((5, 30))}
    family = judge(differences, {key: 0.01 for key in differences})
    fig = plot_differences(differences, family, labels={"skips": "with vs without skips"})
    ax = fig.axes[0]
    assert [len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets") and len(c.get_offsets()) == 30] \
        == [30, 30]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["with vs without skips", "elastic"]
    assert "one family of 2" in [t.get_text() for t in fig.legends[0].get_texts()][1]
    assert [t.get_text() for t in ax.texts] == [family["skips"].verdict.replace(" at this budget", ""),
                                               family["elastic"].verdict.replace(" at this budget", "")]
    assert plot_differences(differences, family, ylabel="gain of A").axes[0].get_ylabel() == "gain of A"
    with pytest.raises(ValueError, match="judgement for every comparison"):
        plot_differences(differences, {"skips": family["skips"]})
