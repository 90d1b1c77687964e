"""What a stored lesson must not hold, checked over nbformat; ``--fix`` removes it without re-running.

Checks, per notebook in ``notebooks/``:

* **widget state** (``metadata.widgets``): with it, nbconvert's HTML export, nbviewer and the
  slides draw frozen widget frames with dead sliders instead of the static images that our
  widgets carry as a fallback (``SliceViewer``'s labelled montage);
* **execution timestamps** (``cell.metadata.execution``): noise in every diff;
* **``# NBVAL_...`` comments** in a cell's source: test machinery a student reads; nbval's cell
  tags (``nbval-ignore-output``, ``nbval-skip``, ...) do the same job unseen;
* what the review scan (``../shared/hooks/notebook_scan.py units|bars|paths``) finds in stored
  outputs, with its patterns: torchinfo's ``Units.`` labels (**units**), progress bars stored
  at 0 % (**bars**) and machine paths such as a kernel's temp file or a home folder (**paths**).
  These need the lesson re-executed, not ``--fix``. The older lessons that still hold them are
  listed in :data:`KNOWN_EXCEPTIONS`, which only shrinks: an entry no longer needed is an error too.

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
#: The review scan's checks of stored outputs: name -> (its pattern, what turned up and the fix).
OUTPUT_CHECKS = {
    "units": (re.compile(r"Units\."), "torchinfo's 'Units.' label in the output; print "
                                      "unet_lessons.summary.model_summary(model) instead of torchinfo.summary"),
    "bars": (re.compile(r"(^|\s)0%\|"), "a progress bar stored at 0%; train through fit, whose StepProgress leaves "
                                         "a one-line summary, and re-execute the lesson"),
    "paths": (re.compile(r"ipykernel_\d+|/(?:root|home/\w+|Users/\w+)/"),
              "a machine path in the output (a kernel's temp file or a home folder); warn with "
              "unet_lessons.utils.package_warning and print paths relative to the project"),
}
#: The older lessons that still hold what OUTPUT_CHECKS finds, and which checks: the lesson issues empty it.
KNOWN_EXCEPTIONS: dict[str, set[str]] = {}


def lessons(folder: Path = ROOT / "notebooks") -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def _output_text(output: nbformat.NotebookNode) -> str:
    """What the review scan reads of an output: its stream text, text/plain and text/html."""
    data = output.get("data", {})
    return "".join(output.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))


def output_findings(notebook: nbformat.NotebookNode) -> dict[str, list[str]]:
    """What each of :data:`OUTPUT_CHECKS` finds in the stored outputs, one line per output."""
    found: dict[str, list[str]] = {name: [] for name in OUTPUT_CHECKS}
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            text = _output_text(output)
            for name, (pattern, what) in OUTPUT_CHECKS.items():
                if pattern.search(text):
                    found[name].append(f"cell {index}: {what} [{name}]")
    return found


def stale_exceptions(path: Path, notebook: nbformat.NotebookNode) -> set[str]:
    """The checks :data:`KNOWN_EXCEPTIONS` excuses for this lesson that find nothing in it any more."""
    found = output_findings(notebook)
    return {name for name in KNOWN_EXCEPTIONS.get(path.name, set()) if not found.get(name, True)}


def findings(notebook: nbformat.NotebookNode, excused: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """What the notebook should not hold, one line each, leaving out the output checks named in ``excused``."""
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
    for name, lines in output_findings(notebook).items():
        if name not in excused:
            found += lines
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
        found = findings(notebook, KNOWN_EXCEPTIONS.get(path.name, set()))
        stale = stale_exceptions(path, notebook)
        found += [f"KNOWN_EXCEPTIONS excuses '{name}' here but nothing turns up: remove it from the list"
                  for name in sorted(stale)]
        failed += bool(found)
        excused = sorted(KNOWN_EXCEPTIONS.get(path.name, set()) - stale)
        print(f"{path.name}: " + ("clean" if not found else f"{len(found)} finding(s)")
              + (f" (known exceptions: {', '.join(excused)})" if excused else ""))
        for line in found[:8]:
            print(f"  {line}")
        if len(found) > 8:
            print(f"  ... and {len(found) - 8} more")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
