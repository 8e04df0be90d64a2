"""The product situations on SQLite, PostgreSQL, MySQL (MariaDB) and Spark against the pure reference, on random
carts, wishlists and product histories (DuckDB's run is tests/products/test_situations.py): one meaning on every
engine."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings

from products.situation_histories import Case, cases, check, situations_sql

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
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


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
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
