"""Intervals and verdicts: the crossed interval covers the truth, the family is corrected, the verdicts are closed."""

import numpy as np
import pytest

from unet_lessons.stats import (judge_spread, FEWEST_SEEDS, VERDICTS, CrossedInterval, Interval, bootstrap_interval, crossed_interval,
                                is_deterministic, item_counts, items_needed, judge, paired_difference, seeds_needed,
                                simulate_differences, variance_components, verdict)

SEEDS, ITEMS, EXPERIMENTS = 5, 12, 500
# (sigma_seed, sigma_item, sigma_residual): the three regimes of shared/notes/crossed-intervals.md.
REGIMES = {"items dominate": (0.005, 0.05, 0.02), "seeds dominate": (0.05, 0.005, 0.02),
           "both alike": (0.03, 0.03, 0.02)}


def old_rule_interval(d: np.ndarray) -> Interval:
    """The rule of lessons 04/06/07 until December 2026: a bootstrap over seed 0's items only."""
    return bootstrap_interval(d[0], resamples=1000)


def old_rule_claims_a_difference(d: np.ndarray) -> bool:
    interval, signs = old_rule_interval(d), set(np.sign(d.mean(axis=1)))
    return (interval.low > 0 and signs <= {1.0}) or (interval.high < 0 and signs <= {-1.0})


def simulate(regime: str, mean: float, seed: int) -> list[np.ndarray]:
    seed_sd, item_sd, residual_sd = REGIMES[regime]
    rng = np.random.default_rng(seed)
    return [simulate_differences(rng, seeds=SEEDS, items=ITEMS, mean=mean, seed_sd=seed_sd, item_sd=item_sd,
                                 residual_sd=residual_sd) for _ in range(EXPERIMENTS)]


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_the_crossed_interval_covers_the_truth_in_every_regime(regime, capsys):
    truth = 0.03
    experiments = simulate(regime, truth, seed=sorted(REGIMES).index(regime))
    covered = np.mean([(i := crossed_interval(d)).low <= truth <= i.high for d in experiments])
    old = np.mean([(i := old_rule_interval(d)).low <= truth <= i.high for d in experiments])
    with capsys.disabled():
        print(f"\n{regime:15s} coverage of the 95 % interval over {EXPERIMENTS} experiments: crossed {covered:.3f}, "
              f"old rule (seed 0's items) {old:.3f}")
    assert covered >= 0.92, f"{regime}: the crossed interval covered the truth in only {covered:.1%} of experiments"


def test_the_coverage_test_can_fail():
    # The same check applied to the old rule fails where the seeds dominate: it would catch a broken interval.
    experiments = simulate("seeds dominate", 0.03, seed=7)
    old = np.mean([(i := old_rule_interval(d)).low <= 0.03 <= i.high for d in experiments])
    assert old < 0.5


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_false_claims_stay_rare_and_the_family_holds_them_at_five_percent(regime, capsys):
    experiments = simulate(regime, 0.0, seed=11 + sorted(REGIMES).index(regime))
    single = np.mean([crossed_interval(d).excludes_zero() for d in experiments])
    old = np.mean([old_rule_claims_a_difference(d) for d in experiments])
    # A family of 5 true-null comparisons: how often does any of them read "A beats B" or "B beats A"?
    families = [experiments[i:i + 5] for i in range(0, EXPERIMENTS, 5)]
    any_false = np.mean([any(j.verdict in ("reproduced", "contradicted at this budget")
                             for j in judge({str(k): d for k, d in enumerate(family)},
                                            {str(k): 0.01 for k in range(5)}).values()) for family in families])
    with capsys.disabled():
        print(f"\n{regime:15s} a false difference announced at a true difference of 0: crossed {single:.3f}, old rule {old:.3f}; "
              f"any of a family of 5, Bonferroni: {any_false:.3f}")
    assert single <= 0.08
    assert any_false <= 0.08


@pytest.mark.parametrize("seeds, worst", [(5, 1.5), (3, 3.5)])
def test_the_family_level_holds_at_five_seeds_and_is_exceeded_at_three(seeds, worst, capsys):
    """The per-comparison miss rate at the Bonferroni level of a family of 6 (nominal 0.05 / 6), in every regime:
    within 1.5 times nominal at 5 seeds (the simulation's noise), and up to about 2.5 times at 3 seeds, which
    FEWEST_SEEDS and the ledger's note report."""
    nominal, rates = 0.05 / 6, {}
    for regime, (seed_sd, item_sd, residual_sd) in REGIMES.items():
        rng = np.random.default_rng(21 + seeds)
        grids = [simulate_differences(rng, seeds=seeds, items=ITEMS, mean=0.0, seed_sd=seed_sd, item_sd=item_sd,
                                      residual_sd=residual_sd) for _ in range(6000)]
        rates[regime] = np.mean([crossed_interval(d, family=6).excludes_zero() for d in grids])
    with capsys.disabled():
        print(f"\n{seeds} seeds, family of 6: miss rate per comparison (nominal {nominal:.4f}): "
              + ", ".join(f"{regime} {rate:.4f}" for regime, rate in rates.items()))
    assert max(rates.values()) <= worst * nominal
    if seeds < FEWEST_SEEDS:
        assert max(rates.values()) > 1.5 * nominal   # why FEWEST_SEEDS is 5: at 3 seeds the level is not held


def test_the_interval_holds_both_noises():
    rng = np.random.default_rng(3)
    d = simulate_differences(rng, seeds=5, items=12, mean=0.0, seed_sd=0.05, item_sd=0.05, residual_sd=0.01)
    interval = crossed_interval(d)
    seed_means_only = d.mean(axis=1).std(ddof=1) / np.sqrt(5)
    item_means_only = d.mean(axis=0).std(ddof=1) / np.sqrt(12)
    assert interval.standard_error > max(seed_means_only, item_means_only)
    components = variance_components(d)
    assert set(components) == {"seed", "item", "residual"} and all(v >= 0 for v in components.values())
    assert "5 seeds × 12 items" in str(interval) and "k=1" in str(interval)


def test_bonferroni_widens_the_interval_by_the_family_size():
    d = simulate_differences(np.random.default_rng(4), seeds=5, items=12, mean=0.02, seed_sd=0.01, item_sd=0.02,
                             residual_sd=0.01)
    one, six = crossed_interval(d), crossed_interval(d, family=6)
    assert six.mean == one.mean and six.low < one.low and six.high > one.high
    assert six.level == pytest.approx(1 - 0.05 / 6) and "95 % family-wise, k=6" in str(six)


@pytest.mark.parametrize("low, high, margin, expected", [
    (0.01, 0.05, 0.02, "reproduced"),
    (0.001, 0.004, 0.02, "reproduced"),        # a settled direction comes first, even inside the margin
    (-0.05, -0.01, 0.02, "contradicted at this budget"),
    (-0.01, 0.015, 0.02, "equivalent at this budget"),
    (-0.01, 0.03, 0.02, "inconclusive at this budget"),
    (-0.01, 0.015, None, "inconclusive at this budget"),
])
def test_the_verdict_rule(low, high, margin, expected):
    interval = CrossedInterval((low + high) / 2, low, high, 5, 12, 0.95, 1, 20.0, 0.01, {})
    assert verdict(interval, margin=margin) == expected and expected in VERDICTS


def test_verdicts_need_every_seed_and_a_reason():
    assert verdict(None, reason="needs real MRI") == "not measured"
    with pytest.raises(ValueError, match="reason"):
        verdict(None)
    with pytest.raises(TypeError, match="every stored seed"):
        verdict(paired_difference([0.5, 0.6], [0.4, 0.5]))
    with pytest.raises(ValueError, match="at least 2 of each"):
        crossed_interval(np.ones((1, 12)))
    with pytest.raises(ValueError, match="NaN or inf"):
        crossed_interval(np.array([[0.1, np.nan], [0.2, 0.3]]))
    with pytest.raises(ValueError, match="stated margin"):
        judge({"a": np.ones((3, 4))}, {})


def test_a_deterministic_effect_is_told_as_counts():
    row = np.zeros(12)
    row[[2, 5, 9]] = 1.0                    # the same three items fixed in every seed
    d = np.tile(row, (3, 1))
    assert is_deterministic(d) and not is_deterministic(d + np.random.default_rng(0).normal(0, 0.01, d.shape))
    counts = item_counts(d, family=6)
    assert (counts.up, counts.down, counts.unchanged) == (3, 0, 9) and counts.p_value == pytest.approx(0.25)
    judged = judge({"postprocessing": d, "other": np.random.default_rng(1).normal(0, 0.01, (3, 12))},
                   {"postprocessing": 0.02, "other": 0.02})["postprocessing"]
    assert judged.interval is None and judged.verdict == "inconclusive at this budget"
    assert "3 of 12 items up" in str(judged) and "at least 7 changed items" in judged.budget  # 2·0.5^7 < 0.05/2
    many = np.tile(np.r_[np.ones(9), np.zeros(3)], (3, 1))
    assert judge({"x": many}, {"x": 0.02})["x"].verdict == "reproduced"


def test_the_budget_that_would_settle_a_comparison():
    rng = np.random.default_rng(5)
    # Seed noise dominates: more seeds settle it, more items alone cannot.
    seeds_noisy = 0.02 + np.array([[0.03], [-0.03], [0.0]]) + rng.normal(0, 0.002, (3, 12))
    interval = crossed_interval(seeds_noisy)
    assert interval.low < 0 and seeds_needed(interval) > 3 and items_needed(interval) is None
    budget = judge({"x": seeds_noisy}, {"x": 0.005})["x"].budget
    assert f"about {seeds_needed(crossed_interval(seeds_noisy))} seeds at 12 items" in budget
    assert "no number of items alone at 3 seeds" in budget
    # Item noise dominates: more items settle it, more seeds alone cannot.
    items_noisy = 0.01 + rng.normal(0, 0.06, (1, 12)) + rng.normal(0, 0.001, (5, 12))
    interval = crossed_interval(items_noisy)
    assert interval.low < 0 and seeds_needed(interval) is None and items_needed(interval) > 12
    assert "no number of seeds alone at 12 items" in judge({"x": items_noisy}, {"x": 0.001})["x"].budget
    # With more items the item noise shrinks, and seeds can settle it again; more items never need more seeds.
    assert seeds_needed(interval, items=400) is not None and seeds_needed(interval, items=400) <= 200
    seeds_noisy_interval = crossed_interval(seeds_noisy)
    assert seeds_needed(seeds_noisy_interval, items=48) <= seeds_needed(seeds_noisy_interval)
    with pytest.raises(ValueError, match="items"):
        seeds_needed(interval, items=1)


def test_one_run_is_described_not_judged():
    values = np.random.default_rng(0).normal(0.7, 0.1, size=40)
    first, second = bootstrap_interval(values), bootstrap_interval(values)
    assert first == second and first.n == 40 and first.low < values.mean() < first.high
    with pytest.raises(ValueError, match="NaN or inf.*score empty cases"):
        bootstrap_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="same test items"):
        paired_difference([1, 2], [1, 2, 3])
    assert "only 3 items" in str(bootstrap_interval([0.1, 0.2, 0.3]))


# ---- judge_spread: the Pitman–Morgan interval of a ratio of paired standard deviations ----

def test_judge_spread_interval_covers_the_true_ratio_of_paired_normal_seed_means():
    rng = np.random.default_rng(0)
    true_ratio, rho, covered, trials = 0.5, 0.6, 0, 1000
    covariance = [[true_ratio ** 2, rho * true_ratio], [rho * true_ratio, 1.0]]
    for _ in range(trials):
        a, b = rng.multivariate_normal([0, 0], covariance, size=5).T
        j = judge_spread("x", a, b, margin=2.0, family=1)
        covered += j.low <= true_ratio <= j.high
    assert 0.93 <= covered / trials <= 0.97  # exact for normal data: 95 %


def test_judge_spread_verdicts_and_the_family():
    steady, unsteady = np.array([0.70, 0.71, 0.69, 0.705, 0.695, 0.70, 0.702, 0.698]), \
        np.array([0.60, 0.80, 0.55, 0.85, 0.65, 0.75, 0.50, 0.90])
    assert judge_spread("s", steady, unsteady, margin=2, family=1).verdict == "reproduced"
    assert judge_spread("s", unsteady, steady, margin=2, family=1).verdict == "contradicted at this budget"
    few = judge_spread("s", steady[:4], unsteady[:4] * 0.05 + 0.66, margin=2, family=1)
    assert few.verdict == "inconclusive at this budget" and "seeds would give" in few.budget
    # a larger family widens the interval
    one, six = (judge_spread("s", steady, unsteady, margin=2, family=k) for k in (1, 6))
    assert six.low < one.low and six.high > one.high and six.ratio == one.ratio
    # and judge counts the spread comparisons in its family
    d = np.random.default_rng(1).normal(0.01, 0.02, size=(5, 12))
    assert judge({"a": d}, {"a": 0.02}, others=2)["a"].family == 3
    for bad in (dict(margin=1.0, family=1), dict(margin=2, family=0)):
        with pytest.raises(ValueError):
            judge_spread("s", steady, unsteady, **bad)
    with pytest.raises(ValueError, match="at least 3 seeds"):
        judge_spread("s", steady[:2], unsteady[:2], margin=2, family=1)
    with pytest.raises(ValueError, match="spread is 0"):
        judge_spread("s", np.ones(5), unsteady[:5], margin=2, family=1)


def test_next_seed_range_holds_one_more_run_as_often_as_its_level():
    from unet_lessons import stats

    rng = np.random.default_rng(0)
    inside = []
    for _ in range(4000):
        runs = rng.normal(0.6, 0.05, size=6)
        low, high = stats.next_seed_range(runs[:5])
        inside.append(low <= runs[5] <= high)
    assert 0.985 <= np.mean(inside) <= 0.995


def test_next_seed_range_is_never_narrower_than_the_stored_range_and_margin():
    from unet_lessons import stats

    low, high = stats.next_seed_range([0.80, 0.80, 0.80, 0.80, 0.81], margin=0.05)
    assert low == pytest.approx(0.75) and high == pytest.approx(0.86)
    with pytest.raises(ValueError, match="at least two"):
        stats.next_seed_range([0.5])
