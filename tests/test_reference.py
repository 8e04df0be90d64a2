"""The reference evaluator on hand-computed shops, and its algebraic properties."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shopcrm
from shopcrm import evaluate
from strategies import RandomShop, rules, shops_and_rules
from tests_dsl_seed import SEED

NOW = datetime(2026, 3, 10, 12)
DAY = timedelta(days=1)


def ev(cid: Any, name: str, ago: timedelta, **props: Any) -> dict[str, Any]:
    return {"customer_id": cid, "event": name, "ts": NOW - ago, **props}


CUSTOMERS = [
    {"customer_id": "a", "age": 25},
    {"customer_id": "b", "age": 45},
    {"customer_id": "c", "age": None},
    {"customer_id": "d", "age": 30},
]
EVENTS = [
    *[ev("a", "product_viewed", DAY * i, category="shoes") for i in (1, 2, 3)],
    ev("a", "order_completed", DAY * 40, product_id="P2", amount=120000),
    ev("b", "product_viewed", DAY, category="shoes"),
    ev("b", "order_completed", DAY * 2, product_id="P1", amount=250000),
    ev("b", "order_completed", DAY * 3, product_id="P9", amount=60000),
    ev("d", "product_viewed", DAY, category="shoes"),
    ev("d", "product_viewed", DAY * 2, category="shoes"),
    ev("d", "product_viewed", DAY * 31, category="shoes"),  # outside 30d
    ev("d", "order_completed", DAY, product_id="P1", amount=10000),
    ev("d", "promotion_joined", DAY * 5, promotion_id="PROMO1"),
    ev("zz", "order_completed", DAY, product_id="P1"),  # not a customer: ignored
]


def test_seed_example() -> None:
    assert evaluate(SEED, CUSTOMERS, EVENTS, now=NOW) == {"a"}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"everyone": True}, {"a", "b", "c", "d"}),
        ({"performed": "order_completed", "times": {"eq": 0}}, {"c"}),
        ({"performed": "order_completed", "times": {"lt": 2}}, {"a", "c", "d"}),
        ({"not": {"attribute": "age", "gte": 20}}, {"c"}),
        ({"attribute": "age", "ne": 25}, {"b", "d"}),
        ({"attribute": "age", "is_null": True}, {"c"}),
        ({"attribute": "age", "not_in": [25, 45]}, {"d"}),
        ({"aggregate": "sum", "of": "amount", "performed": "order_completed", "within": {"last": "90d"}, "gte": 300000}, {"b"}),
        ({"aggregate": "sum", "of": "amount", "performed": "order_completed", "lt": 1}, {"c"}),
        ({"aggregate": "avg", "of": "amount", "performed": "order_completed", "eq": 155000}, {"b"}),
        ({"aggregate": "max", "of": "amount", "performed": "order_completed", "lt": 1}, set()),
        ({"aggregate": "count_distinct", "of": "product_id", "performed": "order_completed", "eq": 0}, {"c"}),
        ({"last_performed": "order_completed", "ago": {"gte": "30d", "lt": "60d"}}, {"a"}),
        ({"first_performed": "product_viewed", "ago": {"gte": "30d"}}, {"d"}),
        ({"performed": "product_viewed", "within": {"ago": {"gte": "1d", "lt": "2d"}}}, {"a", "b", "d"}),
    ],
)
def test_nodes(rule: dict[str, Any], expected: set[str]) -> None:
    assert evaluate(rule, CUSTOMERS, EVENTS, now=NOW) == expected


def test_window_edges_and_events_at_or_after_now() -> None:
    customers = [{"customer_id": i} for i in range(5)]
    events = [
        {"customer_id": 0, "event": "x", "ts": NOW - timedelta(days=30)},  # exactly 30d: outside last 30d
        {"customer_id": 1, "event": "x", "ts": NOW - timedelta(days=30) + timedelta(seconds=1)},
        {"customer_id": 2, "event": "x", "ts": NOW},  # at now: does not exist yet
        {"customer_id": 3, "event": "x", "ts": NOW + DAY},
        {"customer_id": 4, "event": "x", "ts": (NOW - DAY).isoformat() + "Z"},  # ISO text
    ]
    assert evaluate({"performed": "x", "within": {"last": "30d"}}, customers, events, now=NOW) == {1, 4}
    assert evaluate({"performed": "x"}, customers, events, now=NOW) == {0, 1, 4}


def test_abandoned_cart_and_follow_window() -> None:
    customers = [{"customer_id": c} for c in "pqrs"]
    events = [
        ev("p", "cart_added", DAY * 2),
        ev("q", "cart_added", DAY * 2), ev("q", "order_completed", DAY),
        ev("r", "cart_added", DAY * 3), ev("r", "order_completed", DAY),  # 2 days later
        ev("s", "cart_added", DAY * 2), ev("s", "order_completed", DAY * 3),  # earlier order
    ]
    rule: dict[str, Any] = {
        "performed": "cart_added", "within": {"ago": {"gte": "1d", "lt": "7d"}},
        "not_followed_by": {"performed": "order_completed"},
    }
    assert evaluate(rule, customers, events, now=NOW) == {"p", "s"}
    rule["not_followed_by"]["within"] = "1d"
    assert evaluate(rule, customers, events, now=NOW) == {"p", "r", "s"}


def test_sample_buckets_match_an_independent_md5() -> None:
    customers = [{"customer_id": i} for i in range(2000)]
    got = evaluate({"sample": {"percent": 12.5, "salt": "exp-1"}}, customers, [], now=NOW)
    expected = {i for i in range(2000) if int(hashlib.md5(f"exp-1:{i}".encode()).hexdigest()[:8], 16) % 10000 < 1250}
    assert got == expected
    assert 150 < len(got) < 350


def test_named_segments_and_cycles() -> None:
    segments = {"young": {"attribute": "age", "lt": 30}, "loop_a": {"in_segment": "loop_b"}, "loop_b": {"in_segment": "loop_a"}}
    assert evaluate({"in_segment": "young"}, CUSTOMERS, [], now=NOW, segments=segments) == {"a"}
    with pytest.raises(shopcrm.SegmentCycleError, match="loop_a -> loop_b -> loop_a"):
        evaluate({"in_segment": "loop_a"}, CUSTOMERS, [], now=NOW, segments=segments)
    with pytest.raises(shopcrm.RuleError, match="no segment is named 'nope'"):
        evaluate({"in_segment": "nope"}, CUSTOMERS, [], now=NOW, segments=segments)


def test_type_misfits_are_errors_not_false() -> None:
    with pytest.raises(shopcrm.RuleError, match="use a number"):
        evaluate({"attribute": "age", "gte": "20"}, CUSTOMERS, [], now=NOW)


def test_schema_checks_fields() -> None:
    schema = shopcrm.Schema(
        shopcrm.Table("customers", {"customer_id": shopcrm.ColumnType.STRING, "age": shopcrm.ColumnType.INTEGER}),
        shopcrm.Table("events", {"customer_id": shopcrm.ColumnType.STRING, "event": shopcrm.ColumnType.STRING,
                                 "ts": shopcrm.ColumnType.TIMESTAMP}),
    )
    with pytest.raises(shopcrm.SchemaError, match="has no column 'colour'; its columns are customer_id, event, ts"):
        evaluate({"performed": "x", "where": {"colour": "red"}}, CUSTOMERS, EVENTS, now=NOW, schema=schema)


@settings(max_examples=150, deadline=None)
@given(shops_and_rules())
def test_not_is_the_complement_and_and_or_are_set_operations(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    shop, rule = case
    everyone = {c["customer_id"] for c in shop.customers}
    inside = evaluate(rule, shop.customers, shop.events, now=shop.now)
    assert evaluate({"not": rule.to_dict()}, shop.customers, shop.events, now=shop.now) == everyone - inside
    other = {"attribute": "age", "gte": 30}
    with_other = evaluate(other, shop.customers, shop.events, now=shop.now)
    both = evaluate({"and": [rule.to_dict(), other]}, shop.customers, shop.events, now=shop.now)
    either = evaluate({"or": [rule.to_dict(), other]}, shop.customers, shop.events, now=shop.now)
    assert both == inside & with_other
    assert either == inside | with_other


@settings(max_examples=150, deadline=None)
@given(shops_and_rules(), st.integers(0, 5))
def test_events_at_or_after_now_never_matter(case: tuple[RandomShop, shopcrm.Rule], later: int) -> None:
    shop, rule = case
    past = [e for e in shop.events if e["ts"] < shop.now]
    future = [{**e, "ts": shop.now + timedelta(hours=later)} for e in shop.events]
    base = evaluate(rule, shop.customers, past, now=shop.now)
    assert evaluate(rule, shop.customers, shop.events, now=shop.now) == base
    assert evaluate(rule, shop.customers, past + future, now=shop.now) == base


@settings(max_examples=50, deadline=None)
@given(rules())
def test_rules_without_events_depend_only_on_customers(rule: shopcrm.Rule) -> None:
    assert evaluate(rule, [], [], now=NOW) == set()
