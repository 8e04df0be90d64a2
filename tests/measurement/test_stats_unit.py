"""Unit tests of shopcrm.measurement.stats, each value checked against an independent computation."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import scipy.stats as st
from statsmodels.stats.proportion import confint_proportions_2indep

from shopcrm.measurement.stats import (
    RevenueStats,
    ab_test,
    chance_to_beat,
    lift,
    sample_ratio_mismatch,
    sample_size,
    sequential_half_width,
    welch,
)

# --- lift -------------------------------------------------------------------------------------


def test_absolute_lift_interval_is_newcombes_hybrid_score_textbook_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10
    result = lift(70, 56, 80, 48)
    assert result.absolute_lift == pytest.approx(0.2)
    assert result.absolute_interval is not None
    assert result.absolute_interval.low == pytest.approx(0.0524, abs=5e-5)
    assert result.absolute_interval.high == pytest.approx(0.3339, abs=5e-5)
    assert result.absolute_interval.method == "Newcombe hybrid score"


def test_relative_lift_interval_is_the_log_ratio_interval_minus_one() -> None:
    result = lift(9000, 540, 1000, 45)
    assert result.treated_rate == pytest.approx(0.06)
    assert result.holdout_rate == pytest.approx(0.045)
    assert result.relative_lift == pytest.approx(0.06 / 0.045 - 1)
    # the textbook Katz log interval, written out by hand
    log_rr = math.log(0.06 / 0.045)
    se = math.sqrt(1 / 540 - 1 / 9000 + 1 / 45 - 1 / 1000)
    z = st.norm.ppf(0.975)
    assert result.relative_interval is not None
    assert result.relative_interval.low == pytest.approx(math.exp(log_rr - z * se) - 1, rel=1e-9)
    assert result.relative_interval.high == pytest.approx(math.exp(log_rr + z * se) - 1, rel=1e-9)
    low, high = confint_proportions_2indep(540, 9000, 45, 1000, compare="diff", method="newcomb")
    assert result.absolute_interval is not None
    assert (result.absolute_interval.low, result.absolute_interval.high) == pytest.approx((low, high))


def test_confidence_level_changes_the_interval() -> None:
    wide = lift(9000, 540, 1000, 45, confidence=0.99).absolute_interval
    narrow = lift(9000, 540, 1000, 45, confidence=0.90).absolute_interval
    assert wide is not None
    assert narrow is not None
    assert wide.low < narrow.low < narrow.high < wide.high
    assert wide.confidence == 0.99


def test_incremental_conversions_revenue_and_iroas() -> None:
    treated = [30000.0] * 300 + [0.0] * 4700
    holdout = [30000.0] * 40 + [0.0] * 960
    result = lift(5000, 300, 1000, 40, treated_revenue=treated, holdout_revenue=holdout, cost=50000)
    assert result.incremental_conversions == pytest.approx((0.06 - 0.04) * 5000)
    rpm_t, rpm_h = 300 * 30000 / 5000, 40 * 30000 / 1000
    assert result.revenue is not None
    assert result.revenue.difference == pytest.approx(rpm_t - rpm_h)
    assert result.incremental_revenue == pytest.approx((rpm_t - rpm_h) * 5000)
    assert result.iroas == pytest.approx((rpm_t - rpm_h) * 5000 / 50000)
    # the same revenue given as sufficient statistics (as SQL computes them) gives the same figures
    by_sums = lift(
        5000, 300, 1000, 40,
        treated_revenue=RevenueStats(5000, 300 * 30000.0, 300 * 30000.0**2),
        holdout_revenue=RevenueStats(1000, 40 * 30000.0, 40 * 30000.0**2),
        cost=50000,
    )
    assert by_sums.revenue is not None
    assert result.revenue.interval is not None
    assert by_sums.revenue.interval is not None
    assert by_sums.revenue.interval.low == pytest.approx(result.revenue.interval.low)
    assert by_sums.iroas == pytest.approx(result.iroas)


def test_welch_matches_scipy_on_raw_values() -> None:
    rng = np.random.default_rng(7)
    a = rng.lognormal(10, 1, 300) * (rng.random(300) < 0.2)
    b = rng.lognormal(10, 1, 200) * (rng.random(200) < 0.1)
    result = welch(RevenueStats.from_values(a), RevenueStats.from_values(b), confidence=0.9)
    reference = st.ttest_ind(a, b, equal_var=False)
    ci = reference.confidence_interval(0.9)
    assert result.difference == pytest.approx(a.mean() - b.mean())
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-6)
    assert result.interval is not None
    assert (result.interval.low, result.interval.high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_a_group_without_conversions_has_no_interval_and_says_why() -> None:
    result = lift(5000, 30, 1000, 0)
    assert result.absolute_lift == pytest.approx(0.006)
    assert result.absolute_interval is None
    assert result.relative_interval is None
    assert result.relative_lift is None  # the holdout rate is 0: a ratio over zero is undefined
    assert result.interval_note == "holdout had no conversions; the interval is undefined"
    assert "undefined (holdout had no conversions" in str(result)
    assert lift(5000, 0, 1000, 7).interval_note == "treated had no conversions; the interval is undefined"


def test_a_revenue_interval_is_undefined_when_a_group_has_no_conversions() -> None:
    """Contract section 6: revenue per member with Welch's interval; where a group has no conversions the interval
    is undefined (None, shown as such), not printed.  The point estimate stays."""
    result = lift(100, 12, 50, 0, treated_revenue=[10.0] * 12 + [0.0] * 88, holdout_revenue=[0.0] * 50, cost=100)
    assert result.revenue is not None
    assert result.revenue.difference == pytest.approx(1.2)
    assert (result.revenue.mean_a, result.revenue.mean_b) == (pytest.approx(1.2), 0.0)
    assert result.revenue.interval is None
    assert result.revenue.note == "holdout had no conversions; the interval is undefined"
    assert result.incremental_revenue == pytest.approx(120.0)
    assert result.iroas == pytest.approx(1.2)
    assert "1.20 undefined (holdout had no conversions; the interval is undefined)" in str(result)
    # a treated group without conversions (whose members' revenue is all 0) likewise
    none_treated = lift(100, 0, 50, 5, treated_revenue=[0.0] * 100, holdout_revenue=[4.0] * 5 + [0.0] * 45)
    assert none_treated.revenue is not None
    assert none_treated.revenue.interval is None
    assert none_treated.revenue.difference == pytest.approx(-0.4)
    assert none_treated.revenue.note == "treated had no conversions; the interval is undefined"
    # with conversions in both groups the interval is Welch's, as before
    both = lift(100, 12, 50, 5, treated_revenue=[10.0] * 12 + [0.0] * 88, holdout_revenue=[4.0] * 5 + [0.0] * 45)
    assert both.revenue is not None
    assert both.revenue.interval is not None
    assert both.revenue.interval.method == "Welch"


@pytest.mark.parametrize("sequential", [False, True], ids=["fixed", "sequential"])
def test_an_ab_revenue_interval_is_undefined_when_a_variant_or_the_control_has_no_conversions(sequential: bool) -> None:
    """Contract sections 6 and 7: the per-variant revenue comparison has no interval where the variant or the
    control has no conversions; the difference is still given."""
    variants = {"A": (7, 1, [10.0] + [0.0] * 6), "B": (8, 0, [0.0] * 8), "C": (8, 2, [10.0, 20.0] + [0.0] * 6)}
    result = ab_test(variants, "A", sequential=sequential)
    b = result.comparison("B").revenue
    assert b is not None
    assert b.interval is None
    assert b.difference == pytest.approx(-10.0 / 7)
    assert b.note == "'B' had no conversions; the interval is undefined"
    assert "undefined ('B' had no conversions; the interval is undefined)" in str(result)
    c = result.comparison("C").revenue
    assert c is not None
    assert c.interval is not None  # both converted: an interval
    empty_control = ab_test({"A": (7, 0, [0.0] * 7), "B": (8, 2, [5.0, 5.0] + [0.0] * 6)}, "A", sequential=sequential)
    revenue = empty_control.comparison("B").revenue
    assert revenue is not None
    assert revenue.interval is None
    assert revenue.difference == pytest.approx(10.0 / 8)
    assert revenue.note == "control 'A' had no conversions; the interval is undefined"


def test_zero_denominators_are_none_never_zero_or_infinity() -> None:
    result = lift(100, 5, 0, 0, treated_revenue=[1.0] * 100, holdout_revenue=[], cost=0)
    assert result.holdout_rate is None
    assert result.absolute_lift is None
    assert result.incremental_conversions is None
    assert result.absolute_interval is None
    assert result.iroas is None
    assert lift(100, 5, 100, 5, cost=0).iroas is None
    free = lift(100, 9, 100, 5, treated_revenue=[1.0] * 9 + [0.0] * 91, holdout_revenue=[1.0] * 5 + [0.0] * 95, cost=0)
    assert free.incremental_revenue == pytest.approx(4.0)
    assert free.iroas is None


def test_revenue_with_no_variance_has_no_welch_interval() -> None:
    result = welch(RevenueStats.from_values([0.0] * 50), RevenueStats.from_values([0.0] * 40))
    assert result.difference == 0
    assert result.interval is None
    assert result.note is not None


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="a member converts at most once"):
        lift(100, 120, 100, 5)
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        lift(100, 5, 100, 5, confidence=95)
    with pytest.raises(ValueError, match="revenue is given for 3 members but the group has 100"):
        lift(100, 5, 100, 5, treated_revenue=[1.0, 2.0, 3.0], holdout_revenue=[0.0] * 100)
    with pytest.raises(ValueError, match="for both groups"):
        lift(100, 5, 100, 5, treated_revenue=[0.0] * 100)


def test_results_serialise_and_render() -> None:
    result = lift(5000, 300, 1000, 40, treated_revenue=[1.0] * 300 + [0.0] * 4700,
                  holdout_revenue=[1.0] * 40 + [0.0] * 960, cost=100)
    data = result.to_dict()
    assert json.loads(json.dumps(data))["absolute_interval"]["method"] == "Newcombe hybrid score"
    assert "relative lift" in str(result)
    assert "iROAS" in str(result)
    assert result._repr_html_().startswith("<div>")
    assert "<table>" in result._repr_html_()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(ImportError, match=r"shopcrm\[measurement\]"):
        sample_ratio_mismatch(900, 100, 0.1)


# --- sample-ratio mismatch --------------------------------------------------------------------


def test_srm_is_flagged_below_one_in_a_thousand() -> None:
    result = sample_ratio_mismatch(9000, 1200, 0.1)
    expected = [10200 * 0.9, 10200 * 0.1]
    chi2 = sum((o - e) ** 2 / e for o, e in zip([9000, 1200], expected, strict=True))
    assert result.chi_square == pytest.approx(chi2)
    assert result.p_value == pytest.approx(st.chi2.sf(chi2, 1))
    assert result.mismatch
    assert "SAMPLE-RATIO MISMATCH" in str(result)
    # 1,100 of 10,100 at 10% is unusual (p ~ 0.003) but not below 0.001: not flagged
    borderline = sample_ratio_mismatch(9000, 1100, 0.1)
    assert borderline.p_value is not None
    assert 0.001 < borderline.p_value < 0.01
    assert not borderline.mismatch
    assert not sample_ratio_mismatch(9000, 1000, 0.1).mismatch


def test_srm_has_no_test_when_the_share_is_zero_or_one() -> None:
    for share in (0.0, 1.0):
        result = sample_ratio_mismatch(9000, 17, share)
        assert result.p_value is None
        assert not result.mismatch
        assert "no split to test" in str(result)
    assert sample_ratio_mismatch(0, 0, 0.1).p_value is None
    with pytest.raises(ValueError, match="fraction between 0 and 1"):
        sample_ratio_mismatch(90, 10, 10)


# --- A/B tests --------------------------------------------------------------------------------


def test_chi_square_across_variants_is_pearsons_without_yates() -> None:
    counts = {"A": (4000, 200), "B": (4000, 236), "C": (4000, 190)}
    result = ab_test(counts, "A")
    observed = np.array([[c, n - c] for n, c in counts.values()], dtype=float)
    expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / observed.sum()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert result.chi_square == pytest.approx(chi2)
    assert result.chi_square_p_value == pytest.approx(st.chi2.sf(chi2, 2))
    two = ab_test({"A": (400, 20), "B": (400, 34)}, "A")
    observed2 = np.array([[20, 380], [34, 366]], dtype=float)
    expected2 = observed2.sum(1, keepdims=True) * observed2.sum(0, keepdims=True) / observed2.sum()
    assert two.chi_square == pytest.approx(float(((observed2 - expected2) ** 2 / expected2).sum()))  # no Yates


def test_pooled_z_tests_with_holm_over_the_control_comparisons() -> None:
    counts = {"A": (4000, 200), "B": (4000, 250), "C": (4000, 228), "D": (4000, 190)}
    result = ab_test(counts, "A")
    raw = {}
    for name in "BCD":
        n, c = counts[name]
        pooled = (c + 200) / (n + 4000)
        z = (c / n - 200 / 4000) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / 4000))
        raw[name] = 2 * st.norm.sf(abs(z))
        assert result.comparison(name).p_value == pytest.approx(raw[name])
    ordered = sorted(raw, key=raw.__getitem__)
    holm, running = {}, 0.0
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, raw[name] * (3 - rank)))
        holm[name] = running
    for name in "BCD":
        assert result.comparison(name).adjusted_p_value == pytest.approx(holm[name])
    assert result.comparison("B").significant
    assert result.winner == "B"
    assert [c.name for c in result.comparisons] == ["B", "C", "D"]


def test_one_comparison_is_not_corrected() -> None:
    result = ab_test({"A": (4000, 200), "B": (4000, 240)}, "A")
    assert result.comparison("B").adjusted_p_value == result.comparison("B").p_value


def test_chance_to_beat_control_matches_monte_carlo_and_a_closed_form() -> None:
    rng = np.random.default_rng(11)
    draws = 2_000_000
    variant = rng.beta(1 + 236, 1 + 4000 - 236, draws)
    control = rng.beta(1 + 200, 1 + 4000 - 200, draws)
    monte_carlo = float((variant > control).mean())
    assert chance_to_beat(236, 4000, 200, 4000) == pytest.approx(monte_carlo, abs=0.002)
    # Beta(2, b) against Beta(1, b): like Gamma(2) against Gamma(1), P = 1 - (1/2)^2 = 0.75
    assert chance_to_beat(1, 100_000, 0, 100_000) == pytest.approx(0.75, abs=1e-4)
    assert chance_to_beat(0, 10, 0, 10) == pytest.approx(0.5, abs=1e-9)
    result = ab_test({"A": (4000, 200), "B": (4000, 236)}, "A")
    assert result.comparison("B").chance_to_beat_control == pytest.approx(monte_carlo, abs=0.002)


def test_revenue_per_member_by_welch_in_ab_tests() -> None:
    rng = np.random.default_rng(3)
    a = rng.lognormal(10, 1, 1000) * (rng.random(1000) < 0.05)
    b = rng.lognormal(10, 1, 1000) * (rng.random(1000) < 0.08)
    result = ab_test({"A": (1000, int((a > 0).sum()), a.tolist()), "B": (1000, int((b > 0).sum()), RevenueStats.from_values(b))}, "A")
    revenue = result.comparison("B").revenue
    assert revenue is not None
    assert revenue.p_value == pytest.approx(st.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-6)
    assert result.control_revenue_per_member == pytest.approx(a.mean())


def test_sequential_mode_reports_confidence_sequences_and_no_p_values() -> None:
    counts = {"A": (6000, 300), "B": (6000, 360)}
    fixed = ab_test(counts, "A")
    sequential = ab_test(counts, "A", sequential=True, sequential_tuning=10_000)
    b = sequential.comparison("B")
    assert b.p_value is None
    assert b.adjusted_p_value is None
    assert sequential.chi_square_p_value is None
    assert b.absolute_interval is not None
    # Howard et al.'s normal-mixture boundary, written out: rho^2 tuned for 10,000 members
    alpha = 0.05
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / 10_000
    n = 12_000
    se = math.sqrt(0.06 * 0.94 / 6000 + 0.05 * 0.95 / 6000)
    half = se * math.sqrt(n) * math.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    assert b.absolute_interval.high - b.absolute_lift == pytest.approx(half)  # type: ignore[operator]
    fixed_interval = fixed.comparison("B").absolute_interval
    assert fixed_interval is not None
    assert b.absolute_interval.high - b.absolute_interval.low > fixed_interval.high - fixed_interval.low
    assert fixed.comparison("B").significant  # p ~ 0.02 at a fixed horizon ...
    assert not b.significant  # ... but not yet beyond the always-valid boundary
    assert "always-valid" in str(sequential)


def test_sequential_half_width_is_vectorised_and_shrinks() -> None:
    n = np.array([1000, 5000, 20000, 100000])
    widths = sequential_half_width(0.5 / np.sqrt(n), n)
    assert widths.shape == (4,)
    assert np.all(np.diff(widths) < 0)
    z_widths = st.norm.ppf(0.975) * 0.5 / np.sqrt(n)
    assert np.all(widths > z_widths)  # always wider than the fixed-horizon interval
    with pytest.raises(ValueError, match="tuning parameter"):
        sequential_half_width(0.1, 100, tuning=0)


def test_ab_test_undefined_and_bad_inputs() -> None:
    result = ab_test({"A": (1000, 0), "B": (1000, 0)}, "A")
    assert result.chi_square is None
    assert result.chi_square_note is not None
    b = result.comparison("B")
    assert b.absolute_interval is None
    assert b.p_value is None
    assert not b.significant
    assert b.note is not None
    assert "no chi-square" in str(result)
    with pytest.raises(ValueError, match="control 'Z' is not among the variants"):
        ab_test({"A": (10, 1), "B": (10, 2)}, "Z")
    with pytest.raises(ValueError, match="give \\(members, conversions\\)"):
        ab_test({"A": (10, 1), "B": 10}, "A")  # type: ignore[dict-item]
    with pytest.raises(KeyError, match="no variant 'Q'"):
        ab_test({"A": (10, 1), "B": (10, 2)}, "A").comparison("Q")
    assert json.loads(json.dumps(ab_test({"A": (100, 5), "B": (100, 9)}, "A").to_dict()))["control"] == "A"


# --- sample size ------------------------------------------------------------------------------


def test_sample_size_matches_the_arcsine_formula() -> None:
    result = sample_size(0.05, 0.10)
    h = 2 * math.asin(math.sqrt(0.055)) - 2 * math.asin(math.sqrt(0.05))
    n = 2 * ((st.norm.ppf(0.975) + st.norm.ppf(0.8)) / h) ** 2  # two groups of n: the difference has variance 2/n
    assert result.per_variant == math.ceil(n)
    assert result.target_rate == pytest.approx(0.055)
    absolute = sample_size(0.05, 0.005, relative=False)
    assert absolute.per_variant == result.per_variant
    assert sample_size(0.05, 0.10, power=0.9).per_variant > result.per_variant
    assert "members per variant" in str(result)
    with pytest.raises(ValueError, match="outside \\(0, 1\\)"):
        sample_size(0.6, 1.0)
    with pytest.raises(ValueError, match="cannot be 0"):
        sample_size(0.05, 0)


def test_counts_and_sums_from_numpy_or_a_database_are_accepted() -> None:
    from decimal import Decimal

    plain = lift(9000, 540, 1000, 40, treated_revenue=RevenueStats(9000, 16_200_000.0, 5.9e11),
                 holdout_revenue=RevenueStats(1000, 1_200_000.0, 4.3e10))
    typed = lift(np.int64(9000), np.int64(540), np.int32(1000), np.int64(40),  # type: ignore[arg-type]
                 treated_revenue=RevenueStats(np.int64(9000), Decimal("16200000"), Decimal("5.9e11")),  # type: ignore[arg-type]
                 holdout_revenue=RevenueStats(1000, Decimal("1200000.00"), Decimal("43000000000")))  # type: ignore[arg-type]
    assert typed == plain
    assert type(typed.treated_n) is int
    with pytest.raises(ValueError, match="whole number"):
        lift(9000.5, 5, 100, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        lift(True, 1, 100, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RevenueStats: n must be a whole number"):
        RevenueStats(-1, 0.0, 0.0)
