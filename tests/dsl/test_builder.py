"""The notebook builder produces exactly the JSON contract's models."""

from __future__ import annotations

import pytest

from shopcrm.dsl import (
    Not,
    aggregate,
    attr,
    did,
    did_not,
    everyone,
    first_did,
    last_did,
    parse_rule,
    sample,
    segment,
)
from tests_dsl_seed import SEED


def test_the_seed_example_built_in_python_equals_its_json() -> None:
    rule = (
        did("product_viewed", category="shoes").times(gte=3).within("30d")
        & (did("order_completed", product_id="P1") | did("order_completed", product_id="P2"))
        & ~did("promotion_joined", promotion_id="PROMO1")
        & attr("age").between(20, 39)
    )
    assert rule == parse_rule(SEED)


@pytest.mark.parametrize(
    ("built", "json"),
    [
        (did_not("order_completed"), {"performed": "order_completed", "times": {"eq": 0}}),
        (did("x", category=["a", "b"]), {"performed": "x", "where": {"category": {"in": ["a", "b"]}}}),
        (
            did("cart_added").within(ago={"gte": "1d", "lt": "7d"}).not_followed_by("order_completed", within="2d"),
            {"performed": "cart_added", "within": {"ago": {"gte": "1d", "lt": "7d"}},
             "not_followed_by": {"performed": "order_completed", "within": "2d"}},
        ),
        (aggregate("sum", "amount", "order_completed").within("90d") >= 300000,
         {"aggregate": "sum", "of": "amount", "performed": "order_completed", "within": {"last": "90d"}, "gte": 300000}),
        (last_did("session_started").ago(gte="30d", lt="60d"),
         {"last_performed": "session_started", "ago": {"gte": "30d", "lt": "60d"}}),
        (first_did("order_completed").ago(lt="7d"), {"first_performed": "order_completed", "ago": {"lt": "7d"}}),
        (attr("grade").isin(["골드", "VIP"]), {"attribute": "grade", "in": ["골드", "VIP"]}),
        (attr("email").is_null(False), {"attribute": "email", "is_null": False}),
        (attr("signed_up_at").ago(gte="1d", lt="7d"), {"attribute": "signed_up_at", "ago": {"gte": "1d", "lt": "7d"}}),
        (attr("age") < 20, {"attribute": "age", "lt": 20}),
        (segment("vip") & ~sample(10, "h"), {"and": [{"in_segment": "vip"}, {"not": {"sample": {"percent": 10, "salt": "h"}}}]}),
        (everyone() | attr("age").gte(1), {"or": [{"everyone": True}, {"attribute": "age", "gte": 1}]}),
        (did("x").within(between=("2026-01-01T00:00:00", "2026-02-01T00:00:00")),
         {"performed": "x", "within": {"between": ["2026-01-01T00:00:00", "2026-02-01T00:00:00"]}}),
    ],
)
def test_builder_forms(built: object, json: dict[str, object]) -> None:
    assert parse_rule(built) == parse_rule(json)


def test_double_negation_cancels_and_and_flattens() -> None:
    a, b, c = attr("a").eq(1), attr("b").eq(2), attr("c").eq(3)
    assert ~~a == a
    assert isinstance(~a, Not)
    assert (a & b & c).to_dict() == {"and": [a.to_dict(), b.to_dict(), c.to_dict()]}
    assert (a | b | c).to_dict() == {"or": [a.to_dict(), b.to_dict(), c.to_dict()]}


def test_two_windows_at_once_are_refused() -> None:
    with pytest.raises(ValueError, match="give one window"):
        did("x").within("30d", ago={"lt": "1d"})
