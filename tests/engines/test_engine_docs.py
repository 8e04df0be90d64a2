"""The server engines' pages run: docs/engines/postgres.md, mysql.md and spark.md, their Python blocks verbatim and
in order, on the test session's servers (the fixtures of conftest.py).

Each test puts a small shop into the tables the page names, runs the page's blocks in a namespace holding only what
the page asks the reader to bring (``dsn``; ``host``, ``port``, ``user``, ``password``; ``spark``, ``rule``, ``now``,
``store_url``), then checks the shop the page built against the embedded DuckDB shop over the same rows: the same
members for every rule below.  A wrong table name, a broken block or a name the page forgot to define fails here.
"""

from __future__ import annotations

import re
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import shopcrm

PAGES = Path(__file__).resolve().parents[2] / "docs" / "engines"
FENCE = re.compile(r"^([ ]*)```python\n(.*?)^\1```", re.S | re.M)

NOW = datetime(2026, 3, 10)
CUSTOMER_COLUMNS = ("customer_id", "name", "grade", "signed_up_at")
EVENT_COLUMNS = ("customer_id", "event", "ts", "category", "amount")
CUSTOMERS: list[dict[str, Any]] = [
    dict(zip(CUSTOMER_COLUMNS, row, strict=True)) for row in [
        (1, "김민준", "VIP", datetime(2025, 6, 1, 9)),
        (2, "이서연", "basic", datetime(2026, 2, 1, 12)),
        (3, "박지후", "VIP", datetime(2026, 1, 20, 8, 30)),
        (4, "최하은", "vip", None),  # MySQL's default collation would call it 'VIP'; rules do not
        (5, "정도윤", "basic", datetime(2024, 12, 24)),
    ]
]
EVENTS: list[dict[str, Any]] = [
    dict(zip(EVENT_COLUMNS, row, strict=True)) for row in [
        (1, "product_viewed", datetime(2026, 3, 1, 10), "shoes", None),
        (1, "product_viewed", datetime(2026, 3, 2, 10), "shoes", None),
        (1, "order_completed", datetime(2026, 3, 2, 11), None, 189000),
        (2, "product_viewed", datetime(2026, 3, 5, 20), "Shoes", None),
        (2, "cart_added", datetime(2026, 3, 6, 9), None, None),
        (3, "cart_added", datetime(2026, 3, 4, 9), None, None),
        (3, "order_completed", datetime(2026, 3, 4, 12), None, 45000),
        (3, "order_completed", datetime(2025, 12, 1, 18), None, 30000),
        (5, "product_viewed", datetime(2026, 3, 9, 23), "shoes ", None),  # trailing space: not 'shoes'
    ]
]
SHOES_AND_VIP: dict[str, Any] = {"and": [
    {"attribute": "grade", "eq": "VIP"},
    {"performed": "product_viewed", "where": {"category": "shoes"}, "within": {"last": "30d"}, "times": {"gte": 2}},
]}
RULES: list[dict[str, Any]] = [
    SHOES_AND_VIP,
    {"performed": "order_completed", "within": {"last": "30d"}},
    {"aggregate": "sum", "of": "amount", "performed": "order_completed", "within": {"last": "90d"}, "gte": 100000},
    {"performed": "product_viewed", "where": {"category": "shoes"}},
    {"attribute": "grade", "eq": "VIP"},
    {"performed": "cart_added", "not_followed_by": {"performed": "order_completed", "within": "1d"}},
    {"attribute": "signed_up_at", "ago": {"lt": "60d"}},
    {"not": {"performed": "order_completed"}},
    {"sample": {"percent": 50, "salt": "docs"}},
]


def _run(page: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The page's Python blocks, dedented as a reader copies them, run in order in ``namespace``."""
    code = [textwrap.dedent(body) for _, body in FENCE.findall((PAGES / page).read_text(encoding="utf-8"))]
    assert code, f"docs/engines/{page} has no Python block"
    for block in code:
        exec(compile(block, f"docs/engines/{page}", "exec"), namespace)
    return namespace


def _expected() -> dict[str, list[Any]]:
    """Every rule's members on the embedded DuckDB shop over the same rows."""
    with shopcrm.Shop.open(":memory:") as reference:
        reference.load_customers(CUSTOMERS)
        reference.load_events(EVENTS)
        members = {repr(rule): sorted(reference.members(rule, now=NOW)) for rule in RULES}
    assert all(0 < len(m) < len(CUSTOMERS) for m in members.values()), members  # no rule trivially all or none
    return members


def _agrees(shop: shopcrm.Shop) -> None:
    expected = _expected()
    seen = {repr(rule): sorted(shop.members(rule, now=NOW)) for rule in RULES}
    assert seen == expected


def _rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in columns) for row in rows]


@pytest.mark.postgres
def test_the_postgres_page_reads_public_customers_and_events(postgres_loader: Any) -> None:
    """In a database of its own on the session's server (``dsn`` names it), so the page's ``public.customers`` and
    ``public.events`` meet no other test's tables."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    info = postgres_loader.con.info
    server = make_conninfo(info.dsn, password=info.password)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS shop WITH (FORCE)")
        admin.execute("CREATE DATABASE shop")
    dsn = make_conninfo(server, dbname="shop")
    with psycopg.connect(dsn) as con:
        con.execute("CREATE TABLE public.customers (customer_id BIGINT, name TEXT, grade TEXT, signed_up_at TIMESTAMP)")
        con.execute("CREATE TABLE public.events (customer_id BIGINT, event TEXT, ts TIMESTAMP, category TEXT, "
                    "amount BIGINT)")
        with con.cursor() as cur:
            cur.executemany("INSERT INTO public.customers VALUES (%s, %s, %s, %s)", _rows(CUSTOMERS, CUSTOMER_COLUMNS))
            cur.executemany("INSERT INTO public.events VALUES (%s, %s, %s, %s, %s)", _rows(EVENTS, EVENT_COLUMNS))

    shop = _run("postgres.md", {"dsn": dsn})["shop"]
    try:
        assert shop.source.dialect == "postgres"
        _agrees(shop)
    finally:
        shop.source.connection.close()


@pytest.mark.mysql
def test_the_mysql_page_reads_customers_and_events_in_the_database_shop(mysql_loader: Any) -> None:
    """The database ``shop`` the page names, made on the session's server (whose other tests use their own)."""
    con = mysql_loader.con
    with con.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS shop")
        cur.execute("CREATE DATABASE shop CHARACTER SET utf8mb4")  # the server's default, case-insensitive collation
        cur.execute("CREATE TABLE shop.customers (customer_id BIGINT, name VARCHAR(40), grade VARCHAR(20), "
                    "signed_up_at DATETIME(6))")
        cur.execute("CREATE TABLE shop.events (customer_id BIGINT, event VARCHAR(40), ts DATETIME(6), "
                    "category VARCHAR(20), amount BIGINT)")
        cur.executemany("INSERT INTO shop.customers VALUES (%s, %s, %s, %s)", _rows(CUSTOMERS, CUSTOMER_COLUMNS))
        cur.executemany("INSERT INTO shop.events VALUES (%s, %s, %s, %s, %s)", _rows(EVENTS, EVENT_COLUMNS))
    con.commit()

    password = con.password.decode("latin1") if isinstance(con.password, bytes) else con.password
    namespace = _run("mysql.md", {"host": con.host, "port": con.port, "user": con.user, "password": password})
    shop = namespace["shop"]
    try:
        assert shop.source.connection is namespace["connection"]
        _agrees(shop)
    finally:
        namespace["connection"].close()


@pytest.mark.spark
@pytest.mark.postgres
def test_the_spark_page_reads_crm_views_and_keeps_its_segments_in_the_store(
    spark_loader: Any, postgres_loader: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    """``store_url`` is the session's PostgreSQL server, the library's tables in a schema of this test's."""
    from pyspark.sql import types as T

    spark, pg = spark_loader.spark, postgres_loader.con
    schema = "docs_spark_store"
    pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    pg.commit()
    info = pg.info
    store_url = f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}?library_schema={schema}"
    customers = T.StructType([
        T.StructField("customer_id", T.LongType()), T.StructField("name", T.StringType()),
        T.StructField("grade", T.StringType()), T.StructField("signed_up_at", T.TimestampType()),
    ])
    events = T.StructType([
        T.StructField("customer_id", T.LongType()), T.StructField("event", T.StringType()),
        T.StructField("ts", T.TimestampType()), T.StructField("category", T.StringType()),
        T.StructField("amount", T.LongType()),
    ])
    spark.createDataFrame(_rows(CUSTOMERS, CUSTOMER_COLUMNS), customers).createOrReplaceTempView("crm_customers")
    spark.createDataFrame(_rows(EVENTS, EVENT_COLUMNS), events).createOrReplaceTempView("crm_events")
    try:
        capsys.readouterr()
        namespace = _run("spark.md", {"spark": spark, "rule": SHOES_AND_VIP, "now": NOW, "store_url": store_url})
        printed = capsys.readouterr().out.split()
        assert printed == [str(len(_expected()[repr(SHOES_AND_VIP)]))]  # the first block's count
        shop = namespace["shop"]  # the second block's, with its store
        _agrees(shop)
        pg.rollback()
        [(saved,)] = pg.execute(f"SELECT count(*) FROM {schema}.shopcrm_segments WHERE name = 'buyers'").fetchall()
        pg.commit()
        assert saved == 1
        shop.close()
    finally:
        spark.catalog.dropTempView("crm_customers")
        spark.catalog.dropTempView("crm_events")
