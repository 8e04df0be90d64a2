"""The statistics of holdout lift and A/B tests, as pure functions over counts and sums.

Definitions follow the measurement contract (sections 6 and 7): Newcombe's hybrid score interval
for the absolute lift, the log-ratio interval for the relative lift, Welch's interval for revenue
per member, a chi-square goodness-of-fit test for sample-ratio mismatch, Pearson's chi-square across
A/B variants, Holm-corrected pooled z-tests against the control, Bayesian chance to beat control,
and always-valid confidence sequences (Howard et al. 2021) for marketers who look every day.

Every distribution comes from scipy or statsmodels (the optional ``measurement`` extra), imported
inside the functions that need them. Nothing here reads a clock, a file or a database.
A figure with a zero denominator is ``None`` (shown as ``-``), never 0 or infinity; an interval
that cannot be trusted (a group without conversions, a group without variance) is ``None`` with
a note saying why.
"""

from __future__ import annotations

import functools
import html
import importlib
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "ABTest",
    "Interval",
    "Lift",
    "MeanComparison",
    "RevenueStats",
    "SampleRatioMismatch",
    "SampleSize",
    "VariantComparison",
    "ab_test",
    "chance_to_beat",
    "lift",
    "sample_ratio_mismatch",
    "sample_size",
    "sequential_half_width",
    "welch",
]

#: the significance level below which a sample-ratio mismatch is flagged
SRM_THRESHOLD = 0.001
#: GrowthBook's default tuning parameter: the total sample size at which a confidence sequence is tightest
DEFAULT_SEQUENTIAL_TUNING = 5000

_EXTRA_HINT = (
    "shopcrm.measurement.stats needs scipy, statsmodels and numpy; "
    "install them with: pip install 'shopcrm[measurement]'"
)


def _optional(module: str) -> Any:
    """A module of the ``measurement`` extra, imported when first used; a clear ImportError without it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(_EXTRA_HINT) from error


def _scipy_stats() -> Any:
    return _optional("scipy.stats")


def _scipy_special() -> Any:
    return _optional("scipy.special")


def _sm_proportion() -> Any:
    return _optional("statsmodels.stats.proportion")


def _sm_multitest() -> Any:
    return _optional("statsmodels.stats.multitest")


def _sm_power() -> Any:
    return _optional("statsmodels.stats.power")


def _numpy() -> Any:
    return _optional("numpy")


# ---------------------------------------------------------------------------------------------
# small helpers: checks, division, formatting


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 exclusive, e.g. 0.95; got {confidence!r}")
    return float(confidence)


def _whole(label: str, what: str, value: Any) -> int:
    """A count as a Python int (numpy and database integers welcome), or a clear error."""
    if isinstance(value, bool):
        raise ValueError(f"{label}: {what} must be a whole number >= 0; got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{label}: {what} must be a whole number >= 0; got {value!r}") from None
    if number < 0:
        raise ValueError(f"{label}: {what} must be a whole number >= 0; got {value!r}")
    return number


def _check_counts(label: str, n: Any, conversions: Any) -> tuple[int, int]:
    n = _whole(label, "the number of members", n)
    conversions = _whole(label, "conversions", conversions)
    if conversions > n:
        raise ValueError(
            f"{label}: {conversions} conversions among {n} members; a member converts at most once "
            "(count converted members, not orders)"
        )
    return n, conversions


def _div(numerator: float | None, denominator: float | None) -> float | None:
    """A ratio, or None when either side is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _num(value: float | None, *, percent: bool = False, digits: int = 4) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value * 100:.{max(digits - 2, 1)}f}%"
    if abs(value) < 1e15 and abs(value - round(value)) < 1e-9 * max(1.0, abs(value)):
        return f"{round(value):,}"
    return f"{value:,.{digits}g}" if abs(value) < 1 else f"{value:,.2f}"


def _html_table(title: str, rows: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> str:
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    foot = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in notes)
    return f"<div><strong>{html.escape(title)}</strong><table>{body}</table>{foot}</div>"


def _to_dict(instance: Any) -> dict[str, Any]:
    return attrs.asdict(instance, recurse=True)


# ---------------------------------------------------------------------------------------------
# value objects


@attrs.frozen
class Interval:
    """A two-sided interval ``[low, high]`` at ``confidence`` (e.g. 0.95), computed by ``method``."""

    low: float
    high: float
    confidence: float
    method: str

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the interval (ends included)."""
        return self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on one side of zero."""
        return self.low > 0 or self.high < 0

    def format(self, *, percent: bool = False) -> str:
        return f"[{_num(self.low, percent=percent)}, {_num(self.high, percent=percent)}]"

    def __str__(self) -> str:
        return f"{self.format()} ({self.confidence:.0%}, {self.method})"

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _interval_text(interval: Interval | None, note: str | None, *, percent: bool = False) -> str:
    if interval is not None:
        return interval.format(percent=percent)
    return f"undefined ({note})" if note else "-"


def _revenue_n(value: Any) -> int:
    return _whole("RevenueStats", "n", value)


@attrs.frozen
class RevenueStats:
    """Revenue of one group as sufficient statistics: members ``n``, ``total`` and ``sum_squares``.

    Members without revenue count with 0, so ``n`` is the group's size, not its buyers. A report
    computes these in SQL (``COUNT(*)``, ``SUM(r)``, ``SUM(r * r)``); :meth:`from_values` builds them
    from one value per member.
    """

    n: int = attrs.field(converter=_revenue_n)
    total: float = attrs.field(converter=float)
    sum_squares: float = attrs.field(converter=float)

    def __attrs_post_init__(self) -> None:
        if self.sum_squares < 0:
            raise ValueError(f"RevenueStats.sum_squares cannot be negative; got {self.sum_squares!r}")

    @classmethod
    def from_values(cls, values: Iterable[float]) -> RevenueStats:
        """The statistics of one revenue value per member (0 for members who bought nothing)."""
        items = [float(v) for v in values]
        return cls(n=len(items), total=math.fsum(items), sum_squares=math.fsum(v * v for v in items))

    @property
    def mean(self) -> float | None:
        """Revenue per member, or None for an empty group."""
        return _div(self.total, self.n)

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1 in the denominator), or None with fewer than two members."""
        if self.n < 2:
            return None
        return max(0.0, (self.sum_squares - self.total * self.total / self.n) / (self.n - 1))

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


RevenueInput = RevenueStats | Sequence[float]


def _revenue(label: str, value: RevenueInput | None, n: int) -> RevenueStats | None:
    if value is None:
        return None
    stats = value if isinstance(value, RevenueStats) else RevenueStats.from_values(value)
    if stats.n != n:
        raise ValueError(
            f"{label}: revenue is given for {stats.n} members but the group has {n}; give one value per "
            "member (0 for members who did not buy), or RevenueStats with n equal to the group size"
        )
    return stats


@attrs.frozen
class MeanComparison:
    """Welch's comparison of two means (revenue per member): ``difference = mean_a - mean_b``."""

    mean_a: float | None
    mean_b: float | None
    difference: float | None
    interval: Interval | None
    p_value: float | None
    note: str | None = None

    def __str__(self) -> str:
        p = "" if self.p_value is None else f", p = {self.p_value:.3g}"
        return f"{_num(self.difference)} {_interval_text(self.interval, self.note)}{p}"

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def welch(a: RevenueStats, b: RevenueStats, *, confidence: float = 0.95) -> MeanComparison:
    """Welch's t interval and p-value for ``mean(a) - mean(b)`` from sufficient statistics.

    The interval is undefined with fewer than two members in a group or when neither group varies.
    """
    confidence = _check_confidence(confidence)
    mean_a, mean_b = a.mean, b.mean
    difference = None if mean_a is None or mean_b is None else mean_a - mean_b
    var_a, var_b = a.variance, b.variance
    if var_a is None or var_b is None:
        return MeanComparison(mean_a, mean_b, difference, None, None, "needs at least two members in each group")
    se_a2, se_b2 = var_a / a.n, var_b / b.n
    se2 = se_a2 + se_b2
    if se2 <= 0:
        return MeanComparison(mean_a, mean_b, difference, None, None, "no member's revenue differs from another's")
    assert mean_a is not None
    assert mean_b is not None
    assert difference is not None
    stats = _scipy_stats()
    result = stats.ttest_ind_from_stats(
        mean_a, math.sqrt(var_a), a.n, mean_b, math.sqrt(var_b), b.n, equal_var=False
    )
    # Welch-Satterthwaite degrees of freedom, the ones scipy's test above uses
    df = se2 * se2 / (se_a2 * se_a2 / (a.n - 1) + se_b2 * se_b2 / (b.n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    interval = Interval(difference - half, difference + half, confidence, "Welch")
    return MeanComparison(mean_a, mean_b, difference, interval, float(result.pvalue))


# ---------------------------------------------------------------------------------------------
# holdout lift (section 6)


@attrs.frozen
class Lift:
    """Treatment versus holdout for one campaign (intention to treat). See :func:`lift`."""

    confidence: float
    treated_n: int
    treated_conversions: int
    holdout_n: int
    holdout_conversions: int
    treated_rate: float | None
    holdout_rate: float | None
    absolute_lift: float | None
    absolute_interval: Interval | None
    relative_lift: float | None
    relative_interval: Interval | None
    interval_note: str | None
    incremental_conversions: float | None
    revenue: MeanComparison | None
    incremental_revenue: float | None
    cost: float | None
    iroas: float | None

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("treated", f"{self.treated_conversions:,} / {self.treated_n:,} = {_num(self.treated_rate, percent=True)}"),
            ("holdout", f"{self.holdout_conversions:,} / {self.holdout_n:,} = {_num(self.holdout_rate, percent=True)}"),
            (
                "absolute lift",
                f"{_num(self.absolute_lift, percent=True)} "
                f"{_interval_text(self.absolute_interval, self.interval_note, percent=True)}",
            ),
            (
                "relative lift",
                f"{_num(self.relative_lift, percent=True)} "
                f"{_interval_text(self.relative_interval, self.interval_note, percent=True)}",
            ),
            ("incremental conversions", _num(self.incremental_conversions)),
        ]
        if self.revenue is not None:
            rows += [
                ("revenue per member", f"{_num(self.revenue.mean_a)} vs {_num(self.revenue.mean_b)}"),
                ("difference", f"{_num(self.revenue.difference)} {_interval_text(self.revenue.interval, self.revenue.note)}"),
                ("incremental revenue", _num(self.incremental_revenue)),
            ]
        if self.cost is not None:
            rows += [("cost", _num(self.cost)), ("iROAS", _num(self.iroas))]
        return rows

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        lines = [f"Lift ({self.confidence:.0%} intervals)"]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return _html_table(f"Lift ({self.confidence:.0%} intervals)", self.rows())

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _no_conversion_note(group_a: str, conv_a: int, group_b: str, conv_b: int) -> str | None:
    empty = [name for name, conv in ((group_a, conv_a), (group_b, conv_b)) if conv == 0]
    if not empty:
        return None
    return f"{' and '.join(empty)} had no conversions; the interval is undefined"


def _without_conversions(revenue: MeanComparison, note: str | None) -> MeanComparison:
    """``revenue`` with its interval undefined when a group had no conversions (``note`` says which; None keeps
    it): the contract gives no interval then (section 6); the point estimate and the p-value stay.  An interval
    undefined already (too few members, no variance) keeps its own reason."""
    if note is None or (revenue.interval is None and revenue.note is not None):
        return revenue
    return attrs.evolve(revenue, interval=None, note=note)


def lift(
    treated_n: int,
    treated_conversions: int,
    holdout_n: int,
    holdout_conversions: int,
    *,
    treated_revenue: RevenueInput | None = None,
    holdout_revenue: RevenueInput | None = None,
    cost: float | None = None,
    confidence: float = 0.95,
) -> Lift:
    """Holdout lift of one campaign, per the measurement contract section 6.

    ``*_conversions`` count members who converted at least once. Revenue is one value per member or
    :class:`RevenueStats`; ``cost`` is the cost of the treatment's sends (for iROAS).
    """
    confidence = _check_confidence(confidence)
    treated_n, treated_conversions = _check_counts("treated", treated_n, treated_conversions)
    holdout_n, holdout_conversions = _check_counts("holdout", holdout_n, holdout_conversions)
    if cost is not None and cost < 0:
        raise ValueError(f"cost cannot be negative; got {cost!r}")
    rate_t = _div(treated_conversions, treated_n)
    rate_h = _div(holdout_conversions, holdout_n)
    absolute = None if rate_t is None or rate_h is None else rate_t - rate_h
    relative = None if absolute is None else _div(absolute, rate_h)

    abs_interval = rel_interval = None
    if rate_t is None or rate_h is None:
        note: str | None = "a group has no members; the interval is undefined"
    else:
        note = _no_conversion_note("treated", treated_conversions, "holdout", holdout_conversions)
    if note is None:
        proportion = _sm_proportion()
        alpha = 1 - confidence
        low, high = proportion.confint_proportions_2indep(
            treated_conversions, treated_n, holdout_conversions, holdout_n,
            method="newcomb", compare="diff", alpha=alpha,
        )
        abs_interval = Interval(float(low), float(high), confidence, "Newcombe hybrid score")
        low, high = proportion.confint_proportions_2indep(
            treated_conversions, treated_n, holdout_conversions, holdout_n,
            method="log", compare="ratio", alpha=alpha,
        )
        rel_interval = Interval(float(low) - 1, float(high) - 1, confidence, "log ratio")

    incremental = None if absolute is None else absolute * treated_n
    t_rev = _revenue("treated_revenue", treated_revenue, treated_n)
    h_rev = _revenue("holdout_revenue", holdout_revenue, holdout_n)
    revenue = None
    incremental_revenue = None
    if (t_rev is None) != (h_rev is None):
        raise ValueError("give revenue for both groups (treated_revenue and holdout_revenue) or for neither")
    if t_rev is not None and h_rev is not None:
        revenue = _without_conversions(welch(t_rev, h_rev, confidence=confidence), _no_conversion_note(
            "treated", treated_conversions, "holdout", holdout_conversions))
        if revenue.difference is not None:
            incremental_revenue = revenue.difference * treated_n
    iroas = _div(incremental_revenue, cost)
    return Lift(
        confidence, treated_n, treated_conversions, holdout_n, holdout_conversions,
        rate_t, rate_h, absolute, abs_interval, relative, rel_interval, note,
        incremental, revenue, incremental_revenue, None if cost is None else float(cost), iroas,
    )


# ---------------------------------------------------------------------------------------------
# sample-ratio mismatch


@attrs.frozen
class SampleRatioMismatch:
    """Chi-square goodness of fit of the observed split against the configured holdout share."""

    treated_n: int
    holdout_n: int
    holdout_share: float
    observed_holdout_share: float | None
    chi_square: float | None
    p_value: float | None
    mismatch: bool
    note: str | None

    def __str__(self) -> str:
        head = (
            f"holdout {self.holdout_n:,} of {self.treated_n + self.holdout_n:,} = "
            f"{_num(self.observed_holdout_share, percent=True)} (configured {self.holdout_share:.2%})"
        )
        if self.p_value is None:
            return f"{head}: no test ({self.note})"
        verdict = "SAMPLE-RATIO MISMATCH: do not trust the lift" if self.mismatch else "split as configured"
        return f"{head}: chi-square {self.chi_square:.3g}, p = {self.p_value:.3g}; {verdict}"

    def _repr_html_(self) -> str:
        return _html_table("Sample-ratio check", [("result", str(self))])

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def sample_ratio_mismatch(treated_n: int, holdout_n: int, holdout_share: float) -> SampleRatioMismatch:
    """Test whether ``holdout_n`` of ``treated_n + holdout_n`` fits the configured ``holdout_share``.

    Flags p < 0.001. No test when the share is 0 or 1 (any split but the configured one is then a
    bug, not chance) or when there are no members.
    """
    treated_n, _ = _check_counts("treated", treated_n, 0)
    holdout_n, _ = _check_counts("holdout", holdout_n, 0)
    if not 0.0 <= holdout_share <= 1.0:
        raise ValueError(f"holdout_share is a fraction between 0 and 1 (0.1 for 10%); got {holdout_share!r}")
    total = treated_n + holdout_n
    observed = _div(holdout_n, total)
    if holdout_share in (0.0, 1.0):
        return SampleRatioMismatch(
            treated_n, holdout_n, holdout_share, observed, None, None, False,
            "the configured holdout share is 0% or 100%, so there is no split to test",
        )
    if total == 0:
        return SampleRatioMismatch(
            treated_n, holdout_n, holdout_share, None, None, None, False, "no members"
        )
    stats = _scipy_stats()
    result = stats.chisquare(
        [treated_n, holdout_n], f_exp=[total * (1 - holdout_share), total * holdout_share]
    )
    p = float(result.pvalue)
    return SampleRatioMismatch(
        treated_n, holdout_n, holdout_share, observed, float(result.statistic), p, p < SRM_THRESHOLD, None
    )


# ---------------------------------------------------------------------------------------------
# A/B tests (section 7)


def sequential_half_width(
    standard_error: Any, n: Any, *, confidence: float = 0.95, tuning: float = DEFAULT_SEQUENTIAL_TUNING
) -> Any:
    """Half-width of the always-valid asymptotic confidence sequence (Howard et al. 2021).

    ``standard_error`` is the estimate's standard error and ``n`` the total sample size behind it
    (both groups); ``tuning`` is the total sample size at which the sequence is tightest (GrowthBook's
    tuning parameter, default 5,000). Accepts floats or numpy arrays of equal shape.
    """
    confidence = _check_confidence(confidence)
    if tuning <= 0:
        raise ValueError(f"the sequential tuning parameter is a sample size > 0; got {tuning!r}")
    np = _numpy()
    alpha = 1.0 - confidence
    rho2 = (-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / tuning
    n = np.asarray(n, dtype=float)
    per_unit_sd = np.asarray(standard_error, dtype=float) * np.sqrt(n)
    boundary = np.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * np.log(np.sqrt(n * rho2 + 1.0) / alpha))
    return per_unit_sd * boundary


_PANELS, _NODES = 8, 64


@functools.cache
def _legendre() -> tuple[Any, Any]:
    """The Gauss-Legendre nodes and weights of :func:`chance_to_beat` (computed once: an eigenvalue problem)."""
    nodes, weights = _scipy_special().roots_legendre(_NODES)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def chance_to_beat(conversions: int, n: int, control_conversions: int, control_n: int) -> float:
    """P(rate > control rate) under Beta(1 + conversions, 1 + non-conversions) posteriors.

    Computed by numerical integration of ``pdf_control(x) * P(variant > x)`` over the control
    posterior (Gauss-Legendre, deterministic; agrees with adaptive quadrature to about 1e-9).
    """
    stats = _scipy_stats()
    # the distribution's methods with its parameters, not frozen distributions: freezing builds a new distribution
    # object each time (a few milliseconds, the most of this function's cost in a report of ten campaigns)
    beta = stats.beta
    variant = (1 + conversions, 1 + n - conversions)
    control = (1 + control_conversions, 1 + control_n - control_conversions)
    low, high = float(beta.ppf(1e-13, *control)), float(beta.isf(1e-13, *control))

    # Gauss-Legendre over the control posterior's whole mass, in panels: smooth integrand, vectorised
    np = _numpy()
    nodes, weights = _legendre()
    half = (high - low) / _PANELS / 2
    centres = low + half * (2 * np.arange(_PANELS) + 1)
    x = (centres[:, None] + half * nodes[None, :]).ravel()
    value = float(np.sum(np.tile(weights, _PANELS) * beta.pdf(x, *control) * beta.sf(x, *variant)) * half)
    return min(1.0, max(0.0, float(value)))


@attrs.frozen
class VariantComparison:
    """One variant against the control. ``absolute_lift = rate - control rate``."""

    name: str
    n: int
    conversions: int
    rate: float | None
    absolute_lift: float | None
    absolute_interval: Interval | None
    relative_lift: float | None
    relative_interval: Interval | None
    p_value: float | None
    adjusted_p_value: float | None
    significant: bool
    chance_to_beat_control: float | None
    revenue: MeanComparison | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@attrs.frozen
class ABTest:
    """The result of :func:`ab_test`."""

    control: str
    control_n: int
    control_conversions: int
    control_rate: float | None
    control_revenue_per_member: float | None
    confidence: float
    sequential: bool
    sequential_tuning: float | None
    chi_square: float | None
    chi_square_p_value: float | None
    chi_square_note: str | None
    comparisons: tuple[VariantComparison, ...]
    winner: str | None

    def comparison(self, name: str) -> VariantComparison:
        for item in self.comparisons:
            if item.name == name:
                return item
        raise KeyError(f"no variant {name!r}; the variants compared with the control are {[c.name for c in self.comparisons]}")

    def rows(self) -> list[tuple[str, str]]:
        rows = [("control " + self.control, f"{self.control_conversions:,} / {self.control_n:,} = {_num(self.control_rate, percent=True)}")]
        for c in self.comparisons:
            p = "" if c.adjusted_p_value is None else f", Holm p = {c.adjusted_p_value:.3g}"
            chance = "" if c.chance_to_beat_control is None else f", chance to beat control {c.chance_to_beat_control:.1%}"
            rows.append((
                c.name,
                f"{c.conversions:,} / {c.n:,} = {_num(c.rate, percent=True)}; lift {_num(c.absolute_lift, percent=True)} "
                f"{_interval_text(c.absolute_interval, c.note, percent=True)}{p}{chance}"
                + ("; significant" if c.significant else ""),
            ))
            if c.revenue is not None:
                rows.append((f"  {c.name} revenue/member", str(c.revenue)))
        if self.chi_square_p_value is not None:
            rows.append(("all variants", f"chi-square {self.chi_square:.3g}, p = {self.chi_square_p_value:.3g}"))
        else:
            rows.append(("all variants", f"no chi-square: {self.chi_square_note}"))
        rows.append(("winner", self.winner or "none"))
        return rows

    def _title(self) -> str:
        mode = (
            f"always-valid confidence sequences, tuned for {self.sequential_tuning:,.0f} members"
            if self.sequential else "fixed horizon"
        )
        return f"A/B test ({self.confidence:.0%}, {mode})"

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join([self._title()] + [f"  {k.ljust(width)}  {v}" for k, v in rows])

    def _repr_html_(self) -> str:
        return _html_table(self._title(), self.rows())

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _unpack(name: str, value: Sequence[Any]) -> tuple[int, int, RevenueStats | None]:
    if not isinstance(value, tuple | list) or len(value) not in (2, 3):
        raise ValueError(
            f"variant {name!r}: give (members, conversions) or (members, conversions, revenue); got {value!r}"
        )
    n, conversions = _check_counts(f"variant {name!r}", value[0], value[1])
    revenue = _revenue(f"variant {name!r}", value[2], n) if len(value) == 3 else None
    return n, conversions, revenue


def ab_test(
    variants: Mapping[str, Sequence[Any]],
    control: str,
    *,
    confidence: float = 0.95,
    sequential: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> ABTest:
    """Compare A/B variants per the measurement contract section 7.

    ``variants`` maps each name to ``(members, conversions)`` or ``(members, conversions, revenue)``
    where revenue is one value per member or :class:`RevenueStats`. With ``sequential=True`` the
    intervals are always-valid confidence sequences (Bonferroni over the comparisons), safe to look
    at every day; p-values and the chi-square, which are not, are then left out.
    """
    confidence = _check_confidence(confidence)
    if control not in variants:
        raise ValueError(f"control {control!r} is not among the variants {sorted(variants)}")
    if len(variants) < 2:
        raise ValueError("an A/B test needs the control and at least one other variant")
    data = {name: _unpack(name, value) for name, value in variants.items()}
    with_revenue = {name for name, (_, _, rev) in data.items() if rev is not None}
    if with_revenue and len(with_revenue) != len(data):
        raise ValueError(f"give revenue for every variant or for none; missing for {sorted(set(data) - with_revenue)}")
    alpha = 1.0 - confidence
    stats = _scipy_stats()
    proportion = _sm_proportion()
    c_n, c_conv, c_rev = data[control]
    c_rate = _div(c_conv, c_n)

    # Pearson chi-square across all variants, no Yates correction
    table = [[conv, n - conv] for n, conv, _ in data.values()]
    chi2 = chi2_p = None
    chi2_note = None
    if sequential:
        chi2_note = "a fixed-horizon test, left out in sequential mode"
    elif sum(row[0] for row in table) == 0 or sum(row[1] for row in table) == 0:
        chi2_note = "every member converted or none did; nothing to compare"
    elif any(n == 0 for n, _, _ in data.values()):
        chi2_note = "a variant has no members"
    else:
        result = stats.chi2_contingency(table, correction=False)
        chi2, chi2_p = float(result.statistic), float(result.pvalue)

    others = [name for name in data if name != control]
    raw_p: list[float | None] = []
    partial: list[dict[str, Any]] = []
    for name in others:
        n, conv, rev = data[name]
        rate = _div(conv, n)
        absolute = None if rate is None or c_rate is None else rate - c_rate
        relative = None if absolute is None else _div(absolute, c_rate)
        note = None if n and c_n else "a group has no members; the interval is undefined"
        if note is None:
            note = _no_conversion_note(repr(name), conv, f"control {control!r}", c_conv)
        abs_int = rel_int = None
        p_value = None
        if note is None and rate is not None and c_rate is not None and absolute is not None:
            if sequential:
                se = math.sqrt(rate * (1 - rate) / n + c_rate * (1 - c_rate) / c_n)
                if se > 0:
                    half = float(sequential_half_width(
                        se, n + c_n, confidence=1 - alpha / len(others), tuning=sequential_tuning
                    ))
                    abs_int = Interval(absolute - half, absolute + half, confidence, "confidence sequence")
                else:
                    note = "no variance in either group"
            else:
                low, high = proportion.confint_proportions_2indep(
                    conv, n, c_conv, c_n, method="newcomb", compare="diff", alpha=alpha
                )
                abs_int = Interval(float(low), float(high), confidence, "Newcombe hybrid score")
                low, high = proportion.confint_proportions_2indep(
                    conv, n, c_conv, c_n, method="log", compare="ratio", alpha=alpha
                )
                rel_int = Interval(float(low) - 1, float(high) - 1, confidence, "log ratio")
        pooled = _div(conv + c_conv, n + c_n)
        if not sequential and pooled is not None and 0 < pooled < 1:
            _, p = proportion.proportions_ztest([conv, c_conv], [n, c_n])
            p_value = float(p)
        raw_p.append(p_value)
        revenue = None
        if rev is not None and c_rev is not None:
            revenue = welch(rev, c_rev, confidence=confidence)
            if sequential:
                revenue = _sequential_revenue(revenue, rev, c_rev, confidence, alpha / len(others), sequential_tuning)
            revenue = _without_conversions(revenue, _no_conversion_note(repr(name), conv, f"control {control!r}", c_conv))
        chance = chance_to_beat(conv, n, c_conv, c_n) if n and c_n else None
        partial.append({
            "name": name, "n": n, "conversions": conv, "rate": rate, "absolute_lift": absolute,
            "absolute_interval": abs_int, "relative_lift": relative, "relative_interval": rel_int,
            "p_value": p_value, "chance_to_beat_control": chance, "revenue": revenue, "note": note,
        })

    # Holm's correction over the variant-vs-control comparisons that have a p-value
    adjusted: list[float | None] = [None] * len(raw_p)
    tested = [i for i, p in enumerate(raw_p) if p is not None]
    if len(tested) == 1:  # Holm over one comparison is that comparison's p-value
        adjusted[tested[0]] = raw_p[tested[0]]
    elif tested:
        _, corrected, _, _ = _sm_multitest().multipletests([raw_p[i] for i in tested], alpha=alpha, method="holm")
        for i, value in zip(tested, corrected, strict=True):
            adjusted[i] = float(value)
    comparisons = []
    for item, adj in zip(partial, adjusted, strict=True):
        if sequential:
            interval = item["absolute_interval"]
            significant = interval is not None and interval.excludes_zero
        else:
            significant = adj is not None and adj < alpha
        comparisons.append(VariantComparison(adjusted_p_value=adj, significant=significant, **item))
    winners = [c for c in comparisons if c.significant and (c.absolute_lift or 0) > 0]
    winner = max(winners, key=lambda c: c.rate or 0.0).name if winners else None
    return ABTest(
        control, c_n, c_conv, c_rate, None if c_rev is None else c_rev.mean, confidence, sequential,
        float(sequential_tuning) if sequential else None, chi2, chi2_p, chi2_note, tuple(comparisons), winner,
    )


def _sequential_revenue(
    fixed: MeanComparison, a: RevenueStats, b: RevenueStats, confidence: float, alpha: float, tuning: float
) -> MeanComparison:
    var_a, var_b = a.variance, b.variance
    if fixed.difference is None or var_a is None or var_b is None:
        return attrs.evolve(fixed, p_value=None)
    se = math.sqrt(var_a / a.n + var_b / b.n)
    if se == 0:
        return attrs.evolve(fixed, interval=None, p_value=None, note="no member's revenue differs from another's")
    half = float(sequential_half_width(se, a.n + b.n, confidence=1 - alpha, tuning=tuning))
    interval = Interval(fixed.difference - half, fixed.difference + half, confidence, "confidence sequence")
    return attrs.evolve(fixed, interval=interval, p_value=None)


# ---------------------------------------------------------------------------------------------
# sample size


@attrs.frozen
class SampleSize:
    """Members needed per variant to detect ``target_rate`` against ``baseline_rate``."""

    baseline_rate: float
    target_rate: float
    power: float
    alpha: float
    per_variant: int

    def __str__(self) -> str:
        return (
            f"{self.per_variant:,} members per variant to tell {self.target_rate:.2%} from "
            f"{self.baseline_rate:.2%} with {self.power:.0%} power at alpha {self.alpha:g} (two-sided)"
        )

    def _repr_html_(self) -> str:
        return _html_table("Sample size", [("result", str(self))])

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def sample_size(
    baseline_rate: float,
    minimum_detectable_effect: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    relative: bool = True,
) -> SampleSize:
    """Members per variant for a two-sided test of two proportions (Cohen's h, normal power).

    ``minimum_detectable_effect`` is relative (0.1 = +10% of the baseline) unless ``relative=False``,
    when it is in rate points (0.01 = +1 percentage point).
    """
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError(f"baseline_rate is a conversion rate between 0 and 1, e.g. 0.05; got {baseline_rate!r}")
    if minimum_detectable_effect == 0:
        raise ValueError("minimum_detectable_effect cannot be 0: no sample detects no difference")
    target = baseline_rate * (1 + minimum_detectable_effect) if relative else baseline_rate + minimum_detectable_effect
    if not 0.0 < target < 1.0:
        raise ValueError(
            f"baseline {baseline_rate!r} with effect {minimum_detectable_effect!r} "
            f"({'relative' if relative else 'absolute'}) gives a rate of {target!r}, outside (0, 1)"
        )
    if not 0.0 < power < 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"power and alpha are probabilities between 0 and 1; got power={power!r}, alpha={alpha!r}")
    power_module = _sm_power()
    effect = _sm_proportion().proportion_effectsize(target, baseline_rate)
    n = power_module.NormalIndPower().solve_power(
        effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return SampleSize(baseline_rate, target, power, alpha, math.ceil(float(n)))
