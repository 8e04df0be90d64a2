"""Random carts, wishlists and product histories for the product-situation property tests (DuckDB here, the other
engines in tests/engines/test_product_situations_engines.py): few customers, products and instants, so that ties
(a history row at the instant of an add or a removal), re-adds, orders and threshold boundaries come up often."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
from hypothesis import strategies as st
from sqlglot import exp

from shopcrm.compiler._dialects import dialect_for
from shopcrm.products import ProductSituations, product_situations, situations_query
from shopcrm.timeline import to_utc_naive

T0 = datetime(2026, 3, 1, 9, 0, 0)
CUSTOMERS = ("c1", "c2", "c3")
PRODUCTS = ("p1", "p2")
NAMES = ("cart_added", "cart_removed", "wishlist_added", "wishlist_removed", "order_completed", "product_viewed")
EVENT_COLUMNS = ("customer_id", "event", "ts", "product_id")
HISTORY_COLUMNS = ("product_id", "ts", "price", "stock", "available")
PRODUCT_COLUMNS = ("product_id", "name")


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


@attrs.frozen
class Case:
    events: tuple[dict[str, Any], ...]
    history: tuple[dict[str, Any], ...]
    products: tuple[dict[str, Any], ...]
    now: datetime
    policy: ProductSituations

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        data, columns = {"events": (self.events, EVENT_COLUMNS), "history": (self.history, HISTORY_COLUMNS),
                         "products": (self.products, PRODUCT_COLUMNS)}[table]
        return [tuple(r[c] for c in columns) for r in data]

    def expected(self) -> list[tuple[Any, ...]]:
        return normalize(tuple(r.values()) for r in product_situations(
            self.events, self.history, now=self.now, policy=self.policy, products=self.products))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    minute = st.integers(0, 8)
    events = draw(st.lists(st.builds(
        lambda c, e, m, p, bare: {"customer_id": c, "event": e, "ts": at(m),
                                  "product_id": None if bare and e == "order_completed" else p},
        st.sampled_from(CUSTOMERS), st.sampled_from(NAMES), minute, st.sampled_from(PRODUCTS), st.booleans()),
        max_size=14))
    history = []
    for product in PRODUCTS:
        for m in sorted(draw(st.sets(minute, max_size=6))):
            history.append({"product_id": product, "ts": at(m),
                            "price": draw(st.sampled_from([None, 100.0, 95.0, 90.0, 89.0, 75.0, 120.0, 0.0])),
                            "stock": draw(st.sampled_from([None, -1, 0, 1, 2, 5, 6, 20])),
                            "available": draw(st.sampled_from([None, True, True, False]))})
    named = draw(st.booleans())
    products = tuple({"product_id": p, "name": f"item {p}"} for p in PRODUCTS) if named else ()
    policy = ProductSituations(price_drop_percent=draw(st.sampled_from([10, 25, 5])), low_stock=draw(st.sampled_from([1, 2, 5])))
    return Case(tuple(events), tuple(history), products, at(draw(st.integers(0, 9))), policy)


def normalize(rows: Any) -> list[tuple[Any, ...]]:
    """Rows as comparable tuples: instants naive UTC, numbers as floats (percent to 1e-9), sorted."""
    out = []
    for row in rows:
        customer, event, ts, product, price, old, new, percent, stock, name = row
        number = [None if v is None else float(v) for v in (price, old, new)]
        out.append((str(customer), event, to_utc_naive(ts), str(product),
                    *number, None if percent is None else round(float(percent), 9),
                    None if stock is None else int(stock), name))
    return sorted(out, key=lambda r: tuple((x is None, str(x)) for x in r))


def situations_sql(case: Case, dialect: str, prefix: str = "") -> str:
    """The situations query over tables ``{prefix}events``, ``{prefix}history`` and ``{prefix}products``."""
    def table(name: str) -> Any:
        return lambda alias: exp.to_table(f"{prefix}{name}").as_(alias)

    query = situations_query(table("events"), table("history"), now=case.now, dialect=dialect_for(dialect),
                             policy=case.policy, products=table("products") if case.products else None)
    return query.sql(dialect=dialect)


def check(fetch: Callable[[str], Sequence[Sequence[Any]]], sql: str, case: Case) -> None:
    got = normalize(fetch(sql))
    want = case.expected()
    assert got == want, f"\nSQL:  {got}\nwant: {want}\n{case}"
    assert all(r[7] is None or math.isfinite(r[7]) for r in got)
