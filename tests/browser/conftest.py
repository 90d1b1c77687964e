"""Fixtures of the browser tests: a private JupyterLab, Debian's Chromium and the lessons run live.

These tests run only through ``make test-browser`` (which sets ``UNET_LESSONS_BROWSER_TESTS=1``
and the Makefile's test environment), never in the plain unit run. Without Chromium or
Playwright they are skipped with the command that installs them; on CI (``CI=true``), which
installs both, a missing piece fails instead, so that CI cannot pass without a browser.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from labdriver import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, INSTALL_HINT, NOTEBOOK_TIMEOUT, NOTEBOOKS, VIEWER_LESSON,
                       VIEWPORT, LabServer, NotebookPage, copy_notebooks, tempdir)


def _missing() -> str:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Chromium ({CHROMIUM})")
    return " and ".join(missing)


def pytest_collection_modifyitems(config, items):
    browser_items = [item for item in items if Path(str(item.fspath)).parent == Path(__file__).parent]
    if os.environ.get("UNET_LESSONS_BROWSER_TESTS") != "1":
        for item in browser_items:
            item.add_marker(pytest.mark.skip(reason="browser tests run through `make test-browser`"))
        return
    # Drive lesson 03's viewer right after lesson 03 has run, on the same page, so that the
    # lesson runs once and only one lesson's kernel is alive at a time.
    names = [item.name for item in items]
    run_03 = f"test_lesson_opens_and_runs_every_cell[{VIEWER_LESSON}]"
    if run_03 in names:
        viewer_items = [item for item in items if item.module.__name__ == "test_slice_viewer_live"]
        for item in viewer_items:
            items.remove(item)
        at = [item.name for item in items].index(run_03) + 1
        items[at:at] = viewer_items


def _require_browser() -> None:
    """Skip (fail on CI, which installs both) without Chromium or Playwright, naming the install command."""
    missing = _missing()
    if missing:
        message = f"{missing} missing; install with: {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """tests/browser/artifacts/, emptied first, so that it holds this run's screenshots and logs only."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_server(artifacts):
    """A JupyterLab of the test's own over a temporary copy of notebooks/, stopped at the end, pass or fail."""
    _require_browser()
    work = tempdir("unet-lessons-browser-")
    copy_notebooks(NOTEBOOKS, work / "notebooks")
    server = LabServer(work / "notebooks", work / "jupyter")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if server.log_path.exists():
            shutil.copy(server.log_path, artifacts / "jupyterlab.log")
        shutil.rmtree(work, ignore_errors=True)
        left = server.running()
        assert not left, f"JupyterLab processes still running after stop: {left}"


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium through Playwright, one for the whole run: Playwright's sync API runs one at a time,
    so the lessons, the site and the slides share it, each in contexts of its own."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                             timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def browser_context(lab_server, chromium):
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@dataclass
class LessonRun:
    """One lesson opened and run in the browser: the page, the seconds Run All took, the saved notebook."""

    name: str
    page: NotebookPage
    seconds: float = 0.0
    notebook: object = None
    failure: str = ""
    training: dict = field(default_factory=dict)  # fit runs in the lesson: {"loaded": n, "trained": n}


def training_notices(notebook) -> dict:
    """How many training runs the saved notebook's outputs say were loaded and trained
    (the one-line notices of ``unet_lessons.runs``; none when saved runs are off)."""
    text = "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []) if output.get("output_type") == "stream")
    return {"loaded": text.count("Loaded saved run '"), "trained": text.count("Trained run '")}


class Lessons:
    """Opens and runs each lesson once; a run stays open until :meth:`close` (the viewer test reuses 03)."""

    def __init__(self, server: LabServer, context, artifacts: Path) -> None:
        self.server, self.context, self.artifacts = server, context, artifacts
        self.runs: dict[str, LessonRun] = {}

    def run(self, name: str) -> LessonRun:
        if name in self.runs:
            if self.runs[name].failure:
                pytest.fail(f"{name} did not run in the browser earlier: {self.runs[name].failure}")
            return self.runs[name]
        path = self.server.root_dir / name
        code_cells = sum(cell.cell_type == "code" for cell in nbformat.read(path, as_version=4).cells)
        page = NotebookPage(self.context, self.server, name)
        run = self.runs[name] = LessonRun(name, page)
        try:
            page.open(code_cells)
            self.server.remember_children()
            run.seconds = page.run_all(NOTEBOOK_TIMEOUT)
            run.notebook = page.save()
            run.training = training_notices(run.notebook)
            page.wait_for(lambda: not page.widgets_loading(), 60, "widgets still say 'Loading widget...'")
        except Exception as error:
            run.failure = f"{type(error).__name__}: {error}"
            self._evidence(run)
            self.close(name)  # a kernel left running would slow every later lesson down
            raise
        return run

    def _evidence(self, run: LessonRun) -> None:
        stem = Path(run.name).stem
        try:
            run.page.page.screenshot(path=str(self.artifacts / f"{stem}_failure.png"), timeout=15_000)
        except Exception:  # noqa: BLE001 - evidence is best effort; the failure itself is reported
            pass
        (self.artifacts / f"{stem}_console.txt").write_text("\n".join(run.page.console))
        (self.artifacts / f"{stem}_server.log").write_text(self.server.log_tail(200))

    def close(self, name: str) -> None:
        """Close the lesson's page and shut its kernel down."""
        run = self.runs.get(name)
        if run is None or run.page.closed:
            return
        (self.artifacts / f"{Path(name).stem}_console.txt").write_text("\n".join(run.page.console))
        run.page.close()
        self.server.shutdown_kernels()


@pytest.fixture(scope="session")
def lesson_runs(lab_server, browser_context, artifacts):
    runs = Lessons(lab_server, browser_context, artifacts)
    yield runs
    for name in list(runs.runs):
        runs.close(name)
    summary = {name: {"run_all_seconds": round(run.seconds, 1), "training_runs": run.training}
               for name, run in runs.runs.items()}
    (artifacts / "lesson_runs.json").write_text(json.dumps(summary, indent=1))


@pytest.fixture(autouse=True)
def _wall_time(request, artifacts):
    start = time.monotonic()
    yield
    with open(artifacts / "wall_times.txt", "a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\t{request.node.nodeid}\t{time.monotonic() - start:.1f} s\n")
