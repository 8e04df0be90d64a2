"""Every engine returns exactly the reference evaluator's answer on random shops.

Random shops carry NULLs, quotes, backslashes, wildcard characters, case and
padding differences, Korean text, and timestamps exactly on window edges, at
``now`` and after it.  A difference is a bug in the compiler or an engine quirk it
does not yet handle; hypothesis prints the smallest shop and rule that show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import duckdb_shop, sqlite_shop
from strategies import RandomShop, rules, shops, shops_and_rules, text_rules

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
