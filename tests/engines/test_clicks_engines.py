"""Clicks on a shop's own database (SQLite, PostgreSQL, MariaDB): a tracked link's click lands in
shopcrm_message_events with its message's fields, in the engine's own transaction."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import shopcrm
from shopcrm.campaigns import MessagingPolicy
from shopcrm.tracking import TrackingPolicy, link_id

T0 = datetime(2026, 11, 25, 1)
TABLES = ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values", "shopcrm_sends", "shopcrm_opt_outs",
          "shopcrm_message_events", "shopcrm_settings", "k_customers", "k_events")
TRACKING = TrackingPolicy(base_url="https://shop.example/r", secret="engine-test-secret-0123456789")


def _fill(connection: Any) -> None:
    cursor = connection.cursor()
    for table in TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute("CREATE TABLE k_customers (customer_id VARCHAR(20), name VARCHAR(40), phone VARCHAR(20))")
    cursor.execute("CREATE TABLE k_events (customer_id VARCHAR(20), event VARCHAR(40), ts TIMESTAMP)")
    cursor.execute("INSERT INTO k_customers VALUES ('c0', '김민서', '010-4000-0000')")
    cursor.close()
    connection.commit()


def _run(shop: shopcrm.Shop) -> None:
    shop.messaging_policy = MessagingPolicy(tracking=TRACKING)
    shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "공지 {{ link('https://shop.example/n/1') }}"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    row = shop.outbox()[0]
    token = row.chain[0]["text"].split("https://shop.example/r/")[1].split()[0]
    assert shop.record_click(token[:-1], at=T0) is None
    assert shop.record_click(token, at=T0 + timedelta(hours=1)) == "https://shop.example/n/1"
    [event] = shop.source.campaign_store().message_events()
    assert {k: event[k] for k in ("customer_id", "event", "ts", "message_key", "campaign_id", "channel", "code")} == {
        "customer_id": "c0", "event": "message_clicked", "ts": T0 + timedelta(hours=1), "message_key": row.key,
        "campaign_id": "notice", "channel": "sms", "code": link_id("https://shop.example/n/1").hex()}
    shop.messaging_policy = MessagingPolicy()  # the server is shared: leave the defaults for the next test


def test_sqlite(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "shop.db")
    _fill(connection)
    _run(shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="k_customers", events="k_events"))


def test_postgres(postgres_loader: Any) -> None:
    _fill(postgres_loader.con)
    _run(shopcrm.Shop.from_dbapi(postgres_loader.con, dialect="postgres", customers="k_customers", events="k_events"))


def test_mysql(mysql_loader: Any) -> None:
    _fill(mysql_loader.con)
    _run(shopcrm.Shop.from_dbapi(mysql_loader.con, dialect="mysql", customers="k_customers", events="k_events"))
