"""``python -m unet_lessons.benchmark LESSON``: train every arm of a lesson over its seeds and store the table.

Resumes an interrupted run from the partial file beside the table, keeping the arms whose
code still matches it; ``--keep-stored`` does the same from the stored table (new seeds, new arms). ``--check`` only compares the stored table with the code; ``--restamp TABLE``
re-stamps the stored table's header after a re-run of seed 0 (``--seeds 0 --results DIR``)
matched it, ``--restamp-from-losses JSON`` after the code that made it gave today's first
training losses (:mod:`unet_lessons.benchmark.restamp`); ``--stamp-this-cpu JSON`` adds this kind of
CPU's hashes and fingerprints after the code the table was checked against gave today's here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .declare import LESSONS, load_benchmark
from .resolve import check_table
from .restamp import restamp, stamp_this_cpu
from .runner import run_benchmark
from .table import RESULTS_ENV, read_table, results_directory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_lessons.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lesson", choices=sorted(LESSONS), help="the lesson number")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the lesson's seeds (a re-run of seed 0: --seeds 0)")
    parser.add_argument("--results", type=Path,
                        help=f"folder of the stored tables (default: ${RESULTS_ENV}, else ./notebooks/results, "
                             "else ./results inside notebooks/)")
    parser.add_argument("--runs", type=Path, help="folder of the saved training runs (default: the saved-runs "
                                                  "folder's benchmark/, outside the repository)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs)")
    parser.add_argument("--keep-stored", action="store_true",
                        help="keep the stored table's rows of the arms whose code is unchanged; train only changed "
                             "or new arms and new seeds")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="compare the stored table with the code; train nothing")
    action.add_argument("--restamp", type=Path, metavar="TABLE",
                        help="re-stamp the stored table's header if TABLE, a re-run of seed 0, matches its rows")
    action.add_argument("--restamp-from-losses", type=Path, metavar="JSON",
                        help="re-stamp the stored table's header if JSON, the first losses of the code that made it "
                             "(tests/benchmarks/first_losses.py), equals today's arm by arm")
    action.add_argument("--stamp-this-cpu", type=Path, metavar="JSON",
                        help="add this kind of CPU's hashes and fingerprints to the stored table if JSON, the stamps "
                             "that the code it was checked against gives here (tests/benchmarks/stamps.py), equals "
                             "today's arm by arm")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except FileNotFoundError as error:  # no results folder found, or no table yet: the message says what to do
        print(error, file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    benchmark = load_benchmark(args.lesson)
    if args.check:
        path = results_directory(args.results) / benchmark.table
        problems = check_table(read_table(path), benchmark)
        print(f"{path}: " + ("matches the code" if not problems else "stale:\n  " + "\n  ".join(problems)))
        return 1 if problems else 0
    if args.stamp_this_cpu:
        try:
            path = stamp_this_cpu(args.lesson, args.stamp_this_cpu, results=args.results)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"added this CPU's stamps to {path}")
        return 0
    if args.restamp or args.restamp_from_losses:
        try:
            path = restamp(args.lesson, args.restamp, original_losses=args.restamp_from_losses, results=args.results)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"re-stamped {path}")
        return 0
    run_benchmark(benchmark, seeds=args.seeds, results=args.results, runs=args.runs, progress=not args.no_progress,
                  keep_stored=args.keep_stored)
    return 0


if __name__ == "__main__":
    sys.exit(main())
