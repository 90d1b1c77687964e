"""Every arm's resolved hash and fingerprint, per lesson, from whatever ``unet_lessons`` is importable, on this CPU.

Evidence for adding this kind of CPU's stamps to a stored table (``python -m unet_lessons.benchmark
LESSON --stamp-this-cpu FILE``): run this with the checkout whose code the table's own stamps were
last checked against first on the path, on the CPU to be stamped, e.g.

    git worktree add --detach /tmp/old 249fdb7    # a worktree, so that the evidence names its commit
    cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/checkout/tests/benchmarks/stamps.py 01 /tmp/stamps-01.json

Not collected by pytest.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch

import unet_lessons
from unet_lessons.benchmark import arm_stamps, load_benchmark


def main(lesson: str, out: str) -> None:
    package = Path(unet_lessons.__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=package).stdout.strip() or "not a git checkout"
    benchmark = load_benchmark(lesson)
    stamps = arm_stamps(benchmark, benchmark.make_data())
    record = {"lesson": lesson, "package": str(package), "commit": commit,
              "cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "stamps": {stamp.name: {"hash": stamp.hash, "fingerprint": stamp.fingerprint.text()} for stamp in stamps}}
    Path(out).write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"{lesson}: {len(stamps)} arms from {package} ({commit}), {record['cpu']}, {record['threads']} threads")


if __name__ == "__main__":
    main(*sys.argv[1:3])
