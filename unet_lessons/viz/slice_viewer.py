"""An interactive viewer for 3D volumes, their labels and predictions, with a static fallback.

Every frame is composed as a numpy RGB array (grey image, class colours, outlines, error
colours) and shown as PNG bytes in an ``ipywidgets.Image``. Nothing here uses ``pyplot``:
widget callbacks run on a separate kernel thread in JupyterLab, where pyplot's global state
is not thread-safe and showed blank frames. The same :meth:`SliceViewer.render` that feeds
the widget is public, so tests can reproduce any frame pixel for pixel.

Without a live kernel (nbval, an HTML export, GitHub) the viewer shows a static montage of
evenly spaced slices instead, through its rich display. Built in ``notebooks/03_unet3d.ipynb``.

Volumes with NaN or inf: a channel without a single finite voxel, or a label or prediction
holding any, is refused with a ``ValueError`` that says where such values come from and what to
do. A channel with some is shown: its grey window comes from the finite voxels, the others are
painted in :data:`MISSING_COLOUR` (named in the montage legend and the readout), and a
:class:`NonFiniteVoxelsWarning` says how many there are, since NaN outside the body is common in
preprocessed scans but NaN inside it means a broken resampling or normalisation.
"""

from __future__ import annotations

import base64
import io
from typing import Mapping, Optional, Sequence, Union

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..utils import package_warning

__all__ = ["SliceViewer", "CLASS_COLOURS", "ERROR_COLOURS", "MISSING_COLOUR", "NonFiniteVoxelsWarning"]

ArrayLike = Union[np.ndarray, torch.Tensor]
AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
#: Colours of classes 1, 2, ... (class 0, the background, is never coloured). None is magenta or
#: cyan, which mark errors.
CLASS_COLOURS = np.array([(255, 196, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
                          (145, 30, 180), (128, 128, 0), (170, 110, 40)], dtype=np.float32)
#: False positives (predicted foreground of the wrong class) and false negatives (missed foreground):
#: magenta and cyan, as in lesson 02's error maps. They stay apart for the common colour-vision
#: deficiencies (red-green confusion leaves magenta and cyan distinct) and from the class colours.
ERROR_COLOURS = {"false positive": np.array((255, 0, 255), np.float32),
                 "false negative": np.array((0, 255, 255), np.float32)}
#: Voxels of the image without a value (NaN or inf): pure blue, which no grey level, class or error colour is near.
MISSING_COLOUR = np.array((0, 0, 255), np.float32)
_SEPARATOR = 4  # pixels of white between panels
#: The static montage (what an HTML export, GitHub or a printout shows) stays within this height.
MONTAGE_MAX_HEIGHT = 900


class NonFiniteVoxelsWarning(RuntimeWarning):
    """The image holds some NaN or inf voxels; the viewer draws them in :data:`MISSING_COLOUR`."""


def _as_numpy(array: ArrayLike) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def _non_finite(values: np.ndarray) -> tuple[int, int]:
    """(NaN or inf values, of which NaN); (0, 0) for integer and bool arrays."""
    if not np.issubdtype(values.dtype, np.floating):
        return 0, 0
    finite = np.isfinite(values)
    return int(values.size - np.count_nonzero(finite)), int(np.count_nonzero(np.isnan(values)))


def _still_font(size: int):
    """DejaVu Sans, which matplotlib ships: PIL's default font has no "×" or "³", which headings use."""
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _wrap(text: str, font, draw, limit: Optional[float] = None) -> list[str]:
    """``text`` in lines no wider than ``limit`` pixels (one line when ``limit`` is None), broken at " · ", then
    at spaces; a single word wider than the limit keeps its own line."""
    if limit is None or draw.textlength(text, font=font) <= limit:
        return [text]
    lines: list[str] = []
    for part in text.split(" · "):
        candidate = f"{lines[-1]} · {part}" if lines else part
        if lines and draw.textlength(candidate, font=font) <= limit:
            lines[-1] = candidate
            continue
        current = ""
        for word in part.split(" "):
            trial = f"{current} {word}" if current else word
            if current and draw.textlength(trial, font=font) > limit:
                lines.append(current)
                current = word
            else:
                current = trial
        lines.append(current)
    return lines


def _widget_bundle(widget: widgets.Widget, **kwargs) -> dict:
    """The widget's display data. ipywidgets 8 returns it from ``_repr_mimebundle_``; ipywidgets 7 (what
    Google Colab ships) has no such method and displays it from ``_ipython_display_`` instead, so for 7 the
    same view reference is built here (``make test-floor`` runs the viewer's tests on 7)."""
    if hasattr(widget, "_repr_mimebundle_"):
        return widget._repr_mimebundle_(**kwargs) or {}
    widget._handle_displayed()  # what 7's _ipython_display_ does after displaying: fires on_displayed callbacks
    return {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                           "model_id": widget.model_id}}


class SliceViewer:
    """Slice through a volume, its label and one or more predictions.

    Controls: the axis (axial slices along D, coronal along H, sagittal along W), a slice
    slider (click it, then move with the arrow keys), the channel, the overlay (none,
    outline or fill), its opacity, and an error map that colours each prediction's false
    positives and false negatives against the label. Panels side by side: the label, then
    every prediction.

    Args:
        image: (D, H, W) or (C, D, H, W) volume.
        label: optional (D, H, W) class map.
        prediction: optional (D, H, W) class map, shown as "prediction".
        predictions: optional ``{name: (D, H, W) class map}`` to compare side by side.
        class_names: names of the classes, for the readout.
        region_names: give these instead of class maps to view region maps: then ``label`` and
            every prediction are (R, D, H, W) binary, one channel per (possibly overlapping)
            region, e.g. BraTS' nested whole tumour, tumour core and enhancing tumour, and each
            region is drawn as its own outline (nested regions give nested outlines).
        channel_names: names of the channels (e.g. MRI modalities).
        spacing: voxel size along (D, H, W); slices are stretched to the right aspect.
        title: shown above the controls.
        display_size: about how many screen pixels the longer side of a panel gets.
        channel: the channel shown first, in the widget and in the static montage (e.g. the
            modality where the structure of interest shows best).

    Example:
        >>> SliceViewer(image, label=label, predictions={"3D": p3d, "2D": p2d}, class_names=names)
    """

    def __init__(self, image: ArrayLike, label: Optional[ArrayLike] = None, prediction: Optional[ArrayLike] = None,
                 *, predictions: Optional[Mapping[str, ArrayLike]] = None, class_names: Optional[Sequence[str]] = None,
                 channel_names: Optional[Sequence[str]] = None, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 title: Optional[str] = None, display_size: int = 256,
                 region_names: Optional[Sequence[str]] = None, channel: int = 0) -> None:
        volume = _as_numpy(image).astype(np.float32)
        if volume.ndim == 3:
            volume = volume[None]
        if volume.ndim != 4:
            raise ValueError(f"image must be a (D, H, W) or (C, D, H, W) volume; got shape {volume.shape}. "
                             "For a 2D image use show_segmentation; for a batch, pick one volume, e.g. image[0].")
        self.image, self.shape = volume, volume.shape[1:]
        self.missing = self._check_finite(volume, channel_names)  # NaN or inf voxels per channel
        self.region_names = list(region_names) if region_names is not None else None
        self.label = None if label is None else self._class_map(label, "label")
        maps = dict(predictions or {})
        if prediction is not None:
            maps = {"prediction": prediction, **maps}
        self.predictions = {str(name): self._class_map(p, f"prediction {name!r}") for name, p in maps.items()}
        if channel_names is not None and len(channel_names) != len(volume):
            raise ValueError(f"channel_names has {len(channel_names)} names but the image has {len(volume)} "
                             "channels; give one name per channel.")
        self.channel_names = list(channel_names) if channel_names else [f"channel {c}" for c in range(len(volume))]
        self.class_names = list(class_names) if class_names else None
        self.spacing = tuple(float(s) for s in spacing)
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be three positive voxel sizes (D, H, W); got {spacing!r}.")
        self.title, self.display_size = title, display_size
        if not 0 <= channel < len(volume):
            raise ValueError(f"channel {channel} does not exist; the image has channels 0..{len(volume) - 1}.")
        self.channel = int(channel)
        # A fixed grey window per channel, from the whole volume (its finite voxels), so that slices are comparable.
        self.windows = [tuple(np.percentile(channel if not missing else channel[np.isfinite(channel)], (1, 99)))
                        for channel, missing in zip(volume, self.missing)]
        self._widget: Optional[widgets.Widget] = None

    @staticmethod
    def _check_finite(volume: np.ndarray, channel_names: Optional[Sequence[str]]) -> list[int]:
        """Refuse a channel without a finite voxel; warn about some; return the NaN or inf count per channel."""
        missing = []
        for c, channel in enumerate(volume):
            bad, nan = _non_finite(channel)
            named = f"image channel {c}" + (f" ({channel_names[c]})" if c < len(channel_names or ()) else "")
            if bad == channel.size:
                raise ValueError(
                    f"{named} holds no finite value: all {bad} voxels are NaN or inf ({nan} NaN), so there is "
                    "nothing to draw. A whole volume of NaN usually comes from dividing by a zero standard deviation "
                    "(an empty or constant scan) or from a failed load or resampling: check the volume before "
                    "viewing it (np.isfinite(image).all()), or leave that channel out.")
            if bad:
                package_warning(
                    f"{named} holds {bad} NaN or inf voxels of {channel.size} ({bad / channel.size:.1%}); they are "
                    "drawn in blue, and the grey window comes from the finite voxels. If they are background "
                    "outside the body, replace them (np.nan_to_num(image, nan=0.0)); if they lie inside it, the "
                    "resampling or the normalisation went wrong.", NonFiniteVoxelsWarning,
                    source="unet_lessons.viz.slice_viewer")
            missing.append(bad)
        return missing

    def _class_map(self, array: ArrayLike, name: str) -> np.ndarray:
        """A class map (D, H, W) int64, or with ``region_names`` a region map (R, D, H, W) bool."""
        values = _as_numpy(array)
        bad, nan = _non_finite(values)
        if bad:
            everywhere = "every one of its" if bad == values.size else f"{bad} of its"
            raise ValueError(
                f"{name} holds NaN or inf in {everywhere} {values.size} voxels ({nan} NaN); a class or region map "
                "needs a class at every voxel. If NaN marks unlabelled voxels, map them to the background first "
                "(np.nan_to_num(label, nan=0)); if it is a network's output, compute it from finite logits "
                "(argmax over the channels, or logits > 0 for regions).")
        if self.region_names is not None:
            expected = (len(self.region_names), *self.shape)
            if values.shape != expected:
                raise ValueError(f"{name} has shape {values.shape}; with region_names the viewer expects one binary "
                                 f"channel per region, {expected}.")
            if values.dtype != bool and not np.isin(values, (0, 1)).all():
                raise ValueError(f"{name} must be binary regions; threshold probabilities first (e.g. logits > 0).")
            return values.astype(bool)
        if values.ndim == 4 and values.shape[0] == 1:
            values = values[0]
        if values.shape != tuple(self.shape):
            hint = (" For region maps (R, D, H, W) pass region_names=[...]." if values.ndim == 4 else "")
            raise ValueError(f"{name} has shape {values.shape}, but the image volume is {tuple(self.shape)}; "
                             "pass a class map (D, H, W) of the same size (argmax the logits over channels first)."
                             + hint)
        if np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values)):
            raise ValueError(f"{name} holds fractional values; pass integer class indices (e.g. logits.argmax(0)).")
        if values.min() < 0:
            raise ValueError(f"{name} holds negative values; pass class indices 0..K-1 (map unlabelled voxels to 0).")
        return values.astype(np.int64)

    def _masks(self, volume: np.ndarray, index: int, axis: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mask, colour) per class present in the slice (class maps) or per region (region maps)."""
        if self.region_names is not None:
            cut = np.take(volume, index, axis=axis + 1)  # (R, h, w)
            return [(cut[r], CLASS_COLOURS[r % len(CLASS_COLOURS)]) for r in range(len(cut))]
        classes = np.take(volume, index, axis=axis)
        return [(classes == c, CLASS_COLOURS[(c - 1) % len(CLASS_COLOURS)]) for c in np.unique(classes) if c > 0]

    @staticmethod
    def _foreground(volume: np.ndarray, index: int, axis: int, regions: bool) -> np.ndarray:
        return np.take(volume, index, axis=axis + 1) if regions else np.take(volume, index, axis=axis)

    # ----- rendering ----------------------------------------------------------------------
    def _panels(self) -> list[tuple[str, Optional[np.ndarray]]]:
        panels: list[tuple[str, Optional[np.ndarray]]] = []
        if self.label is not None:
            panels.append(("label", self.label))
        panels += list(self.predictions.items())
        return panels or [("image", None)]

    def _scale(self, axis: int) -> tuple[int, int]:
        """Integer row and column repeats: the aspect of the voxels, then a zoom to the display size."""
        rows_axis, cols_axis = [a for a in range(3) if a != axis]
        ratio = self.spacing[rows_axis] / self.spacing[cols_axis]
        rows, cols = (max(1, round(ratio)), 1) if ratio >= 1 else (1, max(1, round(1 / ratio)))
        longest = max(self.shape[rows_axis] * rows, self.shape[cols_axis] * cols)
        zoom = max(1, self.display_size // longest)
        return rows * zoom, cols * zoom

    def render(self, axis: str = "axial", index: Optional[int] = None, channel: int = 0, overlay: str = "outline",
               opacity: float = 0.5, error_map: bool = False) -> np.ndarray:
        """The frame for these control values: panels side by side, (H, W, 3) uint8.

        Args:
            axis: ``"axial"`` (along D), ``"coronal"`` (along H) or ``"sagittal"`` (along W).
            index: slice index along the axis; the middle slice by default.
            channel: image channel shown in grey.
            overlay: ``"none"``, ``"outline"`` or ``"fill"``.
            opacity: 0 (invisible) to 1 (opaque) for the overlay.
            error_map: colour each prediction's errors against the label instead of its classes;
                ``"both"``: fill the errors and draw the class outlines over them (the static montage).
        """
        if axis not in AXES:
            raise ValueError(f"axis must be one of {list(AXES)}; got {axis!r}.")
        if overlay not in ("none", "outline", "fill"):
            raise ValueError(f"overlay must be 'none', 'outline' or 'fill'; got {overlay!r}.")
        a = AXES[axis]
        index = self.shape[a] // 2 if index is None else int(index)
        if not 0 <= index < self.shape[a]:
            raise ValueError(f"slice index {index} is outside 0..{self.shape[a] - 1} for the {axis} axis.")
        rows, cols = self._scale(a)
        enlarge = lambda s: np.repeat(np.repeat(s, rows, axis=0), cols, axis=1)  # noqa: E731
        low, high = self.windows[channel]
        cut = np.take(self.image[channel], index, axis=a)
        missing = ~np.isfinite(cut) if self.missing[channel] else None
        if missing is not None:
            cut = np.where(missing, low, cut)
        grey = np.clip((cut - low) / max(high - low, 1e-6), 0, 1)
        grey = np.repeat(enlarge(grey)[..., None] * 255.0, 3, axis=2)  # (h, w, 3)
        if missing is not None:
            grey[enlarge(missing)] = MISSING_COLOUR
        regions = self.region_names is not None
        label_slice = None if self.label is None else self._foreground(self.label, index, a, regions)
        frames = []
        for name, volume in self._panels():
            frame = grey.copy()
            if volume is not None and overlay != "none":
                layers = []
                if error_map and label_slice is not None and name != "label":
                    found = self._foreground(volume, index, a, regions)
                    if regions:  # a voxel is wrong when any region is: predicted and absent, or present and missed
                        masks = {"false positive": (found & ~label_slice).any(0),
                                 "false negative": (label_slice & ~found).any(0)}
                    else:
                        masks = {"false positive": (found > 0) & (found != label_slice),
                                 "false negative": (label_slice > 0) & (found == 0)}
                    layers += [(enlarge(mask), ERROR_COLOURS[kind], "fill" if error_map == "both" else overlay)
                               for kind, mask in masks.items()]
                if not error_map or error_map == "both" or name == "label" or label_slice is None:
                    masks = self._masks(volume, index, a)
                    # Nested regions share borders (the tumour core's edge is the enhancing rim's outer edge):
                    # every region but the last is outlined just outside itself, the last just inside, so that
                    # each outline shows.
                    sides = (["outside"] * (len(masks) - 1) + ["outline"]) if regions and overlay == "outline" \
                        else [overlay] * len(masks)
                    layers += [(enlarge(mask), colour, side) for (mask, colour), side in zip(masks, sides)]
                for mask, colour, style in layers:
                    if style == "outline":  # two pixels wide, so that it shows at any zoom
                        mask = mask & ~self._interior(self._interior(mask))
                    elif style == "outside":  # the two pixels around the mask
                        mask = ~mask & ~self._interior(self._interior(~mask))
                    alpha = 0.55 if style == "fill" and error_map == "both" else opacity
                    frame[mask] = (1 - alpha) * frame[mask] + alpha * colour
            frames.append(frame)
        separator = np.full((grey.shape[0], _SEPARATOR, 3), 255.0)
        joined = [part for frame in frames for part in (frame, separator)][:-1]
        return np.concatenate(joined, axis=1).round().astype(np.uint8)

    @staticmethod
    def _interior(mask: np.ndarray) -> np.ndarray:
        """Pixels of ``mask`` whose four neighbours are all in ``mask``; the rest is the outline."""
        padded = np.pad(mask, 1, mode="edge")
        return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]

    def frame_png(self, **state) -> bytes:
        """:meth:`render` encoded as PNG."""
        buffer = io.BytesIO()
        Image.fromarray(self.render(**state)).save(buffer, format="PNG")
        return buffer.getvalue()

    def readout(self, axis: str = "axial", index: Optional[int] = None, channel: int = 0, **_) -> str:
        """One line describing the frame: the slice, the channel, the panels and what the slice holds."""
        a = AXES[axis]
        index = self.shape[a] // 2 if index is None else int(index)
        parts = [f"{axis} {index}/{self.shape[a] - 1}", self.channel_names[channel]]
        if self.missing[channel]:
            missing = int(np.count_nonzero(~np.isfinite(np.take(self.image[channel], index, axis=a))))
            parts.append(f"no value (NaN or inf, blue): {missing} vx")
        for name, volume in self._panels():
            if volume is None:
                continue
            if self.region_names is not None:
                counts = np.take(volume, index, axis=a + 1).reshape(len(volume), -1).sum(1)
                held = [f"{region} {n}" for region, n in zip(self.region_names, counts) if n > 0]
            else:
                counts = np.bincount(np.take(volume, index, axis=a).ravel())
                names = self.class_names or [f"class {c}" for c in range(len(counts))]
                held = [f"{names[c] if c < len(names) else c} {n}" for c, n in enumerate(counts) if c > 0 and n > 0]
            parts.append(f"{name}: " + (", ".join(held) + " vx" if held else "background only"))
        return " · ".join(parts)

    def montage(self, count: int = 4, *, max_height: int = MONTAGE_MAX_HEIGHT, **state) -> np.ndarray:
        """The static view: ``count`` evenly spaced slices, one row each, labelled, within ``max_height`` px.

        A header names each panel, each row gives its axis and slice index, and a legend at the
        bottom names the outline colours (classes or regions) and, when a label and predictions
        are shown, the false positives and negatives filled in on each prediction.
        """
        axis = state.pop("axis", "axial")
        state.pop("index", None)
        state.setdefault("channel", self.channel)
        errors = self.label is not None and bool(self.predictions)
        state.setdefault("error_map", "both" if errors else False)
        font = _still_font(13)
        line, margin, gap = 20, 76, 8                    # a text line; room for the row labels; above the legend
        heading = " · ".join(part for part in (self.title, f"channel: {self.channel_names[state['channel']]}"
                                                                if len(self.image) > 1 else None) if part)
        draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        # The heading is drawn whole: the canvas widens for it up to twice the panels' width, and beyond that
        # it breaks at its " · " separators (or words), so that no title is cut at the edge.
        heading_lines = _wrap(heading, font, draw) if heading else []
        top = line * (len(heading_lines) + 1)            # the title lines and the panel names
        items = self._legend(errors, missing=bool(self.missing[state["channel"]]))
        indices = self._montage_slices(AXES[axis], count)
        room = max_height - top - gap - 2 * line - (count - 1) * _SEPARATOR  # assume two legend lines
        saved_size, self.display_size = self.display_size, max(1, min(self.display_size, room // count))
        try:
            rows = [self.render(axis=axis, index=int(i), **state) for i in indices]
        finally:
            self.display_size = saved_size
        widths = [draw.textlength(text, font=font) + 30 for text, _, _ in items]

        def legend_rows(width: int) -> list[list[int]]:
            lines: list[list[int]] = [[]]
            used = 0.0
            for i, w in enumerate(widths):
                if lines[-1] and used + w > width - 8:
                    lines.append([])
                    used = 0.0
                lines[-1].append(i)
                used += w
            return lines

        def total_height(row_height: int, width: int) -> int:
            return top + count * row_height + (count - 1) * _SEPARATOR + gap + line * len(legend_rows(width))

        heading_width = max((draw.textlength(text, font=font) for text in heading_lines), default=0.0)
        width = max(margin + rows[0].shape[1], 360)
        if heading_width + 8 > width - margin:           # too wide beside the row labels: start at the left edge
            heading_lines = _wrap(heading, font, draw, limit=max(width, 2 * rows[0].shape[1]) - 8)
            heading_width = max(draw.textlength(text, font=font) for text in heading_lines)
            top = line * (len(heading_lines) + 1)
            width = max(width, int(heading_width) + 12)
        heading_x = margin if heading_width + 8 <= width - margin else 4
        if total_height(rows[0].shape[0], width) > max_height:  # even one voxel per pixel is too tall: shrink
            spare = max_height - total_height(0, width)
            scale = spare / (count * rows[0].shape[0])
            size = (max(1, int(rows[0].shape[1] * scale)), max(1, int(rows[0].shape[0] * scale)))
            rows = [np.asarray(Image.fromarray(r).resize(size, Image.NEAREST)) for r in rows]
            width = max(margin + rows[0].shape[1], 360, int(heading_width) + 12)
        height = rows[0].shape[0]
        canvas = Image.new("RGB", (width, total_height(height, width)), "white")
        draw = ImageDraw.Draw(canvas)
        for n, text in enumerate(heading_lines):
            draw.text((heading_x, 2 + n * line), text, fill="black", font=font)
        panels = self._panels()
        panel_width = (rows[0].shape[1] - _SEPARATOR * (len(panels) - 1)) / len(panels)
        for p, (name, _) in enumerate(panels):
            centre = margin + p * (panel_width + _SEPARATOR) + panel_width / 2
            draw.text((centre, top - 3), name, fill="black", font=font, anchor="md")
        for r, (index, row) in enumerate(zip(indices, rows)):
            y = top + r * (height + _SEPARATOR)
            canvas.paste(Image.fromarray(row), (margin, y))
            draw.text((margin - 6, y + height // 2), f"{axis} {index}", fill="black", font=font, anchor="rm")
        y = top + count * height + (count - 1) * _SEPARATOR + gap
        for members in legend_rows(width):
            x = 4.0
            for i in members:
                text, colour, filled = items[i]
                rgb = tuple(int(c) for c in colour)
                draw.rectangle((x, y + 3, x + 14, y + 15), fill=rgb if filled else None, outline=rgb,
                               width=1 if filled else 3)
                draw.text((x + 20, y + 9), text, fill="black", font=font, anchor="lm")
                x += widths[i]
            y += line
        return np.asarray(canvas)

    def _montage_slices(self, axis: int, count: int) -> np.ndarray:
        """``count`` evenly spaced slice indices: through the labelled part when there is a label, else the volume."""
        first, last = 0, self.shape[axis] - 1
        if self.label is not None:
            labelled = self.label.any(0) if self.region_names is not None else self.label > 0
            hit = np.nonzero(labelled.any(axis=tuple(a for a in range(3) if a != axis)))[0]
            if len(hit):
                first, last = int(hit[0]), int(hit[-1])
                return np.linspace(first, last, count + 2).round().astype(int)[1:-1] if last - first >= count + 1 \
                    else np.linspace(first, last, count).round().astype(int)
        return np.linspace(first, last, count + 2).round().astype(int)[1:-1]

    def _legend(self, errors: bool, missing: bool = False) -> list[tuple[str, np.ndarray, bool]]:
        """(text, colour, filled) for every outline colour the montage can show, then the error colours, then the
        colour of voxels without a value when the channel shown has any."""
        if self.region_names is not None:
            items = [(f"{name} (outline)", CLASS_COLOURS[r % len(CLASS_COLOURS)], False)
                     for r, name in enumerate(self.region_names)]
        else:
            maps = [m for _, m in self._panels() if m is not None]
            present = sorted({int(c) for m in maps for c in np.unique(m) if c > 0})
            names = self.class_names or []
            items = [(f"{names[c] if c < len(names) else f'class {c}'} (outline)",
                      CLASS_COLOURS[(c - 1) % len(CLASS_COLOURS)], False) for c in present]
        if errors:
            items += [(f"{kind} (fill)", colour, True) for kind, colour in ERROR_COLOURS.items()]
        if missing:
            items.append(("no value: NaN or inf (fill)", MISSING_COLOUR, True))
        return items

    # ----- the widget -------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The current control values, as keyword arguments of :meth:`render`."""
        c = self.controls
        return dict(axis=c["axis"].value, index=c["slice"].value, channel=c["channel"].index,
                    overlay=c["overlay"].value, opacity=c["opacity"].value, error_map=c["error_map"].value)

    @property
    def widget(self) -> widgets.Widget:
        """The ipywidgets root, built on first use."""
        if self._widget is None:
            self._build()
        return self._widget

    def _build(self) -> None:
        middle = self.shape[0] // 2
        self.controls = {
            "axis": widgets.ToggleButtons(options=list(AXES), value="axial", description="axis"),
            "slice": widgets.IntSlider(value=middle, min=0, max=self.shape[0] - 1, description="slice",
                                       continuous_update=True),
            "channel": widgets.Dropdown(options=self.channel_names, value=self.channel_names[self.channel],
                                        description="channel"),
            "overlay": widgets.ToggleButtons(options=["none", "outline", "fill"], value="outline", description="overlay"),
            "opacity": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity"),
            "error_map": widgets.Checkbox(value=False, description="error map (FP magenta, FN cyan)",
                                          disabled=self.label is None or not self.predictions),
        }
        # A VBox stretches its children to its width, which blew a 256-pixel frame up to the width of
        # the notebook (about 4x, resampled); flex-start keeps display_size, max_width still fits narrow screens.
        self.image_widget = widgets.Image(format="png", value=b"",
                                          layout=widgets.Layout(align_self="flex-start", max_width="100%"))
        self.readout_widget = widgets.Label(value="")
        captions = " | ".join(name for name, _ in self._panels())
        header = [widgets.HTML(f"<b>{self.title}</b>")] if self.title else []
        self._widget = widgets.VBox(header + [
            widgets.HBox([self.controls["axis"], self.controls["channel"]]),
            widgets.HBox([self.controls["slice"], self.controls["opacity"]]),
            widgets.HBox([self.controls["overlay"], self.controls["error_map"]]),
            widgets.Label(value=f"panels: {captions}"), self.image_widget, self.readout_widget])
        self.controls["axis"].observe(self._on_axis, names="value")
        for name in ("slice", "channel", "overlay", "opacity", "error_map"):
            self.controls[name].observe(lambda change: self._redraw(), names="value")
        self._redraw()

    def _on_axis(self, change) -> None:
        length = self.shape[AXES[change["new"]]]
        slider = self.controls["slice"]
        with slider.hold_trait_notifications():
            slider.max = length - 1
            slider.value = length // 2
        self._redraw()

    def _redraw(self) -> None:
        state = self.state
        self.image_widget.value = self.frame_png(**state)
        self.readout_widget.value = self.readout(**state)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = _widget_bundle(self.widget, include=include, exclude=exclude)
        buffer = io.BytesIO()
        Image.fromarray(self.montage(overlay="outline", opacity=0.8)).save(buffer, format="PNG")
        bundle["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
        panels = ", ".join(name for name, _ in self._panels())
        bundle["text/plain"] = (f"SliceViewer({'×'.join(map(str, self.shape))} voxels, {len(self.image)} channel(s), "
                                f"panels: {panels})")
        return bundle
