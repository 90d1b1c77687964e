"""Stored benchmarks: the comparison arms and seed spreads that do not fit a lesson's time budget.

A lesson trains live only what fits about 100 s. Every further arm of a comparison, and
every seed spread, runs in ``python -m unet_lessons.benchmark LESSON`` (``make bench``),
which writes a small CSV table to ``notebooks/results/`` of the checkout it runs in: one row
per (arm, seed, held-out set, item), headed by the commit, date, torch version and thread
count, and, per arm, a hash of its resolved settings and a behaviour fingerprint
(:mod:`~unet_lessons.benchmark.resolve`). A unit test recomputes both from the code and fails,
naming the arm and what differs, when a stored table no longer matches it.

A lesson module declares; it holds no loop. ``lesson04.BENCHMARK`` is a :class:`Benchmark`:
the arms (:class:`Arm`), seeds and shared settings, ``make_data()``, ``make_arm(name, seed,
data) -> (model, batches, loss, TrainConfig)``, and a ``score`` that returns per-item scores
per held-out set. The lesson builds its live arms with the same functions, so the two cannot
drift apart. The one runner (:func:`run_benchmark`) trains every (arm, seed) with
:func:`unet_lessons.train.fit`, keeps each trained model as a saved run outside the
repository (re-scoring needs no training), records ``seconds`` and, where the config watches
for it, ``collapsed``, shows a progress bar with the time left, and resumes an interrupted run.

What a declaration can say, with one short example each:

(a) An arm that starts from another arm's trained weights, of the same seed. The runner trains
    parents first, refuses unknown parents and cycles, and loads with ``strict=False``:
    weights only the child has keep their initialisation, while weights only the parent has,
    or of another shape, are refused with a message::

        ARMS = (Arm("FCN-32s", {"stride": 32}),
                Arm("FCN-16s", {"stride": 16}, parent="FCN-32s"))   # fine-tunes FCN-32s's weights

(b) An arm trained over several domains, scored per domain: ``score`` returns one entry per
    held-out set, and the rows carry a ``held_out`` column (a table without one reads as
    ``"test"``)::

        ARMS = (Arm("both scanners", {"domains": ["A", "B"]}),)

        def score(model, arm, data):
            return {domain: {"dice": dice_per_item(model, data[f"test_{domain}"])} for domain in ("A", "B")}

        stored.scores("both scanners", seed=0, metric="dice", held_out="B")

(c) Measurements taken once per arm and seed beside the per-item scores, stored as columns
    (the same value on each row of that arm and seed) and read back per seed::

        def measure(model, arm, data, history):
            return {"train_dice": training_dice(model, data), "seconds_per_step": history["seconds"] / 300}

        BENCHMARK = Benchmark(..., measure=measure)
        stored.per_seed("VAE, 4 volumes", "train_dice")          # one value per stored seed
"""

from __future__ import annotations

from .declare import LESSONS, Arm, Benchmark, first_test_item, handed_down_state, load_benchmark, load_parent_weights
from .resolve import arm_stamps, check_table, fingerprints, resolved_hashes, stale_arms
from .restamp import restamp
from .runner import run_benchmark
from .table import (RESULTS_ENV, ArmStamp, Fingerprint, StoredTable, read_table, results_directory, table_path,
                    write_table)

__all__ = ["Arm", "Benchmark", "LESSONS", "load_benchmark", "first_test_item", "handed_down_state", "load_parent_weights",
           "StoredTable", "ArmStamp", "Fingerprint", "read_table", "write_table", "table_path", "results_directory",
           "RESULTS_ENV", "resolved_hashes", "fingerprints", "arm_stamps", "check_table", "stale_arms",
           "run_benchmark", "restamp"]
