"""Watermark ticks (issue 15) decide exactly what ticks reading every scenario whole decide, on every engine.

A random shop, a scenario with waits, a branch, a local time of day, exits and a random re-entry rule, and a
random timeline: events arriving a little after their ``ts`` (late), ticks at random instants.  Two shops read
the same tables: one ticks from its watermarks (``shop.tick(now=...)``), the other reads every scenario whole
each time (``full=True``).  After every tick both outboxes hold the same decisions.

On the embedded DuckDB shop events arrive through ``load_events``, which moves the marks back, so they may be
arbitrarily late; on the DB-API engines the shop's own pipeline writes them, so they arrive within the policy's
``late_events_within``.  A crash between recording a tick and advancing its marks (the marks' transaction fails)
loses nothing and repeats nothing.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import attrs
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import CUSTOMER_COLS, EVENT_COLS, _rows
from shopcrm import ticking
from shopcrm.campaigns import MessagingPolicy
from shopcrm.sources.duckdb_store import DuckDBSource
from strategies import RandomShop, rule_dicts, shops

SCALE = float(os.environ.get("SHOPCRM_EXAMPLES_SCALE", "1"))
ALLOWANCE = timedelta(minutes=30)
POLICY = MessagingPolicy(late_events_within=ALLOWANCE, caps=())
LIVE_EVENTS = ("cart_added", "order_completed", "product_viewed")


def common(n: int) -> settings:
    return settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True,
                    max_examples=max(3, int(n * SCALE)))


@attrs.frozen
class Timeline:
    shop: RandomShop
    campaign: dict[str, Any]
    #: events before the first tick (loaded at once)
    before: list[dict[str, Any]]
    #: (arrival, event): loaded when a tick at or after ``arrival`` comes
    live: list[tuple[datetime, dict[str, Any]]]
    ticks: list[datetime]


@st.composite
def timelines(draw: st.DrawFn, late: timedelta) -> Timeline:
    shop = draw(shops(max_customers=6, max_events=15))
    start, end = shop.now - timedelta(hours=30), shop.now + timedelta(hours=6)
    seconds = int((end - start).total_seconds())
    owners = [c["customer_id"] for c in shop.customers]
    live: list[tuple[datetime, dict[str, Any]]] = []
    for _ in range(draw(st.integers(0, 16))):
        ts = start + timedelta(seconds=draw(st.integers(0, seconds)))
        event = {"customer_id": draw(st.sampled_from(owners)), "event": draw(st.sampled_from(LIVE_EVENTS)), "ts": ts,
                 "category": None, "product_id": draw(st.sampled_from([None, "P1"])), "amount": None, "price": None,
                 "promotion_id": None}
        delay = timedelta(seconds=draw(st.integers(0, int(late.total_seconds()))))
        live.append((ts + delay, event))
    before = [e for e in shop.events if e["ts"] < start]
    live += [(e["ts"], e) for e in shop.events if e["ts"] >= start]
    minutes = draw(st.lists(st.integers(0, seconds // 60), min_size=2, max_size=10, unique=True))
    ticks = [start + timedelta(minutes=m) for m in sorted(minutes)]
    reentry = draw(st.sampled_from(["once", "every_time", "3h"]))
    audience = draw(st.one_of(st.just({"everyone": True}), rule_dicts(max_depth=1)))
    branch = draw(rule_dicts(max_depth=1))
    campaign = {
        "id": "scenario", "purpose": "informational", "audience": audience, "channels": ["webhook"],
        "variants": [{"name": "a", "content": {"text": "hello {{ customer_id }}"}}], "max_delay": "1d",
        "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"], "reentry": reentry,
                     "steps": [{"wait": "1h"}, {"send": "first"},
                               {"if": branch, "then": [{"wait": "3h"}, {"send": "second"}],
                                "else": [{"wait_until": "10:00"}, {"send": "third"}]}]},
    }
    return Timeline(shop, campaign, before, live, ticks)


Rows = set[tuple[Any, ...]]


def _decisions(shop: shopcrm.Shop) -> Rows:
    return {(r.key, r.customer_id, r.step, r.occurrence, r.status, r.due_at, r.send_at)
            for r in shop.source.campaign_store().outbox()}


Engine = Callable[[RandomShop], tuple[shopcrm.Shop, shopcrm.Shop, Callable[[list[dict[str, Any]]], None]]]


def _run(engine: Engine, timeline: Timeline, *, crash_at: int | None = None) -> None:
    incremental, whole, append = engine(timeline.shop)
    for shop in (incremental, whole):
        shop.messaging_policy = POLICY
        shop.save_campaign(timeline.campaign, now=timeline.ticks[0] - timedelta(hours=1), check=False)
    if timeline.before:
        append(timeline.before)
    pending = sorted(timeline.live, key=lambda p: (p[0], repr(p[1]["customer_id"])))
    for number, at in enumerate(timeline.ticks):
        arrived = [event for arrival, event in pending if arrival <= at]
        pending = [(arrival, event) for arrival, event in pending if arrival > at]
        if arrived:
            append(arrived)
        if number == crash_at:
            with _marks_fail(incremental), pytest.raises(RuntimeError, match="killed"):
                incremental.tick(now=at)
            whole.tick(now=at, full=True)
        else:
            got = incremental.tick(now=at)
            expected = whole.tick(now=at, full=True)
            assert {m.key for m in got.messages} == {m.key for m in expected.messages}, f"tick {number} at {at}"
        assert _decisions(incremental) == _decisions(whole), f"after tick {number} at {at}"


@contextmanager
def _marks_fail(shop: shopcrm.Shop) -> Iterator[None]:
    """The process dies after the tick's decisions are recorded, before its marks are advanced."""
    marks = shop.source.campaign_store().tick_marks()  # the store keeps one: the tick advances this one

    def advance(changes: Any) -> None:
        raise RuntimeError("killed between recording the tick and advancing its marks")

    marks.advance = advance  # type: ignore[method-assign]
    try:
        yield
    finally:
        del marks.advance  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------- engines
def _duckdb(shop: RandomShop) -> tuple[shopcrm.Shop, shopcrm.Shop, Callable[[list[dict[str, Any]]], None]]:
    con = duckdb.connect()
    id_type = "BIGINT" if shop.id_kind == "int" else "VARCHAR"
    con.execute(f"CREATE TABLE customers (customer_id {id_type}, age BIGINT, grade VARCHAR, score DOUBLE, vip BOOLEAN, "
                "signed_up_at TIMESTAMP)")
    con.execute(f"CREATE TABLE events (customer_id {id_type}, event VARCHAR, ts TIMESTAMP, category VARCHAR, "
                "product_id VARCHAR, amount BIGINT, price DOUBLE, promotion_id VARCHAR)")
    incremental = shopcrm.Shop(DuckDBSource(connection=con, library_prefix="inc_"))
    whole = shopcrm.Shop(DuckDBSource(connection=con, library_prefix="whole_"))
    incremental.load_customers(shop.customers)
    return incremental, whole, incremental.load_events  # load_events moves the incremental shop's marks back


def _sqlite(shop: RandomShop) -> tuple[shopcrm.Shop, shopcrm.Shop, Callable[[list[dict[str, Any]]], None]]:
    con = sqlite3.connect(":memory:")
    id_type = "INTEGER" if shop.id_kind == "int" else "TEXT"
    con.execute(f"CREATE TABLE customers (customer_id {id_type}, age INTEGER, grade TEXT, score REAL, vip BOOLEAN, "
                "signed_up_at TIMESTAMP)")
    con.execute(f"CREATE TABLE events (customer_id {id_type}, event TEXT, ts TIMESTAMP, category TEXT, product_id TEXT, "
                "amount INTEGER, price REAL, promotion_id TEXT)")
    def iso(value: Any) -> Any:
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value

    con.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", _rows(shop.customers, CUSTOMER_COLS, iso))
    con.commit()

    def append(events: list[dict[str, Any]]) -> None:
        con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", _rows(events, EVENT_COLS, iso))
        con.commit()

    return (shopcrm.Shop.from_dbapi(con, dialect="sqlite", library_prefix="inc_"),
            shopcrm.Shop.from_dbapi(con, dialect="sqlite", library_prefix="whole_"), append)


def _server(loader: Any, dialect: str, placeholder: str) -> Engine:
    def make(shop: RandomShop) -> tuple[shopcrm.Shop, shopcrm.Shop, Callable[[list[dict[str, Any]]], None]]:
        kind = shop.id_kind
        con = loader.con
        with con.cursor() as cur:
            for prefix in ("inc_", "whole_"):
                for table in ("outbox", "occurrences", "campaigns", "tick_marks", "wakeups"):
                    cur.execute(f"DROP TABLE IF EXISTS {prefix}{table}")
            cur.execute(f"DELETE FROM customers_{kind}")
            cur.execute(f"DELETE FROM events_{kind}")
            marks = ",".join([placeholder] * len(CUSTOMER_COLS))
            cur.executemany(f"INSERT INTO customers_{kind} VALUES ({marks})", _rows(shop.customers, CUSTOMER_COLS))
        con.commit()

        def append(events: list[dict[str, Any]]) -> None:
            with con.cursor() as cur:
                marks = ",".join([placeholder] * len(EVENT_COLS))
                cur.executemany(f"INSERT INTO events_{kind} VALUES ({marks})", _rows(events, EVENT_COLS))
            con.commit()

        tables = {"customers": f"customers_{kind}", "events": f"events_{kind}"}
        return (shopcrm.Shop.from_dbapi(con, dialect=dialect, library_prefix="inc_", **tables),
                shopcrm.Shop.from_dbapi(con, dialect=dialect, library_prefix="whole_", **tables), append)

    return make


# --------------------------------------------------------------------------------------------------- tests
@contextmanager
def _wide_preload(wide: bool) -> Iterator[None]:
    """A tick reads the histories of at most ``_WIDE_PRELOAD`` customers with their new events (one scan); 0 makes
    every tick read them apart, as a tick of more customers does."""
    kept = ticking._WIDE_PRELOAD
    ticking._WIDE_PRELOAD = kept if wide else 0
    try:
        yield
    finally:
        ticking._WIDE_PRELOAD = kept


@common(40)
@given(timelines(late=timedelta(days=1)), st.booleans())
def test_duckdb_watermark_ticks_decide_what_whole_ticks_decide(timeline: Timeline, wide: bool) -> None:
    with _wide_preload(wide):
        _run(_duckdb, timeline)


@common(40)
@given(timelines(late=ALLOWANCE), st.booleans())
def test_sqlite_watermark_ticks_decide_what_whole_ticks_decide(timeline: Timeline, wide: bool) -> None:
    with _wide_preload(wide):
        _run(_sqlite, timeline)


@common(15)
@given(timelines(late=timedelta(hours=6)), st.integers(0, 9))
def test_a_crash_between_recording_and_marking_loses_and_repeats_nothing(timeline: Timeline, crash_at: int) -> None:
    _run(_duckdb, timeline, crash_at=crash_at % len(timeline.ticks))


@common(12)
@given(timeline=timelines(late=ALLOWANCE))
def test_postgres_watermark_ticks_decide_what_whole_ticks_decide(postgres_loader: Any, timeline: Timeline) -> None:
    _run(_server(postgres_loader, "postgres", "%s"), timeline)


@common(12)
@given(timeline=timelines(late=ALLOWANCE))
def test_mysql_watermark_ticks_decide_what_whole_ticks_decide(mysql_loader: Any, timeline: Timeline) -> None:
    _run(_server(mysql_loader, "mysql", "%s"), timeline)


def test_an_event_later_than_the_allowance_needs_a_full_tick() -> None:
    """What the allowance means on a shop whose pipeline writes the events: an event written after a tick, older
    than the tick's mark less the allowance, is not seen by the next watermark tick; ``full=True`` sees it."""
    now = datetime(2026, 3, 1, 12)
    shop = RandomShop([{"customer_id": "a", "age": None, "grade": None, "score": None, "vip": None, "signed_up_at": None}],
                      [], now, "str", None)  # type: ignore[arg-type]
    incremental, _, append = _sqlite(shop)
    incremental.messaging_policy = MessagingPolicy(late_events_within=timedelta(minutes=10), caps=())
    campaign = {"id": "cart", "purpose": "informational", "channels": ["webhook"],
                "variants": [{"name": "a", "content": {"text": "hi"}}],
                "schedule": {"kind": "triggered", "on": "cart_added", "steps": [{"send": "now"}]}}
    incremental.save_campaign(campaign, now=now - timedelta(days=1), check=False)
    incremental.tick(now=now)
    append([{"customer_id": "a", "event": "cart_added", "ts": now - timedelta(minutes=30), "category": None,
             "product_id": None, "amount": None, "price": None, "promotion_id": None}])
    assert incremental.tick(now=now + timedelta(minutes=5)).messages == ()
    assert len(incremental.tick(now=now + timedelta(minutes=5), dry_run=True, full=True).messages) == 1
    assert len(incremental.tick(now=now + timedelta(minutes=6), full=True).messages) == 1
    assert incremental.tick(now=now + timedelta(minutes=7)).messages == ()


T0 = datetime(2026, 11, 25, 1)


def test_two_ticks_advancing_the_same_marks_on_postgres_both_return_their_plans(postgres_loader: Any) -> None:
    """Two scheduler hosts tick the same PostgreSQL shop at once, and neither records a row. Both advance the
    scenario's marks: the second waits for the first's, then meets its new mark as a duplicate key. That tick keeps its
    result and drops its own marks instead of failing, and the reminder is planned once, when it comes due."""
    import threading
    import time

    import psycopg

    con = postgres_loader.con
    with con.cursor() as cursor:
        for table in ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks",
                      "shopcrm_wakeups", "shopcrm_sends", "shopcrm_opt_outs", "shopcrm_message_events",
                      "m_customers", "m_events"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute("CREATE TABLE m_customers (customer_id VARCHAR(20), name VARCHAR(40), phone VARCHAR(20))")
        cursor.execute("CREATE TABLE m_events (customer_id VARCHAR(20), event VARCHAR(40), ts TIMESTAMP)")
        cursor.executemany("INSERT INTO m_customers VALUES (%s, %s, %s)",
                           [(f"c{i}", "김민서", f"010-4000-{i:04d}") for i in range(3)])
        cursor.execute("INSERT INTO m_events VALUES ('c0', 'cart_added', %s)", (T0 - timedelta(days=40),))
    con.commit()
    first = shopcrm.Shop.from_dbapi(con, dialect="postgres", customers="m_customers", events="m_events")
    first.messaging_policy = MessagingPolicy(sender_name="샵", sender_contact="1588-0000", opt_out_number="080-123-4567")
    first.save_settings()
    first.save_campaign({"id": "cart", "purpose": "informational", "channels": ["sms"],
                         "variants": [{"name": "a", "content": {"text": "{{ name }}님, 장바구니에 상품이 있어요"}}],
                         "schedule": {"kind": "triggered", "on": "cart_added", "steps": [{"wait": "1h"}, {"send": "r"}]}},
                        now=T0 - timedelta(days=1))
    first.tick(now=T0)
    with con.cursor() as cursor:
        cursor.execute("INSERT INTO m_events VALUES ('c1', 'cart_added', %s)", (T0 + timedelta(minutes=1),))
    con.commit()
    other = psycopg.connect(con.info.dsn)
    try:
        second = shopcrm.Shop.from_dbapi(other, dialect="postgres", customers="m_customers", events="m_events")
        marks: Any = first.source.campaign_store().tick_marks()
        run = marks._run
        holding, release = threading.Event(), threading.Event()

        def run_then_hold_the_new_mark(sql: str, params: Any = ()) -> Any:
            found = run(sql, params)
            if sql.startswith(f"INSERT INTO {marks._marks_table}"):
                holding.set()
                release.wait(timeout=30)  # written, not committed: the other tick's advance waits for it
            return found

        marks._run = run_then_hold_the_new_mark
        results: dict[str, Any] = {}

        def tick(name: str, shop: shopcrm.Shop) -> None:
            try:
                results[name] = shop.tick(now=T0 + timedelta(minutes=5))
            except Exception as error:  # the failure this test exists to catch
                results[name] = error

        holder = threading.Thread(target=tick, args=("first", first))
        holder.start()
        assert holding.wait(timeout=30)
        marks._run = run
        waiter = threading.Thread(target=tick, args=("second", second))
        waiter.start()
        time.sleep(0.5)  # the second tick planned and now waits for the first's marks
        release.set()
        holder.join(timeout=30)
        waiter.join(timeout=30)
        assert not any(isinstance(r, Exception) for r in results.values()), results
        assert [r.messages for r in results.values()] == [(), ()]
        due = first.tick(now=T0 + timedelta(hours=1, minutes=5))
        assert [m.customer_id for m in due.messages] == ["c1"]
        assert second.tick(now=T0 + timedelta(hours=1, minutes=10)).messages == ()
        assert [r.customer_id for r in first.outbox() if r.campaign_id == "cart"] == ["c1"]
    finally:
        other.close()
