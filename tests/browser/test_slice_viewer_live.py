"""Lesson 03's SliceViewer, used as a person would in live JupyterLab: keyboard on the slider, the axis
buttons, the overlay buttons. After each action the frame on screen must be the frame that the
package renders in this process for the same control values, and the readout must agree."""

from __future__ import annotations

import io
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from labdriver import NOTEBOOKS, VIEWER_LESSON

#: Pixels on screen may differ from the package's frame by this much (0-255), anywhere.
TOLERANCE = 2
STABLE_SECONDS = 1.0
SETTLE_TIMEOUT = 60.0


def reference_viewer(notebook_path: Path):
    """The lesson's viewer rebuilt in this process from the cells tagged ``browser-source``.

    The tags mark the setup, data and viewer cells; IPython magics (``%matplotlib``) are dropped.
    """
    notebook = nbformat.read(notebook_path, as_version=4)
    cells = [cell for cell in notebook.cells if "browser-source" in cell.metadata.get("tags", [])]
    viewer_cells = [cell for cell in cells if "browser-viewer" in cell.metadata.get("tags", [])]
    assert cells and len(viewer_cells) == 1, "lesson 03 must tag its viewer cells 'browser-source'/'browser-viewer'"
    namespace: dict = {"__name__": "lesson03_reference"}
    for cell in cells:
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        exec(compile(source, f"<{notebook_path.name} browser-source>", "exec"), namespace)  # noqa: S102
    viewer = namespace["viewer"]
    viewer.widget  # noqa: B018 - builds the controls, so that viewer.state holds the defaults
    return viewer, viewer_cells[0]


class LiveViewer:
    """The viewer's widgets on the page, found by the viewer's title."""

    def __init__(self, notebook_page, title: str) -> None:
        self.notebook_page, self.page = notebook_page, notebook_page.page
        title_node = self.page.locator(".widget-html-content", has_text=title)
        self.root = self.page.locator(".jp-OutputArea-output > .widget-vbox", has=title_node)
        assert self.root.count() == 1, f"expected one viewer titled {title!r} on the page, found {self.root.count()}"
        self.image = self.root.locator("img.widget-image")
        self.slider = self.root.locator(".widget-slider", has=self.page.locator(".widget-label", has_text="slice"))
        self.readout = self.root.locator(":scope > .widget-label").last

    def toggle(self, group: str, value: str):
        box = self.root.locator(".widget-toggle-buttons", has=self.page.locator(".widget-label", has_text=group))
        return box.locator(f'button[data-value="{value}"]')

    def snapshot(self) -> dict:
        """What the viewer shows now: image source, readout, slider value, active buttons."""
        return self.root.evaluate("""root => ({
            src: root.querySelector('img.widget-image').src,
            readout: [...root.querySelectorAll(':scope > .widget-label')].pop().textContent,
            slider: root.querySelector('.widget-slider .widget-readout').textContent.trim(),
            active: [...root.querySelectorAll('.widget-toggle-button.mod-active')].map(b => b.dataset.value),
        })""")

    def wait_stable(self) -> dict:
        """Wait until the kernel is idle and nothing on the viewer has changed for STABLE_SECONDS."""
        deadline, last, since = time.monotonic() + SETTLE_TIMEOUT, None, time.monotonic()
        while True:
            now = self.snapshot()
            idle = self.notebook_page.kernel_status().endswith("| Idle")
            if now != last or not idle:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= STABLE_SECONDS:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"the viewer did not settle within {SETTLE_TIMEOUT:.0f} s; last seen {now}")
            self.page.wait_for_timeout(200)

    def frame_sent(self) -> np.ndarray:
        """The PNG behind the <img>, decoded: what the kernel sent."""
        return np.asarray(Image.open(io.BytesIO(self.notebook_page.image_bytes(self.image))).convert("RGB"))

    def frame_painted(self, path: Path) -> np.ndarray:
        """A screenshot of the <img>: what the browser painted."""
        self.notebook_page.screenshot(self.image, path)
        return np.asarray(Image.open(path).convert("RGB"))


def assert_frame(shown: np.ndarray, expected: np.ndarray, what: str) -> None:
    """``shown`` equals ``expected`` within TOLERANCE. A screenshot of an element placed at a fractional
    coordinate carries one extra row or column of its surroundings; the frame may sit at either end."""
    (h, w), (sh, sw) = expected.shape[:2], shown.shape[:2]
    assert 0 <= sh - h <= 1 and 0 <= sw - w <= 1, f"{what}: shape {shown.shape}, the package renders {expected.shape}"
    crops = [shown[dy:dy + h, dx:dx + w] for dy in range(sh - h + 1) for dx in range(sw - w + 1)]
    difference = min((np.abs(crop.astype(int) - expected.astype(int)) for crop in crops), key=lambda d: d.max())
    assert difference.max() <= TOLERANCE, (
        f"{what}: {(difference > TOLERANCE).any(axis=2).sum()} pixels differ by more than {TOLERANCE} "
        f"(largest {difference.max()}, mean {difference.mean():.2f})")


def slider_keys(key: str, presses: int):
    def act(live: LiveViewer) -> None:
        live.slider.locator(".noUi-handle").click()  # focus the handle, as a person clicks it
        for _ in range(presses):
            live.page.keyboard.press(key)
    return act


def click(group: str, value: str):
    return lambda live: live.toggle(group, value).click()


def test_slice_viewer_follows_keyboard_axis_and_overlay(lesson_runs, artifacts):
    try:
        drive_the_viewer(lesson_runs.run(VIEWER_LESSON), artifacts)
    finally:
        lesson_runs.close(VIEWER_LESSON)


def drive_the_viewer(run, artifacts) -> None:
    viewer, cell = reference_viewer(NOTEBOOKS / VIEWER_LESSON)
    live = LiveViewer(run.page, viewer.title)
    shape = viewer.shape
    state = dict(viewer.state)
    steps = [  # (name, action, how the control values change)
        ("slider-right-x3", slider_keys("ArrowRight", 3), lambda s: {**s, "index": s["index"] + 3}),
        ("slider-left-x1", slider_keys("ArrowLeft", 1), lambda s: {**s, "index": s["index"] - 1}),
        ("axis-coronal", click("axis", "coronal"), lambda s: {**s, "axis": "coronal", "index": shape[1] // 2}),
        ("slider-right-x5", slider_keys("ArrowRight", 5), lambda s: {**s, "index": s["index"] + 5}),
        ("overlay-fill", click("overlay", "fill"), lambda s: {**s, "overlay": "fill"}),
        ("axis-sagittal", click("axis", "sagittal"), lambda s: {**s, "axis": "sagittal", "index": shape[2] // 2}),
        ("overlay-none", click("overlay", "none"), lambda s: {**s, "overlay": "none"}),
    ]
    folder = artifacts / Path(VIEWER_LESSON).stem / "viewer"
    seen = live.wait_stable()
    check(live, viewer, state, seen, folder / "00_initial.png", "initial frame")
    for number, (name, act, change) in enumerate(steps, start=1):
        previous = viewer.render(**state)
        live.notebook_page.screenshot(live.root, folder / f"{number:02d}_{name}_before.png")
        act(live)
        state = change(state)
        seen = live.wait_stable()
        live.notebook_page.screenshot(live.root, folder / f"{number:02d}_{name}_after.png")
        frame = check(live, viewer, state, seen, folder / f"{number:02d}_{name}_frame.png", f"step {number} {name}")
        assert frame.shape != previous.shape or not np.array_equal(frame, previous), f"step {number} {name}: frame unchanged"
    problems = [line for line in run.page.console if line.startswith("pageerror:")
                or (line.startswith("error:") and "widget" in line.lower())]
    assert not problems, "console:\n" + "\n".join(problems)


def check(live: LiveViewer, viewer, state: dict, seen: dict, frame_path: Path, what: str) -> np.ndarray:
    """The readout, the controls and both frames (sent and painted) agree with the package for ``state``."""
    expected = viewer.render(**state)
    assert seen["readout"] == viewer.readout(**state), f"{what}: readout {seen['readout']!r} for {state}"
    assert seen["slider"] == str(state["index"]), f"{what}: slider shows {seen['slider']}, expected {state['index']}"
    assert sorted(seen["active"]) == sorted([state["axis"], state["overlay"]]), f"{what}: active {seen['active']}"
    assert_frame(live.frame_sent(), expected, f"{what}, the PNG on the page")
    assert_frame(live.frame_painted(frame_path), expected, f"{what}, the pixels painted")
    return expected
