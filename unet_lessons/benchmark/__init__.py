"""Stored benchmarks: the comparison arms and seed spreads that do not fit a lesson's time budget.

A lesson trains live only what fits about 100 s. Every further arm of a comparison, and
every seed spread, runs in ``python -m unet_lessons.benchmark LESSON`` (``make bench``),
which writes a small CSV table under ``notebooks/results/``: one row per (arm, seed, test
item), headed by comment lines that record the commit, the date, the torch version, the
thread count and a hash of each arm's configuration.

A lesson prints the stored table, labelled as stored and with its seed count, next to
what it trained live, and asserts that its live figure lies within the stored spread.
A unit test recomputes every arm's hash from the code and fails when a stored table no
longer matches, so a table the code has outgrown fails instead of misleading.

Each lesson with a benchmark has a module here (``lesson04``) that defines its arms as
plain settings (:class:`Arm`), builds the data, model, sampler, loss and
:class:`~unet_lessons.train.TrainConfig` of an arm, and scores a trained model per test item.
The lesson builds its live arms with the same functions, so the two cannot drift apart.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["Arm", "StoredTable", "config_hash", "write_table", "read_table", "RESULTS", "LESSONS"]

#: Where the stored tables live (next to the lessons, so that a lesson reads ``results/...``).
RESULTS = Path(__file__).resolve().parents[2] / "notebooks" / "results"
#: Lesson number -> module name in this package.
LESSONS = {"04": "lesson04", "06": "lesson06", "07": "lesson07"}


@dataclass(frozen=True)
class Arm:
    """One arm of a comparison: a name and the settings that define it (JSON-able values only).

    Args:
        name: shown in tables, e.g. ``"Dice (V-Net)"``.
        settings: everything that decides the arm's result besides the seed.
        live: whether the lesson trains this arm live (else it comes from the stored table only).
    """

    name: str
    settings: dict = field(default_factory=dict)
    live: bool = False


def config_hash(arm: Arm, shared: dict) -> str:
    """A short hash of an arm's settings and the settings shared by all arms of the lesson."""
    text = json.dumps({"arm": arm.name, "settings": arm.settings, "shared": shared}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_table(path: Path, arms: Sequence[Arm], shared: dict, rows: list[dict], *, seconds: float) -> Path:
    """Write the stored table: comment lines (commit, date, torch, threads, run time, one hash per arm), then CSV rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [f"# commit: {_commit()}", f"# date: {datetime.date.today().isoformat()}",
              f"# torch: {torch.__version__}", f"# threads: {torch.get_num_threads()}",
              f"# benchmark seconds: {seconds:.0f}"]
    header += [f"# arm: {arm.name} | hash: {config_hash(arm, shared)}" for arm in arms]
    columns = list(rows[0].keys())
    temporary = path.with_suffix(".part")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        handle.write("\n".join(header) + "\n")
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)
    return path


@dataclass
class StoredTable:
    """A stored benchmark table: its header facts, each arm's configuration hash and the rows."""

    path: Path
    facts: dict
    hashes: dict
    rows: list[dict]

    @property
    def seeds(self) -> list[int]:
        return sorted({int(row["seed"]) for row in self.rows})

    def scores(self, arm: str, seed: int, metric: str = "dice") -> np.ndarray:
        """Per-item scores of one arm and seed, in item order."""
        picked = sorted((int(r["item"]), float(r[metric])) for r in self.rows if r["arm"] == arm and int(r["seed"]) == seed)
        if not picked:
            raise KeyError(f"{self.path.name} has no rows for arm {arm!r}, seed {seed}; run `make bench`.")
        return np.array([score for _, score in picked])

    def seed_means(self, arm: str, metric: str = "dice") -> np.ndarray:
        return np.array([self.scores(arm, seed, metric).mean() for seed in self.seeds])

    def seed_differences(self, a: str, b: str, metric: str = "dice") -> np.ndarray:
        """Each seed's mean difference a - b over the same items."""
        return np.array([(self.scores(a, s, metric) - self.scores(b, s, metric)).mean() for s in self.seeds])


def read_table(path: Path) -> StoredTable:
    """Read a table written by :func:`write_table`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no stored benchmark at {path}; run `make bench` (python -m unet_lessons.benchmark).")
    facts, hashes, lines = {}, {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# arm: "):
            name, digest = line[len("# arm: "):].rsplit(" | hash: ", 1)
            hashes[name] = digest
        elif line.startswith("# "):
            key, _, value = line[2:].partition(": ")
            facts[key] = value
        else:
            lines.append(line)
    return StoredTable(path, facts, hashes, list(csv.DictReader(lines)))


def stale_arms(table: StoredTable, arms: Sequence[Arm], shared: dict) -> list[str]:
    """The arms whose stored hash differs from the code's (or that the table lacks)."""
    return [arm.name for arm in arms if table.hashes.get(arm.name) != config_hash(arm, shared)]


def table_path(lesson: str, results: Optional[Path] = None) -> Path:
    from importlib import import_module

    module = import_module(f"{__name__}.{LESSONS[lesson]}")
    return Path(results or RESULTS) / module.TABLE
