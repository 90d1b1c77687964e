"""The claim ledger: every claim a lesson tests, with its measurement, interval and verdict.

A claim is a record the notebook computes, not a sentence it types. Each check keeps the
claim (quoted in one line, with its source), the cell that measures it, our figure, the
paper's figure, the interval and the verdict together, and the lesson ends with
``ledger.table()``. The verdict comes from :func:`unet_lessons.stats.verdict`, so a claim
cannot read "reproduced" while its measurement says otherwise.

The table is shown as HTML and Markdown, and its rows travel with it in the stored
notebook under the MIME type ``application/vnd.unet-lessons.claims+json`` (a JSON type of
our own: JupyterLab would draw plain ``application/json`` as a tree in place of the table).
``python -m unet_lessons.claims notebooks --readme README.md`` reads those rows from the
stored notebooks without running them and writes one gathered table into the README.

Example:
    >>> ledger = ClaimLedger("04")
    >>> ledger.compare("Dice loss beats re-weighted cross-entropy", a=dice_scores, b=wce_scores,
    ...                names=("Dice", "weighted CE"), source="Milletari 2016, Table 2", paper="0.869 vs 0.739",
    ...                cell="4. Class imbalance")
    >>> ledger.table()
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .stats import Interval, paired_difference, verdict

__all__ = ["Claim", "ClaimLedger", "MIME_TYPE", "gather", "main"]

MIME_TYPE = "application/vnd.unet-lessons.claims+json"
README_START, README_END = "<!-- claims:start -->", "<!-- claims:end -->"
_COLUMNS = ("claim", "source", "cell", "ours", "paper", "interval", "verdict", "note")


@dataclass(frozen=True)
class Claim:
    """One row of the ledger.

    Args:
        claim: the claim, quoted in one line.
        source: where it is claimed ("Milletari et al. 2016, Table 2", "survey").
        cell: the lesson section that measures it.
        ours: our figure, as text.
        paper: the paper's figure, as text ("" when it gives none).
        interval: the paired 95 % interval of the difference (or of the figure), as text.
        verdict: one of :data:`unet_lessons.stats.VERDICTS`.
        note: what the verdict rests on or why the claim is not measured.
    """

    claim: str
    source: str
    cell: str
    ours: str
    paper: str
    interval: str
    verdict: str
    note: str = ""


class ClaimLedger:
    """The claims one lesson tests, filled by check-like calls and shown by :meth:`table`.

    Args:
        lesson: the lesson's number or name, e.g. ``"04"``.
    """

    def __init__(self, lesson: str) -> None:
        self.lesson = lesson
        self.claims: list[Claim] = []

    def compare(self, claim: str, *, a: Sequence[float], b: Sequence[float], names: tuple[str, str],
                source: str, cell: str, paper: str = "", seed_differences: Sequence[float] = (),
                metric: str = "Dice", ours: Optional[str] = None) -> Claim:
        """Record the claim "A scores higher than B" from per-item scores of both arms on the same items.

        Args:
            claim: the claim in one line.
            a, b: per-item scores of arm A (claimed better) and arm B, in the same item order.
            names: the arms' names, for the figure.
            source, cell, paper: see :class:`Claim`.
            seed_differences: mean A - B of every stored seed (the seed spread).
            metric: what the scores are.
            ours: our figure as text, when the default ("A 0.646 vs B 0.343 (Dice)") says too little.
        """
        difference = paired_difference(a, b)
        result = verdict(difference, seed_differences)
        above = sum(d > 0 for d in seed_differences)
        note = (f"A > B in {above} of {len(seed_differences)} seeds" if len(seed_differences)
                else "one live run; no stored seed spread")
        ours = ours or f"{names[0]} {np.mean(a):.3f} vs {names[1]} {np.mean(b):.3f} ({metric})"
        return self._add(Claim(claim, source, cell, ours, paper, f"A−B {difference}", result, note))

    def check(self, claim: str, *, holds: bool, ours: str, source: str, cell: str, paper: str = "",
              interval: Union[Interval, str, None] = None, note: str = "") -> Claim:
        """Record a claim that the lesson checks as a fact (a count, a shape, a formula, an estimate, a
        property of every seed): "reproduced" when it holds, "contradicted at this budget" when it does not.

        ``interval`` says how exact the figure is: an :class:`Interval`, a word ("estimate"), or
        ``None`` for an exact check.
        """
        result = "reproduced" if holds else "contradicted at this budget"
        return self._add(Claim(claim, source, cell, ours, paper, str(interval) if interval else "exact", result, note))

    def not_measured(self, claim: str, *, reason: str, source: str, paper: str = "") -> Claim:
        """Record a claim the lesson does not measure, and why."""
        verdict(None, reason=reason)  # the rule: a reason is required
        return self._add(Claim(claim, source, "—", "—", paper, "—", "not measured", reason))

    def _add(self, claim: Claim) -> Claim:
        self.claims.append(claim)
        return claim

    def rows(self) -> list[dict]:
        """The claims as plain dicts, with the lesson."""
        return [{"lesson": self.lesson, **asdict(claim)} for claim in self.claims]

    def table(self) -> "LedgerTable":
        """The ledger for display: HTML and Markdown for the reader, the rows as JSON for :func:`gather`."""
        return LedgerTable(self.rows())


class LedgerTable:
    """A displayable ledger (what :meth:`ClaimLedger.table` returns)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": self.plain(), "text/html": self.html(), "text/markdown": markdown_table(self.rows),
                MIME_TYPE: {"rows": self.rows}}

    def plain(self) -> str:
        return "\n".join(f"[{row['verdict']}] {row['claim']} — ours: {row['ours']}; paper: {row['paper'] or '—'}; "
                         f"{row['interval']}" for row in self.rows)

    def html(self) -> str:
        head = "".join(f"<th>{column}</th>" for column in _COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in _COLUMNS)
                       + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(rows: list[dict], columns: Sequence[str] = _COLUMNS) -> str:
    """The rows as a Markdown table (pipes in cells escaped)."""
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def gather(notebooks: Path) -> list[dict]:
    """Every ledger row stored in the notebooks of a folder, in file order, without running them."""
    rows = []
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for cell in notebook.get("cells", []):
            for output in cell.get("outputs", []):
                data = output.get("data", {}).get(MIME_TYPE)
                if data:
                    rows += [{"notebook": path.name, **row} for row in data["rows"]]
    return rows


def write_readme_table(rows: list[dict], readme: Path) -> None:
    """Replace the README's text between the claims markers with the gathered table."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} … {README_END} markers; add them where the table goes.")
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    table = markdown_table(rows, ("lesson",) + _COLUMNS) if rows else "(no stored ledger yet)"
    readme.write_text(f"{before}{README_START}\n{table}\n{README_END}{after}", encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_lessons.claims",
                                     description="Gather the claim ledgers of the stored lessons.")
    parser.add_argument("notebooks", type=Path, help="the folder of stored lessons")
    parser.add_argument("--readme", type=Path, help="write the gathered table into this README (between markers)")
    args = parser.parse_args(argv)
    rows = gather(args.notebooks)
    if args.readme:
        write_readme_table(rows, args.readme)
        print(f"{len(rows)} claims from {len({r['notebook'] for r in rows})} lessons written to {args.readme}")
    else:
        print(markdown_table(rows, ("lesson",) + _COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
