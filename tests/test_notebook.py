"""Notebook ergonomics: frames, breakdowns, overlaps and trends agree with shop.count/shop.members on
DuckDB and SQLite; rules print as builder code that evaluates back to them; HTML shows the numbers;
profiles show local times; Korean labels; ``python -m shopcrm``."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import shopcrm
import shopcrm.dsl as dsl
from engines.loaders import duckdb_shop, sqlite_shop
from shopcrm.dsl import And, Not, Or, attr, did, everyone, parse_rule
from shopcrm.labels import label, set_locale, use_locale
from strategies import RandomShop, rules, shops

NOW = datetime(2026, 3, 1, 12)
LOADERS: dict[str, Callable[[RandomShop], shopcrm.Shop]] = {"duckdb": duckdb_shop, "sqlite": sqlite_shop}
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def shop() -> shopcrm.Shop:
    s = shopcrm.Shop.open()
    s.load_customers([
        {"customer_id": "c1", "age": 27, "grade": "gold"},
        {"customer_id": "c2", "age": 41, "grade": None},
        {"customer_id": "c3", "age": 33, "grade": "gold"},
        {"customer_id": "c4", "age": 22, "grade": "silver"},
    ])
    s.load_events([
        {"customer_id": "c1", "event": "order_completed", "ts": datetime(2026, 2, 20, 3, 4, 5, 678901), "amount": 10},
        {"customer_id": "c3", "event": "order_completed", "ts": datetime(2026, 1, 2), "amount": 20},
        {"customer_id": "c4", "event": "order_completed", "ts": datetime(2026, 2, 27), "amount": 5},
        {"customer_id": "c4", "event": "cart_added", "ts": datetime(2026, 2, 28), "product_id": "P1"},
    ])
    return s


BUYERS = did("order_completed").within("30d")


# --------------------------------------------------------------------- members_frame
def test_members_frame_has_the_members_and_their_attributes(shop: shopcrm.Shop) -> None:
    table = shop.members_frame(BUYERS, now=NOW)
    assert table.column_names == ["customer_id", "age", "grade"]
    assert table.to_pylist() == [
        {"customer_id": "c1", "age": 27, "grade": "gold"},
        {"customer_id": "c4", "age": 22, "grade": "silver"},
    ]
    assert table.column("customer_id").to_pylist() == shop.members(BUYERS, now=NOW)


def test_members_frame_picks_columns_and_frame_kinds(shop: shopcrm.Shop) -> None:
    frame = shop.members_frame(BUYERS, now=NOW, columns=["grade"], as_="pandas")
    assert list(frame.columns) == ["customer_id", "grade"]
    assert frame["grade"].tolist() == ["gold", "silver"]
    polars_frame = shop.members_frame(attr("age").gte(30), now=NOW, columns=["age"], as_="polars")
    assert polars_frame.to_dicts() == [{"customer_id": "c2", "age": 41}, {"customer_id": "c3", "age": 33}]


def test_members_frame_refuses_unknown_columns_and_kinds(shop: shopcrm.Shop) -> None:
    with pytest.raises(ValueError, match=r"'grad' is not a column of 'customers'; did you mean 'grade'"):
        shop.members_frame(BUYERS, now=NOW, columns=["grad"])
    with pytest.raises(ValueError, match="use one of 'arrow', 'pandas', 'polars'"):
        shop.members_frame(BUYERS, now=NOW, as_="excel")
    with pytest.raises(TypeError, match="list of column names"):
        shop.members_frame(BUYERS, now=NOW, columns="grade")


# ------------------------------------------------------------------------- breakdown
def test_breakdown_counts_each_value_and_nulls(shop: shopcrm.Shop) -> None:
    result = shop.breakdown(everyone(), "grade", now=NOW)
    assert result.rows == (("gold", 2), ("silver", 1), (None, 1))
    assert result.total == shop.count(everyone(), now=NOW) == 4
    assert result.to_dict() == {"gold": 2, "silver": 1, None: 1}
    assert result.to_arrow().column("customers").to_pylist() == [2, 1, 1]
    assert result.to_pandas()["share"].tolist() == [0.5, 0.25, 0.25]
    assert shop.breakdown(BUYERS, "grade", now=NOW).to_dict() == {"gold": 1, "silver": 1}
    page = result._repr_html_()
    assert "<td style='text-align:right'>2</td>" in page
    assert "50.0%" in page
    assert "None" in page
    assert "gold: 2" in repr(result)
    with pytest.raises(ValueError, match="by= 'tier' is not a column"):
        shop.breakdown(everyone(), "tier", now=NOW)


# --------------------------------------------------------------------------- overlap
def test_overlap_matrix_is_the_pairwise_counts(shop: shopcrm.Shop) -> None:
    named = {"buyers": BUYERS, "30+": attr("age").gte(30), "gold": attr("grade").eq("gold")}
    result = shop.overlap(named, now=NOW)
    for a, ra in named.items():
        for b, rb in named.items():
            expected = shop.count(ra if a == b else ra & rb, now=NOW)
            assert result.size(a, b) == expected, (a, b)
    assert result.matrix == ((2, 0, 1), (0, 2, 1), (1, 1, 2))
    assert result.to_pandas().loc["gold", "30+"] == 1
    page = result._repr_html_()
    assert ">2</td>" in page
    assert "buyers" in page
    unnamed = shop.overlap([BUYERS, attr("age").gte(30)], now=NOW)
    assert unnamed.names == ("did('order_completed').within('30d')", "attr('age').gte(30)")


# ----------------------------------------------------------------------------- trend
def test_trend_is_the_count_at_each_instant(shop: shopcrm.Shop) -> None:
    result = shop.trend(BUYERS, every="1w", since=datetime(2026, 1, 1), now=NOW)
    instants = [t for t, _ in result.points]
    assert instants[-1] == NOW
    assert instants[0] >= datetime(2026, 1, 1)
    assert all(b - a == timedelta(weeks=1) for a, b in itertools.pairwise(instants))
    assert [n for _, n in result.points] == [shop.count(BUYERS, now=t) for t in instants]
    assert len({n for _, n in result.points}) > 1  # the audience changes over these weeks
    assert result.to_arrow().num_rows == len(instants)
    assert f"<td style='text-align:right'>{result.points[-1][1]}</td>" in result._repr_html_()
    assert len(shop.trend(BUYERS, every="1d", now=NOW, periods=5).points) == 6
    with pytest.raises(ValueError, match="more than 1,000"):
        shop.trend(BUYERS, every="1h", since=datetime(2020, 1, 1), now=NOW)
    with pytest.raises(shopcrm.RuleError, match="every"):
        shop.trend(BUYERS, every="a week", now=NOW)


# ------------------------------------------------------------- helpers on random shops
@pytest.mark.parametrize("engine", list(LOADERS))
@SETTINGS
@given(data=shops(max_customers=8, max_events=25), rule=rules(max_depth=2), other=rules(max_depth=1))
def test_helpers_agree_with_count_and_members(engine: str, data: RandomShop, rule: Any, other: Any) -> None:
    check_helpers(LOADERS[engine](data), data, rule, other)


def check_helpers(shop: shopcrm.Shop, data: RandomShop, rule: Any, other: Any) -> None:
    """members_frame, breakdown, overlap, count_many({...}) and trend against count and members."""
    now = data.now
    frame = shop.members_frame(rule, now=now)
    members = shop.members(rule, now=now)
    assert sorted(frame.column("customer_id").to_pylist()) == members
    for by in ("grade", "vip"):
        groups = Counter(frame.column(by).to_pylist()) if members else Counter()
        if by == "vip":  # SQLite and MySQL hold booleans as integers
            groups = Counter(None if v is None else bool(v) for v in frame.column(by).to_pylist())
            found = {None if v is None else bool(v): n for v, n in shop.breakdown(rule, by, now=now).rows}
        else:
            found = shop.breakdown(rule, by, now=now).to_dict()
        assert found == dict(groups)
    both = shop.overlap({"a": rule, "b": other}, now=now)
    assert both.matrix[0][0] == len(members)
    assert both.size("a", "b") == shop.count(And(and_=[rule, other]), now=now)
    assert shop.count_many({"a": rule, "b": other}, now=now) == {"a": len(members), "b": both.size("b")}
    result = shop.trend(rule, every="1d", now=now, periods=2)
    assert [n for _, n in result.points] == [shop.count(rule, now=t) for t, _ in result.points]


# ------------------------------------------------------------------------ count_many
def test_count_many_takes_a_dict_or_a_list(shop: shopcrm.Shop) -> None:
    assert shop.count_many({"buyers": BUYERS, "all": everyone()}, now=NOW) == {"buyers": 2, "all": 4}
    assert shop.count_many([BUYERS, {"everyone": True}], now=NOW) == [2, 4]
    assert shop.count_many({}, now=NOW) == {}
    assert shop.count_many({"attribute": {"attribute": "age", "gte": 30}}, now=NOW) == {"attribute": 2}


@pytest.mark.parametrize(("given", "message"), [
    ({"attribute": "age", "gte": 20}, "looks like one rule"),
    ('{"everyone": true}', r"not one rule \(str\)"),
    (everyone(), r"not one rule \(Everyone\)"),
    (BUYERS, "wrap it in a list"),
    (3, "not int"),
    ({1: everyone()}, "1 is not a name"),
])
def test_count_many_says_what_it_takes(shop: shopcrm.Shop, given: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        shop.count_many(given, now=NOW)


# ---------------------------------------------------------------------------- reprs
def test_a_rule_prints_as_builder_code() -> None:
    rule = did("order_completed").within("30d") & attr("age").between(20, 39)
    assert repr(rule) == "did('order_completed').within('30d') & attr('age').between(20, 39)"
    assert str(rule) == repr(rule)
    assert repr(BUYERS) == "did('order_completed').within('30d')"  # a builder prints as its rule
    assert "eq=None" not in repr(rule)
    assert "eq=None" not in repr(dsl.Comparison(gte=3))
    assert repr((BUYERS | attr("vip").eq(True)) & ~did("x")) == (
        "(did('order_completed').within('30d') | attr('vip').eq(True)) & ~did('x')"
    )
    assert "between(20, 39)" in rule._repr_html_()
    assert "&quot;between&quot;" in rule._repr_html_()


@pytest.mark.parametrize("rule", [
    And(and_=[everyone()]),
    And(and_=[everyone(), And(and_=[attr("age").gte(1), everyone()])]),
    Or(or_=[Or(or_=[everyone(), attr("age").lt(3)]), everyone()]),
    Not(not_=Not(not_=did("x").to_rule())),
    parse_rule({"aggregate": "sum", "of": "amount", "performed": "order_completed", "gte": 1, "lt": 9}),
    parse_rule({"performed": "v", "where": {"properties.brand": "x", "amount": {"in": [1, 2]}}, "times": {"in": [1, 3]}}),
    parse_rule({"lifecycle": "repeat", "moment": "lapsed"}),
    parse_rule({"performed": "a", "not_followed_by": {"performed": "b", "within": "1d", "where": {"within": 3, "class": "x"}}}),
    parse_rule({"performed": "a", "where": {"event": "x", "in": 1}, "within": {"between": ["2026-01-01T00:00:00", "2026-02-01T00:00:00"]}}),
    parse_rule({"attribute": "signed_up_at", "ago": {"gte": "1d"}, "is_null": False}),
])
def test_awkward_shapes_round_trip(rule: Any) -> None:
    assert parse_rule(eval(repr(rule), dict(vars(dsl)))) == rule


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules(max_depth=4))
def test_every_rule_repr_evaluates_to_an_equal_rule(rule: Any) -> None:
    assert parse_rule(eval(repr(rule), dict(vars(dsl)))) == rule


def test_the_shop_repr_runs_no_query(shop: shopcrm.Shop) -> None:
    calls: list[Any] = []
    original = shop.source.fetch
    shop.source.fetch = lambda *a: calls.append(a) or original(*a)  # type: ignore[method-assign]
    text = repr(shop)
    assert text == "<Shop duckdb ':memory:' (DuckDBSource): customers='customers', events='events'>"
    assert "duckdb" in shop._repr_html_()
    assert calls == []


# ------------------------------------------------------------ profile, labels, -m
def test_the_profile_shows_local_times_to_the_second(shop: shopcrm.Shop) -> None:
    profile = shop.profile("c1", now=NOW)
    text = str(profile)
    assert "2026-02-20 12:04:05 KST  order_completed" in text  # 03:04:05.678901 UTC
    assert "678901" not in text
    assert "as of 2026-03-01 21:00:00 KST" in text
    assert "2026-02-20 12:04:05 KST" in profile._repr_html_()
    import attrs

    shop.messaging_policy = attrs.evolve(shop.messaging_policy, timezone="America/New_York")
    assert "2026-02-19 22:04:05 EST" in str(shop.profile("c1", now=NOW))


def test_korean_labels_in_what_people_read(shop: shopcrm.Shop) -> None:
    assert label("stage", "never_purchased") == "never_purchased"
    assert label("cycle", "at_risk", locale="ko") == "이탈 위험"
    with use_locale("ko"):
        assert "첫 구매" in str(shop.profile("c1", now=NOW))
        summary = shop.lifecycle_summary(now=NOW)
        assert "미구매 가입자" in str(summary)
        assert "단계" in summary._repr_html_()
        assert "never_purchased" in summary.to_dict()["by_stage"]
    assert "first_purchase" in str(shop.profile("c1", now=NOW))
    with pytest.raises(ValueError, match="'jp' is not a locale"):
        set_locale("jp")


def test_every_default_rfm_segment_and_reason_has_a_korean_label() -> None:
    from shopcrm.campaigns._planner import REASONS
    from shopcrm.labels import LABELS
    from shopcrm.lifecycle import DEFAULT_RFM_SEGMENTS, MOMENTS, STAGES

    assert set(DEFAULT_RFM_SEGMENTS) <= set(LABELS["rfm"])
    assert set(REASONS) <= set(LABELS["reason"])
    assert set(STAGES) <= set(LABELS["stage"])
    assert set(MOMENTS) <= set(LABELS["moment"])


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "shopcrm", "--help"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(__import__("pathlib").Path(shopcrm.__file__).parent.parent)})
    assert done.returncode == 0
    assert "usage: shopcrm" in done.stdout

