"""The stored table: where it lives, its header (facts, one hash and one fingerprint per arm, and per other kind
of CPU) and its rows.

A table is a CSV file headed by comment lines::

    # commit: 4fdaf54
    # date: 2026-12-02
    # torch: 2.13.0+cpu
    # threads: 2
    # benchmark seconds: 1738
    # arm: Dice (V-Net) | hash: 384c4c1b1330
    # arm: Dice, fine-tuned | hash: 1f2e3d4c5b6a | parent: Dice (V-Net)
    # fingerprint: Dice (V-Net) | losses: 0.80952024, 0.62599939, 0.45845616 | scores: test/dice=0.0123
    # on AVX2: Dice (V-Net) | hash: 384c4c1b1330 | losses: 0.80952031, 0.62601318, 0.45851174 | scores: test/dice=0.0123
    arm,seed,held_out,item,dice,seconds
    Dice (V-Net),0,test,0,0.576061,37.2

The ``# arm:`` and ``# fingerprint:`` lines are those of the CPU that ran the benchmark, or that re-stamped
it (the ``cpu`` fact, when recorded). The same code gives other float32 results on a CPU whose PyTorch kernels differ
(AVX-512 or AVX2: random initialisation, convolutions), and three training steps amplify the last bits
into fingerprints a few per cent apart; so a table may also hold, per other kind of CPU, an ``# on
<kernels>:`` line per arm with the hash and fingerprint that the same code gives there
(:func:`unet_lessons.benchmark.restamp.stamp_this_cpu`). Checks use the lines of the CPU they run on
(:meth:`StoredTable.for_cpu`).

One row per (arm, seed, held-out set, item); per-seed columns (``seconds``, ``collapsed``, a
lesson's measurements) repeat their one value on every row of that arm and seed. A table
without a ``held_out`` column reads as ``"test"``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .declare import load_benchmark

__all__ = ["RESULTS_ENV", "Fingerprint", "ArmStamp", "StoredTable", "results_directory", "table_path",
           "write_table", "read_table", "fingerprint_differences", "cpu_kernels"]

RESULTS_ENV = "UNET_LESSONS_RESULTS"
#: The held-out set of a table written before tables had several.
DEFAULT_HELD_OUT = "test"


@dataclass(frozen=True)
class Fingerprint:
    """What an arm does in its first steps: the losses of three training steps of seed 0 and every
    score of held-out item 0 after them, keyed ``"<held-out set>/<metric>"`` (``"test/dice"``)."""

    losses: tuple[float, ...]
    scores: dict = field(default_factory=dict)

    def text(self) -> str:
        """The header form: ``losses: a, b, c | scores: test/dice=..., ...`` (9 significant digits)."""
        losses = ", ".join(f"{value:.9g}" for value in self.losses)
        scores = ", ".join(f"{key}={value:.9g}" for key, value in self.scores.items())
        return f"losses: {losses} | scores: {scores}"

    @classmethod
    def parse(cls, text: str) -> "Fingerprint":
        """Read what :meth:`text` wrote."""
        losses_part, scores_part = text.split(" | scores: ", 1)
        losses = tuple(float(v) for v in losses_part.removeprefix("losses: ").split(", ") if v)
        scores = {}
        for pair in filter(None, scores_part.split(", ")):
            key, _, value = pair.rpartition("=")
            scores[key] = float(value)
        return cls(losses, scores)


@dataclass(frozen=True)
class ArmStamp:
    """What the header records of one arm: its resolved-settings hash, its fingerprint and its parent arm."""

    name: str
    hash: str
    fingerprint: Optional[Fingerprint] = None
    parent: Optional[str] = None


def fingerprint_differences(stored: Fingerprint, now: Fingerprint, *, loss_rtol: float = 1e-4,
                            score_atol: float = 1e-4) -> list[str]:
    """How the code's fingerprint differs from the stored one, in words (empty when within tolerance).

    Args:
        stored, now: the table's fingerprint and the one the code gives today.
        loss_rtol: allowed relative difference of each training loss.
        score_atol: allowed absolute difference of each score.
    """
    problems = []
    if len(stored.losses) != len(now.losses):
        problems.append(f"{len(stored.losses)} losses stored, {len(now.losses)} now")
    for step, (a, b) in enumerate(zip(stored.losses, now.losses), start=1):
        if not math.isclose(a, b, rel_tol=loss_rtol, abs_tol=0.0):
            problems.append(f"loss of step {step}: {a:.9g} stored, {b:.9g} now (relative tolerance {loss_rtol:g})")
    for key in stored.scores.keys() - now.scores.keys():
        problems.append(f"score {key} is stored but the code no longer gives it")
    for key in now.scores.keys() - stored.scores.keys():
        problems.append(f"score {key} is new in the code, absent from the table")
    for key in stored.scores.keys() & now.scores.keys():
        a, b = stored.scores[key], now.scores[key]
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= score_atol
        if not same:
            problems.append(f"score {key} of held-out item 0: {a:.9g} stored, {b:.9g} now "
                            f"(absolute tolerance {score_atol:g})")
    return sorted(problems)


def results_directory(results: Optional[str | os.PathLike] = None) -> Path:
    """The folder of the stored tables: ``results``, else ``$UNET_LESSONS_RESULTS``, else found from
    the current directory: ``./notebooks/results`` (the repository root) or ``./results`` (inside ``notebooks/``,
    or a copy of the lessons that keeps ``results/`` beside them).

    Never a path computed from where the package is installed: a non-editable install
    has no ``notebooks/`` next to it.

    Raises:
        FileNotFoundError: when none of these exists, naming what to set.
    """
    if results is not None:
        return Path(results).expanduser()
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).expanduser()
    here = Path.cwd()
    if (here / "notebooks" / "results").is_dir():
        return here / "notebooks" / "results"
    if (here / "results").is_dir():  # inside notebooks/, or a copy of the lessons with their results/ beside them
        return here / "results"
    raise FileNotFoundError(
        f"cannot find the stored benchmark tables from {here}: run from the repository root (which holds "
        f"notebooks/results) or from inside notebooks/ (which holds results), or set the environment variable "
        f"{RESULTS_ENV} to the folder (python -m unet_lessons.benchmark also takes --results DIR).")


def table_path(lesson: str, results: Optional[str | os.PathLike] = None) -> Path:
    """The stored table of lesson ``lesson`` (``"04"``) in :func:`results_directory`."""
    return results_directory(results) / load_benchmark(lesson).table


def cpu_kernels() -> str:
    """Which of PyTorch's CPU kernel sets runs here: ``"AVX512"``, ``"AVX2"``, ``"DEFAULT"`` (no vector kernels) ...

    Float32 results of the same code and seed differ in the last bits between them (the random
    initialisation's normal draws, the convolutions), so a table's fingerprints hold for one of them.
    ``ATEN_CPU_CAPABILITY`` may lower it (``default``, ``avx2``)."""
    return torch.backends.cpu.get_cpu_capability()


def current_facts(where: Path, seconds: float) -> dict[str, str]:
    """The header facts of a table written now: commit (of the checkout at ``where``), date, torch, threads, the
    CPU kernels (:func:`cpu_kernels`), run time."""
    return {"commit": _commit(where), "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "threads": str(torch.get_num_threads()), "cpu": cpu_kernels(), "benchmark seconds": f"{seconds:.0f}"}


#: The folder of the code a benchmark runs: uncommitted changes there mean the table was not made by the commit.
PACKAGE_FOLDER = "unet_lessons/"


def _commit(where: Path) -> str:
    """The short commit of the checkout at ``where``, and what of it was not committed when the table was made.

    Uncommitted changes to the package (``unet_lessons/``) mean the code that ran is not the commit's, and
    are named; changes elsewhere (a notebook, a test) leave the code that ran as committed, and are said
    so. ``"unknown"`` outside a checkout.
    """
    where = where if where.is_dir() else where.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=where).stdout.strip()
        # Porcelain paths are relative to the repository's root, wherever git runs.
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, timeout=10, cwd=where).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    paths = sorted(line[3:].split(" -> ")[-1].strip('"') for line in changes if line.strip())
    package = [path for path in paths if path.startswith(PACKAGE_FOLDER)]
    if package:
        listed = ", ".join(package[:3]) + (f" and {len(package) - 3} more" if len(package) > 3 else "")
        return f"{head} with uncommitted changes to the package ({listed})"
    if paths:
        return f"{head}; the package as committed, uncommitted changes to {len(paths)} other files"
    return head


def header_lines(facts: dict[str, str], stamps: Sequence[ArmStamp],
                 other_cpus: Optional[dict[str, Sequence[ArmStamp]]] = None) -> list[str]:
    """The comment lines of a table: facts, one ``# arm:`` line and one ``# fingerprint:`` line per arm, then
    one ``# on <kernels>:`` line per arm and other kind of CPU.

    Args:
        facts: ``key: value`` lines, in order (commit, date, torch, threads, cpu, benchmark seconds).
        stamps: one per arm.
        other_cpus: kernels (:func:`cpu_kernels`) -> one stamp per arm, with its fingerprint, on such a CPU.
    """
    lines = [f"# {key}: {value}" for key, value in facts.items()]
    for stamp in stamps:
        lines.append(f"# arm: {stamp.name} | hash: {stamp.hash}" + (f" | parent: {stamp.parent}" if stamp.parent else ""))
    lines += [f"# fingerprint: {stamp.name} | {stamp.fingerprint.text()}" for stamp in stamps if stamp.fingerprint]
    for kernels, theirs in (other_cpus or {}).items():
        lines += [f"# on {kernels}: {stamp.name} | hash: {stamp.hash} | {stamp.fingerprint.text()}" for stamp in theirs]
    return lines


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename: a crash never leaves half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_table(path: str | os.PathLike, stamps: Sequence[ArmStamp], rows: Sequence[dict], *,
                facts: dict[str, str], columns: Optional[Sequence[str]] = None) -> Path:
    """Write a table atomically: the header, then the rows as CSV.

    Args:
        path: the file.
        stamps: one per arm, in the order the header lists them.
        rows: dicts with ``arm``, ``seed``, ``held_out``, ``item`` and the score columns.
        facts: the header's ``key: value`` lines (see :func:`current_facts`).
        columns: the CSV columns; by default every key of the rows, in first-seen order.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    body = io.StringIO()
    writer = csv.DictWriter(body, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(Path(path), "\n".join(header_lines(facts, stamps)) + "\n" + body.getvalue())


def split_table_text(text: str) -> tuple[list[str], str]:
    """A table's comment lines, and the CSV text after them (kept verbatim)."""
    lines = text.splitlines(keepends=True)
    count = 0
    while count < len(lines) and lines[count].startswith("#"):
        count += 1
    return [line.rstrip("\n") for line in lines[:count]], "".join(lines[count:])


@dataclass
class StoredTable:
    """A stored benchmark table: its header facts, each arm's hash, parent and fingerprint, and the rows.

    Args:
        path: the file it was read from.
        facts: the header's ``key: value`` lines (commit, date, torch, threads, cpu, benchmark seconds).
        hashes: arm name -> resolved-settings hash.
        rows: one dict per (arm, seed, held-out set, item), values as read (text).
        parents: arm name -> parent arm name (children only).
        fingerprints: arm name -> :class:`Fingerprint`.
        columns: the CSV columns as stored.
        other_cpus: kernels (:func:`cpu_kernels`) -> arm name -> :class:`ArmStamp` on such a CPU (``# on`` lines).
    """

    path: Path
    facts: dict
    hashes: dict
    rows: list[dict]
    parents: dict = field(default_factory=dict)
    fingerprints: dict = field(default_factory=dict)
    columns: list = field(default_factory=list)
    other_cpus: dict = field(default_factory=dict)

    def for_cpu(self, kernels: Optional[str] = None) -> "StoredTable":
        """The table as a check on a CPU with ``kernels`` (default this machine's, :func:`cpu_kernels`) must read it:
        with the hashes and fingerprints of its ``# on <kernels>:`` lines when it has them, else with its own. The
        result holds no other CPU's lines, so reading it for a CPU again changes nothing."""
        kernels = cpu_kernels() if kernels is None else kernels
        if kernels not in self.other_cpus or self.facts.get("cpu") == kernels:
            return dataclasses.replace(self, other_cpus={})
        theirs = self.other_cpus[kernels]
        return dataclasses.replace(self, hashes={name: stamp.hash for name, stamp in theirs.items()},
                                   fingerprints={name: stamp.fingerprint for name, stamp in theirs.items()},
                                   other_cpus={})

    @property
    def seeds(self) -> list[int]:
        """Every seed with rows, in order."""
        return sorted({int(row["seed"]) for row in self.rows})

    @property
    def arms(self) -> list[str]:
        """The arms the header lists, in its order."""
        return list(self.hashes)

    @property
    def held_out_sets(self) -> list[str]:
        """The held-out sets scored, in first-seen order (``["test"]`` for most lessons)."""
        return list(dict.fromkeys(row["held_out"] for row in self.rows))

    def units(self) -> set[tuple[str, int]]:
        """The (arm, seed) pairs that have rows."""
        return {(row["arm"], int(row["seed"])) for row in self.rows}

    def stamps(self) -> list[ArmStamp]:
        """The header's arms as :class:`ArmStamp` (hash, parent, fingerprint)."""
        return [ArmStamp(name, digest, self.fingerprints.get(name), self.parents.get(name))
                for name, digest in self.hashes.items()]

    def scores(self, arm: str, seed: int, metric: str = "dice", held_out: str = DEFAULT_HELD_OUT) -> np.ndarray:
        """Per-item scores of one arm and seed on one held-out set, in item order."""
        picked = sorted((int(r["item"]), float(r[metric])) for r in self.rows
                        if r["arm"] == arm and int(r["seed"]) == seed and r["held_out"] == held_out)
        if not picked:
            raise KeyError(f"{self.path.name} has no rows for arm {arm!r}, seed {seed}, held-out set {held_out!r}; "
                           "run `make bench`.")
        return np.array([score for _, score in picked])

    def seed_means(self, arm: str, metric: str = "dice", held_out: str = DEFAULT_HELD_OUT) -> np.ndarray:
        """Each seed's mean over the items of one held-out set."""
        return np.array([self.scores(arm, seed, metric, held_out).mean() for seed in self.seeds])

    def differences(self, a: str, b: str, metric: str = "dice", *, metric_b: Optional[str] = None,
                    held_out: str = DEFAULT_HELD_OUT) -> np.ndarray:
        """Paired differences a - b of every stored seed on every item, (seeds, items).

        Args:
            a, b: the arms (the same arm twice compares two of its metrics).
            metric: the column of ``a``.
            metric_b: the column of ``b``; default ``metric``.
            held_out: the held-out set.
        """
        return np.stack([self.scores(a, s, metric, held_out) - self.scores(b, s, metric_b or metric, held_out)
                         for s in self.seeds])

    def seed_differences(self, a: str, b: str, metric: str = "dice", held_out: str = DEFAULT_HELD_OUT) -> np.ndarray:
        """Each seed's mean difference a - b over the same items."""
        return self.differences(a, b, metric, held_out=held_out).mean(axis=1)

    def per_seed(self, arm: str, column: str) -> np.ndarray:
        """A per-seed column (``seconds``, ``train_dice``, ...) of one arm: one value per seed, in seed order.

        Raises:
            KeyError: when the arm lacks a seed or the column.
            ValueError: when the column takes several values within one seed (it is per item, not per seed).
        """
        if column not in self.columns:
            raise KeyError(f"{self.path.name} has no column {column!r}; its columns: {self.columns}.")
        values = []
        for seed in self.seeds:
            found = {row[column] for row in self.rows if row["arm"] == arm and int(row["seed"]) == seed}
            if not found:
                raise KeyError(f"{self.path.name} has no rows for arm {arm!r}, seed {seed}; run `make bench`.")
            if len(found) > 1:
                raise ValueError(f"{self.path.name}: column {column!r} takes {len(found)} values for arm {arm!r}, "
                                 f"seed {seed}: it is a per-item score; read it with scores().")
            value = found.pop()
            values.append(float(value) if value != "" else float("nan"))
        return np.array(values)


def read_table(path: str | os.PathLike) -> StoredTable:
    """Read a table written by :func:`write_table` (or an older one: no fingerprints, no ``held_out``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no stored benchmark at {path}; run `make bench` (python -m unet_lessons.benchmark).")
    comments, body = split_table_text(path.read_text(encoding="utf-8"))
    facts, hashes, parents, fingerprints, other_cpus = {}, {}, {}, {}, {}
    for line in comments:
        if line.startswith("# on ") and " | hash: " in line:
            kernels, _, rest = line[len("# on "):].partition(": ")
            name, digest, text = rest.split(" | ", 2)
            other_cpus.setdefault(kernels, {})[name] = ArmStamp(name, digest.removeprefix("hash: "),
                                                                Fingerprint.parse(text), parents.get(name))
        elif line.startswith("# arm: "):
            name, *parts = line[len("# arm: "):].split(" | ")
            fields = dict(part.split(": ", 1) for part in parts)
            hashes[name] = fields["hash"]
            if fields.get("parent"):
                parents[name] = fields["parent"]
        elif line.startswith("# fingerprint: "):
            name, text = line[len("# fingerprint: "):].split(" | ", 1)
            fingerprints[name] = Fingerprint.parse(text)
        elif line.startswith("# "):
            key, _, value = line[2:].partition(": ")
            facts[key] = value
    reader = csv.DictReader(io.StringIO(body))
    rows = [{**row, "held_out": row.get("held_out") or DEFAULT_HELD_OUT} for row in reader]
    return StoredTable(path, facts, hashes, rows, parents, fingerprints, list(reader.fieldnames or []), other_cpus)


def unit_rows(arm: str, seed: int, scores: dict, per_seed: dict) -> list[dict]:
    """The rows of one trained (arm, seed): per-item scores of every held-out set, rounded to 6 decimals,
    each row carrying the unit's per-seed values.

    Args:
        arm, seed: the unit.
        scores: ``{held-out set: {metric: per-item values}}``.
        per_seed: ``{column: value}`` (``seconds``, ``collapsed``, the lesson's measurements).
    """
    rows = []
    for held_out, metrics in scores.items():
        count = {len(values) for values in metrics.values()}
        if len(count) != 1:
            raise ValueError(f"arm {arm!r}, held-out set {held_out!r}: the metrics score different numbers of "
                             f"items ({ {k: len(v) for k, v in metrics.items()} }).")
        for item in range(count.pop()):
            rows.append(dict(arm=arm, seed=seed, held_out=held_out, item=item,
                             **{key: round(float(values[item]), 6) for key, values in metrics.items()},
                             **per_seed))
    return rows


def table_columns(rows: Iterable[dict]) -> list[str]:
    """The columns of ``rows``: the keys, first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))
