"""Re-stamping a stored table's header once the code that made it is shown to behave as today's.

A table made by older code carries hashes the current checks cannot recompute. Re-running
every seed costs hours; re-running seed 0 of every arm costs a fraction. When that re-run
(a *verification table*, written by the same runner with ``--seeds 0``) equals the stored
seed-0 rows in every score column but ``seconds`` to the 6 stored decimals, the stored
rows still are what the code produces, and only the header needs the current hashes and
fingerprints. The data rows keep every value (their line endings become "\\n"); the header's commit and date stay those
of the run that made the rows, and a ``restamped`` line says what was checked, and when.

Training at these budgets amplifies rounding: on another CPU the same code and seed can end
far from the stored run (lesson 04's foreground-oversampling arm, seed 0: 0.817 stored, 0.333
re-run on a later machine, with the old and the new code bit-identical there over all 200
steps). So the second kind of evidence compares code, not CPUs: the first three training losses
of seed 0 of every arm, computed on one machine by the code that made the table (an older
checkout, ``tests/benchmarks/first_losses.py``) and by today's code, must agree to a relative
1e-6. The stored rows stay what they are: one draw of each seed, on the CPU that made them.

The same amplification makes a table's fingerprints hold on one kind of CPU only (its PyTorch kernels:
AVX-512, AVX2, ...). :func:`stamp_this_cpu` adds another kind's: on such a CPU, the code whose stamps the
table's own were checked against (by the stored-table test, on the table's own kind of CPU) and today's
code must give the same hashes and fingerprints; then today's are written as that CPU's ``# on`` lines,
and every other line of the table stays as it was.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Optional

from .declare import Benchmark, load_benchmark
from .resolve import arm_stamps
from .table import (Fingerprint, StoredTable, _commit, atomic_write_text, cpu_kernels, fingerprint_differences,
                    header_lines, read_table, results_directory, split_table_text)

__all__ = ["KEY_COLUMNS", "compare_seed", "compare_losses", "restamp", "stamp_this_cpu"]

#: How closely the older code's first losses must equal today's, on one machine.
LOSS_RTOL = 1e-6

#: Columns that say which row it is, not what was measured.
KEY_COLUMNS = ("arm", "seed", "held_out", "item")


def compare_seed(stored: StoredTable, verification: StoredTable, *, seed: int = 0,
                 skip: tuple[str, ...] = ("seconds",)) -> list[str]:
    """How the verification table's rows of ``seed`` differ from the stored ones (empty: they are equal).

    Every column of the stored table but ``skip`` and the key columns is compared as a number
    rounded to the 6 decimals the tables store. One line per (arm, column) that differs.

    Args:
        stored: the table to re-stamp.
        verification: a re-run of ``seed`` by the code that made ``stored`` (or code that should agree).
        seed: the seed compared.
        skip: columns not compared (timings).
    """
    def by_key(table: StoredTable) -> dict:
        return {(row["arm"], row["held_out"], int(row["item"])): row for row in table.rows if int(row["seed"]) == seed}

    ours, theirs = by_key(stored), by_key(verification)
    problems = []
    if not ours:
        problems.append(f"the stored table has no rows of seed {seed}")
    for arm in sorted({key[0] for key in ours}):
        lacking = sorted(key[2] for key in ours if key[0] == arm and key not in theirs)
        if lacking:
            problems.append(f"arm {arm!r}: the verification table lacks items {lacking}")
    extra = sorted({key[0] for key in theirs} - {key[0] for key in ours})
    if extra:
        problems.append(f"arms {extra} are in the verification table, not in the stored one")
    columns = [c for c in stored.columns if c not in KEY_COLUMNS + tuple(skip)]
    absent = [c for c in columns if c not in verification.columns]
    if absent:
        problems.append(f"the verification table lacks the columns {absent}")
    differing: dict[tuple[str, str], list] = {}
    for key, row in ours.items():
        other = theirs.get(key)
        if other is None:
            continue
        for column in columns:
            if column in absent:
                continue
            a, b = _six_decimals(row[column]), _six_decimals(other[column])
            if a != b:
                differing.setdefault((key[0], column), []).append((key[1:], row[column], other[column]))
    for (arm, column), items in sorted(differing.items()):
        total = sum(1 for key in ours if key[0] == arm)
        (held_out, item), a, b = max(items, key=lambda found: _gap(found[1], found[2]))
        problems.append(f"arm {arm!r}, column {column!r}: {len(items)} of {total} rows differ (largest: {held_out} "
                        f"item {item}, {a} stored, {b} re-run)")
    return problems


def _six_decimals(text: str) -> str:
    try:
        return f"{float(text):.6f}"
    except ValueError:
        return text


def _gap(a: str, b: str) -> float:
    try:
        return abs(float(a) - float(b))
    except ValueError:
        return float("inf")


def compare_losses(original: dict, now: dict, *, rtol: float = LOSS_RTOL) -> list[str]:
    """How the older code's first training losses differ from today's, per arm (empty: they agree).

    Args:
        original: arm -> the older code's first three losses of seed 0 (``tests/benchmarks/first_losses.py``).
        now: arm -> today's (the fingerprints' losses).
        rtol: the relative tolerance.
    """
    problems = [f"arm {arm!r}: no losses from the older code" for arm in now if arm not in original]
    problems += [f"arm {arm!r}: in the older code, not in today's" for arm in original if arm not in now]
    for arm in now:
        if arm in original and (len(original[arm]) != len(now[arm]) or any(
                abs(a - b) > rtol * max(abs(a), abs(b)) for a, b in zip(original[arm], now[arm]))):
            problems.append(f"arm {arm!r}: losses {original[arm]} from the older code, {list(now[arm])} today")
    return problems


def restamp(lesson: str | Benchmark, verification: Optional[str | os.PathLike] = None, *,
            original_losses: Optional[str | os.PathLike] = None,
            results: Optional[str | os.PathLike] = None, seed: int = 0) -> Path:
    """Rewrite the header of lesson ``lesson``'s table with the current hashes and fingerprints, keeping its rows.

    Args:
        lesson: the lesson number, e.g. ``"04"``, or its :class:`~unet_lessons.benchmark.Benchmark`.
        verification: a table of ``seed`` re-run for every arm (``python -m unet_lessons.benchmark
            LESSON --seeds 0 --results DIR``); or else
        original_losses: a JSON file from ``tests/benchmarks/first_losses.py`` run on the code that made the
            table, whose first losses must equal today's fingerprints' arm by arm.
        results: the folder of the stored tables; default found from the current directory.
        seed: the seed the verification re-ran.

    Raises:
        ValueError: when the verification does not match the stored rows (each difference listed),
            or when the table's arms are not the code's.
    """
    if (verification is None) == (original_losses is None):
        raise ValueError("restamp needs one kind of evidence: a verification table or the older code's losses.")
    benchmark = lesson if isinstance(lesson, Benchmark) else load_benchmark(lesson)
    path = results_directory(results) / benchmark.table
    stored = read_table(path)
    code_arms, table_arms = [arm.name for arm in benchmark.arms], sorted({row["arm"] for row in stored.rows})
    problems = [] if sorted(code_arms) == table_arms else [
        f"the table's arms {table_arms} are not the code's {sorted(code_arms)}"]
    stamps = None
    if verification is not None:
        verified = read_table(verification)
        problems += compare_seed(stored, verified, seed=seed)
        evidence = (f"seed {seed} of every arm was re-run ({Path(verification).name}, commit "
                    f"{verified.facts.get('commit', '?')}, {verified.facts.get('threads', '?')} threads) and matched "
                    "every column but seconds to 6 decimals")
    else:
        record = json.loads(Path(original_losses).read_text(encoding="utf-8"))
        stamps = arm_stamps(benchmark, benchmark.make_data())
        problems += compare_losses(record["losses"], {stamp.name: stamp.fingerprint.losses for stamp in stamps})
        evidence = (f"the code of commit {record.get('commit', '?')} gave every arm's first three training losses "
                    f"of seed 0 equal to this code's (relative {LOSS_RTOL:g}) on one machine; on another CPU single "
                    "runs end elsewhere, as training amplifies rounding, so the rows are one draw per seed")
    if problems:
        raise ValueError(f"refusing to re-stamp {path}: the evidence does not show that the code that made it "
                         "behaves as today's:\n  " + "\n  ".join(problems))
    stamps = stamps or arm_stamps(benchmark, benchmark.make_data())
    comments, body = split_table_text(path.read_text(encoding="utf-8"))
    # Another CPU's lines, and the facts that vouch for them, are dropped: they were of the older code.
    facts = {key: value for key, value in stored.facts.items() if key != "restamped" and
             not key.startswith("stamped on ")}
    facts["cpu"] = cpu_kernels()  # the kernels of the stamps written now
    facts["restamped"] = (f"{datetime.date.today().isoformat()} at commit {_commit(path.parent)}: header re-stamped "
                          f"with the current code's resolved hashes and fingerprints after {evidence}; the rows and "
                          "the other facts are those of the original run; cpu is that of these stamps")
    atomic_write_text(path, "\n".join(header_lines(facts, stamps)) + "\n" + body)
    return path


def stamp_this_cpu(lesson: str | Benchmark, evidence: str | os.PathLike, *,
                   results: Optional[str | os.PathLike] = None) -> Path:
    """Add this CPU's hashes and fingerprints (``# on <kernels>:`` lines) to lesson ``lesson``'s table.

    Args:
        lesson: the lesson number, e.g. ``"04"``, or its :class:`~unet_lessons.benchmark.Benchmark`.
        evidence: a JSON file from ``tests/benchmarks/stamps.py``, run on this kind of CPU with the checkout
            whose code the table's own stamps were last checked against, first on the path.
        results: the folder of the stored tables; default found from the current directory.

    Raises:
        ValueError: when the table's own stamps are this CPU's, or when the evidence is from another kind of
            CPU or another lesson, or gives other hashes or fingerprints than today's code (each listed).
    """
    benchmark = lesson if isinstance(lesson, Benchmark) else load_benchmark(lesson)
    path = results_directory(results) / benchmark.table
    stored, kernels = read_table(path), cpu_kernels()
    if stored.facts.get("cpu") == kernels:
        raise ValueError(f"{path.name}: its own hashes and fingerprints are already this CPU's ({kernels}).")
    record = json.loads(Path(evidence).read_text(encoding="utf-8"))
    problems = []
    if not re.fullmatch(r"[0-9a-f]{7,40}", str(record.get("commit", ""))):
        problems.append(f"the evidence names no commit ({record.get('commit')!r}): run tests/benchmarks/stamps.py "
                        "from a git worktree of the commit the table was checked against")
    if record.get("lesson") != benchmark.lesson:
        problems.append(f"the evidence is of lesson {record.get('lesson')!r}, not {benchmark.lesson!r}")
    if record.get("cpu") != kernels:
        problems.append(f"the evidence was computed with the {record.get('cpu')!r} kernels; this CPU runs {kernels!r}")
    stamps = arm_stamps(benchmark, benchmark.make_data())
    ours = {stamp.name: stamp.parent for stamp in stamps}
    if ours != {name: stored.parents.get(name) for name in stored.hashes}:
        problems.append(f"the table's arms and parents {sorted(stored.hashes)} are not the code's {sorted(ours)}: "
                        "re-run the benchmark instead")
    theirs = record.get("stamps", {})
    for stamp in stamps:
        if stamp.name not in theirs:
            problems.append(f"arm {stamp.name!r}: not in the evidence")
            continue
        if theirs[stamp.name]["hash"] != stamp.hash:
            problems.append(f"arm {stamp.name!r}: hash {theirs[stamp.name]['hash']} from the older code, "
                            f"{stamp.hash} today")
        problems += [f"arm {stamp.name!r}: {difference}" for difference in fingerprint_differences(
            Fingerprint.parse(theirs[stamp.name]["fingerprint"]), stamp.fingerprint, loss_rtol=LOSS_RTOL,
            score_atol=LOSS_RTOL)]
    problems += [f"arm {name!r}: in the evidence, not in today's code" for name in theirs if name not in
                 {stamp.name for stamp in stamps}]
    if problems:
        raise ValueError(f"refusing to add {kernels} stamps to {path}: the evidence does not show that the code the "
                         "table was checked against behaves as today's on this CPU:\n  " + "\n  ".join(problems))
    others = {name: list(values.values()) for name, values in stored.other_cpus.items() if name != kernels}
    others[kernels] = stamps
    facts = dict(stored.facts)
    facts[f"stamped on {kernels}"] = (
        f"{datetime.date.today().isoformat()} at commit {_commit(path.parent)}: the code of commit "
        f"{record.get('commit', '?')} gave every arm the same hash and fingerprint (relative {LOSS_RTOL:g}) on this "
        f"kind of CPU as this code; the rows and the arm and fingerprint lines are the original run's")
    _, body = split_table_text(path.read_text(encoding="utf-8"))
    atomic_write_text(path, "\n".join(header_lines(facts, stored.stamps(), others)) + "\n" + body)
    return path
