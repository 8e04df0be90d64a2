"""A demo shop with the four scenario playbooks and hours of new orders and carts, for the tests of watermark ticks
(``tests/test_tick_preload.py``, ``tests/test_tick_recorded.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import shopcrm
from shopcrm.campaigns import MessagingPolicy
from shopcrm.demo import generate, write_parquet

START = datetime(2026, 11, 24, 1)  # 10:00 in Seoul, an hour after the demo shop's last event
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
PLAYBOOKS = ("cart_reminder", "order_completed", "first_purchase_cross_sell", "vip_upgrade")


def playbook_shop(folder: Path, *, seed: int, customers: int = 1_500) -> shopcrm.Shop:
    """A demo shop file in ``folder`` with the four playbooks enabled two days before :data:`START` and a first tick
    at :data:`START` recorded (it reads every scenario whole and leaves the marks)."""
    rows, events = write_parquet(generate(customers, seed=seed, now=START - timedelta(hours=1)), folder)
    shop = shopcrm.Shop.open(folder / "shop.duckdb")
    shop.load_customers(rows)
    shop.load_events(events)
    shop.messaging_policy = POLICY
    for name in PLAYBOOKS:
        shop.enable_playbook(name, now=START - timedelta(days=2))
    shop.tick(now=START)
    return shop


def add_hour(shop: shopcrm.Shop, hour: int, rows: int) -> datetime:
    """About ``rows`` orders and carts (repeat and first buyers, cart reminders) in the hour before ``START + hour``,
    copied from the shop's own; returns the end of that hour."""
    shop.source.con.execute(  # type: ignore[attr-defined]
        "INSERT INTO events SELECT * REPLACE (CAST(? AS TIMESTAMP) + to_seconds(CAST(hash(customer_id, ts) % 3600 AS BIGINT)) "
        f"AS ts) FROM events WHERE event IN ('order_completed', 'cart_added') USING SAMPLE {int(rows)} ROWS",
        [START + timedelta(hours=hour - 1)])
    return START + timedelta(hours=hour)
