"""Preview and tick of campaigns whose templates read the cart and the trigger event, on a shop's own
database (SQLite, PostgreSQL, MariaDB): the set-based queries that gather them (a ROW_NUMBER() window per
customer, IN subqueries of the audience) run on every engine and agree with the embedded store."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

import shopcrm
from shopcrm.campaigns import MessagingPolicy

NOW = datetime(2026, 11, 25, 1)
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
TABLES = ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values", "shopcrm_sends", "shopcrm_opt_outs",
          "shopcrm_message_events", "p_customers", "p_events")
CART = {
    "id": "cart", "purpose": "informational", "channels": ["sms"],
    "variants": [{"name": "a", "content": {"text": "{{ name }}님, {{ event.product_id }} 외 {{ cart|length }}개"}}],
    "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"],
                 "steps": [{"wait": "1h"}, {"send": "reminder"}], "reentry": "every_time"},
}
SALE = {
    "id": "sale", "purpose": "informational", "audience": {"performed": "cart_added"}, "channels": ["sms"],
    "variants": [{"name": "a", "content": {"text": "{{ name }}님, {{ cart[0].product_id }} 할인 중"}}],
    "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
}


def _events() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for i in range(6):
        rows += [(f"c{i}", "cart_added", NOW - timedelta(hours=30), f"OLD{i}"),
                 (f"c{i}", "cart_added", NOW - timedelta(hours=3), f"P{i}")]
    rows.append(("c1", "order_completed", NOW - timedelta(hours=2, minutes=30), None))  # c1's cart is empty
    return rows


def _fill(connection: Any, placeholder: str) -> None:
    cursor = connection.cursor()
    for table in TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute("CREATE TABLE p_customers (customer_id VARCHAR(20), name VARCHAR(40), phone VARCHAR(20))")
    cursor.execute("CREATE TABLE p_events (customer_id VARCHAR(20), event VARCHAR(40), ts TIMESTAMP, product_id VARCHAR(20))")
    cursor.executemany(f"INSERT INTO p_customers VALUES ({', '.join([placeholder] * 3)})",
                       [(f"c{i}", "김민서", f"010-4000-{i:04d}") for i in range(6)])
    cursor.executemany(f"INSERT INTO p_events VALUES ({', '.join([placeholder] * 4)})", _events())
    cursor.close()
    connection.commit()


def _outcome(shop: shopcrm.Shop) -> dict[str, Any]:
    shop.messaging_policy = POLICY
    shop.save_campaign(CART, now=NOW - timedelta(days=2))
    shop.save_campaign(SALE, now=NOW - timedelta(hours=2))
    previews = {name: shop.preview(name, now=NOW) for name in ("cart", "sale")}
    result = shop.tick(now=NOW)
    return {
        "previews": {n: (p.audience, p.planned, p.suppressed) for n, p in previews.items()},
        "texts": sorted((m.campaign_id, m.customer_id, m.chain[0].text) for m in result.messages),
    }


def _expected() -> dict[str, Any]:
    shop = shopcrm.Shop.open()
    shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-4000-{i:04d}"} for i in range(6)])
    shop.load_events([{"customer_id": c, "event": e, "ts": t, "product_id": p} for c, e, t, p in _events()])
    found = _outcome(shop)
    assert found["previews"]["sale"] == (6, 5, {"render_failed": 1})
    assert ("sale", "c0", "김민서님, P0 할인 중") in found["texts"]
    return found


def test_sqlite() -> None:
    connection = sqlite3.connect(":memory:")
    _fill(connection, "?")
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="p_customers", events="p_events")
    assert _outcome(shop) == _expected()


def test_postgres(postgres_loader: Any) -> None:
    _fill(postgres_loader.con, "%s")
    shop = shopcrm.Shop.from_dbapi(postgres_loader.con, dialect="postgres", customers="p_customers", events="p_events")
    assert _outcome(shop) == _expected()


def test_mysql(mysql_loader: Any) -> None:
    _fill(mysql_loader.con, "%s")
    shop = shopcrm.Shop.from_dbapi(mysql_loader.con, dialect="mysql", customers="p_customers", events="p_events")
    assert _outcome(shop) == _expected()
