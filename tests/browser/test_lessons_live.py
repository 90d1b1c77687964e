"""Every lesson opens in JupyterLab and runs to the end in a real browser, with its widgets drawn."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from labdriver import VIEWER_LESSON, console_problems, error_outputs, lessons, widget_problems


@pytest.mark.parametrize("name", lessons())
def test_lesson_opens_and_runs_every_cell(name, lesson_runs, artifacts):
    run = lesson_runs.run(name)
    print(f"{name}: Run All took {run.seconds:.1f} s; training runs {run.training}")
    stem = Path(name).stem
    try:
        target = run.page.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell").last
        run.page.screenshot(target, artifacts / stem / "last_cell.png")
        assert not error_outputs(run.notebook), "cells show errors:\n" + "\n\n".join(error_outputs(run.notebook))
        prompts = [cell["prompt"] for cell in run.page.cell_outputs()]
        assert all(re.fullmatch(r"\[\d+\]:|hidden", p) for p in prompts), f"cells that did not run: {prompts}"
        counts = [cell.execution_count for cell in run.notebook.cells if cell.cell_type == "code"]
        assert None not in counts and counts == sorted(counts), f"cells not run, or out of order: {counts}"
        if os.environ.get("UNET_LESSONS_EXPECT_SAVED_RUNS") == "1":  # make test: the notebook tests saved every run
            # A lesson that names a training run must load it; lesson 00 trains nothing, and then nothing trains.
            names_a_run = any("fit(" in cell.source and "run=" in cell.source
                              for cell in run.notebook.cells if cell.cell_type == "code")
            assert (run.training["loaded"] or not names_a_run) and not run.training["trained"], (
                f"training runs {run.training}: every run must load from those the notebook tests saved; the "
                "notices in the training cells say why one did not (unet_lessons/runs.py)")
        problems = widget_problems(run.notebook, run.page.cell_outputs())
        assert not problems, "widgets not drawn:\n" + "\n".join(problems)
        assert not console_problems(run.page.console), "console:\n" + "\n".join(console_problems(run.page.console))
    finally:
        if name != VIEWER_LESSON:  # the viewer test drives lesson 03 next, on this page
            lesson_runs.close(name)
