"""Incremental refreshes of a tracked segment equal the reference's full recomputation on SQLite, PostgreSQL,
MariaDB and Spark: events arrive in the shop's own tables between refreshes, the membership tables are the
library's in the same database (in memory on Spark) (customers are not edited here: only the embedded store notices a reload by itself)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings

import shopcrm
from engines.loaders import EVENT_COLS, MySQLLoader, PostgresLoader, _iso, _rows, sqlite_shop
from membership_streams import Stream, check, streams

SCALE = float(os.environ.get("SHOPCRM_EXAMPLES_SCALE", "1"))


def common(n: int) -> settings:
    return settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True,
                    max_examples=max(5, int(n * SCALE)))


def _sqlite_append(shop: shopcrm.Shop, events: list[dict[str, Any]]) -> None:
    con = shop.source.connection  # type: ignore[attr-defined]
    counter = [0]
    con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", _rows(events, EVENT_COLS, lambda v: _iso(v, counter)))
    con.commit()


def _server_append(marker: str) -> Any:
    def append(shop: shopcrm.Shop, events: list[dict[str, Any]]) -> None:
        source = shop.source
        con = source.connection  # type: ignore[attr-defined]
        marks = ",".join([marker] * len(EVENT_COLS))
        with con.cursor() as cur:
            cur.executemany(f"INSERT INTO {source.events_table} VALUES ({marks})", _rows(events, EVENT_COLS))  # type: ignore[attr-defined]
        con.commit()
    return append


@common(25)
@given(streams(max_events=20, step=timedelta(milliseconds=1)))
def test_sqlite(stream: Stream) -> None:
    check(sqlite_shop, stream, _sqlite_append)


@common(15)
@given(stream=streams(max_events=20))
def test_postgres(postgres_loader: PostgresLoader, stream: Stream) -> None:
    check(postgres_loader, stream, _server_append("%s"))


@common(15)
@given(stream=streams(max_events=20))
def test_mariadb(mysql_loader: MySQLLoader, stream: Stream) -> None:
    check(mysql_loader, stream, _server_append("%s"))


def _spark_append(shop: shopcrm.Shop, events: list[dict[str, Any]]) -> None:
    spark = shop.source.spark  # type: ignore[attr-defined]
    fresh = spark.createDataFrame(_rows(events, EVENT_COLS), spark.table("events").schema)
    spark.table("events").unionByName(fresh).localCheckpoint().createOrReplaceTempView("events")


@common(6)
@given(stream=streams(max_events=12))
def test_spark(spark_loader: Any, stream: Stream) -> None:
    check(spark_loader, stream, _spark_append)
