"""What a stored lesson must not hold, checked over nbformat; ``--fix`` removes it without re-running.

Checks, per notebook in ``notebooks/``:

* **widget state** (``metadata.widgets``): with it, nbconvert's HTML export, nbviewer and the
  slides draw frozen widget frames with dead sliders instead of the static images that our
  widgets carry as a fallback (``SliceViewer``'s labelled montage);
* **execution timestamps** (``cell.metadata.execution``): noise in every diff;
* **``# NBVAL_...`` comments** in a cell's source: test machinery a student reads; nbval's cell
  tags (``nbval-ignore-output``, ``nbval-skip``, ...) do the same job unseen.

Usage (from the project root)::

    python tests/notebook_hygiene.py              # report; exit 1 when anything turns up
    python tests/notebook_hygiene.py --fix        # strip state and timestamps, turn comments into tags

``make test`` runs the check (``tests/test_notebook_hygiene.py``); ``make execute`` runs a lesson
with widget state and timing switched off, then this check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
#: nbval's comment markers and the cell tags that replace them.
MARKER_TAGS = {"NBVAL_IGNORE_OUTPUT": "nbval-ignore-output", "NBVAL_SKIP": "nbval-skip",
               "NBVAL_CHECK_OUTPUT": "nbval-check-output", "NBVAL_RAISES_EXCEPTION": "raises-exception"}
_MARKER = re.compile(r"^[ \t]*#[ \t]*(NBVAL_[A-Z_]+)[^\n]*\n?", re.MULTILINE)


def lessons(folder: Path = ROOT / "notebooks") -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def findings(notebook: nbformat.NotebookNode) -> list[str]:
    """What the notebook should not hold, one line each."""
    found = []
    if notebook.metadata.get("widgets"):
        state = notebook.metadata["widgets"].get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        found.append(f"widget state stored ({len(state)} widget models in metadata.widgets)")
    for index, cell in enumerate(notebook.cells):
        if "execution" in cell.get("metadata", {}):
            found.append(f"cell {index}: execution timestamps (metadata.execution)")
        for marker in _MARKER.findall(cell.source):
            tag = MARKER_TAGS.get(marker, "the matching nbval cell tag")
            found.append(f"cell {index}: '# {marker}' comment in the source; use the cell tag '{tag}'")
    return found


def fix(notebook: nbformat.NotebookNode) -> int:
    """Remove widget state and timestamps, turn NBVAL comments into tags; return how many changes."""
    changes = int(bool(notebook.metadata.pop("widgets", None)))
    for cell in notebook.cells:
        changes += int(cell.get("metadata", {}).pop("execution", None) is not None)
        markers = _MARKER.findall(cell.source)
        unknown = [m for m in markers if m not in MARKER_TAGS]
        if unknown:
            raise ValueError(f"unknown nbval marker(s) {unknown}; convert them by hand.")
        if markers:
            tags = cell.metadata.setdefault("tags", [])
            tags.extend(MARKER_TAGS[m] for m in markers if MARKER_TAGS[m] not in tags)
            cell.source = _MARKER.sub("", cell.source)
            changes += len(markers)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: the lessons in notebooks/")
    parser.add_argument("--fix", action="store_true", help="strip and convert instead of only reporting")
    args = parser.parse_args(argv)
    paths = args.notebooks or lessons()
    failed = 0
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if args.fix and (changes := fix(notebook)):
            nbformat.write(notebook, path)
            print(f"{path.name}: {changes} change(s) written")
        found = findings(notebook)
        failed += bool(found)
        print(f"{path.name}: " + ("clean" if not found else f"{len(found)} finding(s)"))
        for line in found[:8]:
            print(f"  {line}")
        if len(found) > 8:
            print(f"  ... and {len(found) - 8} more")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
