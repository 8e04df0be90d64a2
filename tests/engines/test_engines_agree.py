"""Every engine returns exactly the reference evaluator's answer on random shops.

Random shops carry NULLs, quotes, backslashes, wildcard characters, case and
padding differences, Korean text, and timestamps exactly on window edges, at
``now`` and after it.  A difference is a bug in the compiler or an engine quirk it
does not yet handle; hypothesis prints the smallest shop and rule that show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import duckdb_shop, sqlite_shop
from strategies import RandomShop, _schema, rules, shops, shops_and_rules, text_rules

SCALE = float(os.environ.get("SHOPCRM_EXAMPLES_SCALE", "1"))


def _examples(n: int) -> int:
    return max(5, int(n * SCALE))


def _check(load: Callable[[RandomShop], shopcrm.Shop], shop: RandomShop, rule: shopcrm.Rule) -> None:
    expected = shopcrm.evaluate(rule, shop.customers, shop.events, now=shop.now, schema=shop.schema)
    engine = load(shop)
    got = engine.members(rule, now=shop.now)
    assert len(got) == len(set(got)), f"duplicate ids from the engine: {got}"
    assert set(got) == expected, f"rule {rule.to_json()}: engine {sorted(got, key=str)} != reference {sorted(expected, key=str)}"
    assert engine.count(rule, now=shop.now) == len(expected)


def _check_many(load: Callable[[RandomShop], shopcrm.Shop], shop: RandomShop, many: list[shopcrm.Rule]) -> None:
    expected = [len(shopcrm.evaluate(r, shop.customers, shop.events, now=shop.now, schema=shop.schema)) for r in many]
    assert load(shop).count_many(many, now=shop.now) == expected




def common(n: int) -> settings:
    return settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True, max_examples=_examples(n))

many_rules = st.tuples(shops(), st.lists(rules(max_depth=2), min_size=2, max_size=5))


@common(400)
@given(shops_and_rules())
def test_duckdb_agrees(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(duckdb_shop, *case)


@common(400)
@given(shops_and_rules())
def test_sqlite_agrees(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(sqlite_shop, *case)


@common(100)
@given(many_rules)
def test_count_many_agrees_on_duckdb_and_sqlite(case: tuple[RandomShop, list[shopcrm.Rule]]) -> None:
    _check_many(duckdb_shop, *case)
    _check_many(sqlite_shop, *case)


@pytest.mark.postgres
@common(200)
@given(case=shops_and_rules())
def test_postgres_agrees(postgres_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(postgres_loader, *case)


@pytest.mark.mysql
@common(200)
@given(case=shops_and_rules())
def test_mysql_agrees(mysql_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(mysql_loader, *case)


@pytest.mark.postgres
@pytest.mark.mysql
@common(40)
@given(case=many_rules)
def test_count_many_agrees_on_servers(postgres_loader: Any, mysql_loader: Any, case: tuple[RandomShop, list[shopcrm.Rule]]) -> None:
    _check_many(postgres_loader, *case)
    _check_many(mysql_loader, *case)


@pytest.mark.spark
@common(30)
@given(case=shops_and_rules(max_customers=8, max_events=25))
def test_spark_agrees(spark_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(spark_loader, *case)


# ---------------------------------------------------------------- float sums and averages
# sum and avg of floats are the engines' double arithmetic: the values added one by one in time order (the tables
# hold them in that order here), then avg op v is sum op v * count in doubles; the reference does exactly that
FLOATS: list[tuple[str, list[Any]]] = [
    ("price", [1e16, 1.0, 1.0, -1e16]),
    ("price", [0.1, 0.2, 0.3]),
    ("price", [0.1, 0.7, 1e-05]),
    ("amount", [2**53 + 1, 2**53 + 1, 1]),  # an exact integer sum, then a double
    ("amount", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
]
FLOAT_RULES: list[dict[str, Any]] = [
    {"aggregate": fn, "of": "price", "performed": "order_completed", op: v}
    for fn in ("sum", "avg")
    for op in ("eq", "gte", "lt")
    for v in (0, 0.5, 2, 0.6, 0.6000000000000001, 0.2, 0.26667, 0.26667333333333333)
] + [
    {"aggregate": fn, "of": "amount", "performed": "order_completed", op: v}
    for fn in ("sum", "avg")
    for op in ("eq", "gte")
    for v in (3, 9, 0.1, 0.09999999999999999, 2**53 + 3, 6004799503160665)
]


def _float_shop(column: str, values: list[Any]) -> RandomShop:
    now = datetime(2026, 3, 1, 12)
    base = {"category": None, "product_id": None, "amount": None, "price": None, "promotion_id": None}
    events = [{**base, "customer_id": "a", "event": "order_completed", "ts": now - timedelta(hours=len(values) - i), column: v}
              for i, v in enumerate(values)]
    customers = [{"customer_id": "a", "age": None, "grade": None, "score": None, "vip": None, "signed_up_at": None}]
    return RandomShop(customers, events, now, "str", _schema("str"))


@pytest.mark.parametrize(("column", "values"), FLOATS)
def test_float_sums_and_averages_agree_on_duckdb_and_sqlite(column: str, values: list[Any]) -> None:
    shop = _float_shop(column, values)
    for rule in FLOAT_RULES:
        _check(duckdb_shop, shop, shopcrm.parse_rule(rule))
        _check(sqlite_shop, shop, shopcrm.parse_rule(rule))


def test_an_average_is_the_double_sum_over_the_count() -> None:
    shop = _float_shop("price", [1e16, 1.0, 1.0, -1e16])
    avg = {"aggregate": "avg", "of": "price", "performed": "order_completed"}
    # 1e16 + 1 is 1e16 in doubles: the sum is 0, as for every engine, not the exact 2
    assert shopcrm.evaluate({**avg, "eq": 0}, shop.customers, shop.events, now=shop.now) == {"a"}
    assert shopcrm.evaluate({**avg, "eq": 0.5}, shop.customers, shop.events, now=shop.now) == set()
    shop = _float_shop("price", [0.1, 0.2, 0.3])  # sum 0.6000000000000001, which is 0.2 * 3 in doubles
    assert shopcrm.evaluate({**avg, "eq": 0.2}, shop.customers, shop.events, now=shop.now) == {"a"}


_ROUNDING = st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.7, 1.0, 1e-05, 1e16, -1e16, 2.5, 1 / 3]), min_size=1, max_size=6)


@common(60)
@given(_ROUNDING, st.sampled_from(["sum", "avg"]), st.sampled_from(["eq", "gte", "lt"]), st.data())
def test_float_rounding_agrees_on_duckdb_and_sqlite(values: list[float], fn: str, op: str, data: st.DataObject) -> None:
    """Values whose double sum depends on rounding: compared with the double sum, the exact sum and their
    average, the engines and the reference decide alike."""
    shop = _float_shop("price", values)
    total = 0.0
    for v in values:
        total += v
    exact = float(sum(Fraction(v) for v in values))
    candidates = [total, exact, total / len(values), exact / len(values), values[0]]
    rule = shopcrm.parse_rule({"aggregate": fn, "of": "price", "performed": "order_completed", op: data.draw(st.sampled_from(candidates))})
    _check(duckdb_shop, shop, rule)
    _check(sqlite_shop, shop, rule)


@pytest.mark.postgres
@pytest.mark.mysql
@pytest.mark.parametrize(("column", "values"), FLOATS)
def test_float_sums_and_averages_agree_on_servers(postgres_loader: Any, mysql_loader: Any, column: str, values: list[Any]) -> None:
    shop = _float_shop(column, values)
    for rule in FLOAT_RULES:
        _check(postgres_loader, shop, shopcrm.parse_rule(rule))
        _check(mysql_loader, shop, shopcrm.parse_rule(rule))


#: on Spark (seconds a query in local mode; all 72 rules took 530 s of CI) the thresholds at the edges: equal and
#: not quite equal to what the sums add up to, for each aggregate and operator
SPARK_FLOAT_RULES = [rule for rule in FLOAT_RULES if next(v for k, v in rule.items() if k in ("eq", "gte", "lt")) in (
    0.6, 0.6000000000000001, 0.26667333333333333, 2, 0.1, 2**53 + 3, 6004799503160665) and "lt" not in rule]


@pytest.mark.spark
@pytest.mark.parametrize(("column", "values"), FLOATS)
def test_float_sums_and_averages_agree_on_spark(spark_loader: Any, column: str, values: list[Any]) -> None:
    shop = _float_shop(column, values)
    for rule in SPARK_FLOAT_RULES:
        _check(spark_loader, shop, shopcrm.parse_rule(rule))


text_cases = st.tuples(shops(max_customers=8, max_events=30), text_rules())


@common(150)
@given(text_cases)
def test_string_comparisons_agree_on_duckdb_and_sqlite(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(duckdb_shop, *case)
    _check(sqlite_shop, *case)


@pytest.mark.postgres
@pytest.mark.mysql
@common(150)
@given(case=text_cases)
def test_string_comparisons_agree_on_servers(postgres_loader: Any, mysql_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(postgres_loader, *case)
    _check(mysql_loader, *case)
