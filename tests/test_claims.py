"""The claim ledger: verdicts follow the measurement, and the rows travel with the stored notebook."""

import json

import nbformat
import numpy as np
import pytest

from unet_lessons.claims import MIME_TYPE, ClaimLedger, gather, main


def _ledger():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, 20)
    ledger = ClaimLedger("04")
    ledger.compare("Dice loss beats cross-entropy", a=base + 0.05, b=base, names=("Dice", "CE"),
                   source="paper, Table 2", paper="0.869 vs 0.739", cell="4", seed_differences=[0.04, 0.06])
    ledger.compare("CE beats Dice", a=base, b=base + 0.05, names=("CE", "Dice"), source="survey", cell="4",
                   seed_differences=[-0.04, -0.06])
    ledger.check("19,069,955 parameters", holds=True, ours="19,069,955", source="paper", cell="2")
    ledger.not_measured("better on PROMISE12", reason="no prostate MRI here", source="paper, Section 4")
    return ledger


def test_verdicts_come_from_the_measurement():
    verdicts = [claim.verdict for claim in _ledger().claims]
    assert verdicts == ["reproduced", "contradicted at this budget", "reproduced", "not measured"]
    assert _ledger().claims[0].note == "A > B in 2 of 2 seeds"
    assert _ledger().claims[1].note == "A > B in 0 of 2 seeds"


def test_the_table_shows_html_markdown_and_carries_json_rows():
    bundle = _ledger().table()._repr_mimebundle_()
    assert "<table>" in bundle["text/html"] and bundle["text/markdown"].startswith("| claim |")
    rows = bundle[MIME_TYPE]["rows"]
    assert len(rows) == 4 and rows[0]["lesson"] == "04" and json.dumps(rows)


def test_gather_reads_stored_notebooks_and_writes_the_readme(tmp_path):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("ledger.table()")
    bundle = _ledger().table()._repr_mimebundle_()
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    notebook.cells.append(cell)
    nbformat.write(notebook, tmp_path / "04_vnet.ipynb")
    rows = gather(tmp_path)
    assert [row["notebook"] for row in rows] == ["04_vnet.ipynb"] * 4
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- claims:start -->\nold\n<!-- claims:end -->\nrest\n")
    assert main([str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| 04 | Dice loss beats cross-entropy |" in text and text.endswith("rest\n")
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        main([str(tmp_path), "--readme", str(readme)])


def test_the_readme_table_is_the_one_the_stored_notebooks_give(tmp_path):
    from pathlib import Path

    from unet_lessons.claims import write_readme_table

    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "README.md"
    copy.write_text((root / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    write_readme_table(gather(root / "notebooks"), copy)
    assert copy.read_text(encoding="utf-8") == (root / "README.md").read_text(encoding="utf-8"), (
        "the README's claim table is out of date: run `make claims`")
