"""Build the lessons' website from their stored outputs: ``make site`` (or ``python docs/build_site.py``).

Nothing is executed and nothing is fetched: the pages show the outputs that nbval checked. The
sources are staged into ``docs/_build/source`` and Sphinx (myst-nb, sphinx-book-theme; the
``docs`` extra) builds ``docs/_build/html``, a folder that works from any static web server.

What staging adds to the stored lessons (the notebooks themselves stay as they are):

* each lesson's Colab setup cell is removed (a web page has no kernel) and its solution cells
  are folded away; the worked solutions and written answers (``notebooks/solutions/``) are
  appended, folded, at the end of the page;
* under the title, the lesson's measured run time and peak memory, from
  ``notebooks/results/lesson_runs.csv`` (``make measure``);
* a front page with the README's lesson table and a page with every lesson's claim ledger in one
  table that sorts by any column and filters by verdict (``_static/sortable.js``).
"""

from __future__ import annotations

import argparse
import csv
import html
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import nbformat

from unet_lessons import claims, publish

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
NOTEBOOKS = ROOT / "notebooks"
RUNS = NOTEBOOKS / "results" / "lesson_runs.csv"
MATHJAX = DOCS / "vendor" / "mathjax"
#: The order a reader scans verdicts in: what held, what held within a margin, what is open, what failed.
#: A link to a lesson notebook in a stored output (the ledgers' link to lesson 00's rule), Markdown or HTML:
#: on the site the lesson is a page.
_LESSON_LINK = re.compile(r"(\]\(|href=\")(\d\d_\w+)\.ipynb(#[^)\"]*)?(?=[)\"])")
VERDICT_ORDER = ("reproduced", "equivalent at this budget", "inconclusive at this budget",
                 "contradicted at this budget", "not measured")



def measured_runs(path: Path = RUNS) -> dict[str, dict]:
    """notebook name -> its row of ``make measure`` (seconds, peak memory); empty when never measured."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["notebook"]: row for row in csv.DictReader(handle)}


def run_line(run: Optional[dict]) -> str:
    """The lesson's measured run time and peak memory, as one sentence."""
    if run is None:
        return "Run time and peak memory: not measured yet (make measure)."
    return (f"Runs top to bottom in {float(run['seconds']) / 60:.1f} min on {run['threads']} CPU threads, "
            f"with {float(run['peak_rss_mib']) / 1024:.1f} GiB peak memory (measured {run['measured']}).")


def run_cell(run: Optional[dict]) -> str:
    """The same, short, for the front page's table."""
    if run is None:
        return "not measured yet"
    return f"{float(run['seconds']) / 60:.1f} min, {float(run['peak_rss_mib']) / 1024:.1f} GiB"


def _title(notebook: nbformat.NotebookNode) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    raise ValueError("a lesson without a '# ' title cell")


def _tag(cell, tag: str) -> None:
    cell.metadata.setdefault("tags", [])
    if tag not in cell.metadata["tags"]:
        cell.metadata["tags"].append(tag)


def stage_lesson(path: Path, run: Optional[dict], out: Path) -> str:
    """Write the lesson as its web page shows it; returns its title."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if publish.SETUP_TAG in tags:
            _tag(cell, "remove-cell")
        elif "solution" in tags:
            _tag(cell, "hide-cell")
        elif publish.BADGE_TAG in tags:
            # The badge's line is where a reader looks before starting: say how long and how much memory.
            cell.source += f"\n\n*{run_line(run)}*"
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for mime in ("text/markdown", "text/html"):
                if mime in output.get("data", {}):
                    text = output["data"][mime]
                    text = "".join(text) if isinstance(text, list) else text
                    output["data"][mime] = _LESSON_LINK.sub(lambda m: f"{m[1]}{m[2]}.html{m[3] or ''}", text)
    solutions = NOTEBOOKS / "solutions" / f"lesson{path.name[:2]}.py"
    if solutions.is_file():
        notebook.cells.append(nbformat.v4.new_markdown_cell(
            "## Worked solutions and written answers\n\n"
            '<details class="solutions"><summary>Show the solutions (try the exercises first)</summary>\n\n'
            f"```{{literalinclude}} ../solutions/{solutions.name}\n:language: python\n```\n\n</details>",
            id=f"{path.stem[:2]}-site-solutions"))
    nbformat.write(notebook, out / path.name)
    return _title(notebook)


def readme_lesson_rows(readme: Path = ROOT / "README.md") -> dict[str, list[str]]:
    """notebook name -> the cells of its row in the README's lesson table (what it builds, data, time)."""
    rows = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `(\d\d_[\w]+\.ipynb)` \|(.*)\|\s*$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split(" | ")]
    return rows


def index_page(titles: dict[str, str], runs: dict[str, dict]) -> str:
    setting = publish.read_publication()
    colab = (f" or open one in Colab at release {setting.tag} from the badge at its top" if setting.published
             else " (they are not published yet, so there is no Colab link)")
    described = readme_lesson_rows()
    table = ["| lesson | what it builds | data | run time, peak memory |", "|---|---|---|---|"]
    for name, title in titles.items():
        builds, data, *_ = described.get(name, []) + ["", ""]
        table.append(f"| [{title}](lessons/{name}) | {builds} | {data} | {run_cell(runs.get(name))} |")
    toctree = "\n".join(f"lessons/{name[:-6]}" for name in titles)
    return f"""# U-shaped segmentation networks, lesson by lesson

Jupyter lessons on U-shaped segmentation networks, each built step by step from its paper, checked
against a tested implementation, and trained on a laptop CPU in minutes. These pages show the
lessons' stored outputs, as the test suite checked them. To run and change them, clone the
repository and run `make lab`{colab}.

Tested here: JupyterLab (every lesson run live in Chromium), this site and the lecture slides
(`make slides`). Not tested here: VS Code and Colab.

{chr(10).join(table)}

Every lesson ends with a claim ledger; [all the claims in one table](claims.md) sort by verdict.
Run times and peak memory are measured by `make measure`: the whole lesson top to bottom with the
test settings (2 CPU threads, every training cell trains), and the kernel's peak resident memory
meanwhile.

```{{toctree}}
:hidden:
:caption: Lessons
{toctree}
claims
```
"""


def claims_page(rows: list[dict], titles: dict[str, str]) -> str:
    order = {verdict: index for index, verdict in enumerate(VERDICT_ORDER)}
    counts = {verdict: sum(row["verdict"] == verdict for row in rows) for verdict in VERDICT_ORDER}
    columns = ("lesson", "claim", "source", "figure", "ours", "paper", "interval", "verdict", "note")
    head = "".join(f'<th data-sort="{"verdict" if c == "verdict" else "text"}" scope="col">{c}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            if column == "lesson":
                name = row["notebook"]
                link = f'lessons/{name[:-6]}.html'
                cells.append(f'<td data-key="{html.escape(name)}"><a href="{link}">{html.escape(name[:2])}</a></td>')
            elif column == "verdict":
                verdict = row["verdict"]
                cells.append(f'<td data-key="{order.get(verdict, len(order))}" class="verdict">'
                             f'{html.escape(verdict)}</td>')
            else:
                cells.append(f"<td>{html.escape(str(row.get(column, '')))}</td>")
        body.append(f'<tr data-verdict="{html.escape(row["verdict"])}">{"".join(cells)}</tr>')
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)} ({counts[v]})</option>'
                      for v in VERDICT_ORDER)
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER)
    return f"""---
html_theme.sidebar_secondary.remove: true
---

# Every claim, measured

The claim ledgers of all {len(titles)} lessons, {len(rows)} claims: {summary}. Click a column's
heading to sort by it (the verdict column sorts from reproduced to not measured); choose a verdict
to show only its claims. Each ledger's rule is explained in lesson 00.

```{{raw}} html
<p><label>verdict: <select id="verdict-filter"><option value="">all ({len(rows)})</option>{options}</select></label>
<span id="claims-shown"></span></p>
<div class="claims-wrapper"><table id="claims" class="claims sortable">
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table></div>
```
"""


def stage(source: Path) -> dict[str, str]:
    """Stage the sources into ``source``; returns each lesson's title by notebook name."""
    if source.exists():
        shutil.rmtree(source)
    (source / "lessons").mkdir(parents=True)
    shutil.copy2(DOCS / "conf.py", source / "conf.py")
    shutil.copytree(DOCS / "_static", source / "_static")
    if not (MATHJAX / "MathJax.js").is_file():
        raise FileNotFoundError(f"{MATHJAX / 'MathJax.js'} is missing: the site serves MathJax from docs/vendor "
                                "(committed with the project); restore it with git checkout docs/vendor.")
    shutil.copytree(MATHJAX, source / "_static" / "vendor" / "mathjax")
    shutil.copytree(NOTEBOOKS / "solutions", source / "solutions",
                    ignore=shutil.ignore_patterns("__pycache__"))
    runs = measured_runs()
    titles = {path.name: stage_lesson(path, runs.get(path.name), source / "lessons")
              for path in publish.lessons(NOTEBOOKS)}
    (source / "index.md").write_text(index_page(titles, runs), encoding="utf-8")
    (source / "claims.md").write_text(claims_page(claims.gather(NOTEBOOKS), titles), encoding="utf-8")
    return titles


def build(out: Path = DOCS / "_build") -> Path:
    start = time.perf_counter()
    source, html_dir = out / "source", out / "html"
    titles = stage(source)
    if html_dir.exists():
        shutil.rmtree(html_dir)
    # -W: a broken reference or a missing file is an error, not a warning scrolled past.
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-j", "2",
               str(source), str(html_dir)]
    result = subprocess.run(command)
    if result.returncode:
        raise SystemExit(f"sphinx-build failed (exit {result.returncode}); its messages are above.")
    print(f"site: {html_dir}/index.html, {len(titles)} lessons, "
          f"built in {time.perf_counter() - start:.0f} s")
    return html_dir


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS / "_build", help="the build folder (default docs/_build)")
    build(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
