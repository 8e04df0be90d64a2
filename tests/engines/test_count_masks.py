"""count_many's mask shape (issue 15): each grouped pass computes its tests as bits, merged before one join.

DuckDB compiles count_many this way; the shape is plain SQL (``SUM`` merges the disjoint bits where DuckDB
uses ``BIT_OR``), so SQLite runs it too when asked, and both must equal the reference evaluator and the
column shape on random shops: tests that hold without rows (``times: {eq: 0}``, ``not``), NULL sums and
extremes, averages, first/last, follow-ups and lifecycle rules side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import duckdb_shop, sqlite_shop
from shopcrm.compiler import compile_counts, render
from shopcrm.compiler._compile import QueryBuilder
from shopcrm.compiler._dialects import dialect_for
from shopcrm.dsl import parse_rule
from strategies import RandomShop, _schema, rules, shops

LOADERS: dict[str, Callable[[RandomShop], shopcrm.Shop]] = {"duckdb": duckdb_shop, "sqlite": sqlite_shop}


def _counts(engine: shopcrm.Shop, many: Sequence[shopcrm.Rule], now: datetime, dialect: str, *, masks: bool) -> list[int]:
    query = QueryBuilder(engine.source.schema(), now, dialect_for(dialect)).counts(many, masks=masks)
    return [int(v or 0) for v in engine.source.fetch(query)[0]]


@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=15)
@given(shop=shops(), many=st.lists(rules(max_depth=2), min_size=2, max_size=6))
def test_mask_counts_equal_the_reference_on_duckdb_and_sqlite(shop: RandomShop, many: list[shopcrm.Rule]) -> None:
    expected = [len(shopcrm.evaluate(r, shop.customers, shop.events, now=shop.now, schema=shop.schema)) for r in many]
    for dialect, load in LOADERS.items():
        engine = load(shop)
        assert _counts(engine, many, shop.now, dialect, masks=True) == expected, dialect
        assert _counts(engine, many, shop.now, dialect, masks=False) == expected, dialect


def _tiny_shop() -> RandomShop:
    now = datetime(2026, 3, 1, 12)
    customers = [{"customer_id": f"c{i}", "age": 20 + i, "grade": "VIP", "score": 1.5, "vip": True,
                  "signed_up_at": now - timedelta(days=400)} for i in range(6)]
    events = [{"customer_id": f"c{i}", "event": "order_completed", "ts": now - timedelta(days=d, hours=i),
               "category": "shoes", "product_id": f"P{d % 3}", "amount": 1000 * d, "price": 10, "promotion_id": None}
              for i in range(6) for d in range(1, 2 * i + 1)]
    events += [{"customer_id": "ghost", "event": "order_completed", "ts": now - timedelta(days=1), "category": "shoes",
                "product_id": "P1", "amount": 5, "price": 1, "promotion_id": None}]  # not a customer: never counted
    return RandomShop(customers, events, now, "str", _schema("str"))


def test_more_tests_than_one_mask_holds_spill_into_the_next_masks() -> None:
    """131 distinct tests of one pass (62 bits per mask), half of them true without rows: three mask columns,
    and every count exact on DuckDB (compiled as count_many compiles it) and SQLite."""
    shop = _tiny_shop()
    many = [parse_rule({"performed": "order_completed", "times": {"gte": k}}) for k in range(1, 66)]
    many += [parse_rule({"performed": "order_completed", "times": {"lt": k}}) for k in range(1, 66)]
    many.append(parse_rule({"not": {"aggregate": "count_distinct", "of": "product_id", "performed": "order_completed", "gte": 3}}))
    expected = [len(shopcrm.evaluate(r, shop.customers, shop.events, now=shop.now, schema=shop.schema)) for r in many]
    assert expected[0] == 5  # c0 has no orders, and the ghost is no customer
    assert expected[65] == 1
    assert expected[-1] == 2
    engine = duckdb_shop(shop)
    query = compile_counts(many, engine.source.schema(), now=shop.now, dialect="duckdb")
    sql = render(query, "duckdb")
    assert "BIT_OR(m2) AS m2" not in sql  # one pass: no merge
    assert " AS m2" in sql
    assert " AS m3" not in sql
    assert sql.count('FROM "events"') == 1
    assert [int(v) for v in engine.source.fetch(query)[0]] == expected
    assert _counts(sqlite_shop(shop), many, shop.now, "sqlite", masks=True) == expected


def test_count_many_on_duckdb_joins_the_customers_once() -> None:
    """Three passes (three event names) merged into one relation: one join of the customers, not three."""
    shop = _tiny_shop()
    many = [parse_rule({"performed": name, "within": {"last": "30d"}}) for name in ("order_completed", "cart_added", "product_viewed")]
    sql = render(compile_counts(many, shop.schema, now=shop.now, dialect="duckdb"), "duckdb")
    assert sql.count("JOIN") == 1
    assert "BIT_OR(m0) AS m0" in sql
    assert sql.count("UNION ALL") == 2
    assert sql.count("WHERE m0 <> 0") == 3  # rows whose tests all read as "no rows" are not merged
    postgres = render(compile_counts(many, shop.schema, now=shop.now, dialect="postgres"), "postgres")
    assert postgres.count("LEFT JOIN") == 3  # other engines keep the column shape
    assert "BIT_OR" not in postgres
