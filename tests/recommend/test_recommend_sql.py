"""The recommendation compiler on DuckDB (the embedded default) against the pure reference, on random small
shops.  The other engines run the same comparison in tests/engines/test_recommend_engines.py."""

from __future__ import annotations

from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings

from recommend.recommend_shops import EVENT_COLUMNS, PRODUCT_COLUMNS, RecShop, check, relations, shops
from shopcrm.compiler._dialects import dialect_for
from shopcrm.recommend._sql import recommend_query


def load(con: Any, shop: RecShop) -> None:
    id_type = "BIGINT" if shop.id_kind == "int" else "VARCHAR"
    con.execute(f"CREATE OR REPLACE TABLE events (customer {id_type}, event VARCHAR, product_id VARCHAR, "
                "category VARCHAR, price DOUBLE, ts_us BIGINT)")
    con.execute("CREATE OR REPLACE TABLE products (product_id VARCHAR, category VARCHAR, price DOUBLE, stock INTEGER, "
                "available BOOLEAN, image_url VARCHAR)")
    con.execute(f"CREATE OR REPLACE TABLE audience (customer {id_type})")
    con.execute(f"CREATE OR REPLACE TABLE exclusions (customer {id_type}, product_id VARCHAR)")
    for name, width in (("events", len(EVENT_COLUMNS)), ("products", len(PRODUCT_COLUMNS)), ("audience", 1),
                        ("exclusions", 2)):
        rows = shop.rows(name)
        if rows:
            con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * width)})", rows)


def run(con: Any, shop: RecShop) -> list[tuple[Any, ...]]:
    query = recommend_query(shop.request, dialect=dialect_for("duckdb"), now_us=shop.now_us, everyone=shop.everyone, **relations(shop))
    return list(con.execute(query.sql("duckdb")).fetchall())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shop=shops())
def test_duckdb_agrees_with_the_reference(shop: RecShop) -> None:
    con = duckdb.connect()
    load(con, shop)
    check(run(con, shop), shop)
