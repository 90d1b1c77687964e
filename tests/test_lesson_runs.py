"""The measured run time and peak memory of each lesson (tests/benchmarks/lesson_runs.py) stay current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lesson_runs", ROOT / "tests" / "benchmarks" / "lesson_runs.py")
lesson_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lesson_runs)

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Lessons that could not be measured, and why; the site says "not measured yet" for them. It only shrinks.
NOT_MEASURED: dict[str, str] = {}


@pytest.mark.parametrize("path", LESSONS, ids=lambda path: path.stem)
def test_each_lesson_was_measured_as_its_code_is_now(path):
    row = lesson_runs.read_table().get(path.name)
    if path.name in NOT_MEASURED:
        assert row is None, f"{path.name} is measured now: remove it from NOT_MEASURED"
        pytest.skip(f"{path.name} not measured: {NOT_MEASURED[path.name]}")
    assert row is not None, f"{path.name} has no measured run time and memory: make measure NB=notebooks/{path.name}"
    assert row["code_digest"] == lesson_runs.code_digest(path), (
        f"{path.name}'s code changed since its run time and memory were measured ({row['measured']}): "
        f"make measure NB=notebooks/{path.name}")
    assert float(row["seconds"]) > 0 and float(row["peak_rss_mib"]) > 100


def test_the_digest_follows_code_and_ignores_prose_and_the_colab_cell(tmp_path):
    notebook = json.loads(LESSONS[0].read_text(encoding="utf-8"))
    copy = tmp_path / LESSONS[0].name

    def digest_after(change):
        edited = json.loads(json.dumps(notebook))
        change(edited["cells"])
        copy.write_text(json.dumps(edited), encoding="utf-8")
        return lesson_runs.code_digest(copy)

    original = digest_after(lambda cells: None)
    first_code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code"
                      and "colab-setup" not in cell["metadata"].get("tags", []))
    index = notebook["cells"].index(first_code)
    assert digest_after(lambda cells: cells[index].update(source="x = 1")) != original
    markdown = next(i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "markdown")
    assert digest_after(lambda cells: cells[markdown].update(source="other prose")) == original
    setup = next(i for i, cell in enumerate(notebook["cells"]) if "colab-setup" in cell["metadata"].get("tags", []))
    assert digest_after(lambda cells: cells[setup].update(source="pass")) == original
