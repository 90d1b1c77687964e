"""Reference solutions of lesson 00 (reading the claim ledger), checked by
:func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import math

import numpy as np

from . import register


def _difference_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for seeds, items, seed_sd, item_sd in ((5, 12, 0.04, 0.01), (3, 20, 0.005, 0.05), (6, 8, 0.02, 0.02)):
        d = 0.01 + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, item_sd, (1, items)) \
            + rng.normal(0, 0.01, (seeds, items))
        cases.append({"differences": d})
    return cases


@register("lesson00.crossed_standard_error",
          task="crossed_standard_error(differences) -> the standard error (a float) of the grand mean of a "
               "(seeds, items) array of paired differences, from the two-way mean squares: "
               "sqrt(max(MS_seed + MS_item - MS_residual, MS_residual) / (S N)).",
          cases=_difference_cases,
          hint="MS_seed is N times the sum of squared deviations of the seed means (axis 1) from the grand mean, "
               "over S - 1; MS_item is S times that of the item means (axis 0), over N - 1; the residual is "
               "d - seed mean - item mean + grand mean, squared, summed, over (S - 1)(N - 1). Check which axis "
               "is which, and that each divisor is a number of degrees of freedom, not a count.")
def crossed_standard_error(differences: np.ndarray) -> float:
    d = np.asarray(differences, dtype=np.float64)
    seeds, items = d.shape
    grand, seed_means, item_means = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = items * ((seed_means - grand) ** 2).sum() / (seeds - 1)
    ms_item = seeds * ((item_means - grand) ** 2).sum() / (items - 1)
    residual = d - seed_means[:, None] - item_means[None, :] + grand
    ms_residual = (residual ** 2).sum() / ((seeds - 1) * (items - 1))
    return float(math.sqrt(max(ms_seed + ms_item - ms_residual, ms_residual) / (seeds * items)))


def _sign_cases(rng: np.random.Generator) -> list[dict]:
    return [{"up": 3, "down": 0}, {"up": 9, "down": 1}, {"up": 2, "down": 6}, {"up": 0, "down": 0},
            {"up": int(rng.integers(5, 12)), "down": int(rng.integers(0, 3))}]


@register("lesson00.sign_test",
          task="sign_test(up, down) -> the exact two-sided p-value (a float) of the sign test: under no effect each "
               "changed item goes up or down with probability 1/2; with no changed item, 1.0.",
          cases=_sign_cases,
          hint="With n = up + down changed items and k = min(up, down), the two-sided p-value is twice the "
               "probability of k or fewer in the rarer direction, sum over j <= k of C(n, j) / 2**n, capped at 1. "
               "math.comb gives C(n, j).")
def sign_test(up: int, down: int) -> float:
    changed = up + down
    if changed == 0:
        return 1.0
    tail = sum(math.comb(changed, j) for j in range(min(up, down) + 1)) / 2 ** changed
    return float(min(1.0, 2 * tail))


def _interval_cases(rng: np.random.Generator) -> list[dict]:
    centre = float(rng.uniform(0.03, 0.06))
    return [{"low": centre - 0.02, "high": centre + 0.02, "margin": 0.02},     # above 0
            {"low": -centre - 0.02, "high": -centre + 0.02, "margin": 0.02},   # below 0
            {"low": -0.012, "high": 0.015, "margin": 0.02},                    # inside the margin
            {"low": -0.012, "high": 0.035, "margin": 0.02},                    # holds 0, reaches past the margin
            {"low": 0.002, "high": 0.009, "margin": 0.02},                     # above 0 and inside the margin
            {"low": -0.03, "high": 0.01, "margin": 0.05}]                      # inside a wider margin


@register("lesson00.verdict",
          task="verdict(low, high, margin) -> the verdict (a str) on \"A beats B\" from the family-wise interval "
               "[low, high] of A − B and the margin δ: 'reproduced', 'contradicted at this budget', 'equivalent at "
               "this budget' or 'inconclusive at this budget'.",
          cases=_interval_cases,
          hint="Settle the direction first: an interval entirely above 0 reproduces the claim and one entirely "
               "below contradicts it, even when it also lies inside the margin. Only an interval that holds 0 can "
               "be equivalent, and only when both its ends lie strictly inside (−δ, +δ).")
def verdict_from_interval(low: float, high: float, margin: float) -> str:
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted at this budget"
    if -margin < low and high < margin:
        return "equivalent at this budget"
    return "inconclusive at this budget"
