import base64
import io

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from unet_lessons.viz import SliceViewer
from unet_lessons.viz.slice_viewer import CLASS_COLOURS, ERROR_COLOURS


def _volume():
    rng = np.random.default_rng(0)
    image = rng.random((2, 10, 12, 14), dtype=np.float32)
    label = np.zeros((10, 12, 14), dtype=np.int64)
    label[4:7, 3:9, 5:11] = 1
    return image, label


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_slider_changes_the_drawn_slice_and_the_widget_shows_render():
    image, label = _volume()
    viewer = SliceViewer(image, label=label, display_size=28)
    before = viewer.image_widget.value if viewer.widget else None
    np.testing.assert_array_equal(_decode(before), viewer.render(**viewer.state))
    viewer.controls["slice"].value = 2
    after = viewer.image_widget.value
    assert after != before and viewer.state["index"] == 2
    np.testing.assert_array_equal(_decode(after), viewer.render(axis="axial", index=2))
    assert viewer.readout_widget.value == viewer.readout(**viewer.state)
    viewer.controls["axis"].value = "sagittal"
    assert viewer.controls["slice"].max == 13 and viewer.state["index"] == 7
    viewer.controls["channel"].value = "channel 1"
    np.testing.assert_array_equal(_decode(viewer.image_widget.value), viewer.render(axis="sagittal", index=7, channel=1))


def test_fill_marks_exactly_the_labelled_voxels():
    image, label = _volume()
    viewer = SliceViewer(image, label=label, display_size=28)  # 14 voxels wide -> zoom 2
    plain = viewer.render(index=5, overlay="none")
    filled = viewer.render(index=5, overlay="fill", opacity=1.0)
    coloured = (filled != plain).any(axis=2)
    expected = np.zeros((12, 14), bool)
    expected[3:9, 5:11] = True
    np.testing.assert_array_equal(coloured, np.kron(expected, np.ones((2, 2), bool)))
    assert (filled[coloured] == CLASS_COLOURS[0]).all()
    np.testing.assert_array_equal(viewer.render(index=5, overlay="fill", opacity=0.0), plain)
    outline = (viewer.render(index=5, overlay="outline", opacity=1.0) != plain).any(axis=2)
    assert outline.sum() < coloured.sum() and not outline[8:16, 12:20].any()  # the inside is left clear


def test_error_map_colours_false_positives_and_false_negatives():
    image, label = _volume()
    prediction = label.copy()
    prediction[4:7, 3:9, 5:8] = 0  # missed: false negatives
    prediction[4:7, 0:2, 0:2] = 1  # extra: false positives
    viewer = SliceViewer(image, label=label, prediction=prediction, display_size=14)
    frame = viewer.render(index=5, overlay="fill", opacity=1.0, error_map=True)
    width = 14
    panel = frame[:, width + 4:]  # the prediction panel, after the label panel and a separator
    assert (panel[0:2, 0:2] == ERROR_COLOURS["false positive"]).all()
    assert (panel[3:9, 5:8] == ERROR_COLOURS["false negative"]).all()
    assert not (panel[3:9, 8:11] == ERROR_COLOURS["false negative"]).all(axis=2).any()  # correct voxels


def test_anisotropic_spacing_stretches_the_slice():
    image, label = _volume()
    flat = SliceViewer(image, display_size=14).render(axis="coronal", index=6)
    thick = SliceViewer(image, spacing=(3.0, 1.0, 1.0), display_size=14).render(axis="coronal", index=6)
    assert flat.shape[:2] == (10, 14) and thick.shape[:2] == (30, 14)


def test_two_predictions_side_by_side_and_the_static_fallback():
    image, label = _volume()
    viewer = SliceViewer(image, label=label, predictions={"a": label, "b": np.zeros_like(label)}, display_size=14)
    assert viewer.render().shape == (12, 3 * 14 + 2 * 4, 3)
    bundle = viewer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == viewer.widget.model_id
    montage = _decode(base64.b64decode(bundle["image/png"]))
    assert montage.shape[1] >= 76 + 3 * 14 + 2 * 4 and 12 * 4 < montage.shape[0] <= 900
    assert bundle["text/plain"] == "SliceViewer(10×12×14 voxels, 2 channel(s), panels: label, a, b)"


def test_montage_fits_900_px_and_labels_itself():
    image = np.random.default_rng(0).random((64, 200, 200)).astype(np.float32)
    label = np.zeros((64, 200, 200), int)
    label[20:40, 50:150, 50:150] = 1
    viewer = SliceViewer(image, label=label, prediction=np.zeros_like(label), class_names=["background", "organ"],
                         display_size=256, title="a title")
    montage = viewer.montage()
    assert montage.shape[0] <= 900 and montage.shape[1] > 2 * 200 * 0.5
    items = [text for text, _, _ in viewer._legend(errors=True)]
    assert items == ["organ (outline)", "false positive (fill)", "false negative (fill)"]
    # The row labels and header are drawn: the margin and the top band hold dark text pixels.
    assert (montage[:, :70] < 100).any() and (montage[:20] < 100).any()
    # The empty prediction misses the organ: filled in cyan (G and B 140 above R after blending with grey).
    rgb = montage.astype(int)
    cyan = (rgb[..., 1] - rgb[..., 0] > 120) & (np.abs(rgb[..., 1] - rgb[..., 2]) < 3)
    assert cyan.sum() > 1000
    assert not cyan[:, : 76 + 100].any()  # never in the label panel (nor the margin)


def test_montage_rows_go_through_the_label_and_show_the_chosen_channel():
    image = np.random.default_rng(0).random((2, 40, 16, 16)).astype(np.float32)
    label = np.zeros((40, 16, 16), int)
    label[30:38, 4:12, 4:12] = 1
    viewer = SliceViewer(image, label=label, channel=1, channel_names=["T1", "FLAIR"])
    assert list(viewer._montage_slices(0, 4)) == [31, 33, 34, 36]
    assert viewer.widget is not None and viewer.controls["channel"].value == "FLAIR"
    assert viewer.state["channel"] == 1
    with pytest.raises(ValueError, match="channel 2 does not exist"):
        SliceViewer(image, channel=2)
    no_label = SliceViewer(image)
    assert list(no_label._montage_slices(0, 4)) == [8, 16, 23, 31]


def test_error_colours_are_apart_from_every_class_colour():
    for error in ERROR_COLOURS.values():
        assert np.abs(CLASS_COLOURS - error).sum(1).min() > 150


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=np.zeros((4, 4))), "volume"),
    (dict(label=np.zeros((3, 3, 3), int)), "same size"),
    (dict(label=-np.ones((10, 12, 14), int)), "negative"),
    (dict(prediction=np.full((10, 12, 14), 0.5)), "fractional"),
    (dict(channel_names=["T1"]), "one name per channel"),
])
def test_bad_input_says_what_to_pass(kwargs, message):
    image, _ = _volume()
    kwargs = {"image": image, **kwargs}
    with pytest.raises(ValueError, match=message):
        SliceViewer(**kwargs)


def test_html_export_shows_the_static_montage(tmp_path):
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        "import numpy as np\nfrom unet_lessons.viz import SliceViewer\n"
        "SliceViewer(np.random.default_rng(0).random((8, 16, 16)), label=np.ones((8, 16, 16), int))")]
    ExecutePreprocessor(timeout=120, kernel_name="python3").preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert "data:image/png;base64" in html
    assert "panels: label" in html or "SliceViewer(8×16×16" in html


def test_the_frame_keeps_its_size_instead_of_stretching_to_the_notebook():
    # A VBox stretches its children to its width; in JupyterLab that blew a 256-pixel frame up about 4x
    # (tests/browser compares the painted pixels with render()).
    image, label = _volume()
    viewer = SliceViewer(image, label=label, display_size=28)
    layout = viewer.widget.children[-2].layout
    assert viewer.widget.children[-2] is viewer.image_widget
    assert layout.align_self == "flex-start" and layout.max_width == "100%"


# ----- region maps (BraTS' nested regions) ----------------------------------------------------

def _brats_case():
    from unet_lessons.data import make_brats_volume
    from unet_lessons.targets import labels_to_regions

    image, label = make_brats_volume(24, seed=2)
    regions = labels_to_regions(torch.from_numpy(label)[None])[0].numpy().astype(bool)  # (3, D, H, W)
    return image, label, regions


def test_region_maps_are_drawn_as_nested_outlines():
    image, label, regions = _brats_case()
    index = int(np.argmax(regions[2].sum((1, 2))))  # the axial slice with the most enhancing tumour
    viewer = SliceViewer(image, label=regions, region_names=["whole tumour", "tumour core", "enhancing tumour"],
                         display_size=24)
    frame = viewer.render(index=index, overlay="outline", opacity=1.0).astype(int)
    for r in range(3):  # every region's outline shows: the outer two just outside themselves, the last inside
        colour = CLASS_COLOURS[r].astype(int)
        drawn = (frame == colour).all(-1)
        assert drawn.any(), r
        assert regions[r, index][drawn].all() if r == 2 else not regions[r, index][drawn].any()
    assert "whole tumour" in viewer.readout(index=index) and "enhancing tumour" in viewer.readout(index=index)


def test_region_error_map_marks_a_missed_region():
    image, _, regions = _brats_case()
    missed = regions.copy()
    missed[2] = False  # the enhancing tumour not found
    missed[1] &= regions[1] & ~regions[2]  # the core without it
    viewer = SliceViewer(image, label=regions, predictions={"net": missed}, region_names=["WT", "TC", "ET"],
                         display_size=24)
    index = int(np.argmax(regions[2].sum((1, 2))))
    frame = viewer.render(index=index, error_map=True, opacity=1.0)
    right = frame[:, frame.shape[1] // 2 + 3:]  # the prediction panel
    assert (right == ERROR_COLOURS["false negative"].astype(np.uint8)).all(-1).any()
    assert not (right == ERROR_COLOURS["false positive"].astype(np.uint8)).all(-1).any()


def test_region_maps_need_region_names_and_binary_values():
    image, _, regions = _brats_case()
    with pytest.raises(ValueError, match="region_names"):
        SliceViewer(image, label=regions)
    with pytest.raises(ValueError, match="binary regions"):
        SliceViewer(image, label=regions * 0.5, region_names=["a", "b", "c"])


# ----- NaN and inf ----------------------------------------------------------------------------

@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
def test_a_volume_without_a_finite_voxel_is_refused_with_the_fix(fill):
    with pytest.raises(ValueError) as error:
        SliceViewer(np.full((6, 8, 8), fill, np.float32))
    message = str(error.value)
    assert "image channel 0 holds no finite value: all 384 voxels are NaN or inf" in message
    assert "zero standard deviation" in message and "np.isfinite(image).all()" in message


def test_one_empty_channel_is_named():
    image, _ = _volume()
    image[1] = np.nan
    with pytest.raises(ValueError, match=r"image channel 1 \(FLAIR\) holds no finite value"):
        SliceViewer(image, channel_names=["T1", "FLAIR"])


@pytest.mark.parametrize("where", ["label", "prediction", "predictions"])
@pytest.mark.parametrize("everywhere", [True, False])
def test_a_label_or_prediction_with_nan_is_refused_with_the_fix(where, everywhere):
    image, label = _volume()
    broken = label.astype(np.float32)
    if everywhere:
        broken[:] = np.nan
    else:
        broken[0, 0, :3] = np.nan
    kwargs = {"predictions": {"net": broken}} if where == "predictions" else {where: broken}
    with pytest.raises(ValueError) as error:
        SliceViewer(image, **kwargs)
    message = str(error.value)
    name = {"label": "label", "prediction": "prediction 'prediction'", "predictions": "prediction 'net'"}[where]
    amount = "every one of its 1680" if everywhere else "3 of its 1680"
    assert message.startswith(f"{name} holds NaN or inf in {amount} voxels"), message
    assert "np.nan_to_num(label, nan=0)" in message and "fractional" not in message


def test_a_region_map_with_nan_is_refused_as_nan_not_as_probabilities():
    image, _, regions = _brats_case()
    broken = regions.astype(np.float32)
    broken[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="label holds NaN or inf in 1 of its"):
        SliceViewer(image, label=broken, region_names=["WT", "TC", "ET"])


def test_some_nan_voxels_are_drawn_in_their_own_colour_with_a_warning():
    from unet_lessons.viz.slice_viewer import MISSING_COLOUR, NonFiniteVoxelsWarning

    image, label = _volume()
    image[0, :, :2, :] = np.nan   # background without a value, as some preprocessed scans store it
    image[0, 5, 6, 7] = np.inf
    with pytest.warns(NonFiniteVoxelsWarning, match=r"image channel 0 holds 281 NaN or inf voxels of 1680 \(16.7%\)"):
        viewer = SliceViewer(image, label=label, display_size=14)
    frame = viewer.render(index=5, overlay="none").astype(int)   # zoom 1: one pixel per voxel
    missing = ~np.isfinite(image[0, 5])
    assert (frame[missing] == MISSING_COLOUR).all()
    # The other voxels keep their grey, windowed on the finite voxels only (the whole channel went black before).
    finite = image[0][np.isfinite(image[0])]
    low, high = np.percentile(finite, (1, 99))
    grey = np.round(np.clip((image[0, 5] - low) / (high - low), 0, 1) * 255)
    np.testing.assert_array_equal(frame[~missing], np.repeat(grey[~missing][:, None], 3, axis=1))
    assert "no value (NaN or inf, blue): 29 vx" in viewer.readout(index=5)
    assert viewer._legend(errors=False, missing=True)[-1][0] == "no value: NaN or inf (fill)"
    montage = viewer.montage().astype(int)
    assert (montage == MISSING_COLOUR).all(-1).sum() > 4 * 28  # the slices and the legend's swatch
    # The other channel is whole: nothing changes there.
    assert "no value" not in viewer.readout(index=5, channel=1)


def test_the_missing_colour_is_apart_from_every_grey_class_and_error_colour():
    from unet_lessons.viz.slice_viewer import MISSING_COLOUR

    greys = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
    for colours in (CLASS_COLOURS, np.stack(list(ERROR_COLOURS.values())), greys):
        assert np.abs(colours - MISSING_COLOUR).sum(1).min() > 150


def test_a_long_montage_heading_is_drawn_whole_not_cut_at_the_edge():
    volume = np.random.default_rng(0).normal(size=(4, 16, 16, 16)).astype(np.float32)
    title = "held-out volume 3: the full recipe's prediction, mean Dice 0.87, every region outlined"
    viewer = SliceViewer(volume, title=title, channel_names=["T1", "T1c", "T2", "FLAIR"], channel=3, display_size=64)
    montage = viewer.montage(count=2)
    heading_band = montage[:40]  # two text lines at most, for this title
    dark = (heading_band.min(axis=2) < 100).any(axis=0)
    assert dark.any() and not dark[-4:].any(), "the heading runs into the montage's right edge"
    short = SliceViewer(volume, title="v", channel_names=["T1", "T1c", "T2", "FLAIR"], display_size=64).montage(count=2)
    assert montage.shape[1] > short.shape[1] or montage.shape[0] > short.shape[0]


def test_the_still_font_has_the_signs_that_headings_use():
    from unet_lessons.viz.slice_viewer import _still_font

    font = _still_font(13)
    missing = bytes(font.getmask("\ue000"))  # a private-use character: drawn as the font's missing-glyph box
    for sign in "×³·–":
        assert bytes(font.getmask(sign)) != missing, f"{sign!r} is drawn as a missing glyph"
