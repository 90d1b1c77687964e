"""The claim ledger: verdicts follow the measurement, and the rows travel with the stored notebook."""

import json

import nbformat
import numpy as np
import pytest

from unet_lessons.claims import MIME_TYPE, Claim, ClaimLedger, gather, main, no_difference_verdict
from unet_lessons.stats import judge, judge_spread


def _ledger():
    rng = np.random.default_rng(0)
    item = rng.uniform(-0.05, 0.05, (1, 20))
    noise = lambda: rng.normal(0, 0.005, (3, 20))  # noqa: E731
    family = judge({"dice vs ce": 0.05 + item + noise(), "ce vs dice": -0.05 + item + noise()},
                   {"dice vs ce": 0.02, "ce vs dice": 0.02})
    ledger = ClaimLedger("04")
    ledger.compare("Dice loss beats cross-entropy", family["dice vs ce"], source="paper, Table 2",
                   paper="0.869 vs 0.739", cell="4", ours="Dice 0.70 vs CE 0.65")
    ledger.compare("CE beats Dice", family["ce vs dice"], source="survey", cell="4", ours="CE 0.65 vs Dice 0.70")
    ledger.exact("19,069,955 parameters", ours=19_069_955, expected=19_069_955, source="paper", cell="2")
    ledger.not_measured("better on PROMISE12", reason="no prostate MRI here", source="paper, Section 4")
    return ledger


def test_verdicts_come_from_the_measurement():
    claims = _ledger().claims
    assert [claim.verdict for claim in claims] == ["reproduced", "contradicted at this budget", "reproduced",
                                                   "not measured"]
    assert [claim.figure for claim in claims] == ["measured", "measured", "exact", "—"]
    assert "one family of 2 comparisons (Bonferroni); margin ±0.02 Dice" in claims[0].note
    assert "3 seeds × 20 items" in claims[0].interval and "k=2" in claims[0].interval


def test_every_kind_of_check_has_its_stated_rule():
    ledger = ClaimLedger("00")
    assert ledger.exact("a count", ours=4, expected=5, source="s", cell="1").verdict == "contradicted at this budget"
    assert ledger.within("a figure", ours=0.87, expected=0.869, tolerance=0.01, source="s", cell="1").verdict == \
        "reproduced"
    assert ledger.within("a figure", ours=0.80, expected=0.869, tolerance=0.01, source="s", cell="1").verdict == \
        "contradicted at this budget"
    # A 1 % difference between two memory estimates is no win when 10 % is what matters.
    memory = ledger.ordered("strided convolutions need less memory", smaller=41.1, larger=41.5, margin=4.1,
                            unit="MiB", source="s", cell="5")
    assert memory.verdict == "equivalent at this budget" and memory.figure == "estimated"
    assert ledger.ordered("less", smaller=30, larger=41.5, margin=4.1, source="s", cell="5").verdict == "reproduced"
    assert ledger.ordered("less", smaller=50, larger=41.5, margin=4.1, source="s", cell="5").verdict == \
        "contradicted at this budget"


def test_a_ledger_refuses_what_bypasses_the_rule():
    ledger = ClaimLedger("00")
    with pytest.raises(TypeError, match="Judgement"):
        ledger.compare("A beats B", "reproduced", source="s", cell="1", ours="")
    ones = np.random.default_rng(0).normal(0.1, 0.01, (3, 12))
    ledger.compare("A beats B", judge({"a": ones}, {"a": 0.02})["a"], source="s", cell="1", ours="")
    other_family = judge({"a": ones, "b": ones}, {"a": 0.02, "b": 0.02})["b"]
    with pytest.raises(ValueError, match="one family"):
        ledger.compare("C beats D", other_family, source="s", cell="1", ours="")
    with pytest.raises(ValueError, match="reason"):
        ledger.not_measured("x", reason="", source="s")
    with pytest.raises(ValueError, match="not one of"):
        Claim("x", "s", "1", "exact", "1", "", "exact", "probably")


def test_the_table_shows_html_markdown_and_carries_json_rows():
    bundle = _ledger().table()._repr_mimebundle_()
    assert "<table>" in bundle["text/html"] and "| claim | source | cell | figure |" in bundle["text/markdown"]
    assert '<a href="00_reading_the_claims.ipynb">' in bundle["text/html"] and "one family of 2" in bundle["text/plain"]
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
    example = ClaimLedger("00", example=True)
    example.exact("a count", ours=1, expected=1, source="s", cell="1")
    cell.outputs = [nbformat.v4.new_output("display_data", data=example.table()._repr_mimebundle_())]
    nbformat.write(notebook, tmp_path / "00_reading_the_claims.ipynb")
    assert [row["notebook"] for row in gather(tmp_path)] == ["04_vnet.ipynb"] * 4   # an example is never gathered
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


def test_a_spread_comparison_joins_the_lessons_family():
    steady, unsteady = np.array([0.70, 0.71, 0.69, 0.705, 0.695]), np.array([0.60, 0.80, 0.55, 0.85, 0.65])
    d = np.random.default_rng(0).normal(0.05, 0.02, size=(5, 12))
    ledger = ClaimLedger("xx", example=True)
    ledger.compare("A beats B", judge({"a": d}, {"a": 0.02}, others=1)["a"], source="paper", cell="1", ours="…")
    row = ledger.compare_spread("A is steadier than B", judge_spread("s", steady, unsteady, margin=2, family=2),
                                source="our question", cell="1", ours="…")
    assert row.verdict == judge_spread("s", steady, unsteady, margin=2, family=2).verdict
    assert "sd(A)/sd(B)" in row.interval and "Pitman–Morgan" in row.note and row.figure == "measured"
    with pytest.raises(ValueError, match="one family"):
        ledger.compare_spread("again", judge_spread("s", steady, unsteady, margin=2, family=3), source="x", cell="1",
                              ours="…")
    with pytest.raises(TypeError, match="SpreadJudgement"):
        ledger.compare_spread("again", judge({"a": d}, {"a": 0.02})["a"], source="x", cell="1", ours="…")


def test_a_claim_of_no_difference_is_judged_by_the_margin_not_by_zero():
    rng = np.random.default_rng(1)
    noise = lambda: rng.normal(0, 0.002, (5, 40))  # noqa: E731
    family = judge({"tiny": 0.004 + noise(), "large": 0.05 + noise(), "loose": 0.01 + 10 * noise()},
                   {"tiny": 0.01, "large": 0.01, "loose": 0.01})
    assert family["tiny"].verdict == "reproduced"            # above 0 ...
    ledger = ClaimLedger("01")
    tiny = ledger.compare("A and B do not differ", family["tiny"], source="s", cell="7", ours="…", unit="IoU",
                          no_difference=True)
    large = ledger.compare("A and B do not differ", family["large"], source="s", cell="7", ours="…", unit="IoU",
                           no_difference=True)
    loose = ledger.compare("A and B do not differ", family["loose"], source="s", cell="7", ours="…", unit="IoU",
                           no_difference=True)
    assert tiny.verdict == "equivalent at this budget"        # ... but inside the margin: no difference that matters
    assert large.verdict == "contradicted at this budget"
    assert loose.verdict == "inconclusive at this budget"
    assert "a claim of no difference" in tiny.note and "±0.01 IoU" in tiny.note
    assert [no_difference_verdict(family[key]) for key in ("tiny", "large", "loose")] == [
        tiny.verdict, large.verdict, loose.verdict]
