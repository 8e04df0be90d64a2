"""shop.recommend and shopcrm.recommend.for_customers: the shell over a shop's own tables (DuckDB and SQLite),
equal to the reference on random shops, and its errors."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

import attrs
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings

import shopcrm
from recommend.recommend_shops import RecShop, shops
from shopcrm.recommend import RecommendError, for_customers, parse_request
from shopcrm.recommend._reference import recommend_reference
from shopcrm.schema import ColumnType, Table
from shopcrm.sources.duckdb_store import DuckDBSource

EPOCH = datetime(1970, 1, 1)
NOW = datetime(2026, 3, 1)
CATALOG = Table("products", {"product_id": ColumnType.STRING, "name": ColumnType.STRING, "category": ColumnType.STRING,
                             "price": ColumnType.FLOAT, "stock": ColumnType.INTEGER, "available": ColumnType.BOOLEAN,
                             "image_url": ColumnType.STRING, "product_url": ColumnType.STRING})


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def duckdb_shop(shop: RecShop) -> shopcrm.Shop:
    """The random shop as a DuckDB shop (events with timestamps) with its catalog when it has one."""
    con = duckdb.connect()
    id_type = "BIGINT" if shop.id_kind == "int" else "VARCHAR"
    con.execute(f"CREATE TABLE customers (customer_id {id_type})")
    con.execute(f"CREATE TABLE events (customer_id {id_type}, event VARCHAR, ts TIMESTAMP, product_id VARCHAR, "
                "category VARCHAR, price DOUBLE)")
    customers = {e["customer"] for e in shop.events} | set(shop.audience)
    if customers:
        con.executemany("INSERT INTO customers VALUES (?)", [(c,) for c in customers])
    if shop.events:
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", [
            (e["customer"], e["event"], _at(e["ts_us"]), e["product_id"], e["category"], e["price"]) for e in shop.events])
    source = DuckDBSource(connection=con)
    if shop.products is not None:
        con.execute("CREATE TABLE products (product_id VARCHAR, name VARCHAR, category VARCHAR, price DOUBLE, "
                    "stock INTEGER, available BOOLEAN, image_url VARCHAR, product_url VARCHAR)")
        rows = [(p["product_id"], f"name of {p['product_id']}", p["category"], p["price"], p["stock"], p["available"],
                 p["image_url"], f"https://shop.example/p/{p['product_id']}") for p in shop.products]
        if rows:
            con.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # until the catalog loaders fill Schema.products, a shop's catalog is declared like this
        source._schema = attrs.evolve(source.schema(), products=CATALOG)
    return shopcrm.Shop(source)


def _kwargs(shop: RecShop) -> dict[str, Any]:
    f = shop.request.filters
    return {"strategy": [s.model_dump() for s in shop.request.strategies], "k": shop.request.k,
            "now": _at(shop.now_us), "in_stock": f.in_stock, "has_image": f.has_image, "not_bought": f.not_bought,
            "min_price": f.min_price, "max_price": f.max_price}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shop=shops())
def test_shop_recommend_equals_the_reference(shop: RecShop) -> None:
    result = duckdb_shop(shop)
    exclude: Any = shop.exclusions if shop.exclusions is not None else list(shop.request.filters.exclude)
    if shop.exclusions is not None:  # the per-customer form replaces the global list
        shop = attrs.evolve(shop, request=shop.request.model_copy(update={
            "filters": shop.request.filters.model_copy(update={"exclude": ()})}))
    table = result.recommend(shop.audience, exclude=exclude, **_kwargs(shop))
    assert table.column_names == ["customer_id", "rank", "product_id", "score", "strategy", "name", "price",
                                  "category", "image_url", "product_url"]
    got = sorted((r["customer_id"], r["rank"], r["product_id"], r["strategy"]) for r in table.to_pylist())
    want = sorted((c, i + 1, p, kind) for c, items in recommend_reference(
        shop.request, events=shop.events, audience=shop.audience, now_us=shop.now_us, products=shop.products,
        exclusions=shop.exclusions).items() for i, (p, _, kind) in enumerate(items))
    assert got == want
    if shop.products is not None:
        for row in table.to_pylist():
            assert row["name"] == f"name of {row['product_id']}"


def _small(catalog: bool = False) -> shopcrm.Shop:
    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR, grade VARCHAR)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [("c1", "vip"), ("c2", "basic"), ("c3", "basic"),
                                                            ("c4", "vip")])
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, product_id VARCHAR, "
                "category VARCHAR, price BIGINT)")
    day = timedelta(days=1)
    rows = [("c1", "order_completed", NOW - 9 * day, "P1", "shoes", 10), ("c1", "order_completed", NOW - 8 * day, "P2", "shoes", 20),
            ("c2", "order_completed", NOW - 9 * day, "P1", "shoes", 10), ("c2", "order_completed", NOW - 7 * day, "P2", "shoes", 20),
            ("c2", "order_completed", NOW - 2 * day, "P3", "bags", 30), ("c3", "product_viewed", NOW - day, "P3", "bags", 30),
            ("c3", "order_completed", NOW + day, "P4", "bags", 40)]
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
    source = DuckDBSource(connection=con)
    if catalog:
        con.execute("CREATE TABLE products (product_id VARCHAR, name VARCHAR, category VARCHAR, price DOUBLE, "
                    "stock INTEGER, image_url VARCHAR, product_url VARCHAR)")
        con.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)", [
            ("P1", "Runner", "shoes", 10.0, 0, "https://img/1.jpg", "https://shop/p/1"),
            ("P2", "Walker", "shoes", 20.0, 5, None, "https://shop/p/2"),
            ("P3", "Tote", "bags", 30.0, None, "https://img/3.jpg", "https://shop/p/3")])
        source._schema = attrs.evolve(source.schema(), products=Table("products", {
            "product_id": ColumnType.STRING, "name": ColumnType.STRING, "category": ColumnType.STRING,
            "price": ColumnType.FLOAT, "stock": ColumnType.INTEGER, "image_url": ColumnType.STRING,
            "product_url": ColumnType.STRING}))
    return shopcrm.Shop(source)


def test_one_customer_a_rule_or_everyone() -> None:
    shop = _small()
    one = shop.recommend("c3", now=NOW, strategy="viewed_not_bought", k=2).to_pylist()
    assert [(r["product_id"], r["strategy"]) for r in one] == [("P3", "viewed_not_bought"), ("P1", "popular")]
    assert (one[0]["price"], one[0]["category"], one[0]["name"]) == (30.0, "bags", None)
    vip = shop.recommend({"attribute": "grade", "eq": "vip"}, now=NOW, strategy="popular", k=1)
    assert vip.column("customer_id").to_pylist() == ["c1", "c4"]
    everyone = shop.recommend(now=NOW, strategy="popular", k=3)
    assert set(everyone.column("customer_id").to_pylist()) == {"c1", "c2", "c3", "c4"}
    # P4 is bought after now: never read
    assert "P4" not in everyone.column("product_id").to_pylist()
    assert shop.recommend([], now=NOW).num_rows == 0


def test_the_fallback_fills_k_and_names_each_rows_strategy() -> None:
    shop = _small()
    rows = shop.recommend("c4", now=NOW, k=3).to_pylist()  # nothing known about c4: personal and also_bought are empty
    assert [r["strategy"] for r in rows] == ["popular"] * 3
    assert [r["product_id"] for r in rows] == ["P1", "P2", "P3"]  # 2, 2 and 1 buyers; ties by id
    assert shop.recommend("c4", now=NOW, k=3, strategy="personal", fallback=()).num_rows == 0


def test_for_customers_keys_every_id_and_excludes_trigger_items() -> None:
    shop = _small()
    got = for_customers(shop, ["c1", "c3", "nobody"], strategy="popular", k=2, now=NOW, exclude={"c1": ["P1"]})
    assert list(got) == ["c1", "c3", "nobody"]
    assert [i["product_id"] for i in got["c1"]] == ["P2", "P3"]
    assert [i["product_id"] for i in got["nobody"]] == ["P1", "P2"]
    assert set(got["c3"][0]) == {"product_id", "name", "price", "category", "image_url", "product_url", "strategy"}
    assert for_customers(shop, [], strategy="popular", k=2, now=NOW) == {}
    everyone_but = for_customers(shop, ["c3"], strategy="popular", k=3, now=NOW, exclude=["P1", "P2"])
    assert [i["product_id"] for i in everyone_but["c3"]] == ["P3"]


def test_catalog_filters_and_columns() -> None:
    shop = _small(catalog=True)
    rows = shop.recommend("c4", now=NOW, strategy="popular", k=3).to_pylist()
    assert [(r["product_id"], r["name"], r["product_url"]) for r in rows] == [
        ("P1", "Runner", "https://shop/p/1"), ("P2", "Walker", "https://shop/p/2"), ("P3", "Tote", "https://shop/p/3")]
    assert [r["product_id"] for r in shop.recommend("c4", now=NOW, strategy="popular", in_stock=True).to_pylist()] == ["P2", "P3"]
    assert [r["product_id"] for r in shop.recommend("c4", now=NOW, strategy="popular", has_image=True).to_pylist()] == ["P1", "P3"]
    assert [r["product_id"] for r in shop.recommend("c4", now=NOW, strategy="popular", min_price=15,
                                                    max_price=25).to_pylist()] == ["P2"]
    assert [r["product_id"] for r in shop.recommend("c1", now=NOW, strategy="popular", not_bought=True).to_pylist()] == ["P3"]


def test_errors_say_what_would_work() -> None:
    shop = _small()
    with pytest.raises(RecommendError, match="need the shop's catalog"):
        shop.recommend("c1", now=NOW, in_stock=True)
    with pytest.raises(RecommendError, match="did you mean 'also_bought'"):
        shop.recommend("c1", now=NOW, strategy="also_bougth")
    with pytest.raises(RecommendError, match=r"baseline_days .* must be longer"):
        shop.recommend("c1", now=NOW, strategy={"kind": "trending", "recent_days": 7, "baseline_days": 7})
    with pytest.raises(RecommendError, match=r"min_price .* is above max_price"):
        shop.recommend("c1", now=NOW, min_price=30, max_price=10)
    with pytest.raises(RecommendError, match="measure"):
        parse_request({"kind": "also_bought", "measure": "jaccard"})
    with pytest.raises(RecommendError, match="min_support"):
        parse_request({"kind": "also_viewed", "min_support": 0})


def test_sqlite_shop() -> None:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id INTEGER)")
    con.executemany("INSERT INTO customers VALUES (?)", [(1,), (2,), (3,)])
    con.execute("CREATE TABLE events (customer_id INTEGER, event TEXT, ts TEXT, product_id TEXT, category TEXT, "
                "price REAL)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", [
        (1, "order_completed", "2026-02-01 10:00:00", "A", "x", 1.0), (1, "order_completed", "2026-02-02T10:00:00Z", "B", "x", 2.0),
        (2, "order_completed", "2026-02-01 11:00:00", "A", "x", 1.0), (2, "order_completed", "2026-02-03 10:00:00", "B", "x", 2.0),
        (3, "order_completed", "2026-02-04 10:00:00", "A", "x", 1.0)])
    shop = shopcrm.Shop.from_dbapi(con, dialect="sqlite")
    got = for_customers(shop, ["3", 1], strategy={"kind": "also_bought", "min_support": 2}, k=2, now=NOW)
    assert [(i["product_id"], i["strategy"]) for i in got["3"]] == [("B", "also_bought"), ("A", "popular")]
    assert [i["product_id"] for i in got[1]] == ["A", "B"]
