"""What a lesson declares: its arms (:class:`Arm`) and one :class:`Benchmark` holding how to build and score them.

A lesson module holds no training loop. It says what to build (``make_data``, ``make_arm``)
and how to score a trained model; :mod:`unet_lessons.benchmark.runner` trains every (arm,
seed) the same way for every lesson.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..train import TrainConfig

__all__ = ["Arm", "Benchmark", "LESSONS", "first_test_item", "handed_down_state", "load_benchmark",
           "load_parent_weights"]

#: ``score(model, arm, data)`` -> ``{held-out set: {metric: per-item values}}``.
ScoreFunction = Callable[[nn.Module, "Arm", dict], Mapping[str, Mapping[str, Sequence[float]]]]
#: ``measure(model, arm, data, history)`` -> ``{column: value}``: one value per arm and seed.
MeasureFunction = Callable[[nn.Module, "Arm", dict, dict], Mapping[str, float]]
#: ``folds(data)`` -> one view of ``data`` per fold (see :class:`Benchmark`).
FoldSplit = Callable[[dict], Sequence[dict]]
#: ``make_arm(arm_name, seed, data)`` -> everything :func:`~unet_lessons.train.fit` needs.
ArmFactory = Callable[[str, int, dict], tuple[nn.Module, Iterable, Callable, TrainConfig]]


@dataclass(frozen=True)
class Arm:
    """One arm of a comparison: a name and the settings that define it (JSON-able values only).

    Args:
        name: shown in tables, e.g. ``"Dice (V-Net)"``.
        settings: what the lesson's ``make_arm`` reads to build the arm, besides the seed.
        live: whether the lesson trains this arm live (else it comes from the stored table only).
        parent: another arm of the same benchmark whose trained weights (same seed) this arm
            starts from, e.g. fine-tuning; ``None`` starts from the arm's own initialisation.
    """

    name: str
    settings: dict = field(default_factory=dict)
    live: bool = False
    parent: Optional[str] = None


def first_test_item(data: dict) -> dict:
    """``data`` with the held-out arrays ``test_images`` and ``test_labels`` cut to their first item.

    The default view a :class:`Benchmark` scores its behaviour fingerprint on: every metric of
    the lesson runs, on one item instead of all of them.
    """
    return {**data, "test_images": data["test_images"][:1], "test_labels": data["test_labels"][:1]}


@dataclass(frozen=True)
class Benchmark:
    """A lesson's stored benchmark: its arms and seeds, and how to build, train and score each.

    Args:
        lesson: the lesson number, e.g. ``"04"``.
        table: the file name of the stored table, e.g. ``"04_vnet.csv"``.
        seeds: the seeds every arm is trained with.
        arms: the arms; a child arm (``Arm.parent``) may come before or after its parent.
        shared: the settings all arms share, as the lesson reads and prints them. It may hold
            prose; the staleness check does not hash it, but what the code builds from it.
        make_data: ``make_data() -> data``, a dict of arrays (and plain values), built once per run.
        make_arm: ``make_arm(arm_name, seed, data) -> (model, batches, loss, TrainConfig)``.
        score: ``score(model, arm, data) -> {held-out set: {metric: per-item values}}``; one
            set (``{"test": {...}}``) for most lessons, one per domain for a multi-domain one.
        measure: optional ``measure(model, arm, data, history) -> {column: value}``: numbers taken
            once per arm and seed beside the per-item scores (a training-set Dice, seconds per step).
            They are not in the behaviour fingerprint, which holds held-out scores only: a
            measurement may be a timing, or read the whole training set.
        fingerprint_view: ``view(data) -> data`` for the fingerprint's scores: the data reduced to
            the first held-out item (and, where scoring reads training data, as little of it as
            still runs the lesson's own metric code).
        metric: the headline per-item column, printed by the runner.
        folds: optional ``folds(data) -> [view, ...]``, for a small data set whose every item
            should be held out once: each view is ``data`` with this fold's training and held-out
            arrays, and ``view["held_out_items"]``, the positions of its held-out items in the
            whole set. Every (arm, seed) then trains one network per fold (``make_arm`` and
            ``score`` get the view), and its rows hold every item once, at its own position:
            a seed's scores over the folds together. ``measure`` is averaged over the folds.
    """

    lesson: str
    table: str
    seeds: tuple[int, ...]
    arms: tuple[Arm, ...]
    shared: Mapping[str, Any]
    make_data: Callable[[], dict]
    make_arm: ArmFactory
    score: ScoreFunction
    measure: Optional[MeasureFunction] = None
    fingerprint_view: Callable[[dict], dict] = first_test_item
    metric: str = "dice"
    folds: Optional[FoldSplit] = None

    def __post_init__(self) -> None:
        names = [arm.name for arm in self.arms]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"benchmark {self.lesson}: arm names must be unique; repeated: {repeated}.")
        unknown = [f"{arm.name!r} -> {arm.parent!r}" for arm in self.arms if arm.parent and arm.parent not in names]
        if unknown:
            raise ValueError(f"benchmark {self.lesson}: unknown parent arm for {', '.join(unknown)}; "
                             f"a parent must be one of {names}.")
        self.ordered_arms()  # refuses a cycle now, at declaration, not hours into a run

    def fold_views(self, data: dict) -> list[dict]:
        """The views one (arm, seed) trains on: one per fold, or ``[data]`` without folds.

        Raises:
            ValueError: when the folds' held-out items are not every item exactly once.
        """
        if self.folds is None:
            return [data]
        views = list(self.folds(data))
        held_out = [int(i) for view in views for i in view["held_out_items"]]
        if not views or sorted(held_out) != list(range(len(held_out))):
            raise ValueError(f"benchmark {self.lesson}: the folds must hold out every item exactly once; their "
                             f"held_out_items are {held_out}.")
        return views

    @property
    def arm(self) -> dict[str, Arm]:
        """The arms by name."""
        return {arm.name: arm for arm in self.arms}

    def ordered_arms(self) -> list[Arm]:
        """The arms with every parent before its children (else in declaration order).

        Raises:
            ValueError: when parents form a cycle, naming it.
        """
        by_name, ordered, placed = self.arm, [], set()

        def place(arm: Arm, chain: tuple[str, ...]) -> None:
            if arm.name in placed:
                return
            if arm.name in chain:
                cycle = " -> ".join(chain[chain.index(arm.name):] + (arm.name,))
                raise ValueError(f"benchmark {self.lesson}: the parent arms form a cycle: {cycle}.")
            if arm.parent:
                place(by_name[arm.parent], chain + (arm.name,))
            placed.add(arm.name)
            ordered.append(arm)

        for arm in self.arms:
            place(arm, ())
        return ordered

    def lineage(self, arm: Arm) -> list[Arm]:
        """``arm`` and its ancestors, the oldest first."""
        chain = [arm]
        while chain[0].parent:
            chain.insert(0, self.arm[chain[0].parent])
        return chain


def handed_down_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a trained arm passes to its child arms: its ``state_dict`` without the parameters it kept fixed.

    A fixed parameter (``requires_grad=False``, such as FCN-32s's bilinear ×32 upsampler) was never
    learnt, so there is nothing of the parent's training in it, and a child builds its own fixed
    layers where it needs them (FCN-16s upsamples ×16, not ×32). Learnt weights and buffers (batch
    norm statistics) are handed down.
    """
    fixed = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    return {name: value.detach().clone() for name, value in model.state_dict().items() if name not in fixed}


def load_parent_weights(model: nn.Module, parent_state: Mapping[str, torch.Tensor], *, arm: str,
                        parent: str) -> list[str]:
    """Start ``model`` (arm ``arm``) from the trained weights of arm ``parent``.

    Weights the child has and the parent lacks (a new head) keep their initialisation; a
    weight the child lacks, or one of another shape, means the two arms do not build related
    networks, and is refused rather than silently dropped.

    Args:
        model: the child arm's freshly built network.
        parent_state: the parent's trained weights (same seed), as :func:`handed_down_state` gives them.
        arm, parent: the two arms' names, for the message.

    Returns:
        The names of the child's weights left at their initialisation.

    Raises:
        ValueError: naming the unexpected weights and the shape mismatches.
    """
    own = model.state_dict()
    unexpected = sorted(set(parent_state) - set(own))
    mismatched = [f"{k}: {tuple(parent_state[k].shape)} in {parent!r}, {tuple(own[k].shape)} in {arm!r}"
                  for k in parent_state if k in own and tuple(parent_state[k].shape) != tuple(own[k].shape)]
    if unexpected or mismatched:
        problems = ([f"{len(unexpected)} weights of {parent!r} that {arm!r} lacks ({', '.join(unexpected[:3])})"]
                    * bool(unexpected) + [f"shapes differ ({'; '.join(mismatched[:3])})"] * bool(mismatched))
        raise ValueError(f"arm {arm!r} cannot start from the weights of its parent arm {parent!r}: "
                         f"{' and '.join(problems)}. A child arm must build the parent's network, "
                         "optionally with extra weights of its own.")
    return list(model.load_state_dict(dict(parent_state), strict=False).missing_keys)


def item_values(values: Any) -> np.ndarray:
    """Per-item scores as a flat float array (a list, a numpy array or a tensor)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


#: Lesson number -> the module of this package that declares its benchmark.
LESSONS = {"01": "lesson01", "02": "lesson02", "03": "lesson03", "04": "lesson04", "05": "lesson05", "06": "lesson06", "07": "lesson07", "08": "lesson08", "09": "lesson09"}


def load_benchmark(lesson: str) -> Benchmark:
    """The :class:`Benchmark` that lesson ``lesson`` (``"04"``) declares as ``BENCHMARK``."""
    from importlib import import_module

    if lesson not in LESSONS:
        raise KeyError(f"no stored benchmark for lesson {lesson!r}; lessons with one: {sorted(LESSONS)}.")
    return import_module(f"{__package__}.{LESSONS[lesson]}").BENCHMARK
