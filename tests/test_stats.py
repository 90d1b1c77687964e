"""Bootstrap intervals and the verdict rule."""

import numpy as np
import pytest

from unet_lessons.stats import Interval, bootstrap_interval, paired_difference, verdict


def test_the_bootstrap_interval_is_reproducible_and_covers_the_mean():
    values = np.random.default_rng(0).normal(0.7, 0.1, size=40)
    first, second = bootstrap_interval(values), bootstrap_interval(values)
    assert first == second and first.n == 40
    assert first.low < values.mean() < first.high
    # The standard error of the mean is 0.1 / sqrt(40) ~ 0.016, so the 95 % interval is about ±0.031.
    assert 0.045 < first.high - first.low < 0.08


def test_pairing_removes_the_spread_between_items():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0.3, 0.9, size=30)  # some items are hard for both arms
    a, b = difficulty + 0.02 + rng.normal(0, 0.005, 30), difficulty + rng.normal(0, 0.005, 30)
    paired = paired_difference(a, b)
    unpaired_width = bootstrap_interval(a).high - bootstrap_interval(a).low
    assert paired.excludes_zero() and paired.low > 0
    assert paired.high - paired.low < 0.2 * unpaired_width


@pytest.mark.parametrize("interval, seeds, expected", [
    (Interval(0.05, 0.01, 0.09, 20), [0.04, 0.06, 0.02], "reproduced"),
    (Interval(0.05, 0.01, 0.09, 20), [], "reproduced"),
    (Interval(0.05, 0.01, 0.09, 20), [0.04, -0.01, 0.02], "inconclusive at this budget"),
    (Interval(-0.05, -0.09, -0.01, 20), [-0.04, -0.02], "contradicted at this budget"),
    (Interval(0.01, -0.02, 0.04, 20), [0.01, 0.02], "inconclusive at this budget"),
])
def test_the_verdict_rule(interval, seeds, expected):
    assert verdict(interval, seeds) == expected


def test_not_measured_needs_a_reason_and_bad_scores_are_named():
    assert verdict(None, reason="needs real MRI") == "not measured"
    with pytest.raises(ValueError, match="reason"):
        verdict(None)
    with pytest.raises(ValueError, match="NaN or inf.*score empty cases"):
        bootstrap_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="same test items"):
        paired_difference([1, 2], [1, 2, 3])
    assert "only 3 items" in str(bootstrap_interval([0.1, 0.2, 0.3]))
