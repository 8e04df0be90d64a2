"""Ticks and dispatch on a shop's own database (SQLite, PostgreSQL, MariaDB): the outbox, the send ledger,
opt-outs and delivery events live in shopcrm_* tables beside the shop's tables, and a second dispatch
sends nothing twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import shopcrm
from shopcrm.channels import JsonlChannel
from shopcrm.dispatching import Dispatcher

T0 = datetime(2026, 11, 25, 1)
TABLES = ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values", "shopcrm_sends", "shopcrm_opt_outs",
          "shopcrm_message_events", "d_customers", "d_events")


def _fill(connection: Any, placeholder: str) -> None:
    cursor = connection.cursor()
    for table in TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute("CREATE TABLE d_customers (customer_id VARCHAR(20), name VARCHAR(40), phone VARCHAR(20))")
    cursor.execute("CREATE TABLE d_events (customer_id VARCHAR(20), event VARCHAR(40), ts TIMESTAMP)")
    marks = ", ".join([placeholder] * 3)
    cursor.executemany(f"INSERT INTO d_customers VALUES ({marks})",
                       [(f"c{i}", "김민서", f"010-4000-{i:04d}") for i in range(5)])
    cursor.close()
    connection.commit()


def _run(shop: shopcrm.Shop, tmp_path: Path) -> None:
    shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 공지입니다."}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    assert len(shop.tick(now=T0).messages) == 5
    assert shop.tick(now=T0).messages == ()
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    for _ in range(2):
        asyncio.run(Dispatcher(shop, {"sms": sms}, clock=lambda: T0).run())
    store = shop.source.campaign_store()
    assert Counter(r.state for r in store.sends()) == {"sent": 5}
    assert len(sms.written()) == 5
    assert Counter(e["event"] for e in store.message_events()) == {"message_sent": 5}
    shop.record_opt_out("c1", "sms", at=T0)
    assert store.opt_outs() == {"c1": {"sms": T0}}


def test_sqlite(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "shop.db")
    _fill(connection, "?")
    _run(shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="d_customers", events="d_events"), tmp_path)


def test_postgres(postgres_loader: Any, tmp_path: Path) -> None:
    connection = postgres_loader.con
    _fill(connection, "%s")
    _run(shopcrm.Shop.from_dbapi(connection, dialect="postgres", customers="d_customers", events="d_events"), tmp_path)


def test_mysql(mysql_loader: Any, tmp_path: Path) -> None:
    connection = mysql_loader.con
    _fill(connection, "%s")
    _run(shopcrm.Shop.from_dbapi(connection, dialect="mysql", customers="d_customers", events="d_events"), tmp_path)


def test_a_send_ledger_from_shopcrm_0_1_gains_its_new_columns_on_first_use(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "old.db")
    _fill(connection, "?")
    connection.execute(
        "CREATE TABLE shopcrm_sends (key_ VARCHAR(64) PRIMARY KEY, customer_id VARCHAR(200) NOT NULL, campaign_id "
        "VARCHAR(100) NOT NULL, chain_index INTEGER NOT NULL, state VARCHAR(20) NOT NULL, attempts INTEGER NOT NULL, "
        "next_at VARCHAR(32) NOT NULL, lease_until VARCHAR(32), claim VARCHAR(64), provider_id VARCHAR(200), "
        "code VARCHAR(64), reason TEXT, cost DOUBLE PRECISION NOT NULL, updated_at VARCHAR(32) NOT NULL)")
    connection.execute("INSERT INTO shopcrm_sends VALUES ('k1', '\"c1\"', 'notice', 0, 'sent', 1, '2026-11-25 01:00:00', "
                       "NULL, '', 'M1', '', '', 8.4, '2026-11-25 01:00:00')")
    connection.commit()
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="d_customers", events="d_events")
    [old] = shop.source.campaign_store().sends()
    assert (old.key, old.state, old.provider_id, old.batch_ref, old.checks) == ("k1", "sent", "M1", "", 0)
    shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 공지입니다."}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    asyncio.run(Dispatcher(shop, {"sms": sms}, clock=lambda: T0).run())  # and the ledger works as a new one
    assert Counter(r.state for r in shop.source.campaign_store().sends()) == {"sent": 6}
    assert len(sms.written()) == 5
