"""Durations and age bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopcrm.timeline import TsBound, age_bounds, iso_duration, parse_duration, to_utc_naive


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("2w", 1209600), ("90m", 5400), ("45s", 45),
     ("P30D", 30 * 86400), ("PT12H", 43200), ("P1W", 604800), ("P1DT2H3M4S", 93784)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["1M", "3 months", "1y", "P1M", "P2Y", "P1Y2M"])
def test_months_and_years_are_rejected_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match="months and years have no fixed length"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["30 days", "", "d", "-1d", "P", "PT", "1.5d"])
def test_other_nonsense_is_rejected_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="use forms like"):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20_000)))
def test_a_duration_written_in_days_reads_back_exactly(value: timedelta) -> None:
    """``iso_duration`` never writes years (pydantic writes 365 days as ``P1Y``, which no parse accepts)."""
    text = iso_duration(value)
    assert "Y" not in text
    assert parse_duration(text) == value


def test_iso_seconds_may_have_a_fraction() -> None:
    assert parse_duration("PT1.5S") == timedelta(seconds=1.5)
    assert parse_duration("P2DT0.000001S") == timedelta(days=2, microseconds=1)
    assert iso_duration(timedelta(days=365)) == "P365D"
    assert iso_duration(timedelta(0)) == "P0D"


def test_instants_are_naive_utc() -> None:
    seoul = timezone(timedelta(hours=9))
    assert to_utc_naive(datetime(2026, 3, 1, 9, tzinfo=seoul)) == datetime(2026, 3, 1)
    assert to_utc_naive("2026-03-01T09:00:00+09:00") == datetime(2026, 3, 1)
    assert to_utc_naive("2026-03-01T00:00:00Z") == datetime(2026, 3, 1)
    assert to_utc_naive(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 3, 1)


def test_age_range_means_now_minus_b_lt_ts_le_now_minus_a() -> None:
    now = datetime(2026, 3, 10)
    bounds = age_bounds({"gte": timedelta(days=1), "lt": timedelta(days=7)}, now)
    holds = lambda ts: all(b.holds(ts) for b in bounds)  # noqa: E731
    assert holds(now - timedelta(days=1))  # exactly 1 day old: in
    assert not holds(now - timedelta(days=1) + timedelta(microseconds=1))
    assert not holds(now - timedelta(days=7))  # exactly 7 days old: out
    assert holds(now - timedelta(days=7) + timedelta(microseconds=1))
    assert TsBound("lt", now) in bounds
