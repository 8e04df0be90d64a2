"""Segments on a shop's own SQLite database, with ISO-8601 text timestamps.

The same code works with psycopg (dialect="postgres") or PyMySQL (dialect="mysql").
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

import shopcrm
from shopcrm.dsl import did

con = sqlite3.connect(":memory:")
con.executescript(
    """
    CREATE TABLE members (customer_id TEXT PRIMARY KEY, name TEXT, grade TEXT, joined_at TIMESTAMP);
    CREATE TABLE activity (customer_id TEXT, event TEXT, ts TIMESTAMP, product_id TEXT, amount INTEGER);
    INSERT INTO members VALUES
      ('m1', '김하늘', 'VIP', '2025-11-02T10:00:00Z'),
      ('m2', '이바다', '일반', '2026-03-07 09:30:00'),
      ('m3', '박산',   '일반', '2026-03-08T15:00:00+09:00');
    INSERT INTO activity VALUES
      ('m1', 'order_completed', '2026-03-01T11:00:00Z', 'P1', 129000),
      ('m1', 'cart_added',      '2026-03-06T20:00:00Z', 'P7', NULL),
      ('m2', 'cart_added',      '2026-03-08 08:00:00',  'P2', NULL),
      ('m2', 'order_completed', '2026-03-08 09:00:00',  'P2', 45000),
      ('m3', 'cart_added',      '2026-03-07T12:00:00Z', 'P9', NULL);
    """
)
shop = shopcrm.Shop.from_dbapi(con, dialect="sqlite", customers="members", events="activity")
now = datetime(2026, 3, 10)

abandoned = did("cart_added").within(ago={"gte": "1d", "lt": "7d"}).not_followed_by("order_completed")
new_without_order = {"and": [{"attribute": "joined_at", "ago": {"gte": "1d", "lt": "7d"}},
                             {"performed": "order_completed", "times": {"eq": 0}}]}
print("abandoned carts:", shop.members(abandoned, now=now))
print("signed up 1-7 days ago, no order:", shop.members(new_without_order, now=now))
shop.save_segment("abandoned_cart", abandoned)
print("saved segments:", [s.name for s in shop.segments()])
