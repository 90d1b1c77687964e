"""The claim ledger: every claim a lesson tests, with its measurement, interval and verdict.

A claim is a record the notebook computes, not a sentence it types. Each row keeps the
claim (quoted in one line, with its source), the cell that measures it, what kind of figure
ours is (exact, measured or estimated), our figure, the paper's figure, the interval and the
verdict together, and the lesson ends with ``ledger.table()``. Every row is recorded by a
stated rule (:class:`ClaimLedger`): comparisons by :func:`unet_lessons.stats.judge` over every
stored seed and held-out item, as one family per lesson; facts exactly; figures against the
paper's within a stated tolerance; orderings of deterministic quantities with a margin. So a
claim cannot read "reproduced" while its measurement says otherwise. The rule is explained
for readers in ``notebooks/00_reading_the_claims.ipynb``, which every ledger links to.

The table is shown as HTML and Markdown, and its rows travel with it in the stored
notebook under the MIME type ``application/vnd.unet-lessons.claims+json`` (a JSON type of
our own: JupyterLab would draw plain ``application/json`` as a tree in place of the table).
``python -m unet_lessons.claims notebooks --readme README.md`` reads those rows from the
stored notebooks without running them and writes one gathered table into the README.

Example:
    >>> family = judge({"dice vs wce": stored_differences}, {"dice vs wce": 0.02})
    >>> ledger = ClaimLedger("04")
    >>> ledger.compare("Dice loss beats re-weighted cross-entropy", family["dice vs wce"],
    ...                source="Milletari 2016, Table 2", paper="0.869 vs 0.739", cell="4",
    ...                ours="Dice 0.657 vs weighted CE 0.438, 5 seeds × 12 volumes")
    >>> ledger.exact("receptive fields of Table 1", ours=ours_fields, expected=paper_fields, source="Table 1", cell="2.4")
    >>> ledger.table()
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .stats import FEWEST_SEEDS, FIGURES, VERDICTS, Judgement, SpreadJudgement

__all__ = ["Claim", "ClaimLedger", "MIME_TYPE", "gather", "main", "no_difference_verdict", "RULE_LINK"]

MIME_TYPE = "application/vnd.unet-lessons.claims+json"
README_START, README_END = "<!-- claims:start -->", "<!-- claims:end -->"
_COLUMNS = ("claim", "source", "cell", "figure", "ours", "paper", "interval", "verdict", "note")
#: Where every ledger sends its reader for the rule behind the verdicts.
RULE_LINK = "00_reading_the_claims.ipynb"


@dataclass(frozen=True)
class Claim:
    """One row of the ledger.

    Args:
        claim: the claim, quoted in one line.
        source: where it is claimed ("Milletari et al. 2016, Table 2", "survey").
        cell: the lesson section that measures it.
        figure: what our figure is, one of :data:`unet_lessons.stats.FIGURES` (exact, measured, estimated);
            "—" when not measured.
        ours: our figure, as text.
        paper: the paper's figure, as text ("" when it gives none).
        interval: the family-wise interval of the difference, the counts, the tolerance or the margin, as text.
        verdict: one of :data:`unet_lessons.stats.VERDICTS`.
        note: what the verdict rests on, what would settle it, or why the claim is not measured.
    """

    claim: str
    source: str
    cell: str
    figure: str
    ours: str
    paper: str
    interval: str
    verdict: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}.")
        if self.figure not in FIGURES + ("—",):
            raise ValueError(f"figure {self.figure!r} is not one of {FIGURES}.")


def _few_seeds_note(seeds: int) -> list[str]:
    """The note a measured comparison carries when it rests on fewer seeds than the rule asks for."""
    if seeds >= FEWEST_SEEDS:
        return []
    return [f"only {seeds} seeds: below {FEWEST_SEEDS} the interval's error can exceed its level (lesson 00 measures it)"]


def no_difference_verdict(judgement: Judgement) -> str:
    """The verdict on a claim that A and B do *not* differ by more than the judgement's margin.

    "equivalent at this budget" when the whole family-wise interval lies inside (-margin, +margin),
    even if it excludes 0; "contradicted at this budget" when it lies wholly beyond the margin on one
    side; "inconclusive at this budget" otherwise. (The judgement's own verdict answers "A beats B".)
    """
    interval, margin = judgement.interval, judgement.margin
    if interval is None:
        raise ValueError("a claim of no difference needs an interval (a measured comparison), not item counts.")
    if -margin < interval.low and interval.high < margin:
        return "equivalent at this budget"
    if interval.low >= margin or interval.high <= -margin:
        return "contradicted at this budget"
    return "inconclusive at this budget"


class ClaimLedger:
    """The claims one lesson tests, each recorded by the rule that fits it, and shown by :meth:`table`.

    * :meth:`compare`: A against B over every stored seed and item, judged with the lesson's family
      (:func:`unet_lessons.stats.judge`);
    * :meth:`exact`: a count, a shape, a receptive field or a formula, equal or not;
    * :meth:`within`: a figure against the paper's, within a stated tolerance;
    * :meth:`ordered`: "A is less than B" on a deterministic quantity (an estimate, a count), with a
      margin of practical relevance inside which it is "equivalent at this budget";
    * :meth:`not_measured`: with the reason.

    Args:
        lesson: the lesson's number or name, e.g. ``"04"``.
        example: a ledger that only shows how ledgers work (lesson 00): shown, but never gathered into the
            README's table of what the lessons claim.
    """

    def __init__(self, lesson: str, *, example: bool = False) -> None:
        self.lesson = lesson
        self.example = example
        self.claims: list[Claim] = []
        self._family: Optional[int] = None

    def _join_family(self, family: int, fix: str) -> None:
        """Every comparison of a ledger is judged in one family of the same size; ``fix`` says how to mend a mismatch."""
        if self._family is not None and family != self._family:
            raise ValueError(f"a lesson's comparisons are one family: this ledger holds a family of {self._family}, "
                             f"this judgement one of {family}. {fix}")
        self._family = family

    def compare(self, claim: str, judgement: Judgement, *, source: str, cell: str, ours: str, paper: str = "",
                unit: str = "Dice", no_difference: bool = False) -> Claim:
        """Record the claim "A scores higher than B", judged over every stored seed and held-out item.

        Args:
            claim: the claim in one line, A the arm it favours.
            judgement: this comparison's entry of the lesson's family (:func:`unet_lessons.stats.judge`).
            source, cell, paper: see :class:`Claim`.
            ours: our figure as text (the arms' means, the seeds and items).
            unit: the score's unit, for the margin.
            no_difference: the claim is that A and B do *not* differ in a way that matters ("no significant
                difference", "an insignificant improvement"). Its verdict is then "equivalent at this
                budget" when the whole interval lies inside the margin (even if it excludes 0), "contradicted at
                this budget" when it lies wholly beyond the margin on one side, and inconclusive otherwise: an
                interval above 0 would read "reproduced" for "A beats B", the opposite of this claim.
        """
        if not isinstance(judgement, Judgement):
            raise TypeError("compare takes a Judgement from unet_lessons.stats.judge (every stored seed and item, "
                            f"the lesson's family); got {type(judgement).__name__}.")
        self._join_family(judgement.family, "Judge them in one call of stats.judge.")
        if no_difference:
            return self._no_difference(claim, judgement, source=source, cell=cell, ours=ours, paper=paper, unit=unit)
        notes = [f"one family of {judgement.family} comparisons (Bonferroni); margin ±{judgement.margin:g} {unit}"]
        if judgement.interval is not None and judgement.verdict in ("reproduced", "contradicted at this budget") \
                and max(abs(judgement.interval.low), abs(judgement.interval.high)) < judgement.margin:
            notes.append("the whole interval is smaller than the margin")
        if judgement.interval is not None:
            notes += _few_seeds_note(judgement.interval.seeds)
        if judgement.budget:
            notes.append(f"to settle it: {judgement.budget}")
        return self._add(Claim(claim, source, cell, "measured", ours, paper, f"A−B {judgement}", judgement.verdict,
                               "; ".join(notes)))

    def _no_difference(self, claim: str, judgement: Judgement, *, source: str, cell: str, ours: str, paper: str,
                       unit: str) -> Claim:
        """The verdict on "A and B do not differ by more than the margin" (see :meth:`compare`)."""
        result = no_difference_verdict(judgement)
        notes = [f"a claim of no difference: equivalent when the whole interval lies inside ±{judgement.margin:g} {unit}, "
                 f"contradicted when it lies wholly beyond; one family of {judgement.family} comparisons (Bonferroni)"]
        notes += _few_seeds_note(judgement.interval.seeds)
        return self._add(Claim(claim, source, cell, "measured", ours, paper, f"A−B {judgement}", result, "; ".join(notes)))

    def compare_spread(self, claim: str, judgement: SpreadJudgement, *, source: str, cell: str, ours: str,
                       paper: str = "") -> Claim:
        """Record the claim "A varies less from seed to seed than B" (:func:`unet_lessons.stats.judge_spread`),
        judged in the same family as the lesson's other comparisons."""
        if not isinstance(judgement, SpreadJudgement):
            raise TypeError("compare_spread takes a SpreadJudgement from unet_lessons.stats.judge_spread; got "
                            f"{type(judgement).__name__}.")
        self._join_family(judgement.family, "Give judge_spread the family's size.")
        notes = [f"one family of {judgement.family} comparisons (Bonferroni); Pitman–Morgan interval of the ratio of "
                 f"standard deviations over seeds, paired by seed; margin: a factor of {judgement.margin:g}"]
        if judgement.budget:
            notes.append(f"to settle it: {judgement.budget}")
        return self._add(Claim(claim, source, cell, "measured", ours, paper, str(judgement),
                               judgement.verdict, "; ".join(notes)))

    def exact(self, claim: str, *, ours: Any, expected: Any, source: str, cell: str, paper: str = "",
              shown: Optional[str] = None, note: str = "") -> Claim:
        """Record a fact checked exactly (a count, a shape, a receptive field, a formula): "reproduced" when
        ``ours == expected``, else "contradicted at this budget".

        Args:
            ours, expected: the values compared with ``==``.
            shown: our figure as text (default: ``ours``).
        """
        holds = bool(ours == expected)
        return self._add(Claim(claim, source, cell, "exact", shown or str(ours), paper, "exact",
                               "reproduced" if holds else "contradicted at this budget", note))

    def within(self, claim: str, *, ours: float, expected: float, tolerance: float, source: str, cell: str,
               paper: str = "", figure: str = "measured", shown: Optional[str] = None, note: str = "") -> Claim:
        """Record a figure compared with the paper's: "reproduced" within ``tolerance``, else "contradicted".

        Args:
            ours, expected: our figure and the paper's.
            tolerance: the stated tolerance, in the figure's units.
            figure: "measured" or "estimated".
        """
        holds = abs(ours - expected) <= tolerance
        return self._add(Claim(claim, source, cell, figure, shown or f"{ours:g}", paper or f"{expected:g}",
                               f"within ±{tolerance:g}", "reproduced" if holds else "contradicted at this budget",
                               note))

    def ordered(self, claim: str, *, smaller: float, larger: float, margin: float, source: str, cell: str,
                paper: str = "", figure: str = "estimated", shown: Optional[str] = None, unit: str = "",
                note: str = "") -> Claim:
        """Record "``smaller`` is less than ``larger``" on a deterministic quantity: "reproduced" when the gap
        exceeds the margin of practical relevance, "equivalent at this budget" within it, "contradicted" when
        the order is reversed beyond it.

        Args:
            smaller, larger: the quantities, in the order the claim states.
            margin: the smallest gap that matters, in the quantities' units.
            figure: "estimated" or "exact" (or "measured" for a deterministic measurement).
        """
        if margin < 0:
            raise ValueError(f"a margin is a size; got {margin}.")
        gap = larger - smaller
        result = ("reproduced" if gap > margin else "contradicted at this budget" if gap < -margin
                  else "equivalent at this budget")
        return self._add(Claim(claim, source, cell, figure, shown or f"{smaller:g} vs {larger:g} {unit}".strip(),
                               paper, f"gap {gap:+.3g} {unit}, margin ±{margin:g} {unit}".replace("  ", " "), result,
                               note))

    def not_measured(self, claim: str, *, reason: str, source: str, paper: str = "") -> Claim:
        """Record a claim the lesson does not measure, and why."""
        if not reason:
            raise ValueError("a claim that is not measured needs the reason.")
        return self._add(Claim(claim, source, "—", "—", "—", paper, "—", "not measured", reason))

    def _add(self, claim: Claim) -> Claim:
        self.claims.append(claim)
        return claim

    def rows(self) -> list[dict]:
        """The claims as plain dicts, with the lesson."""
        return [{"lesson": self.lesson, **asdict(claim)} for claim in self.claims]

    def table(self) -> "LedgerTable":
        """The ledger for display: HTML and Markdown for the reader, the rows as JSON for :func:`gather`."""
        return LedgerTable(self.rows(), self._family, example=self.example)


class LedgerTable:
    """A displayable ledger (what :meth:`ClaimLedger.table` returns), headed by the rule behind its verdicts."""

    def __init__(self, rows: list[dict], family: Optional[int] = None, *, example: bool = False) -> None:
        self.rows = rows
        self.family = family
        self.example = example

    def caption(self) -> str:
        family = (f"Comparisons: one family of {self.family}, intervals widened by Bonferroni. " if self.family
                  else "")
        return (f"{len(self.rows)} claims. {family}Verdicts: " + ", ".join(VERDICTS)
                + f". How they are reached: {RULE_LINK}.")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": self.plain(), "text/html": self.html(),
                "text/markdown": self.caption() + "\n\n" + markdown_table(self.rows),
                MIME_TYPE: {"rows": self.rows, "family": self.family, "example": self.example}}

    def plain(self) -> str:
        return "\n".join([self.caption()] + [
            f"[{row['verdict']}] {row['claim']} — ours ({row.get('figure', '')}): {row['ours']}; "
            f"paper: {row['paper'] or '—'}; {row['interval']}" for row in self.rows])

    def html(self) -> str:
        caption = html.escape(self.caption()).replace(
            html.escape(RULE_LINK), f'<a href="{RULE_LINK}">{html.escape(RULE_LINK)}</a>')
        head = "".join(f"<th>{column}</th>" for column in _COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in _COLUMNS)
                       + "</tr>" for row in self.rows)
        return f"<p>{caption}</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(rows: list[dict], columns: Sequence[str] = _COLUMNS) -> str:
    """The rows as a Markdown table (pipes in cells escaped)."""
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def gather(notebooks: Path) -> list[dict]:
    """Every ledger row stored in the notebooks of a folder, in file order, without running them."""
    rows = []
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for cell in notebook.get("cells", []):
            for output in cell.get("outputs", []):
                data = output.get("data", {}).get(MIME_TYPE)
                if data and not data.get("example"):  # lesson 00's worked example claims nothing
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
