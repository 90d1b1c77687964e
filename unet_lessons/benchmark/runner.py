"""The one runner: train every (arm, seed) a lesson declares, score it, and store the table.

For every unit (arm, seed), parents before children:

1. build it with the lesson's ``make_arm`` (a child starts from its parent's trained weights);
2. load its saved run, or train it with :func:`unet_lessons.train.fit` and save the run, named
   so that a stale run can never load (:func:`run_name`);
3. score it with the lesson's ``score`` and ``measure``, and append its rows to a partial file.

An interrupted run resumes from the partial file when its arms' hashes and fingerprints
still match the code; the finished table replaces the old one atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..runs import SavedRun, run_directory, saved_runs
from ..train import PredictionCollapseWarning, fit
from .declare import Arm, Benchmark, handed_down_state, item_values, load_parent_weights
from .resolve import LOSS_RTOL, SCORE_ATOL, arm_stamps, weights_digest
from .table import (ArmStamp, cpu_kernels, current_facts, fingerprint_differences, read_table, results_directory,
                    table_columns, unit_rows, write_table)

__all__ = ["run_benchmark", "run_name", "partial_path", "default_runs_directory"]


def default_runs_directory() -> Path:
    """Where the benchmark keeps its trained runs: ``benchmark/`` in the saved-runs folder (outside the repository)."""
    return run_directory() / "benchmark"


def partial_path(table: Path) -> Path:
    """The file a run in progress writes its finished units to, beside the table."""
    return table.with_name(table.name + ".partial")


def run_name(lesson: str, arm: Arm, seed: int, stamp: ArmStamp, model, fold: Optional[int] = None) -> str:
    """The saved run's name of one (arm, seed): stale runs get other names, so they can never load.

    It holds the arm's resolved-settings hash, and a digest of the initial weights (a retrained
    parent changes its children's) together with the fingerprint's losses (code that holds no
    setting, such as a model's ``forward``, changes those), and the fold of a benchmark with folds.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", arm.name.lower()).strip("-")
    losses = ", ".join(f"{value:.6g}" for value in stamp.fingerprint.losses) if stamp.fingerprint else ""
    start = hashlib.sha256(f"{weights_digest(model)}|{losses}".encode()).hexdigest()[:10]
    return f"bench{lesson}-{slug}-seed{seed}{'' if fold is None else f'-fold{fold}'}-{stamp.hash}-{start}"


class _Units:
    """Trains or loads the units of one benchmark run, and keeps the trained weights that children start from.

    A unit is an (arm, seed); with folds (``Benchmark.folds``) it is one network per fold, and its
    rows put each fold's held-out scores at their items' positions.
    """

    def __init__(self, benchmark: Benchmark, data: dict, stamps: dict[str, ArmStamp]) -> None:
        self.benchmark, self.data, self.stamps = benchmark, data, stamps
        self.views = benchmark.fold_views(data)
        self.parents = {arm.parent for arm in benchmark.arms if arm.parent}
        self.states: dict[tuple[str, int, int], dict] = {}

    def trained(self, arm: Arm, seed: int, fold: int = 0):
        """The trained model of (arm, seed) on one fold, its history (with ``collapsed``) and whether it was loaded."""
        model, batches, loss, config = self.benchmark.make_arm(arm.name, seed, self.views[fold])
        config = dataclasses.replace(config, progress=False)
        if arm.parent:
            load_parent_weights(model, self.parent_state(arm.parent, seed, fold), arm=arm.name, parent=arm.parent)
        name = run_name(self.benchmark.lesson, arm, seed, self.stamps[arm.name], model,
                        fold=None if self.benchmark.folds is None else fold)
        with contextlib.redirect_stdout(io.StringIO()):  # the progress bar says it; the run's own notices would break it
            saved_run = SavedRun(name, model, config, loss, batches)  # before training: initial weights, first batch
            history = saved_run.load()
        loaded = history is not None
        if not loaded:
            # fit(run=...) would save before the collapse flag is known; save after, with the flag in the history,
            # so that a re-scored run still reports a collapse that happened when it was trained.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PredictionCollapseWarning)
                history = fit(model, saved_run.batches, loss, config)
            history["collapsed"] = any(issubclass(w.category, PredictionCollapseWarning) for w in caught)
            with contextlib.redirect_stdout(io.StringIO()):
                saved_run.save(history)
        if arm.name in self.parents:
            self.states[arm.name, seed, fold] = handed_down_state(model)
        return model, history, config, loaded

    def parent_state(self, parent: str, seed: int, fold: int = 0) -> dict:
        if (parent, seed, fold) not in self.states:  # a resumed run: the parent's rows exist, its weights are saved
            self.trained(self.benchmark.arm[parent], seed, fold)
        return self.states[parent, seed, fold]

    def rows(self, arm: Arm, seed: int) -> tuple[list[dict], str]:
        """The table rows of one unit, and a one-line summary."""
        seconds, collapsed, every_fold_loaded, measured, scores = 0.0, False, True, [], {}
        for fold, view in enumerate(self.views):
            model, history, config, loaded = self.trained(arm, seed, fold)
            seconds += float(history["seconds"])
            collapsed |= bool(history.get("collapsed", False))
            every_fold_loaded &= loaded
            if self.benchmark.measure is not None:
                measured.append(self.benchmark.measure(model, arm, view, history))
            fold_scores = {held_out: {metric: item_values(values) for metric, values in metrics.items()}
                           for held_out, metrics in self.benchmark.score(model, arm, view).items()}
            scores = fold_scores if self.benchmark.folds is None else \
                _placed(scores, fold_scores, view["held_out_items"], sum(len(v["held_out_items"]) for v in self.views))
        per_seed = {"seconds": round(seconds, 1)}
        if config.collapse_check:  # a column only where collapse was watched for: 0 must mean "checked, fine"
            per_seed["collapsed"] = int(collapsed)
        if measured:  # one value per (arm, seed): the mean over the folds
            per_seed.update({key: round(float(np.mean([m[key] for m in measured])), 6) for key in measured[0]})
        first = next(iter(scores.values()))
        headline = (f"mean {self.benchmark.metric} {np.mean(first[self.benchmark.metric]):.3f}"
                    if self.benchmark.metric in first else "scored")
        folds = f" over {len(self.views)} folds" if self.benchmark.folds is not None else ""
        summary = (f"{arm.name:40s} seed {seed}: {headline}{folds} ({seconds:.0f} s"
                   f"{', loaded from its saved run' if every_fold_loaded else ''}"
                   f"{', COLLAPSED in training' if per_seed.get('collapsed') else ''})")
        return unit_rows(arm.name, seed, scores, per_seed), summary


def _placed(scores: dict, fold_scores: dict, items, total: int) -> dict:
    """``scores`` with one fold's per-item values written at its items' positions (NaN where no fold has been)."""
    items = np.asarray(items, dtype=int)
    for held_out, metrics in fold_scores.items():
        for metric, values in metrics.items():
            if len(values) != len(items):
                raise ValueError(f"a fold scored {len(values)} items of {metric!r} for {len(items)} held-out items.")
            column = scores.setdefault(held_out, {}).setdefault(metric, np.full(total, np.nan))
            column[items] = values
    return scores


def _kept_fact(source_facts: dict, rows: list[dict]) -> str:
    """What the header says of rows kept from an earlier run: which units, and the commit that made them.

    A partial file passes on the note it was given; a stored table is named by its own commit and date."""
    if not rows:
        return ""
    if "kept" in source_facts:
        return source_facts["kept"]
    if "commit" not in source_facts:  # a partial file of this same run's code: nothing older is kept
        return ""
    units: dict[str, set] = {}
    for row in rows:
        units.setdefault(row["arm"], set()).add(int(row["seed"]))
    listed = "; ".join(f"{arm}: seeds {', '.join(map(str, sorted(seeds)))}" for arm, seeds in units.items())
    restamped = "; that table's header had been re-stamped (its git history says how)" if "restamped" in source_facts \
        else ""
    return (f"{sum(map(len, units.values()))} units kept from the table made at commit {source_facts['commit']} on "
            f"{source_facts.get('date', 'an unknown date')}, their arms' hashes and fingerprints unchanged "
            f"({listed}){restamped}")


def _resumable_rows(source: Path, stamps: Sequence[ArmStamp], units: set) -> tuple[list[dict], float, str, str]:
    """The rows of the finished units in ``source`` that this run can keep, the seconds spent on them, why, and
    the header's ``kept`` fact for them (:func:`_kept_fact`).

    ``source`` is the partial file of an interrupted run, or a stored table (``keep_stored``). An
    arm's rows are kept only when its resolved-settings hash, its parent and its fingerprint
    still match the code; the other arms are trained again. When every arm matches, the seconds
    are those the source recorded; otherwise the training seconds of the kept units.
    """
    if not source.exists():
        return [], 0.0, "", ""
    try:
        as_stored = read_table(source)
        table = as_stored.for_cpu()
    except Exception as error:  # noqa: BLE001 - an unreadable partial file is started over, and said so
        return [], 0.0, f"{source.name} is unreadable ({type(error).__name__}); starting over", ""
    matching = set()
    for stamp in stamps:
        stored = table.fingerprints.get(stamp.name)
        if table.hashes.get(stamp.name) == stamp.hash and table.parents.get(stamp.name) == stamp.parent and \
                stored is not None and not fingerprint_differences(stored, stamp.fingerprint, loss_rtol=LOSS_RTOL,
                                                                   score_atol=SCORE_ATOL):
            matching.add(stamp.name)
    rows = [row for row in table.rows if row["arm"] in matching and (row["arm"], int(row["seed"])) in units]
    kept = {(row["arm"], int(row["seed"])) for row in rows}
    changed = sorted({stamp.name for stamp in stamps} - matching)
    if not changed:
        seconds = float(table.facts.get("benchmark seconds", 0))
    else:
        seconds = sum(float(next(row["seconds"] for row in rows if (row["arm"], int(row["seed"])) == unit))
                      for unit in kept) if kept and "seconds" in table.columns else 0.0
    why = f"keeping {len(kept)} finished units from {source.name}"
    if changed:
        why += f"; made by other code or settings, or new, so trained again: {', '.join(changed)}"
    if as_stored.other_cpus and rows:
        why += (f"; the new table holds this CPU's stamps ({cpu_kernels()}) only: on the other kinds of CPU its "
                f"source recorded ({', '.join(as_stored.other_cpus)}, and its own), add theirs with --stamp-this-cpu")
    return rows, seconds, why, _kept_fact(table.facts, rows)


def run_benchmark(benchmark: Benchmark, *, seeds: Optional[Sequence[int]] = None,
                  results: Optional[str | os.PathLike] = None, runs: Optional[str | os.PathLike] = None,
                  progress: bool = True, keep_stored: bool = False) -> Path:
    """Train and score every arm of ``benchmark`` with every seed, and write its table; returns the table's path.

    Args:
        benchmark: the lesson's declaration.
        seeds: the seeds; default the benchmark's own.
        results: the folder of the tables; default :func:`~unet_lessons.benchmark.table.results_directory`.
        runs: the folder of the saved runs; default :func:`default_runs_directory`.
        progress: show a progress bar over the units with the time left (a line per unit is printed either way).
        keep_stored: with no partial file, start from the stored table: keep the rows of the arms whose
            hash and fingerprint still match, and train only the changed or new arms and the new seeds.
    """
    start = time.perf_counter()
    seeds = tuple(benchmark.seeds if seeds is None else seeds)
    path = results_directory(results) / benchmark.table
    partial = partial_path(path)
    say = tqdm.write  # one line per unit, with or without the bar (logs keep them)
    data = benchmark.make_data()
    stamps = arm_stamps(benchmark, data)  # hashes and fingerprints: three training steps per arm
    order = [(arm, seed) for arm in benchmark.ordered_arms() for seed in seeds]
    source = path if keep_stored and not partial.exists() else partial
    rows, earlier, note, kept = _resumable_rows(source, stamps, {(arm.name, seed) for arm, seed in order})
    if note:
        say(note)
    done = {(row["arm"], int(row["seed"])) for row in rows}
    units = _Units(benchmark, data, {stamp.name: stamp for stamp in stamps})
    with saved_runs("reuse", runs if runs is not None else default_runs_directory()), \
            tqdm(total=len(order), initial=len(done), unit="run", desc=f"lesson {benchmark.lesson}",
                 disable=not progress, dynamic_ncols=True) as bar:
        for arm, seed in order:
            if (arm.name, seed) in done:
                continue
            bar.set_postfix_str(f"{arm.name}, seed {seed}")
            unit, summary = units.rows(arm, seed)
            rows += unit
            say(summary)
            spent = earlier + time.perf_counter() - start
            write_table(partial, stamps, _in_table_order(rows, benchmark),
                        facts={"benchmark seconds": f"{spent:.0f}", "partial": "yes", **({"kept": kept} if kept else {})})
            bar.update(1)
    seconds = earlier + time.perf_counter() - start
    final = _in_table_order(rows, benchmark)
    facts = {**current_facts(path.parent, seconds), **({"kept": kept} if kept else {})}
    write_table(path, stamps, final, facts=facts, columns=table_columns(final))
    partial.unlink(missing_ok=True)
    say(f"wrote {path} ({len(final)} rows) in {seconds:.0f} s")
    return path


def _in_table_order(rows: list[dict], benchmark: Benchmark) -> list[dict]:
    """Rows by arm (declaration order), seed, held-out set and item, whatever order they were trained in."""
    arm_order = {arm.name: i for i, arm in enumerate(benchmark.arms)}
    held_out_order = {name: i for i, name in enumerate(dict.fromkeys(row["held_out"] for row in rows))}
    return sorted(rows, key=lambda r: (arm_order[r["arm"]], int(r["seed"]), held_out_order[r["held_out"]],
                                       int(r["item"])))
