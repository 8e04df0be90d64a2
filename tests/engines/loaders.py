"""Put a RandomShop into each engine and return a shopcrm.Shop over it."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import duckdb

import shopcrm
from shopcrm.sources.duckdb_store import DuckDBSource
from strategies import RandomShop

CUSTOMER_COLS = ("customer_id", "age", "grade", "score", "vip", "signed_up_at")
EVENT_COLS = ("customer_id", "event", "ts", "category", "product_id", "amount", "price", "promotion_id")


def _rows(rows: list[dict[str, Any]], columns: tuple[str, ...], convert: Any = None) -> list[tuple[Any, ...]]:
    return [tuple(convert(r[c]) if convert else r[c] for c in columns) for r in rows]


_EMPTIED: list[duckdb.DuckDBPyConnection] = []  # the one database, then the newest shop's connection to it
_LEFT = (
    "SELECT 'TABLE', schema_name, table_name FROM duckdb_tables() WHERE database_name = 'memory' AND NOT internal "
    "UNION ALL SELECT 'VIEW', schema_name, view_name FROM duckdb_views() WHERE database_name = 'memory' AND NOT internal "
    "UNION ALL SELECT 'SEQUENCE', schema_name, sequence_name FROM duckdb_sequences() WHERE database_name = 'memory' "
    "UNION ALL SELECT 'TYPE', schema_name, type_name FROM duckdb_types() WHERE database_name = 'memory' AND NOT internal "
    "UNION ALL SELECT 'SCHEMA', schema_name, schema_name FROM duckdb_schemas() WHERE database_name = 'memory' "
    "AND NOT internal AND schema_name <> 'main' "
    "UNION ALL SELECT 'DATABASE', database_name, database_name FROM duckdb_databases() WHERE NOT internal "
    "AND database_name <> 'memory'"
)


def _empty_duckdb() -> duckdb.DuckDBPyConnection:
    """A new connection to an empty in-memory database.

    Opening a DuckDB database costs 15-70 ms on the CI machine, most of a small engine example's time, so one
    database is opened once per test session; each shop gets a new connection to it (its own temporary tables,
    registered views and settings) after everything the previous shop created was dropped, and the catalogue is
    checked empty (of tables, views, sequences, types, schemas and attached databases: neither shopcrm nor these
    tests create macros, and listing them costs 20 ms).  The previous shop's connection is closed: a test that still used it would fail loudly
    (a closed connection), never read the next shop's tables."""
    if not _EMPTIED:
        _EMPTIED.append(duckdb.connect())
    database = _EMPTIED[0]
    if len(_EMPTIED) > 1:
        _EMPTIED.pop().close()
    con = database.cursor()
    left = con.execute(_LEFT).fetchall()
    for kind, _schema, name in left:
        if kind == "SCHEMA":
            con.execute(f'DROP SCHEMA "{name}" CASCADE')
        elif kind == "DATABASE":
            con.execute(f'DETACH "{name}"')
    for kind, schema, name in left:
        if kind in ("TABLE", "VIEW", "SEQUENCE", "TYPE") and schema == "main":
            con.execute(f'DROP {kind} IF EXISTS main."{name}" CASCADE')
    if left:
        still = con.execute(_LEFT).fetchall()
        assert not still, f"the test database could not be emptied: {still}"
    _EMPTIED.append(con)
    return con


def duckdb_shop(shop: RandomShop) -> shopcrm.Shop:
    """Through the embedded store's own loading path (dicts -> Arrow -> DuckDB), in an empty database; the shop
    returned before is closed (one DuckDB shop at a time: see _empty_duckdb)."""
    con = _empty_duckdb()
    id_type = "BIGINT" if shop.id_kind == "int" else "VARCHAR"
    con.execute(
        f"CREATE TABLE customers (customer_id {id_type}, age BIGINT, grade VARCHAR, score DOUBLE, vip BOOLEAN, "
        "signed_up_at TIMESTAMP)"
    )
    con.execute(
        f"CREATE TABLE events (customer_id {id_type}, event VARCHAR, ts TIMESTAMP, category VARCHAR, "
        "product_id VARCHAR, amount BIGINT, price DOUBLE, promotion_id VARCHAR)"
    )
    result = shopcrm.Shop(DuckDBSource(connection=con))
    result.load_customers(shop.customers)
    if shop.events:
        result.load_events(shop.events)
    return result


def _iso(value: Any, index: list[int]) -> Any:
    """Timestamps as the ISO text SQLite shops store, in mixed spellings."""
    if not isinstance(value, datetime):
        return value
    index[0] += 1
    spelling = index[0] % 3
    if spelling == 0:
        return value.isoformat(sep=" ")
    if spelling == 1:
        return value.isoformat(sep="T") + "Z"
    return value.isoformat(sep="T")


def sqlite_shop(shop: RandomShop) -> shopcrm.Shop:
    con = sqlite3.connect(":memory:")
    id_type = "INTEGER" if shop.id_kind == "int" else "TEXT"
    con.execute(
        f"CREATE TABLE customers (customer_id {id_type}, age INTEGER, grade TEXT, score REAL, vip BOOLEAN, "
        "signed_up_at TIMESTAMP)"
    )
    con.execute(
        f"CREATE TABLE events (customer_id {id_type}, event TEXT, ts TIMESTAMP, category TEXT, product_id TEXT, "
        "amount INTEGER, price REAL, promotion_id TEXT)"
    )
    counter = [0]
    con.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", _rows(shop.customers, CUSTOMER_COLS, lambda v: _iso(v, counter)))
    con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", _rows(shop.events, EVENT_COLS, lambda v: _iso(v, counter)))
    return shopcrm.Shop.from_dbapi(con, dialect="sqlite")


class PostgresLoader:
    """Tables per id kind on one server, emptied and refilled for every example."""

    def __init__(self, connection: Any) -> None:
        self.con = connection
        for kind, id_type in (("int", "BIGINT"), ("str", "TEXT")):
            self.con.execute(
                f"CREATE TABLE customers_{kind} (customer_id {id_type}, age BIGINT, grade TEXT, score DOUBLE PRECISION, "
                "vip BOOLEAN, signed_up_at TIMESTAMP)"
            )
            self.con.execute(
                f"CREATE TABLE events_{kind} (customer_id {id_type}, event TEXT, ts TIMESTAMP, category TEXT, "
                "product_id TEXT, amount BIGINT, price DOUBLE PRECISION, promotion_id TEXT)"
            )
        self.con.commit()

    def __call__(self, shop: RandomShop) -> shopcrm.Shop:
        kind = shop.id_kind
        with self.con.cursor() as cur:
            cur.execute(f"TRUNCATE customers_{kind}, events_{kind}")
            cur.executemany(f"INSERT INTO customers_{kind} VALUES (%s,%s,%s,%s,%s,%s)", _rows(shop.customers, CUSTOMER_COLS))
            cur.executemany(f"INSERT INTO events_{kind} VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", _rows(shop.events, EVENT_COLS))
        self.con.commit()
        return shopcrm.Shop.from_dbapi(self.con, dialect="postgres", customers=f"customers_{kind}", events=f"events_{kind}")


class MySQLLoader:
    """Tables with the server's default (case-insensitive, PAD SPACE) collation, on purpose."""

    def __init__(self, connection: Any) -> None:
        self.con = connection
        with self.con.cursor() as cur:
            for kind, id_type in (("int", "BIGINT"), ("str", "VARCHAR(40)")):
                cur.execute(
                    f"CREATE TABLE customers_{kind} (customer_id {id_type}, age BIGINT, grade VARCHAR(20), score DOUBLE, "
                    "vip BOOLEAN, signed_up_at DATETIME(6))"
                )
                cur.execute(
                    f"CREATE TABLE events_{kind} (customer_id {id_type}, event VARCHAR(40), ts DATETIME(6), "
                    "category VARCHAR(20), product_id VARCHAR(20), amount BIGINT, price DOUBLE, promotion_id VARCHAR(20))"
                )
        self.con.commit()

    def __call__(self, shop: RandomShop) -> shopcrm.Shop:
        kind = shop.id_kind
        with self.con.cursor() as cur:
            cur.execute(f"DELETE FROM customers_{kind}")
            cur.execute(f"DELETE FROM events_{kind}")
            if shop.customers:
                cur.executemany(f"INSERT INTO customers_{kind} VALUES (%s,%s,%s,%s,%s,%s)", _rows(shop.customers, CUSTOMER_COLS))
            if shop.events:
                cur.executemany(f"INSERT INTO events_{kind} VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", _rows(shop.events, EVENT_COLS))
        self.con.commit()
        return shopcrm.Shop.from_dbapi(self.con, dialect="mysql", customers=f"customers_{kind}", events=f"events_{kind}")


class SparkLoader:
    """Temporary views over DataFrames with explicit schemas."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def __call__(self, shop: RandomShop) -> shopcrm.Shop:
        from pyspark.sql import types as T

        id_type = T.LongType() if shop.id_kind == "int" else T.StringType()
        customers = T.StructType([
            T.StructField("customer_id", id_type), T.StructField("age", T.LongType()),
            T.StructField("grade", T.StringType()), T.StructField("score", T.DoubleType()),
            T.StructField("vip", T.BooleanType()), T.StructField("signed_up_at", T.TimestampType()),
        ])
        events = T.StructType([
            T.StructField("customer_id", id_type), T.StructField("event", T.StringType()),
            T.StructField("ts", T.TimestampType()), T.StructField("category", T.StringType()),
            T.StructField("product_id", T.StringType()), T.StructField("amount", T.LongType()),
            T.StructField("price", T.DoubleType()), T.StructField("promotion_id", T.StringType()),
        ])
        self.spark.createDataFrame(_rows(shop.customers, CUSTOMER_COLS), customers).createOrReplaceTempView("customers")
        self.spark.createDataFrame(_rows(shop.events, EVENT_COLS), events).createOrReplaceTempView("events")
        return shopcrm.Shop.from_spark(self.spark)
