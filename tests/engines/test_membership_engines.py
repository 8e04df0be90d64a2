"""Incremental refreshes of a tracked segment equal the reference's full recomputation on SQLite, PostgreSQL,
MariaDB and Spark: events arrive in the shop's own tables between refreshes, the membership tables are the
library's in the same database (in memory on Spark) (customers are not edited here: only the embedded store notices a reload by itself)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import shopcrm
from engines.loaders import EVENT_COLS, MySQLLoader, PostgresLoader, _iso, _rows, sqlite_shop
from membership_streams import Stream, check, streams
from strategies import RandomShop, _schema

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


# -- two refreshes at once (a tick's and a manual one, two scheduler hosts): the one that commits second fails
RACE_T0 = datetime(2026, 3, 2, 9)
RACE_SEGMENT = "race_buyers"


def _race_shop(id_kind: str = "int") -> RandomShop:
    customers = [{"customer_id": i, "age": 30, "grade": "silver", "score": 1.0, "vip": False,
                  "signed_up_at": RACE_T0 - timedelta(days=90)} for i in range(1, 5)]
    events = [{"customer_id": 1, "event": "purchase", "ts": RACE_T0 - timedelta(days=1), "category": "shoes",
               "product_id": "p1", "amount": 10, "price": 10.0, "promotion_id": None}]
    return RandomShop(customers, events, RACE_T0, id_kind, _schema(id_kind))  # type: ignore[arg-type]


def _no_segment_events(shop: shopcrm.Shop) -> None:
    """The server's library tables outlive a test: the entries other tests announced are dropped first."""
    table = shop.source.campaign_store().MESSAGE_EVENTS  # type: ignore[attr-defined]
    shop.source._run(f"DELETE FROM {table} WHERE event IN ('segment_entered', 'segment_exited')", ())  # type: ignore[attr-defined]


def _race(first: shopcrm.Shop, second: shopcrm.Shop, append: Any) -> None:
    """``first`` reads the tracked state, then ``second`` refreshes and commits before ``first`` writes: ``first``
    fails with RefreshConflict and keeps nothing; run again, it records nothing twice."""
    first.save_segment(RACE_SEGMENT, {"performed": "purchase", "within": {"last": "30d"}})
    first.track_segment(RACE_SEGMENT)
    _no_segment_events(first)
    try:
        first.refresh_segments(now=RACE_T0)
        append(first, [{"customer_id": 2, "event": "purchase", "ts": RACE_T0 + timedelta(minutes=5), "category": "shoes",
                        "product_id": "p2", "amount": 20, "price": 20.0, "promotion_id": None}])
        later = RACE_T0 + timedelta(hours=1)
        store = first.source.membership_store()
        claim = store.claim

        def other_refresh_first(expected: Any) -> None:
            store.claim = claim  # type: ignore[method-assign]
            assert second.refresh_segments(now=later)[RACE_SEGMENT].entered == (2,)
            claim(expected)

        store.claim = other_refresh_first  # type: ignore[method-assign]
        with pytest.raises(shopcrm.RefreshConflict, match=f"another refresh recorded segment:{RACE_SEGMENT}"):
            first.refresh_segments(now=later)
        again = first.refresh_segments(now=later)
        assert again[RACE_SEGMENT].entered == ()
        assert again[RACE_SEGMENT].exited == ()
        stays = first.segment_stays(RACE_SEGMENT)
        assert [(s.customer_id, s.exited_at) for s in stays] == [(1, None), (2, None)]
        entered = [e for e in first.source.campaign_store().message_events() if e["event"] == "segment_entered"]
        assert [e["customer_id"] for e in entered] == [2]
    finally:
        first.untrack_segment(RACE_SEGMENT)
        first.delete_segment(RACE_SEGMENT)


def test_two_refreshes_at_once_on_sqlite_record_nothing_twice(tmp_path: Any) -> None:
    import sqlite3

    path = tmp_path / "shop.sqlite"
    made = sqlite_shop(_race_shop())
    made.source.connection.backup(target := sqlite3.connect(path))  # type: ignore[attr-defined]
    target.close()
    first = shopcrm.Shop.from_dbapi(sqlite3.connect(path), dialect="sqlite")
    second = shopcrm.Shop.from_dbapi(sqlite3.connect(path), dialect="sqlite")
    _race(first, second, _sqlite_append)


def test_two_refreshes_at_once_on_postgres_record_nothing_twice(postgres_loader: PostgresLoader) -> None:
    import psycopg

    first = postgres_loader(_race_shop())
    other = psycopg.connect(postgres_loader.con.info.dsn)
    try:
        second = shopcrm.Shop.from_dbapi(other, dialect="postgres", customers="customers_int", events="events_int")
        _race(first, second, _server_append("%s"))
    finally:
        other.close()


def test_refreshes_racing_in_threads_on_postgres_enter_each_customer_once(postgres_loader: PostgresLoader) -> None:
    """Two refreshes of the same instant in two threads, each on its own connection, as often as not overlapping
    (the second blocks on the rows the first holds): whichever fails, the stays and events are each written once."""
    import threading

    import psycopg

    first = postgres_loader(_race_shop())
    first.save_segment(RACE_SEGMENT, {"performed": "purchase", "within": {"last": "30d"}})
    first.track_segment(RACE_SEGMENT)
    _no_segment_events(first)
    connections = [psycopg.connect(postgres_loader.con.info.dsn) for _ in range(2)]
    try:
        first.refresh_segments(now=RACE_T0)
        for step in range(1, 4):
            now = RACE_T0 + timedelta(hours=step)
            _server_append("%s")(first, [{"customer_id": step + 1, "event": "purchase", "ts": now - timedelta(minutes=5),
                                          "category": "shoes", "product_id": "p", "amount": 1, "price": 1.0,
                                          "promotion_id": None}])
            shops = [shopcrm.Shop.from_dbapi(c, dialect="postgres", customers="customers_int", events="events_int")
                     for c in connections]
            outcomes: list[Any] = [None, None]

            def run(i: int, now: datetime = now, shops: list[shopcrm.Shop] = shops, outcomes: list[Any] = outcomes) -> None:
                try:
                    outcomes[i] = shops[i].refresh_segments(now=now)[RACE_SEGMENT].entered
                except shopcrm.RefreshConflict as error:
                    outcomes[i] = error

            threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            entered = [o for o in outcomes if not isinstance(o, Exception)]
            assert (step + 1,) in entered, outcomes  # one of them recorded the entry
            assert all(o in ((step + 1,), ()) for o in entered), outcomes
        stays = first.segment_stays(RACE_SEGMENT)
        assert sorted(s.customer_id for s in stays) == [1, 2, 3, 4]
        entered_events = [e["customer_id"] for e in first.source.campaign_store().message_events()
                          if e["event"] == "segment_entered"]
        assert sorted(entered_events) == [2, 3, 4]
    finally:
        for c in connections:
            c.close()
        first.untrack_segment(RACE_SEGMENT)
        first.delete_segment(RACE_SEGMENT)


def test_two_refreshes_at_once_on_mariadb_record_nothing_twice(mysql_loader: MySQLLoader) -> None:
    import pymysql

    first = mysql_loader(_race_shop())
    made = mysql_loader.con
    other = pymysql.connect(host=made.host, port=made.port, user=made.user, password=made.password, database=made.db,
                            charset="utf8mb4", autocommit=False)
    try:
        second = shopcrm.Shop.from_dbapi(other, dialect="mysql", customers="customers_int", events="events_int")
        _race(first, second, _server_append("%s"))
    finally:
        other.close()


def test_a_refresh_caught_in_a_deadlock_on_postgres_raises_refresh_conflict(postgres_loader: PostgresLoader) -> None:
    """Refreshes claim their tracking rows in the order of their names, so two refreshes never deadlock each other.
    Another transaction taking the same rows in the other order can: it holds the second row, the refresh takes the
    first and waits, the other then asks for the first. PostgreSQL aborts the refresh (it waited longest) with
    "deadlock detected": that is a RefreshConflict with nothing kept, and the refresh run again records."""
    import threading
    import time

    import psycopg

    first = postgres_loader(_race_shop())
    names = [f"{RACE_SEGMENT}_a", f"{RACE_SEGMENT}_b"]
    for name in names:
        first.save_segment(name, {"performed": "purchase", "within": {"last": "30d"}})
        first.track_segment(name)
    _no_segment_events(first)
    tracked = first.source.membership_store().TRACKED  # type: ignore[attr-defined]
    holder = psycopg.connect(postgres_loader.con.info.dsn)
    other = psycopg.connect(postgres_loader.con.info.dsn)
    try:
        first.refresh_segments(now=RACE_T0)
        _server_append("%s")(first, [{"customer_id": 2, "event": "purchase", "ts": RACE_T0 + timedelta(minutes=5),
                                      "category": "shoes", "product_id": "p2", "amount": 20, "price": 20.0,
                                      "promotion_id": None}])
        later = RACE_T0 + timedelta(hours=1)
        refreshing = shopcrm.Shop.from_dbapi(other, dialect="postgres", customers="customers_int", events="events_int")
        with holder.cursor() as cursor:
            cursor.execute(f"SELECT name FROM {tracked} WHERE name = %s FOR UPDATE", (f"segment:{names[1]}",))
        outcome: list[Any] = []

        def refresh() -> None:
            try:
                outcome.append(refreshing.refresh_segments(now=later))
            except Exception as error:
                outcome.append(error)

        racer = threading.Thread(target=refresh)
        racer.start()
        time.sleep(0.3)  # the refresh holds the first row and waits for the second
        assert racer.is_alive(), outcome
        with holder.cursor() as cursor:  # waits for the first row: a deadlock, which PostgreSQL breaks
            cursor.execute(f"UPDATE {tracked} SET document = document WHERE name = %s", (f"segment:{names[0]}",))
        racer.join(timeout=30)
        holder.rollback()
        assert len(outcome) == 1, outcome
        assert isinstance(outcome[0], shopcrm.RefreshConflict), outcome
        assert "deadlock" in str(outcome[0].__cause__).lower()
        again = refreshing.refresh_segments(now=later)
        assert [again[name].entered for name in names] == [(2,), (2,)]
        entered = [e["customer_id"] for e in first.source.campaign_store().message_events() if e["event"] == "segment_entered"]
        assert entered == [2, 2]
    finally:
        holder.close()
        other.close()
        for name in names:
            first.untrack_segment(name)
            first.delete_segment(name)
