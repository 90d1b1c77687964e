"""Intervals and verdicts: how strongly a lesson may state what it measured.

A stored comparison trains arms A and B with every seed s and scores both on the same held-out
items i, so seeds and items are *crossed*. The paired difference d[s, i] = A[s, i] - B[s, i]
follows the two-way random-effects model

    d[s, i] = mu + a_s + b_i + e_si,   a ~ (0, sigma_a^2), b ~ (0, sigma_b^2), e ~ (0, sigma_e^2)

and ``mu``, the expected difference over new seeds *and* new items from the same generator, is
what a lesson speaks about. Its estimate, the grand mean, has the variance

    Var(mean d) = sigma_a^2 / S + sigma_b^2 / N + sigma_e^2 / (S N),

which the two-way ANOVA mean squares estimate without fitting anything:
``(MS_seed + MS_item - MS_residual) / (S N)``, with Satterthwaite's degrees of freedom for the
t quantile (:func:`crossed_interval`). Why this and not the alternatives:

* a bootstrap over one seed's items (this module's rule until December 2026) leaves the seed
  noise out: training runs differ more than that interval says;
* an interval over the S seed means leaves the item noise out, because every seed saw the
  same items: a lucky test set would look like a sure result;
* a two-level bootstrap has both noises but a normal-like quantile at S = 5 seeds, and
  covers too rarely.

``tests/test_stats.py`` simulates experiments with a known difference, seed effects, item
effects and their interaction (5 seeds x 12 items, three regimes) and requires this interval to
cover the truth in at least 92 % of 500 experiments in each; lesson 00 runs the same simulation
for the reader, beside the old rule's coverage and false-positive rate.

**A lesson's comparisons are one family.** :func:`judge` widens every interval of the family by
Bonferroni (the t quantile at 1 - 0.05 / (2k) for k comparisons) so that the chance of any false
"A beats B" in the lesson stays at or under 5 %. Bonferroni rather than Holm: it gives intervals,
and the "equivalent" verdict needs an interval.

**The verdicts** (:data:`VERDICTS`), from the family-wise interval and a margin of practical
relevance ``delta`` stated per claim:

* "reproduced": the interval lies above 0 (A beats B);
* "contradicted at this budget": it lies below 0 (B beats A);
* "equivalent at this budget": it lies inside (-delta, +delta): no difference that matters;
* "inconclusive at this budget": anything else;
* "not measured": the lesson does not measure the claim, and says why.

A direction the interval settles comes first: an interval above 0 but inside the margin reads
"reproduced", and the ledger notes that the effect is smaller than the margin.

A deterministic effect (every seed changes the same items by the same amount, so the seed terms
vanish) is reported as counts, not as an interval: :func:`item_counts`, judged by an exact sign
test over the items that changed.

**A spread** ("the branch steadies training": arm A varies less from seed to seed than arm B) is a
claim about variances, not means: :func:`judge_spread` gives the Pitman–Morgan interval of the
ratio of the two arms' standard deviations over seeds, paired by seed (exact for normal seed
means), at the family's Bonferroni level; ``judge(..., others=n)`` counts such comparisons in the
family's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["VERDICTS", "FIGURES", "Interval", "CrossedInterval", "ItemCounts", "Judgement", "bootstrap_interval",
           "paired_difference", "crossed_interval", "variance_components", "is_deterministic", "item_counts",
           "verdict", "judge", "judge_spread", "SpreadJudgement", "seeds_needed", "items_needed", "simulate_differences", "next_seed_range", "FEW_ITEMS", "LEVEL", "POWER",
           "FEWEST_SEEDS"]

#: The closed list of verdicts, shown everywhere verdicts are shown.
VERDICTS = ("reproduced", "contradicted at this budget", "equivalent at this budget", "inconclusive at this budget",
            "not measured")
#: What a ledger figure is: checked exactly (a count, a shape), measured (training and scoring), or estimated
#: (a model of the quantity, such as the memory estimate from layer shapes).
FIGURES = ("exact", "measured", "estimated")
#: Below this many test items a one-run interval is reported with a warning that it says little.
FEW_ITEMS = 10
#: The family-wise coverage of a lesson's intervals.
LEVEL = 0.95
#: Below this many seeds the crossed interval's error is not held at its level in every regime: simulated at
#: 3 seeds × 12 items and a family of 6, a single interval missed the truth about 2.5 times as often as
#: Bonferroni allows where seed and item noise are alike (0.021 against 0.0083), and within the simulation's
#: noise of it at 5 seeds (``tests/test_stats.py``; lesson 00, section 5). A ledger says so under such verdicts.
FEWEST_SEEDS = 5


@dataclass(frozen=True)
class Interval:
    """A mean over the test items of one run and its percentile-bootstrap interval: a *description* of one
    run (how much the items vary), never the basis of a verdict.

    Args:
        mean: the mean over the ``n`` items.
        low, high: the interval's ends.
        n: the number of items.
        level: the coverage, 0.95 by default.
    """

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        few = f", only {self.n} items" if self.n < FEW_ITEMS else ""
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n}{few})"


@dataclass(frozen=True)
class CrossedInterval:
    """The interval of the expected paired difference over seeds and items (:func:`crossed_interval`).

    Args:
        mean: the grand mean of d[s, i].
        low, high: the interval's ends.
        seeds, items: S and N.
        level: the coverage of this one interval (for a family of k: 1 - 0.05 / k).
        family: the number of comparisons in the lesson's family.
        df: Satterthwaite's degrees of freedom.
        standard_error: the estimated standard error of the mean.
        components: the variance components' estimates, ``{"seed", "item", "residual"}``.
    """

    mean: float
    low: float
    high: float
    seeds: int
    items: int
    level: float
    family: int
    df: float
    standard_error: float
    components: Mapping[str, float] = field(default_factory=dict)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return (f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] ({self.seeds} seeds × {self.items} items, "
                f"{100 * (1 - (1 - self.level) * self.family):.0f} % family-wise, k={self.family})")


@dataclass(frozen=True)
class ItemCounts:
    """A deterministic effect, told as counts: how many items every seed changed, and which way.

    Args:
        up, down, unchanged: items whose difference is positive, negative or zero (the same in every seed).
        items, seeds: N and S.
        change: the mean difference on the items that changed (the same in every seed).
        p_value: the exact two-sided sign test over the changed items.
        family: the number of comparisons in the lesson's family.
    """

    up: int
    down: int
    unchanged: int
    items: int
    seeds: int
    change: float
    p_value: float
    family: int = 1

    @property
    def mean(self) -> float:
        return self.change * (self.up + self.down) / self.items if self.items else 0.0

    def __str__(self) -> str:
        return (f"{self.up} of {self.items} items up, {self.down} down, the same in all {self.seeds} seeds "
                f"(mean change there {self.change:+.3f}); sign test p = {self.p_value:.3g}, k={self.family}")


@dataclass(frozen=True)
class Judgement:
    """One comparison of a lesson's family, judged: what the ledger records.

    Args:
        name: the comparison's key in the family.
        verdict: one of :data:`VERDICTS`.
        interval: the family-wise crossed interval, or ``None`` for a deterministic effect.
        counts: the counts of a deterministic effect, or ``None``.
        margin: the margin of practical relevance delta (in the score's units).
        family: the family size k.
        budget: what it would take to settle an undecided comparison (:func:`seeds_needed`), or "".
    """

    name: str
    verdict: str
    interval: Optional[CrossedInterval]
    counts: Optional[ItemCounts]
    margin: float
    family: int
    budget: str = ""

    @property
    def mean(self) -> float:
        return self.interval.mean if self.interval is not None else self.counts.mean

    def __str__(self) -> str:
        return str(self.interval if self.interval is not None else self.counts)


def _as_items(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} holds no test items; an interval needs at least one (better ten or more).")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf scores ({int((~np.isfinite(array)).sum())} of {array.size}); "
                         "score empty cases explicitly (e.g. Dice 1 when both are empty) before the interval.")
    return array


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> Interval:
    """The mean of one run's per-item scores and its percentile-bootstrap interval (a description of one run).

    Args:
        values: one score per test item (image or volume).
        resamples: bootstrap resamples (fixed, with a fixed ``seed``, so the interval is reproducible).
        seed: the resampling seed.
        level: the interval's coverage.
    """
    items = _as_items(values, "values")
    rng = np.random.default_rng(seed)
    means = items[rng.integers(0, items.size, size=(resamples, items.size))].mean(axis=1)  # (resamples,)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(items.mean()), float(low), float(high), int(items.size), level)


def paired_difference(a: Sequence[float], b: Sequence[float], **options) -> Interval:
    """One run's ``mean(a - b)`` over the same test items and its bootstrap interval (a description of one run;
    verdicts come from :func:`judge` over every stored seed).

    Args:
        a, b: per-item scores of the two arms, in the same item order.
        **options: passed to :func:`bootstrap_interval`.
    """
    first, second = _as_items(a, "a"), _as_items(b, "b")
    if first.shape != second.shape:
        raise ValueError(f"a paired difference needs the same test items in both arms; got {first.size} and "
                         f"{second.size} scores.")
    return bootstrap_interval(first - second, **options)


def _as_matrix(differences: np.ndarray) -> np.ndarray:
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"differences must be a (seeds, items) array, one row per seed; got shape {d.shape}.")
    seeds, items = d.shape
    if seeds < 2 or items < 2:
        raise ValueError(f"an interval over seeds and items needs at least 2 of each; got {seeds} seeds × {items} "
                         "items. Run more seeds (`python -m unet_lessons.benchmark LESSON`) or score more items.")
    if not np.isfinite(d).all():
        raise ValueError(f"the differences hold {int((~np.isfinite(d)).sum())} NaN or inf values; score empty "
                         "cases explicitly (e.g. Dice 1 when both are empty) before comparing.")
    return d


def _mean_squares(d: np.ndarray) -> tuple[float, float, float]:
    seeds, items = d.shape
    grand, seed_means, item_means = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = items * float(((seed_means - grand) ** 2).sum()) / (seeds - 1)
    ms_item = seeds * float(((item_means - grand) ** 2).sum()) / (items - 1)
    residual = d - seed_means[:, None] - item_means[None, :] + grand
    ms_residual = float((residual ** 2).sum()) / ((seeds - 1) * (items - 1))
    return ms_seed, ms_item, ms_residual


def variance_components(differences: np.ndarray) -> dict[str, float]:
    """The estimated variances of the seed effect, the item effect and the residual (clipped at 0).

    Args:
        differences: d[s, i], shape (seeds, items).
    """
    d = _as_matrix(differences)
    return _components(*_mean_squares(d), *d.shape)


def _components(ms_seed: float, ms_item: float, ms_residual: float, seeds: int, items: int) -> dict[str, float]:
    """The variance components from the mean squares, each clipped at 0."""
    return {"seed": max((ms_seed - ms_residual) / items, 0.0), "item": max((ms_item - ms_residual) / seeds, 0.0),
            "residual": ms_residual}


def crossed_interval(differences: np.ndarray, *, level: float = LEVEL, family: int = 1) -> CrossedInterval:
    """The interval of the expected paired difference over new seeds and new items.

    The mean squares of a two-way layout without replication give the variance of the grand mean,
    (MS_seed + MS_item - MS_residual) / (S N); it is kept at least MS_residual / (S N) (the variance is at
    least sigma_e^2 / (S N)) when sampling noise drives the sum lower. Satterthwaite's degrees of freedom
    set the t quantile, and a family of ``family`` comparisons widens it by Bonferroni.

    Args:
        differences: d[s, i] = A[s, i] - B[s, i], shape (seeds, items), the items in the same order for every seed.
        level: the family-wise coverage.
        family: the number of comparisons in the lesson's family.
    """
    d = _as_matrix(differences)
    if family < 1:
        raise ValueError(f"a family holds at least one comparison; got {family}.")
    seeds, items = d.shape
    ms_seed, ms_item, ms_residual = _mean_squares(d)
    combined, df = _variance_and_df(ms_seed, ms_item, ms_residual, seeds, items)
    standard_error = math.sqrt(combined / (seeds * items))
    single_level = 1 - (1 - level) / family
    quantile = _t(1 - (1 - single_level) / 2, df)
    mean = float(d.mean())
    components = _components(ms_seed, ms_item, ms_residual, seeds, items)
    return CrossedInterval(mean, mean - quantile * standard_error, mean + quantile * standard_error, seeds, items,
                           single_level, family, df, standard_error, components)


def _variance_and_df(ms_seed: float, ms_item: float, ms_residual: float, seeds: int, items: int
                     ) -> tuple[float, float]:
    """S·N times the variance of the grand mean, and Satterthwaite's degrees of freedom for it.

    The variance is at least sigma_e^2 / (S N), since the other two terms are not negative, and MS_residual
    estimates sigma_e^2: so the combination is kept at least MS_residual when sampling noise drives it lower.
    """
    combined = max(ms_seed + ms_item - ms_residual, ms_residual)
    if combined == 0.0:  # every difference identical: nothing varies, the interval is the point
        return 0.0, float("inf")
    terms = ms_seed ** 2 / (seeds - 1) + ms_item ** 2 / (items - 1) + ms_residual ** 2 / ((seeds - 1) * (items - 1))
    return combined, (max(combined ** 2 / terms, 1.0) if terms > 0 else float("inf"))


def _t(probability: float, df: float) -> float:
    return float(scipy_stats.t.ppf(probability, df)) if math.isfinite(df) else float(scipy_stats.norm.ppf(probability))


def next_seed_range(seed_scores: Sequence[float], *, margin: float = 0.0, level: float = 0.99) -> tuple[float, float]:
    """Where one more training run's score should fall, given the stored seeds' scores.

    A lesson's live run is one more draw of the training noise: on the CPU that stored the table it
    repeats a stored seed, on another CPU type its rounding differs and the run ends elsewhere. Of
    n + 1 exchangeable runs, the new one falls outside the range of the other n with probability
    2 / (n + 1) (a third, at five seeds), so "inside the stored range" is no check. This is the
    normal-model prediction interval, mean ± t(1 - (1 - level) / 2, n - 1) · s · √(1 + 1/n), widened
    to at least the stored range ± ``margin``: it fails on a run that is not a draw of the same
    training (a broken loss, a collapsed prediction), not on an unlucky one.

    Args:
        seed_scores: one score per stored seed (at least two).
        margin: the interval is never narrower than [min − margin, max + margin].
        level: the prediction interval's level.
    """
    scores = _as_items(seed_scores, "seed_scores")
    if scores.size < 2:
        raise ValueError(f"next_seed_range needs at least two seeds' scores, got {scores.size}.")
    n = scores.size
    half = _t(1 - (1 - level) / 2, n - 1) * float(scores.std(ddof=1)) * math.sqrt(1 + 1 / n)
    return (min(float(scores.mean()) - half, float(scores.min()) - margin),
            max(float(scores.mean()) + half, float(scores.max()) + margin))


def is_deterministic(differences: np.ndarray, *, tolerance: float = 1e-5) -> bool:
    """Whether every seed changed every item by the same amount (and at least one item changed): an effect
    of the items, not of training, which is told as counts (:func:`item_counts`)."""
    d = _as_matrix(differences)
    return bool(np.abs(d - d[0]).max() <= tolerance and np.abs(d[0]).max() > tolerance)


def item_counts(differences: np.ndarray, *, family: int = 1, tolerance: float = 1e-5) -> ItemCounts:
    """Counts of a deterministic effect and the exact two-sided sign test over the items it changed.

    Args:
        differences: d[s, i], the same in every seed (:func:`is_deterministic`).
        family: the family size k (the test is judged at 0.05 / k).
        tolerance: below this a difference counts as no change.
    """
    d = _as_matrix(differences)
    if not is_deterministic(d, tolerance=tolerance):
        raise ValueError("item_counts is for an effect that every seed repeats item by item; this one varies "
                         "between seeds: use crossed_interval.")
    row = d[0]
    up, down = int((row > tolerance).sum()), int((row < -tolerance).sum())
    changed = row[np.abs(row) > tolerance]
    p_value = float(scipy_stats.binomtest(up, up + down, 0.5).pvalue)
    return ItemCounts(up, down, row.size - up - down, row.size, d.shape[0], float(changed.mean()), p_value, family)


def verdict(interval: Optional[CrossedInterval], *, margin: Optional[float] = None, reason: str = "") -> str:
    """The verdict on the claim "A > B" from the family-wise interval of A - B.

    Args:
        interval: from :func:`crossed_interval` (or :func:`judge`); ``None`` when not measured.
        margin: delta, the margin of practical relevance; ``None`` when the claim states none (then never
            "equivalent").
        reason: why it was not measured (required when ``interval`` is ``None``).
    """
    if interval is None:
        if not reason:
            raise ValueError("a claim that is not measured needs the reason.")
        return "not measured"
    if not isinstance(interval, CrossedInterval):
        raise TypeError("a verdict needs the interval over every stored seed and item (crossed_interval or judge), "
                        f"not {type(interval).__name__}: one run's interval leaves the seed noise out.")
    if interval.low > 0:
        return "reproduced"
    if interval.high < 0:
        return "contradicted at this budget"
    if margin is not None and margin < 0:
        raise ValueError(f"a margin is a size, at least 0; got {margin}.")
    if margin is not None and -margin < interval.low and interval.high < margin:
        return "equivalent at this budget"
    return "inconclusive at this budget"


#: The chance of settling a comparison that the budget lines plan for.
POWER = 0.8


def _needed_half_width(components: Mapping[str, float], seeds: int, items: int, level: float) -> float:
    """At another design, from the variance components: the expected (t_level + t_power) · standard error, which
    must fall below a true difference for the interval to exclude 0 with about :data:`POWER` chance."""
    seed_var, item_var, residual = components["seed"], components["item"], components["residual"]
    combined, df = _variance_and_df(residual + items * seed_var, residual + seeds * item_var, residual, seeds, items)
    return (_t(1 - (1 - level) / 2, df) + _t(POWER, df)) * math.sqrt(combined / (seeds * items))


def _smallest(fits, low: int, limit: int) -> Optional[int]:
    """The smallest n in [low, limit] with fits(n), by bisection (the expected half-width shrinks as n grows)."""
    if not fits(limit):
        return None
    while low < limit:
        middle = (low + limit) // 2
        low, limit = (low, middle) if fits(middle) else (middle + 1, limit)
    return low


def seeds_needed(interval: CrossedInterval, effect: Optional[float] = None, *, items: Optional[int] = None,
                 limit: int = 200) -> Optional[int]:
    """The smallest number of seeds, at the same items (or ``items`` of them), that gives the interval about a
    :data:`POWER` chance of excluding 0 if the true difference were ``effect`` (default: the one measured) and the
    variance components the ones estimated (rough themselves with few seeds); ``None`` beyond ``limit``. For
    equivalence within a margin, pass ``effect = margin - |mean|``."""
    effect = abs(interval.mean if effect is None else effect)
    items = interval.items if items is None else items
    if items < 2:
        raise ValueError(f"items must be at least 2; got {items}.")
    return _smallest(lambda seeds: _needed_half_width(interval.components, seeds, items, interval.level)
                     < effect, 2, limit)


def items_needed(interval: CrossedInterval, effect: Optional[float] = None, *, limit: int = 2000) -> Optional[int]:
    """Like :func:`seeds_needed`, for the number of held-out items at the same seeds."""
    effect = abs(interval.mean if effect is None else effect)
    return _smallest(lambda items: _needed_half_width(interval.components, interval.seeds, items, interval.level)
                     < effect, 2, limit)


def _budget(interval: CrossedInterval, margin: float) -> str:
    """What would settle an undecided comparison: the direction where the measured difference is at least the
    margin, equivalence where it is inside it."""
    mean = interval.mean
    equivalence = abs(mean) < margin
    effect = margin - abs(mean) if equivalence else abs(mean)
    level, components = interval.level, interval.components
    seeds, items = seeds_needed(interval, effect), items_needed(interval, effect)
    # Where even a vast number of one kind cannot do it, the other kind's noise sets the floor.
    seeds_text = (f"about {seeds} seeds" if seeds else "more than 200 seeds"
                  if _needed_half_width(components, 10 ** 6, interval.items, level) < effect
                  else "no number of seeds alone")
    items_text = (f"about {items} items" if items else "more than 2000 items"
                  if _needed_half_width(components, interval.seeds, 10 ** 6, level) < effect
                  else "no number of items alone")
    goal = f"an interval inside ±{margin:g}" if equivalence else "an interval that excludes 0"
    return (f"if the true difference were {mean:+.3f}, {seeds_text} at {interval.items} items, or {items_text} at "
            f"{interval.seeds} seeds, would give an {POWER * 100:.0f} % chance of {goal}")


def judge(differences: Mapping[str, np.ndarray], margins: Mapping[str, float], *, level: float = LEVEL,
          others: int = 0) -> dict[str, Judgement]:
    """Judge a lesson's family of comparisons together, each with its stated margin.

    Args:
        differences: comparison name -> d[s, i] of A - B (A the arm the claim favours), shape (seeds, items).
        margins: comparison name -> delta, the margin of practical relevance in the score's units.
        level: the family-wise coverage.
        others: the family's further comparisons judged elsewhere (:func:`judge_spread`), counted in its size.

    Returns:
        comparison name -> :class:`Judgement`, with the family size k = ``len(differences) + others``.
    """
    if others < 0:
        raise ValueError(f"others counts further comparisons of the family, at least 0; got {others}.")
    missing = set(differences) - set(margins)
    if missing:
        raise ValueError(f"every comparison needs a stated margin of practical relevance; none for {sorted(missing)}.")
    negative = sorted(name for name, margin in margins.items() if margin < 0)
    if negative:
        raise ValueError(f"a margin is a size, at least 0; negative for {negative}.")
    family = len(differences) + others
    judged = {}
    for name, d in differences.items():
        margin = float(margins[name])
        if is_deterministic(d):
            counts = item_counts(d, family=family)
            alpha = (1 - level) / family
            # The sign test and the mean must agree: many small gains and a few large losses are no win.
            if counts.p_value < alpha and (counts.up > counts.down) == (counts.mean > 0) and counts.mean != 0:
                result = "reproduced" if counts.mean > 0 else "contradicted at this budget"
                budget = ""
            else:
                result = "inconclusive at this budget"
                needed = next(n for n in range(1, 64) if 2 * 0.5 ** n < alpha)
                budget = f"a sign test at this family needs at least {needed} changed items, all one way"
            judged[name] = Judgement(name, result, None, counts, margin, family, budget)
            continue
        interval = crossed_interval(d, level=level, family=family)
        result = verdict(interval, margin=margin)
        budget = _budget(interval, margin) if result == "inconclusive at this budget" else ""
        judged[name] = Judgement(name, result, interval, None, margin, family, budget)
    return judged


@dataclass(frozen=True)
class SpreadJudgement:
    """A spread comparison, judged: is arm A steadier from seed to seed than arm B?

    Args:
        name: the comparison's key.
        verdict: one of :data:`VERDICTS` ("reproduced": A's spread is smaller).
        ratio: sd(A) / sd(B) over the seed means.
        low, high: its family-wise Pitman–Morgan interval.
        seeds: S, the seeds (pairs).
        correlation: the correlation of A's and B's seed means over the seeds.
        margin: equivalent when the interval lies inside [1 / margin, margin] (a factor, > 1).
        family: the family size k.
        budget: what would settle an undecided comparison, or "".
    """

    name: str
    verdict: str
    ratio: float
    low: float
    high: float
    seeds: int
    correlation: float
    margin: float
    family: int
    budget: str = ""

    def __str__(self) -> str:
        return (f"sd(A)/sd(B) {self.ratio:.2f} [{self.low:.2f}, {self.high:.2f}] ({self.seeds} seeds, "
                f"k={self.family})")


def _spread_interval(variance_ratio: float, correlation: float, seeds: int, alpha: float) -> tuple[float, float]:
    """Pitman–Morgan: the interval of sigma_a^2 / sigma_b^2 from paired samples, by inverting the t test of
    corr(A + cB, A - cB) = 0, which holds when c^2 is the true ratio."""
    t = _t(1 - alpha / 2, seeds - 2)
    k = 1 + 2 * (1 - correlation ** 2) * t ** 2 / (seeds - 2)
    root = math.sqrt(k * k - 1)
    return variance_ratio * (k - root), variance_ratio * (k + root)


def judge_spread(name: str, a: Sequence[float], b: Sequence[float], *, margin: float, family: int,
                 level: float = LEVEL, limit: int = 200) -> SpreadJudgement:
    """Judge whether arm A varies less across seeds than arm B, from their seed means paired by seed.

    Args:
        name: the comparison's key.
        a, b: the per-seed mean scores of A (the arm the claim calls steadier) and B, one per seed, same order.
        margin: a factor > 1: a ratio of standard deviations inside [1 / margin, margin] does not matter.
        family: the size of the lesson's family (Bonferroni: each interval at 1 - (1 - level) / family).
        level: the family-wise coverage.
        limit: the most seeds the budget line looks at.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 3:
        raise ValueError(f"a and b must be one mean per seed, paired, at least 3 seeds; got shapes {a.shape}, {b.shape}.")
    if margin <= 1:
        raise ValueError(f"margin is a factor above 1 (e.g. 2: standard deviations within a factor of 2); got {margin}.")
    if family < 1:
        raise ValueError(f"family must be at least 1; got {family}.")
    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
    if var_a == 0 or var_b == 0:
        raise ValueError("an arm's seed means are all equal: its spread is 0, and a ratio of spreads is undefined.")
    correlation = float(np.corrcoef(a, b)[0, 1])
    alpha = (1 - level) / family
    low, high = (math.sqrt(v) for v in _spread_interval(var_a / var_b, correlation, len(a), alpha))
    ratio = math.sqrt(var_a / var_b)
    if high < 1:
        result = "reproduced"
    elif low > 1:
        result = "contradicted at this budget"
    elif 1 / margin < low and high < margin:
        result = "equivalent at this budget"
    else:
        result = "inconclusive at this budget"
    budget = ""
    if result == "inconclusive at this budget":
        settles = (lambda lo, hi: hi < 1 or lo > 1) if not 1 / margin < ratio < margin else \
            (lambda lo, hi: 1 / margin < lo and hi < margin)
        needed = next((n for n in range(len(a) + 1, limit + 1)
                       if settles(*(math.sqrt(v) for v in _spread_interval(var_a / var_b, correlation, n, alpha)))),
                      None)
        goal = "inside the margin" if 1 / margin < ratio < margin else "that excludes 1"
        budget = (f"if the spreads and their correlation stayed as measured, about {needed} seeds would give an interval "
                  f"{goal}" if needed else f"more than {limit} seeds would be needed for an interval {goal}") + \
            " (more for an 80 % chance: spreads from few seeds are noisy themselves)"
    return SpreadJudgement(name, result, ratio, low, high, len(a), correlation, float(margin), family, budget)


def simulate_differences(rng: np.random.Generator, *, seeds: int, items: int, mean: float, seed_sd: float,
                         item_sd: float, residual_sd: float) -> np.ndarray:
    """Paired differences d[s, i] drawn from the crossed model: for checking an interval's coverage.

    Args:
        rng: the random generator.
        seeds, items: S and N.
        mean: the true expected difference mu.
        seed_sd, item_sd, residual_sd: sigma_a, sigma_b and sigma_e (the seed-by-item interaction and noise).
    """
    seed_effect = rng.normal(0.0, seed_sd, size=(seeds, 1))
    item_effect = rng.normal(0.0, item_sd, size=(1, items))
    return mean + seed_effect + item_effect + rng.normal(0.0, residual_sd, size=(seeds, items))
