"""The campaign report on PostgreSQL and MariaDB shops (DB-API): computed in SQL by the engine, equal to the pure
reference path figure by figure (the DuckDB and SQLite runs are in tests/test_report.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import test_report as scenario
from shopcrm import Shop

TABLES = ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values", "shopcrm_sends", "shopcrm_opt_outs",
          "shopcrm_message_events", "shopcrm_settings", "shopcrm_segments", "r_customers", "r_events")
EVENT_COLUMNS = ("customer_id", "event", "ts", "amount", "order_id", "message_key", "campaign_id")


def _tables(con: Any, dialect: str, text: str, stamp: str, people: list[dict[str, Any]]) -> tuple[
        Shop, Callable[[list[dict[str, Any]]], None]]:
    """A DB-API shop over fresh tables of ``people``, and a function that adds events to its events table."""
    cur = con.cursor()
    for table in TABLES:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(f"CREATE TABLE r_customers (customer_id {text}, name {text}, phone {text}, sms_consent BOOLEAN, "
                "kakao_consent BOOLEAN, kakao_friend BOOLEAN, night_consent BOOLEAN)")
    cur.executemany("INSERT INTO r_customers VALUES (%s, %s, %s, %s, %s, %s, %s)", [tuple(p.values()) for p in people])
    cur.execute(f"CREATE TABLE r_events (customer_id {text}, event {text}, ts {stamp}, amount DOUBLE PRECISION, "
                f"order_id {text}, message_key {text}, campaign_id {text})".replace(
                    "DOUBLE PRECISION", "DOUBLE" if dialect == "mysql" else "DOUBLE PRECISION"))
    con.commit()
    cur.close()

    def load(events: list[dict[str, Any]]) -> None:
        cur = con.cursor()
        cur.executemany("INSERT INTO r_events VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [tuple(e.get(c) for c in EVENT_COLUMNS) for e in events])
        con.commit()
        cur.close()

    return Shop.from_dbapi(con, dialect=dialect, customers="r_customers", events="r_events"), load


def _shop(con: Any, dialect: str, text: str, stamp: str) -> Shop:
    shop, load = _tables(con, dialect, text, stamp, scenario.PEOPLE)
    treated, held = scenario._plan_and_send(shop)
    clicks, orders = scenario._activity(treated, held, scenario._keys(shop))
    load(clicks + orders)
    shop.record_opt_out(treated[3], "kakao", at=scenario.T0 + timedelta(days=2))
    return shop


def _check(shop: Shop) -> None:
    assert shop.report(now=scenario.NOW).method == "sql"
    row = shop.report("spring", now=scenario.NOW).row("spring")
    assert (row["sent"], row["fallen_back"], row["clicked"], row["attributed_revenue"], row["opt_outs_after"]) == (
        15, 4, 2, 50000.0, 1)
    for by in ((), ("variant",), ("step", "channel"), ("kind",)):
        scenario._same_reports(shop, now=scenario.NOW, by=by)
    scenario._same_reports(shop, since=scenario.T0, until=scenario.T0 + timedelta(hours=1), now=scenario.NOW)
    scenario._same_reports(shop, now=scenario.NOW, by=("segment",), segments=scenario.SEGMENTS, segments_at=scenario.T0)
    # an order first recorded before the range's start (and again inside it) is no conversion of the range
    ranged = shop.report("spring", since=scenario.T0 - timedelta(minutes=30), now=scenario.NOW).row("spring")
    assert (ranged["influenced_conversions"], ranged["treated_conversions"]) == (2, 4)
    scenario._same_reports(shop, since=scenario.T0 - timedelta(minutes=30), now=scenario.NOW, by=("variant",))


def _check_contest(con: Any, dialect: str, text: str, stamp: str) -> None:
    """Two campaigns whose clicks compete for one customer's order (see test_report._contest)."""
    shop, load = _tables(con, dialect, text, stamp, scenario.PEOPLE[:4])
    scenario._contest(shop, load)
    scenario._check_contest(shop)


def test_postgres(postgres_loader: Any) -> None:
    con = postgres_loader.con
    try:
        _check(_shop(con, "postgres", "TEXT", "TIMESTAMP"))
        _check_contest(con, "postgres", "TEXT", "TIMESTAMP")
    finally:
        con.rollback()


def test_mysql(mysql_loader: Any) -> None:
    con = mysql_loader.con
    try:
        _check(_shop(con, "mysql", "VARCHAR(64)", "DATETIME(6)"))
        _check_contest(con, "mysql", "VARCHAR(64)", "DATETIME(6)")
    finally:
        con.rollback()
