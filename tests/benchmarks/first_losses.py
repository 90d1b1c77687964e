"""The first three training losses of seed 0, per arm, of whatever ``unet_lessons`` is importable.

Evidence for re-stamping a stored table made by older code (``python -m unet_lessons.benchmark
LESSON --restamp-from-losses FILE``): run this with the older checkout first on the path, e.g.

    git archive 2aa5275 unet_lessons | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/benchmarks/first_losses.py 04 /tmp/old-04.json

It uses only what every lesson module has had since the stored benchmarks began (``ARMS``,
``make_data``, ``make_arm``, ``make_config``), so it runs on the old code as on the new. Not
collected by pytest.
"""

import json
import subprocess
import sys
import warnings
from importlib import import_module
from pathlib import Path

import unet_lessons
from unet_lessons.train import fit


def first_losses(lesson: str) -> dict:
    module = import_module(f"unet_lessons.benchmark.lesson{lesson}")
    data = module.make_data()
    losses = {}
    for arm in module.ARMS:
        model, batches, loss, _ = module.make_arm(arm.name, 0, data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a collapse warning after three steps says nothing
            history = fit(model, batches, loss, module.make_config(arm, progress=False, steps=3))
        losses[arm.name] = [float(value) for value in history["loss"][:3]]
    return losses


def main(lesson: str, out: str) -> None:
    package = Path(unet_lessons.__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=package).stdout.strip() or "not a git checkout"
    record = {"lesson": lesson, "package": str(package), "commit": commit, "losses": first_losses(lesson)}
    Path(out).write_text(json.dumps(record, indent=1), encoding="utf-8")
    for name, values in record["losses"].items():
        print(f"{name:42s} {values}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
