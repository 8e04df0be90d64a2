"""shop.lifecycle (one SQL query) equals the pure classifier on every engine, on random shops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import shopcrm
from engines.loaders import duckdb_shop, sqlite_shop
from shopcrm.lifecycle import LifecyclePolicy, classify_shop
from shopcrm.lifecycle._sql import rows_to_arrow
from strategies import RandomShop, shops

SCALE_NOTE = "lifecycle rows compared field by field"


#: orders counted by distinct id: the random shops' product_id (NULL in some order events, repeated in others)
BY_ID = LifecyclePolicy(order_id_property="product_id")


def _check(load: Callable[[RandomShop], shopcrm.Shop], shop: RandomShop, arrow: bool = False,
           policy: LifecyclePolicy | None = None) -> None:
    pure = classify_shop(shop.customers, shop.events, now=shop.now, policy=policy)
    engine = load(shop)
    assert {r.customer_id: r for r in engine.lifecycle_rows(now=shop.now, policy=policy)} == {r.customer_id: r for r in pure}
    # shop.rfm (a smaller query over the orders) gives the scored customers' RFM columns of the same rows
    rfm_columns = ("recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment")
    expected_rfm = {r.customer_id: {c: getattr(r, c) for c in rfm_columns} for r in pure if r.r_score is not None}
    got_rfm = {row.pop("customer_id"): row for row in engine.rfm(now=shop.now, policy=policy).to_pylist()}
    assert got_rfm == expected_rfm
    if arrow:  # the vectorised Arrow table says the same
        expected = sorted(rows_to_arrow(pure).to_pylist(), key=lambda r: r["customer_id"])  # type: ignore[attr-defined]
        assert engine.lifecycle(now=shop.now, policy=policy).to_pylist() == expected


def cases(n: int) -> settings:
    return settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=n, print_blob=True)


@cases(80)
@given(shops(max_customers=10, max_events=50))
def test_duckdb_and_sqlite(shop: RandomShop) -> None:
    _check(duckdb_shop, shop, arrow=True)
    _check(sqlite_shop, shop, arrow=True)


@cases(60)
@given(shops(max_customers=10, max_events=50))
def test_orders_counted_by_id_on_duckdb_and_sqlite(shop: RandomShop) -> None:
    """An order event without an id is no order: no stage, R, F or M from it, in SQL as in the classifier."""
    _check(duckdb_shop, shop, arrow=True, policy=BY_ID)
    _check(sqlite_shop, shop, arrow=True, policy=BY_ID)


@cases(25)
@given(shops(max_customers=40, max_events=200))
def test_rfm_scores_on_larger_shops(shop: RandomShop) -> None:
    """shop.rfm scores by cut points (the q-th smallest R by ROW_NUMBER, the F and M histograms' first
    values per score): equal to the classifier's ranks with more scored customers and ties than above."""
    pure = classify_shop(shop.customers, shop.events, now=shop.now)
    rfm_columns = ("recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment")
    expected = {r.customer_id: {c: getattr(r, c) for c in rfm_columns} for r in pure if r.r_score is not None}
    for load in (duckdb_shop, sqlite_shop):
        table = load(shop).rfm(now=shop.now)
        assert table["customer_id"].to_pylist() == sorted(expected)
        assert {row.pop("customer_id"): row for row in table.to_pylist()} == expected


@pytest.mark.postgres
@pytest.mark.mysql
@cases(80)
@given(shop=shops(max_customers=10, max_events=50))
def test_postgres_and_mysql(postgres_loader: Any, mysql_loader: Any, shop: RandomShop) -> None:
    _check(postgres_loader, shop)
    _check(mysql_loader, shop)
    _check(postgres_loader, shop, policy=BY_ID)
    _check(mysql_loader, shop, policy=BY_ID)


@pytest.mark.spark
@cases(8)  # seconds per Spark query in local mode: 15 took 260 s of CI
@given(shop=shops(max_customers=8, max_events=30))
def test_spark(spark_loader: Any, shop: RandomShop) -> None:
    _check(spark_loader, shop)
    _check(spark_loader, shop, policy=BY_ID)
