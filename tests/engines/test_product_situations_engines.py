"""The product situations on SQLite, PostgreSQL, MySQL (MariaDB) and Spark against the pure reference, on random
carts, wishlists and product histories (DuckDB's run is tests/products/test_situations.py): one meaning on every
engine."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings

from products.situation_histories import Case, cases, check, situations_sql

SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PREFIX = "ps_"


def _ddl(text: str, stamp: str, big: str, double: str, boolean: str) -> dict[str, str]:
    return {
        "events": f"(customer_id {text}, event {text}, ts {stamp}, product_id {text})",
        "history": f"(product_id {text}, ts {stamp}, price {double}, stock {big}, available {boolean})",
        "products": f"(product_id {text}, name {text})",
    }


def _load(con: Any, case: Case, ddl: dict[str, str], mark: str, prefix: str, convert: Any = None) -> None:
    cur = con.cursor()
    for name, columns in ddl.items():
        cur.execute(f"DROP TABLE IF EXISTS {prefix}{name}")
        cur.execute(f"CREATE TABLE {prefix}{name} {columns}")
        rows = case.rows(name)
        if convert is not None:
            rows = [tuple(convert(v) for v in row) for row in rows]
        if rows:
            width = len(rows[0])
            cur.executemany(f"INSERT INTO {prefix}{name} VALUES ({', '.join([mark] * width)})", rows)
    cur.close()
    con.commit()


def _fetch(con: Any) -> Any:
    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = con.cursor()
        try:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
        except Exception:
            con.rollback()
            raise
        finally:
            cur.close()
    return run


def _sqlite_value(value: Any) -> Any:
    from datetime import datetime

    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value


@SLOW
@given(case=cases())
def test_sqlite_agrees(case: Case) -> None:
    con = sqlite3.connect(":memory:")
    _load(con, case, _ddl("TEXT", "TEXT", "INTEGER", "REAL", "BOOLEAN"), "?", "", _sqlite_value)
    check(_fetch(con), situations_sql(case, "sqlite"), case)


@SLOW
@given(case=cases())
def test_postgres_agrees(postgres_loader: Any, case: Case) -> None:
    con = postgres_loader.con
    _load(con, case, _ddl("TEXT", "TIMESTAMP", "BIGINT", "DOUBLE PRECISION", "BOOLEAN"), "%s", PREFIX)
    check(_fetch(con), situations_sql(case, "postgres", PREFIX), case)
    con.commit()


@SLOW
@given(case=cases())
def test_mysql_agrees(mysql_loader: Any, case: Case) -> None:
    con = mysql_loader.con
    _load(con, case, _ddl("VARCHAR(40)", "DATETIME(6)", "BIGINT", "DOUBLE", "BOOLEAN"), "%s", PREFIX)
    check(_fetch(con), situations_sql(case, "mysql", PREFIX), case)
    con.commit()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_spark_agrees(spark_loader: Any, case: Case) -> None:
    from pyspark.sql import types as T

    spark = spark_loader.spark
    kinds = {"ts": T.TimestampType(), "price": T.DoubleType(), "stock": T.LongType(), "available": T.BooleanType()}
    for name, columns in (("events", ("customer_id", "event", "ts", "product_id")),
                          ("history", ("product_id", "ts", "price", "stock", "available")),
                          ("products", ("product_id", "name"))):
        schema = T.StructType([T.StructField(c, kinds.get(c, T.StringType())) for c in columns])
        spark.createDataFrame(case.rows(name), schema).createOrReplaceTempView(f"{PREFIX}{name}")
    check(lambda sql: [tuple(r) for r in spark.sql(sql).collect()], situations_sql(case, "spark", PREFIX), case)


# -- through a Shop: the catalog mapped onto the shop's own tables, the situations read by rules -----------------
def _mapping() -> Any:
    from shopcrm.mapping import CustomersMap, EventsMap, Mapping, ProductHistoryMap, ProductsMap

    state = {"price": "sale_price", "stock": "qty", "available": "on_sale"}
    return Mapping(CustomersMap(f"{PREFIX}customers"), EventsMap(f"{PREFIX}events"),
                   products=ProductsMap(f"{PREFIX}items", id="sku", columns={"name": "title"}),
                   product_history=ProductHistoryMap(f"{PREFIX}changes", id="sku", ts="changed_at", columns=state))


def _own_tables(case: Case) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    from products.situation_histories import CUSTOMERS

    return {
        "customers": (("customer_id",), [(c,) for c in CUSTOMERS]),
        "events": (("customer_id", "event", "ts", "product_id"), case.rows("events")),
        "items": (("sku", "title"), case.rows("products")),
        "changes": (("sku", "changed_at", "sale_price", "qty", "on_sale"), case.rows("history")),
    }


def _expected_members(case: Case) -> dict[str, list[str]]:
    from shopcrm.products import SITUATIONS, product_situations

    found = product_situations(case.events, case.history, now=case.now)
    return {name: sorted({r["customer_id"] for r in found if r["event"] == name}) for name in SITUATIONS}


def _members(shop: Any, case: Case) -> dict[str, list[str]]:
    import warnings

    from shopcrm.errors import UnseenEventWarning
    from shopcrm.products import SITUATIONS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenEventWarning)
        return {name: [str(c) for c in shop.members({"performed": name}, now=case.now)] for name in SITUATIONS}


def _dbapi_case(con: Any, case: Case, types: dict[str, str], mark: str) -> None:
    cur = con.cursor()
    for name, (columns, rows) in _own_tables(case).items():
        cur.execute(f"DROP TABLE IF EXISTS {PREFIX}{name}")
        declared = ", ".join(f"{c} {types.get(c, types['text'])}" for c in columns)
        cur.execute(f"CREATE TABLE {PREFIX}{name} ({declared})")
        if rows:
            cur.executemany(f"INSERT INTO {PREFIX}{name} VALUES ({', '.join([mark] * len(columns))})", rows)
    cur.close()
    con.commit()


FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FEW
@given(case=cases())
def test_a_postgres_shop_reads_the_situations_through_its_mapping(postgres_loader: Any, case: Case) -> None:
    import shopcrm

    con = postgres_loader.con
    _dbapi_case(con, case, {"text": "TEXT", "ts": "TIMESTAMP", "changed_at": "TIMESTAMP", "sale_price": "DOUBLE PRECISION",
                            "qty": "BIGINT", "on_sale": "BOOLEAN"}, "%s")
    shop = shopcrm.Shop.from_dbapi(con, dialect="postgres", mapping=_mapping(), library_prefix="ps_lib_")
    assert _members(shop, case) == _expected_members(case)


@FEW
@given(case=cases())
def test_a_mariadb_shop_reads_the_situations_through_its_mapping(mysql_loader: Any, case: Case) -> None:
    import shopcrm

    con = mysql_loader.con
    _dbapi_case(con, case, {"text": "VARCHAR(40)", "ts": "DATETIME(6)", "changed_at": "DATETIME(6)", "sale_price": "DOUBLE",
                            "qty": "BIGINT", "on_sale": "BOOLEAN"}, "%s")
    shop = shopcrm.Shop.from_dbapi(con, dialect="mysql", mapping=_mapping(), library_prefix="ps_lib_")
    assert _members(shop, case) == _expected_members(case)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_a_spark_shop_reads_the_situations_through_its_mapping(spark_loader: Any, case: Case) -> None:
    from pyspark.sql import types as T

    import shopcrm

    spark = spark_loader.spark
    kinds = {"ts": T.TimestampType(), "changed_at": T.TimestampType(), "sale_price": T.DoubleType(),
             "qty": T.LongType(), "on_sale": T.BooleanType()}
    for name, (columns, rows) in _own_tables(case).items():
        schema = T.StructType([T.StructField(c, kinds.get(c, T.StringType())) for c in columns])
        spark.createDataFrame(rows, schema).createOrReplaceTempView(f"{PREFIX}{name}")
    shop = shopcrm.Shop.from_spark(spark, mapping=_mapping())
    assert shop.schema.product_history is not None
    assert _members(shop, case) == _expected_members(case)
