"""Calibration of the measurement statistics on simulated campaigns with a known true effect.

Each test simulates at least 1,000 campaigns with numpy (seeded, so the figures are fixed) and checks
that the intervals do what they claim: a 95% interval covers the true effect about 95% of the time,
an A/A test declares a winner about 5% of the time, and the sequential mode keeps that rate under
daily peeking where the fixed-horizon test does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
from statsmodels.stats.proportion import confint_proportions_2indep

from shopcrm.measurement.stats import RevenueStats, ab_test, lift, sequential_half_width

RUNS = 2000


@pytest.mark.parametrize(
    ("treated_n", "holdout_n", "holdout_rate", "treated_rate"),
    [
        (9000, 1000, 0.04, 0.05),  # a 10% holdout, a +25% relative lift
        (2500, 2500, 0.10, 0.115),  # an even split
        (19000, 1000, 0.02, 0.02),  # no effect at all, a 5% holdout
    ],
)
def test_lift_intervals_cover_the_true_effect_95_percent_of_the_time(
    treated_n: int, holdout_n: int, holdout_rate: float, treated_rate: float
) -> None:
    rng = np.random.default_rng(20260130 + treated_n)
    treated = rng.binomial(treated_n, treated_rate, RUNS)
    holdout = rng.binomial(holdout_n, holdout_rate, RUNS)
    true_absolute = treated_rate - holdout_rate
    true_relative = treated_rate / holdout_rate - 1
    covered_abs = covered_rel = 0
    for t, h in zip(treated.tolist(), holdout.tolist(), strict=True):
        result = lift(treated_n, t, holdout_n, h)
        assert result.absolute_interval is not None  # no simulated group ends without conversions here
        assert result.relative_interval is not None
        covered_abs += result.absolute_interval.contains(true_absolute)
        covered_rel += result.relative_interval.contains(true_relative)
    assert 0.93 <= covered_abs / RUNS <= 0.97, covered_abs / RUNS
    assert 0.93 <= covered_rel / RUNS <= 0.97, covered_rel / RUNS


def test_revenue_interval_covers_the_true_difference() -> None:
    rng = np.random.default_rng(42)
    n_t, n_h = 4000, 1000
    rate_t, rate_h, spend_t, spend_h = 0.08, 0.06, 42000.0, 40000.0
    true_difference = rate_t * spend_t - rate_h * spend_h

    def revenue(n: int, rate: float, spend: float) -> np.ndarray:
        # per member: a purchase with probability `rate`, its amount gamma-distributed around `spend`
        bought = rng.random((RUNS, n)) < rate
        return bought * rng.gamma(4.0, spend / 4.0, (RUNS, n))

    treated, holdout = revenue(n_t, rate_t, spend_t), revenue(n_h, rate_h, spend_h)
    sums_t, squares_t = treated.sum(1), (treated**2).sum(1)
    sums_h, squares_h = holdout.sum(1), (holdout**2).sum(1)
    conversions_t, conversions_h = (treated > 0).sum(1), (holdout > 0).sum(1)
    covered = 0
    for i in range(RUNS):
        result = lift(
            n_t, int(conversions_t[i]), n_h, int(conversions_h[i]),
            treated_revenue=RevenueStats(n_t, float(sums_t[i]), float(squares_t[i])),
            holdout_revenue=RevenueStats(n_h, float(sums_h[i]), float(squares_h[i])),
        )
        assert result.revenue is not None
        assert result.revenue.interval is not None
        covered += result.revenue.interval.contains(true_difference)
    assert 0.93 <= covered / RUNS <= 0.97, covered / RUNS


def test_a_fixed_horizon_a_a_test_declares_a_winner_about_5_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    runs, n, rate = 1000, 5000, 0.05
    a, b = rng.binomial(n, rate, runs), rng.binomial(n, rate, runs)
    declared = chi_square = 0
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        result = ab_test({"A": (n, x), "B": (n, y)}, "A")
        declared += result.comparison("B").significant
        chi_square += result.chi_square_p_value is not None and result.chi_square_p_value < 0.05
    assert 0.035 <= declared / runs <= 0.065, declared / runs
    assert chi_square == declared  # with two variants, Pearson's chi-square is the pooled z-test squared


DAYS, DAILY = 30, 400  # 30 daily looks, 400 new members per arm per day: 12,000 per arm at the end


def _daily_cumulative(rng: np.random.Generator, runs: int, rate_a: float, rate_b: float) -> tuple[np.ndarray, ...]:
    conv_a = rng.binomial(DAILY, rate_a, (runs, DAYS)).cumsum(1)
    conv_b = rng.binomial(DAILY, rate_b, (runs, DAYS)).cumsum(1)
    n = DAILY * np.arange(1, DAYS + 1)[None, :].repeat(runs, 0)
    return conv_a, conv_b, n


def _sequential_rejects(conv_a: np.ndarray, conv_b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whether the always-valid interval of the difference excluded 0 at each look (the same
    boundary as ab_test(sequential=True); test_the_simulation_uses_ab_tests_sequential_intervals)."""
    p_a, p_b = conv_a / n, conv_b / n
    se = np.sqrt(p_a * (1 - p_a) / n + p_b * (1 - p_b) / n)
    half = sequential_half_width(se, 2 * n)
    return (np.abs(p_b - p_a) > half) & (se > 0)


def test_daily_peeking_inflates_the_fixed_horizon_test_but_not_the_sequential_one() -> None:
    rng = np.random.default_rng(30)
    runs = 1000
    conv_a, conv_b, n = _daily_cumulative(rng, runs, 0.05, 0.05)
    # the fixed-horizon Newcombe interval, recomputed every day (what a marketer who peeks reads)
    low, high = confint_proportions_2indep(
        conv_b.ravel(), n.ravel(), conv_a.ravel(), n.ravel(), compare="diff", method="newcomb"
    )
    fixed_rejects = ((low > 0) | (high < 0)).reshape(runs, DAYS)
    fixed_once = fixed_rejects[:, -1].mean()
    fixed_peeking = fixed_rejects.any(1).mean()
    sequential_peeking = _sequential_rejects(conv_a, conv_b, n).any(1).mean()
    assert 0.035 <= fixed_once <= 0.065, fixed_once  # looked at once, at the end: fine
    assert fixed_peeking >= 0.12, fixed_peeking  # looked at daily: far above 5%
    assert sequential_peeking <= 0.06, sequential_peeking  # always valid


def test_the_sequential_mode_still_finds_a_real_effect() -> None:
    rng = np.random.default_rng(31)
    conv_a, conv_b, n = _daily_cumulative(rng, 1000, 0.05, 0.065)  # +30% relative
    found = _sequential_rejects(conv_a, conv_b, n).any(1).mean()
    assert found >= 0.7, found


def test_the_simulation_uses_ab_tests_sequential_intervals() -> None:
    rng = np.random.default_rng(32)
    conv_a, conv_b, n = _daily_cumulative(rng, 20, 0.05, 0.06)
    rejects = _sequential_rejects(conv_a, conv_b, n)
    for run in range(20):
        for day in (0, 9, 29):
            result = ab_test(
                {"A": (int(n[run, day]), int(conv_a[run, day])), "B": (int(n[run, day]), int(conv_b[run, day]))},
                "A", sequential=True,
            )
            assert result.comparison("B").significant == bool(rejects[run, day])


def test_a_tiny_holdout_without_conversions_gets_no_interval() -> None:
    """With 100 holdout members at 5%, about 0.6% of campaigns see no holdout conversion at all:
    exactly those get no interval (undefined), never a printed one."""
    rng = np.random.default_rng(33)
    treated = rng.binomial(10000, 0.05, RUNS)
    holdout = rng.binomial(100, 0.05, RUNS)
    undefined = int((holdout == 0).sum())
    assert undefined > 0  # some simulated holdouts had no conversions at all ...
    results = [lift(10000, t, 100, h) for t, h in zip(treated.tolist(), holdout.tolist(), strict=True)]
    assert sum(r.relative_interval is None for r in results) == undefined  # ... and got no interval
    assert st.binom.pmf(0, 100, 0.05) == pytest.approx(undefined / RUNS, abs=0.01)
