"""Intervals and verdicts: how strongly a lesson may state what it measured.

A lesson's test set is small, and one training run is one draw of the seed. So every
figure carries a 95 % interval from a percentile bootstrap over the test items (per image
or per volume), every A-against-B comparison the **paired** interval of the difference
over the same items, and the verdict follows one rule (:func:`verdict`):

* "reproduced" (or "A beats B") only when the paired interval of the difference excludes 0
  in the claimed direction **and** every seed agrees in sign;
* "contradicted at this budget" when it excludes 0 the other way and every seed agrees;
* "inconclusive at this budget" otherwise (the interval holds 0, or the seeds disagree);
* "not measured", with the reason, where the lesson does not measure the claim.

With fewer than about 10 items an interval says little; :class:`Interval` says so itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = ["Interval", "bootstrap_interval", "paired_difference", "verdict", "VERDICTS", "FEW_ITEMS"]

VERDICTS = ("reproduced", "contradicted at this budget", "inconclusive at this budget", "not measured")
#: Below this many test items an interval is reported with a warning that it says little.
FEW_ITEMS = 10


@dataclass(frozen=True)
class Interval:
    """A mean over test items and its percentile-bootstrap interval.

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
    """The mean of per-item scores and its percentile-bootstrap interval.

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
    """The interval of ``mean(a - b)`` over the same test items: A and B resampled together.

    Pairing removes the spread between items (an easy volume is easy for both arms), so the
    difference is judged against the noise that matters.

    Args:
        a, b: per-item scores of the two arms, in the same item order.
        **options: passed to :func:`bootstrap_interval`.
    """
    first, second = _as_items(a, "a"), _as_items(b, "b")
    if first.shape != second.shape:
        raise ValueError(f"a paired difference needs the same test items in both arms; got {first.size} and "
                         f"{second.size} scores.")
    return bootstrap_interval(first - second, **options)


def verdict(difference: Optional[Interval], seed_differences: Sequence[float] = (), *,
            reason: str = "") -> str:
    """The verdict for the claim "A > B" from the paired interval of A - B and each seed's mean difference.

    Args:
        difference: the paired interval of A - B, or ``None`` when the claim was not measured.
        seed_differences: the mean difference A - B of every seed (the stored seed spread); empty
            when only the live run exists, which then stands alone.
        reason: why it was not measured (required when ``difference`` is ``None``).
    """
    if difference is None:
        if not reason:
            raise ValueError("a claim that is not measured needs the reason.")
        return "not measured"
    signs = {np.sign(d) for d in seed_differences}
    if difference.low > 0 and signs <= {1.0}:
        return "reproduced"
    if difference.high < 0 and signs <= {-1.0}:
        return "contradicted at this budget"
    return "inconclusive at this budget"
