"""The stored lessons hold no widget state, timestamps or NBVAL comments, and export to HTML whole."""

import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import notebook_hygiene  # noqa: E402

LESSONS = notebook_hygiene.lessons()


IMAGE_TYPES = ("image/png", "image/jpeg")


def stored_images(notebook: nbformat.NotebookNode) -> int:
    """Outputs that carry an image (matplotlib figures are JPEG here, the viewer's montage PNG)."""
    return sum(any(kind in output.get("data", {}) for kind in IMAGE_TYPES)
               for cell in notebook.cells for output in cell.get("outputs", []))


def exported_images(notebook: nbformat.NotebookNode) -> int:
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(notebook)
    return len(re.findall(r"src=\"data:image/(?:png|jpeg);base64,", html))


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_stored_lesson_is_clean(path):
    found = notebook_hygiene.findings(nbformat.read(path, as_version=4))
    assert not found, f"{path.name}: " + "; ".join(found[:5]) + " (python tests/notebook_hygiene.py --fix)"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_html_export_shows_every_stored_image(path):
    notebook = nbformat.read(path, as_version=4)
    assert exported_images(notebook) == stored_images(notebook) > 0


def test_the_check_finds_and_fixes_each_kind():
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"a": {}}}}
    cell = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nprint(1)")
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    notebook.cells = [cell, nbformat.v4.new_code_cell("x = 1  # a comment that stays")]
    found = notebook_hygiene.findings(notebook)
    assert len(found) == 3 and "1 widget models" in found[0] and "nbval-ignore-output" in found[2]
    assert notebook_hygiene.fix(notebook) == 3 and not notebook_hygiene.findings(notebook)
    assert cell.source == "print(1)" and cell.metadata["tags"] == ["nbval-ignore-output"]
    assert notebook.cells[1].source == "x = 1  # a comment that stays"
