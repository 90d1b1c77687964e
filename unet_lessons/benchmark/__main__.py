"""``python -m unet_lessons.benchmark LESSON``: run a lesson's arms over its seeds and store the table."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import import_module
from pathlib import Path

from . import LESSONS, RESULTS, write_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_lessons.benchmark", description=__doc__)
    parser.add_argument("lesson", choices=sorted(LESSONS), help="the lesson number")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the stored tables")
    parser.add_argument("--seeds", type=int, nargs="*", help="override the lesson's seeds (for a quick look)")
    args = parser.parse_args(argv)
    lesson = import_module(f"{__package__}.{LESSONS[args.lesson]}")
    seeds = args.seeds if args.seeds else list(lesson.SEEDS)
    start, rows = time.perf_counter(), []
    data = lesson.make_data()
    for arm in lesson.ARMS:
        for seed in seeds:
            arm_start = time.perf_counter()
            arm_rows = lesson.run_arm(arm, seed, data)
            rows += arm_rows
            mean = sum(row[lesson.METRIC] for row in arm_rows) / len(arm_rows)
            print(f"{arm.name:40s} seed {seed}: mean {lesson.METRIC} {mean:.3f} ({time.perf_counter() - arm_start:.0f} s)",
                  flush=True)
    seconds = time.perf_counter() - start
    path = write_table(Path(args.results) / lesson.TABLE, lesson.ARMS, lesson.SHARED, rows, seconds=seconds)
    print(f"wrote {path} ({len(rows)} rows) in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
