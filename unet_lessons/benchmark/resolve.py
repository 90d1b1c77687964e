"""What makes a stored table stale: the arms' resolved settings and their behaviour, computed from the code.

Two checks, per arm:

* the **resolved-settings hash**: of what the code builds for the arm after every default is
  filled in, with no prose: the model's and the loss's class and settings
  (:func:`unet_lessons.runs.describe`), the whole :class:`~unet_lessons.train.TrainConfig`, the
  batch source's simple settings (patch size, normalisation, its transforms' ranges and
  probabilities), the arm's own settings, its parent's hash, and a digest of the data arrays
  ``make_data()`` returns. A changed default anywhere in that chain changes the hash. A benchmark
  with folds is built on its first fold.
* the **behaviour fingerprint**: the losses of the first three training steps of seed 0, and
  every score of held-out item 0 after them (of each held-out set). It changes when code that
  holds no setting changes: a model's ``forward``, a loss's formula, a metric. The per-seed
  measurements are not in it (they may be timings, or read every training volume).

Both are stored in the table's header; :func:`check_table` recomputes them and says what differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import inspect
import json
import random
import warnings
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..runs import describe
from ..train import PredictionCollapseWarning, fit
from .declare import Arm, Benchmark, LESSONS, handed_down_state, item_values, load_benchmark, load_parent_weights
from .table import ArmStamp, Fingerprint, StoredTable, fingerprint_differences

__all__ = ["LOSS_RTOL", "SCORE_ATOL", "FINGERPRINT_STEPS", "simple_settings", "data_digest", "weights_digest",
           "resolved_settings", "resolved_hashes", "fingerprints", "arm_stamps", "check_table", "stale_arms"]

#: Tolerances of the fingerprint check: relative, on each training loss; absolute, on each score.
LOSS_RTOL, SCORE_ATOL = 1e-4, 1e-4
#: Training steps of the fingerprint.
FINGERPRINT_STEPS = 3
_SMALL = 64  # tensors up to this many values are settings (class weights); larger ones are data


def simple_settings(obj: Any, depth: int = 6, _seen: Optional[set] = None) -> Any:
    """A JSON-able description of an object's public settings, followed into its parts up to ``depth``.

    Numbers, strings, enums, small arrays and the classes of nested objects are kept; large
    arrays become their shape and dtype (the data digest covers their values), and random
    generators and private attributes are left out (they change as batches are drawn).

    Args:
        obj: e.g. a :class:`~unet_lessons.data.PatchSampler` with its MONAI transforms.
        depth: how many levels of nested objects to follow.
    """
    _seen = set() if _seen is None else _seen
    if isinstance(obj, enum.Enum):
        return simple_settings(obj.value, depth, _seen)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, type):
        return obj.__qualname__
    if isinstance(obj, np.dtype) or isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        array = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        if array.size <= _SMALL and array.dtype != object:
            return array.tolist()
        return f"array{tuple(array.shape)} {array.dtype}"
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [simple_settings(value, depth, _seen) for value in obj]
    if isinstance(obj, Mapping):
        return {str(key): simple_settings(value, depth, _seen) for key, value in obj.items()}
    if isinstance(obj, (np.random.RandomState, np.random.Generator, torch.Generator, random.Random)):
        return None
    if inspect.isroutine(obj):  # a function given as a setting (a transform): its name, not its closure
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    name = type(obj).__qualname__
    if depth <= 0 or id(obj) in _seen or not hasattr(obj, "__dict__"):
        return name
    _seen.add(id(obj))
    public = {key: value for key, value in vars(obj).items() if not key.startswith("_")}
    return {"class": name, **{key: simple_settings(value, depth - 1, _seen) for key, value in public.items()}}


def _update_with_array(digest: "hashlib._Hash", key: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        digest.update(f"{key}:{value.dtype.str}:{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(f"{key}={value!r}|".encode())


def data_digest(data: Mapping[str, Any]) -> str:
    """A digest of what ``make_data()`` returned: every array's dtype, shape and bytes, and every other value."""
    digest = hashlib.sha256()
    for key in sorted(data):
        _update_with_array(digest, key, data[key])
    return digest.hexdigest()[:16]


def weights_digest(model: nn.Module) -> str:
    """A digest of a model's weights and buffers (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        _update_with_array(digest, key, value)
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def preserved_random_states() -> Iterator[None]:
    """Leave Python's, NumPy's and torch's global random states as they were: building an arm
    seeds them, and a lesson that checks its table mid-way must draw the same numbers afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _resolved(arm: Arm, built: tuple, digest: str, parent_hash: Optional[str]) -> dict:
    model, batches, loss, config = built
    return {"arm": arm.name, "settings": arm.settings, "parent": parent_hash,
            "model": describe(model, buffers=False), "loss": describe(loss),
            "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "progress"},
            "batches": simple_settings(batches), "data": digest}


def resolved_settings(benchmark: Benchmark, arm: Arm, data: Mapping[str, Any], *, digest: Optional[str] = None,
                      parent_hash: Optional[str] = None) -> dict:
    """Everything that decides an arm's result besides the seed and the code, after defaults (built for seed 0).

    Args:
        benchmark: the lesson's declaration.
        arm: one of its arms.
        data: what ``benchmark.make_data()`` returned.
        digest: :func:`data_digest` of ``data``, when already known.
        parent_hash: the parent arm's resolved hash (child arms).
    """
    with preserved_random_states():
        built = benchmark.make_arm(arm.name, 0, benchmark.fold_views(dict(data))[0])
    return _resolved(arm, built, digest or data_digest(data), parent_hash)


def _hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def _first_item_scores(benchmark: Benchmark, model: nn.Module, arm: Arm, view: dict) -> dict:
    scores = {}
    for held_out, metrics in benchmark.score(model, arm, view).items():
        scores.update({f"{held_out}/{metric}": float(item_values(values)[0]) for metric, values in metrics.items()})
    return scores


def _stamp(benchmark: Benchmark, data: Mapping[str, Any], *, fingerprint: Sequence[str] = ()
           ) -> dict[str, tuple[str, Optional[Fingerprint]]]:
    """Arm name -> (resolved hash, fingerprint or None), in one pass: each arm is built once for seed 0,
    described before it trains (training moves its batch source on), then trained three steps if its
    fingerprint is asked for or a child's needs its model. With folds, on the first fold; the digest is
    of the whole data."""
    digest, view = data_digest(data), None
    data = benchmark.fold_views(dict(data))[0]
    wanted = set(fingerprint)
    needed = {ancestor.name for name in wanted for ancestor in benchmark.lineage(benchmark.arm[name])}
    hashes, models, found = {}, {}, {}
    with preserved_random_states(), warnings.catch_warnings():
        warnings.simplefilter("ignore", PredictionCollapseWarning)  # three steps are too few to mean anything by it
        for arm in benchmark.ordered_arms():
            built = benchmark.make_arm(arm.name, 0, data)
            hashes[arm.name] = _hash(_resolved(arm, built, digest, hashes.get(arm.parent)))
            if arm.name not in needed:
                continue
            model, batches, loss, config = built
            if arm.parent:
                load_parent_weights(model, handed_down_state(models[arm.parent]), arm=arm.name, parent=arm.parent)
            history = fit(model, batches, loss, dataclasses.replace(config, steps=FINGERPRINT_STEPS, progress=False))
            models[arm.name] = model
            if arm.name in wanted:
                view = benchmark.fingerprint_view(dict(data)) if view is None else view
                found[arm.name] = Fingerprint(tuple(history["loss"]), _first_item_scores(benchmark, model, arm, view))
    return {name: (digest_, found.get(name)) for name, digest_ in hashes.items()}


def resolved_hashes(benchmark: Benchmark, data: Mapping[str, Any]) -> dict[str, str]:
    """Arm name -> short hash of :func:`resolved_settings`, parents first (a child's hash includes its parent's)."""
    return {name: digest for name, (digest, _) in _stamp(benchmark, data).items()}


def fingerprints(benchmark: Benchmark, data: Mapping[str, Any], arms: Optional[Sequence[str]] = None
                 ) -> dict[str, Fingerprint]:
    """Arm name -> :class:`Fingerprint`: train seed 0 for three steps, score held-out item 0.

    A child arm starts from its parent's three-step model, as the runner starts it from the
    parent's trained one. Prediction-collapse warnings are silenced.

    Args:
        benchmark: the lesson's declaration.
        data: what ``benchmark.make_data()`` returned.
        arms: only these arms (and the ancestors they need); default every arm.
    """
    names = list(benchmark.arm) if arms is None else list(arms)
    stamped = _stamp(benchmark, data, fingerprint=names)
    return {name: stamped[name][1] for name in names}


def arm_stamps(benchmark: Benchmark, data: Mapping[str, Any]) -> list[ArmStamp]:
    """Every arm's hash, fingerprint and parent, in the benchmark's order: what a table's header records."""
    stamped = _stamp(benchmark, data, fingerprint=list(benchmark.arm))
    return [ArmStamp(arm.name, *stamped[arm.name], arm.parent) for arm in benchmark.arms]


def check_table(table: StoredTable, benchmark: Benchmark, *, data: Optional[Mapping[str, Any]] = None,
                fingerprint: bool = True, loss_rtol: float = LOSS_RTOL, score_atol: float = SCORE_ATOL) -> list[str]:
    """What the code says differs from a stored table, one line per problem, each naming the arm.

    Args:
        table: the stored table (read as this CPU must: :meth:`StoredTable.for_cpu`).
        benchmark: the lesson's declaration.
        data: ``benchmark.make_data()``, when already built.
        fingerprint: also recompute and compare the behaviour fingerprints (trains three steps per arm).
        loss_rtol, score_atol: the fingerprint's tolerances.
    """
    data = benchmark.make_data() if data is None else data
    table = table.for_cpu()  # this CPU's hashes and fingerprints, when the table records them apart
    compared = [arm.name for arm in benchmark.arms if arm.name in table.fingerprints] if fingerprint else []
    stamped, problems = _stamp(benchmark, data, fingerprint=compared), []
    for arm in benchmark.arms:
        digest, computed = stamped[arm.name]
        if arm.name not in table.hashes:
            problems.append(f"{arm.name!r}: not in the table")
        elif table.hashes[arm.name] != digest:
            problems.append(f"{arm.name!r}: resolved settings hash {table.hashes[arm.name]} stored, {digest} now "
                            "(a setting or default, the data or a parent changed)")
        if table.parents.get(arm.name) != arm.parent:
            problems.append(f"{arm.name!r}: parent {table.parents.get(arm.name)!r} stored, {arm.parent!r} now")
        if fingerprint and arm.name not in table.fingerprints:
            problems.append(f"{arm.name!r}: the table holds no fingerprint (it was made by older code)")
        elif computed is not None:
            problems += [f"{arm.name!r}: {difference}" for difference in fingerprint_differences(
                table.fingerprints[arm.name], computed, loss_rtol=loss_rtol, score_atol=score_atol)]
    problems += [f"{name!r}: in the table, not in the code" for name in table.hashes if name not in benchmark.arm]
    return problems


def stale_arms(table: StoredTable, benchmark: Benchmark | Sequence[Arm], shared: Optional[Mapping] = None, *,
               data: Optional[Mapping[str, Any]] = None, fingerprint: bool = False) -> list[str]:
    """The arms whose stored hash (and, with ``fingerprint``, behaviour) differs from the code's, or that the table lacks.

    Args:
        table: the stored table.
        benchmark: the lesson's :class:`Benchmark`; or, as the lessons call it, the lesson's ``ARMS``
            (with its ``SHARED`` as ``shared``), from which the benchmark is found.
        shared: only with ``ARMS``: the lesson's own ``SHARED`` (the hash is resolved from what the
            code builds, so a different dict here could not be honoured).
        data: ``make_data()``, when already built; else built here (a few seconds).
        fingerprint: also compare the behaviour fingerprints (trains three steps per arm).
    """
    if not isinstance(benchmark, Benchmark):
        benchmark = _benchmark_of(tuple(benchmark), shared)
    problems = check_table(table, benchmark, data=data, fingerprint=fingerprint)
    names = [arm.name for arm in benchmark.arms]
    return [name for name in names if any(problem.startswith(f"{name!r}:") for problem in problems)]


def _benchmark_of(arms: tuple, shared: Optional[Mapping]) -> Benchmark:
    for lesson in LESSONS:
        candidate = load_benchmark(lesson)
        if tuple(candidate.arms) == arms:
            if shared is not None and dict(shared) != dict(candidate.shared):
                raise ValueError(f"stale_arms: `shared` must be lesson {lesson}'s own SHARED: the hash is resolved "
                                 "from what the code builds, so change the lesson's settings instead.")
            return candidate
    raise ValueError("stale_arms: these arms belong to no declared benchmark; pass the Benchmark itself.")
