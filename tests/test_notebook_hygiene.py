"""The stored lessons hold no widget state, timestamps or NBVAL comments, nor what the review scan finds in
outputs (torchinfo's Units. labels, progress bars at 0 %, machine paths) beyond the listed known exceptions,
and export to HTML whole."""

import re
import subprocess
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
    found = notebook_hygiene.findings(nbformat.read(path, as_version=4),
                                      notebook_hygiene.KNOWN_EXCEPTIONS.get(path.name, set()))
    assert not found, (f"{path.name}: " + "; ".join(found[:5]) + " (python tests/notebook_hygiene.py --fix strips "
                       "state, timestamps and comments; what is found in outputs needs the lesson re-executed)")


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


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_known_exceptions_only_shrink(path):
    """An exception the lesson no longer needs must leave the list, so that the problem cannot come back unseen."""
    stale = notebook_hygiene.stale_exceptions(path, nbformat.read(path, as_version=4))
    assert not stale, f"{path.name} no longer holds {sorted(stale)}: remove them from KNOWN_EXCEPTIONS"


def test_known_exceptions_name_real_lessons_and_checks():
    assert set(notebook_hygiene.KNOWN_EXCEPTIONS) <= {path.name for path in LESSONS}
    assert all(checks and checks <= set(notebook_hygiene.OUTPUT_CHECKS)
               for checks in notebook_hygiene.KNOWN_EXCEPTIONS.values())


def _notebook_with_output(output: nbformat.NotebookNode) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output("stream", text="fine\n"), output]
    notebook.cells = [nbformat.v4.new_code_cell("y = 2"), cell]
    return notebook


# What each check must catch, in the places the review scan reads: stream text, text/plain, text/html.
OUTPUT_PROBLEMS = {
    "units": nbformat.v4.new_output("stream", text="Total mult-adds (Units.GIGABYTES): 7.72\n"),
    "bars": nbformat.v4.new_output("display_data", data={
        "text/plain": "training:   0%|          | 0/700 [00:00<?, ?it/s]",
        "application/vnd.jupyter.widget-view+json": {"model_id": "a", "version_major": 2, "version_minor": 0}}),
    "paths": nbformat.v4.new_output("stream", name="stderr",
                                    text="/tmp/ipykernel_18642/3411257160.py:7: PredictionCollapseWarning: ...\n"),
}
OUTPUT_ALSO = {
    "paths": [nbformat.v4.new_output("execute_result", data={"text/html": "<p>saved to /home/alice/runs</p>"},
                                     execution_count=1),
              nbformat.v4.new_output("stream", text="FileNotFoundError: /Users/bob/data/isbi\n"),
              nbformat.v4.new_output("stream", text="cache in /root/.cache\n")],
    "bars": [nbformat.v4.new_output("stream", name="stderr", text="0%|          | 0/10\n")],
}
#: Near misses a lesson may well print: none of them is a finding.
HARMLESS = ["training: 100%|██████████| 700/700", "Dice 10%| of the cases",
            "700/700 steps in 93 s, last loss 0.213", "Total multiply-adds: 7.72 G", "notebooks/results/04_vnet.csv", "see ../shared/data/isbi2012-em/README",
            "home/test", "Units are voxels."]


@pytest.mark.parametrize("check", sorted(OUTPUT_PROBLEMS))
def test_each_output_check_fails_on_a_notebook_holding_its_problem(check, monkeypatch):
    monkeypatch.setitem(notebook_hygiene.KNOWN_EXCEPTIONS, "99_synthetic.ipynb", {check})
    for output in [OUTPUT_PROBLEMS[check], *OUTPUT_ALSO.get(check, [])]:
        notebook = _notebook_with_output(output)
        found = notebook_hygiene.findings(notebook)
        assert found and all(line.startswith("cell 1: ") and line.endswith(f"[{check}]") for line in found), found
        assert not notebook_hygiene.findings(notebook, {check})  # excused: nothing else turns up
        assert not notebook_hygiene.stale_exceptions(Path("99_synthetic.ipynb"), notebook)
    # Excused for this check but holding nothing of the kind: a stale exception, which the list must drop.
    clean = _notebook_with_output(nbformat.v4.new_output("stream", text="fine\n"))
    assert notebook_hygiene.stale_exceptions(Path("99_synthetic.ipynb"), clean) == {check}


def test_the_output_checks_leave_near_misses_alone():
    for text in HARMLESS:
        found = notebook_hygiene.findings(_notebook_with_output(nbformat.v4.new_output("stream", text=text)))
        assert not found, (text, found)


SCAN = Path(__file__).resolve().parents[2] / "shared" / "hooks" / "notebook_scan.py"


def _scan(check: str, pattern: str) -> tuple[int, int]:
    """The review scan's exit code and its count of findings over the notebooks matching ``pattern``."""
    done = subprocess.run([sys.executable, str(SCAN), check, pattern], capture_output=True, text=True)
    count = re.match(r"(\d+) finding", done.stdout)
    return done.returncode, int(count.group(1)) if count else 0


@pytest.mark.skipif(not SCAN.exists(), reason="the review scan (../shared/hooks) is not beside this checkout")
def test_the_output_checks_agree_with_the_review_scan(tmp_path):
    """On the stored lessons and on every synthetic case above, the scan and these checks find the same."""
    for check in notebook_hygiene.OUTPUT_CHECKS:
        ours = sum(len(notebook_hygiene.output_findings(nbformat.read(path, as_version=4))[check]) for path in LESSONS)
        assert _scan(check, str(LESSONS[0].parent / "[0-9][0-9]_*.ipynb")) == (int(ours > 0), ours), check
    outputs = [*OUTPUT_PROBLEMS.values(), *(o for also in OUTPUT_ALSO.values() for o in also),
               *(nbformat.v4.new_output("stream", text=text) for text in HARMLESS)]
    for index, output in enumerate(outputs):
        notebook = _notebook_with_output(output)
        path = tmp_path / f"{index:02d}_case.ipynb"
        nbformat.write(notebook, path)
        for check in notebook_hygiene.OUTPUT_CHECKS:
            ours = len(notebook_hygiene.output_findings(notebook)[check])
            assert _scan(check, str(path)) == (int(ours > 0), ours), (check, output)
