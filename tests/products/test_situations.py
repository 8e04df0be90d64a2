"""The product situations: the pure reference on hand-made stays (the tie rules), and the SQL on DuckDB equal to
the reference on random carts, wishlists and histories (the other engines: tests/engines/
test_product_situations_engines.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings

from products.situation_histories import Case, at, cases, check, situations_sql
from shopcrm.products import ProductSituations, product_situations


def _load(con: Any, case: Case) -> None:
    con.execute("CREATE OR REPLACE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, product_id VARCHAR)")
    con.execute("CREATE OR REPLACE TABLE history (product_id VARCHAR, ts TIMESTAMP, price DOUBLE, stock BIGINT, "
                "available BOOLEAN)")
    con.execute("CREATE OR REPLACE TABLE products (product_id VARCHAR, name VARCHAR)")
    for table, width in (("events", 4), ("history", 5), ("products", 2)):
        rows = case.rows(table)
        if rows:
            con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_duckdb_agrees_with_the_reference(case: Case) -> None:
    con = duckdb.connect()
    _load(con, case)
    check(lambda sql: con.execute(sql).fetchall(), situations_sql(case, "duckdb"), case)


def _events(*rows: tuple[str, str, int, str | None]) -> list[dict[str, Any]]:
    return [{"customer_id": c, "event": e, "ts": at(m), "product_id": p} for c, e, m, p in rows]


def _history(*rows: tuple[int, float | None, int | None, bool | None]) -> list[dict[str, Any]]:
    return [{"product_id": "p1", "ts": at(m), "price": price, "stock": stock, "available": available}
            for m, price, stock, available in rows]


def _names(found: list[dict[str, Any]]) -> list[tuple[str, datetime]]:
    return [(r["event"], r["ts"]) for r in found]


def test_a_drop_of_exactly_the_percent_counts_once_per_stay_from_the_price_at_the_add() -> None:
    history = _history((0, 100.0, 10, True), (1, 95.0, 10, True), (3, 90.0, 10, True), (4, 80.0, 10, True))
    events = _events(("c1", "cart_added", 2, "p1"))  # added at 95: 10% below is 85.5
    found = product_situations(events, history, now=at(9))
    assert _names(found) == [("cart_item_price_dropped", at(4))]
    assert (found[0]["old_price"], found[0]["new_price"]) == (95.0, 80.0)
    events = _events(("c1", "cart_added", 0, "p1"))  # added at 100: 90 is exactly 10% below
    assert _names(product_situations(events, history, now=at(9))) == [("cart_item_price_dropped", at(3))]


def test_ties_a_change_at_the_add_is_the_old_price_and_one_at_the_removal_is_outside() -> None:
    history = _history((0, 100.0, 10, True), (2, 50.0, 10, True))
    assert product_situations(_events(("c1", "cart_added", 2, "p1")), history, now=at(9)) == []
    ended = _events(("c1", "cart_added", 0, "p1"), ("c1", "cart_removed", 2, "p1"))
    assert product_situations(ended, history, now=at(9)) == []
    ordered_all = _events(("c1", "cart_added", 0, "p1"), ("c1", "order_completed", 1, None))
    assert product_situations(ordered_all, history, now=at(9)) == []
    assert product_situations(_events(("c1", "cart_added", 0, "p1")), history, now=at(2)) == []  # ts < now only
    assert len(product_situations(_events(("c1", "cart_added", 0, "p1")), history, now=at(3))) == 1


def test_a_re_add_restarts_the_stay_from_the_price_then() -> None:
    history = _history((0, 100.0, 10, True), (2, 89.0, 10, True), (4, 80.0, 10, True), (6, 70.0, 10, True))
    events = _events(("c1", "cart_added", 0, "p1"), ("c1", "cart_added", 3, "p1"))
    # first stay [0, 3): 89 at 2; second stay from 3 at 89: 80 is 10.1% below at 4
    assert _names(product_situations(events, history, now=at(9))) == [
        ("cart_item_price_dropped", at(2)), ("cart_item_price_dropped", at(4))]


def test_wishlist_low_stock_counts_entering_it_not_being_low_at_the_add() -> None:
    history = _history((0, 10.0, 3, True), (2, 10.0, 2, True), (3, 10.0, 9, True), (4, 10.0, 4, True),
                       (5, 10.0, 4, False), (6, 10.0, 3, None))
    events = _events(("c1", "wishlist_added", 1, "p1"))
    found = product_situations(events, history, now=at(9), policy=ProductSituations(low_stock=5),
                               names=["wishlist_item_low_stock"])
    assert _names(found) == [("wishlist_item_low_stock", at(4)), ("wishlist_item_low_stock", at(6))]


def test_back_in_stock_needs_out_of_stock_just_before_and_an_order_of_it_ends_the_wish() -> None:
    history = _history((0, 10.0, 0, True), (1, 10.0, 20, True), (2, 10.0, None, True), (3, 10.0, 20, True),
                       (4, 10.0, 20, False), (5, 10.0, 20, True), (7, 10.0, 0, True), (8, 10.0, 9, True))
    events = _events(("c1", "wishlist_added", 0, "p1"), ("c1", "order_completed", 6, "p1"),
                     ("c2", "wishlist_added", 0, "p1"), ("c2", "order_completed", 6, None))
    found = product_situations(events, history, now=at(9), names=["wishlist_item_back_in_stock"])
    assert [(r["customer_id"], r["ts"]) for r in found] == [("c1", at(1)), ("c1", at(5)), ("c2", at(1)), ("c2", at(5)),
                                                            ("c2", at(8))]


def test_the_policy_refuses_meaningless_thresholds() -> None:
    with pytest.raises(ValueError, match="price_drop_percent"):
        ProductSituations(price_drop_percent=0)
    with pytest.raises(ValueError, match="low_stock"):
        ProductSituations(low_stock=0)


@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_the_wishlist_holds_what_a_wishlist_situation_can_still_fire_for(case: Case) -> None:
    """current_wishlist and the situations agree on stays: a product is in the wishlist at the end iff its latest
    stay has not ended, so a back-in-stock row after every event reaches exactly the wishlist's holders."""
    from datetime import timedelta

    from shopcrm.profile import current_wishlist

    late = max([e["ts"] for e in case.events], default=at(0)) + timedelta(minutes=1)
    history = [{"product_id": p, "ts": at(-2), "price": 1.0, "stock": 0, "available": True} for p in ("p1", "p2")]
    history += [{"product_id": p, "ts": late, "price": 1.0, "stock": 9, "available": True} for p in ("p1", "p2")]
    fired = {(r["customer_id"], r["product_id"]) for r in product_situations(
        case.events, history, now=late + timedelta(minutes=1), names=["wishlist_item_back_in_stock"])}
    held = {(c, item.product_id) for c in ("c1", "c2", "c3")
            for item in current_wishlist([e for e in case.events if e["customer_id"] == c])}
    assert fired == held
