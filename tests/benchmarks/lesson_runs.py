"""Each lesson's run time and peak memory, measured: ``make measure`` (one lesson: ``make measure NB=...``).

Every lesson runs top to bottom in a fresh kernel with the test settings (2 CPU threads, offline,
saved runs off, so every training cell trains). The time is Run All's wall clock; the memory is the
kernel's peak resident set (``VmHWM`` of the kernel process, read just before it shuts down), so it
includes Python, torch and everything the lesson held at its largest. Rows go to
``notebooks/results/lesson_runs.csv`` with a digest of the lesson's code cells; the site shows them
and ``tests/test_lesson_runs.py`` fails when a lesson's code changed since it was measured.

The lesson runs in a copy, so the stored notebook is not touched. Run it on an otherwise idle
machine: another job on the same cores slows every lesson.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Optional, Sequence

from unet_lessons import publish

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
TABLE = NOTEBOOKS / "results" / "lesson_runs.csv"
COLUMNS = ("notebook", "seconds", "peak_rss_mib", "threads", "code_digest", "measured", "machine")


def code_digest(path: Path) -> str:
    """A digest of the lesson's code cells (sources only): what decides its run time and memory."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    # The Colab setup cell does nothing outside Colab: the publication setting must not stale the table.
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"
            and publish.SETUP_TAG not in cell.get("metadata", {}).get("tags", [])]
    return hashlib.sha256("\n\x00".join(code).encode("utf-8")).hexdigest()[:16]


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (Linux /proc/<pid>/status, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line: peak memory is measured on Linux only")


def measure(path: Path, timeout: float = 900) -> dict:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    work = Path(tempfile.mkdtemp(prefix="unet-lessons-measure-"))
    try:
        # The lesson reads results/ and solutions/ beside it; a copy of the folder keeps the stored one untouched.
        shutil.copytree(NOTEBOOKS, work / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(work / "notebooks")}})
        start = time.perf_counter()
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            seconds = time.perf_counter() - start
            peak = _peak_rss_mib(client.km.provisioner.process.pid)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"notebook": path.name, "seconds": f"{seconds:.0f}", "peak_rss_mib": f"{peak:.0f}",
            "threads": os.environ.get("UNET_LESSONS_NUM_THREADS", "all"), "code_digest": code_digest(path),
            "measured": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}


def read_table(table: Path = TABLE) -> dict[str, dict]:
    if not table.is_file():
        return {}
    with table.open(newline="", encoding="utf-8") as handle:
        return {row["notebook"]: row for row in csv.DictReader(handle)}


def write_table(rows: dict[str, dict], table: Path = TABLE) -> None:
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for name in sorted(rows):
            writer.writerow({column: rows[name][column] for column in COLUMNS})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="lessons to measure (default: every lesson)")
    args = parser.parse_args(argv)
    paths = args.notebooks or publish.lessons(NOTEBOOKS)
    if os.environ.get("UNET_LESSONS_RUNS", "off") != "off":
        print("UNET_LESSONS_RUNS is set: saved runs would skip training and the times would mean nothing; unset it.")
        return 2
    from nbclient.exceptions import CellExecutionError

    rows, failed = read_table(), []
    for path in paths:
        try:
            row = measure(Path(path))
        except CellExecutionError as error:
            # A lesson that fails is not measured; the others still are, and the run ends in failure.
            failed.append(Path(path).name)
            print(f"{Path(path).name}: FAILED, not measured:\n{str(error)[-1500:]}", flush=True)
            continue
        rows[row["notebook"]] = row
        write_table(rows)  # after each lesson, so an interrupted run keeps what it measured
        print(f"{row['notebook']}: {int(row['seconds']) / 60:.1f} min, peak {int(row['peak_rss_mib'])} MiB", flush=True)
    print(f"written: {TABLE.relative_to(ROOT)}")
    if failed:
        print(f"{len(failed)} lesson(s) failed and were not measured: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
