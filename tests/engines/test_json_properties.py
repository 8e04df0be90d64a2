"""JSON ``properties`` fields on the server engines (PostgreSQL jsonb/json, MariaDB JSON)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

import shopcrm

NOW = datetime(2026, 3, 1)
RULE = {"performed": "view", "where": {"properties.device": "ios", "properties.size": {"gte": 250}}}
ROWS = [
    ("a", "view", datetime(2026, 2, 1), json.dumps({"device": "ios", "size": 260})),
    ("b", "view", datetime(2026, 2, 1), json.dumps({"device": "ios", "size": 240})),
    ("c", "view", datetime(2026, 2, 1), json.dumps({"device": "Ios", "size": 300})),
    ("d", "view", datetime(2026, 2, 1), None),
]


def expected() -> set[Any]:
    customers = [{"customer_id": c} for c in "abcd"]
    events = [dict(zip(("customer_id", "event", "ts", "properties"), r, strict=True)) for r in ROWS]
    return shopcrm.evaluate(RULE, customers, events, now=NOW)


@pytest.mark.postgres
def test_postgres_json(postgres_loader: Any) -> None:
    con = postgres_loader.con
    with con.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS jc (customer_id TEXT)")
        cur.execute("CREATE TABLE IF NOT EXISTS je (customer_id TEXT, event TEXT, ts TIMESTAMP, properties JSONB)")
        cur.execute("TRUNCATE jc, je")
        cur.executemany("INSERT INTO jc VALUES (%s)", [(c,) for c in "abcd"])
        cur.executemany("INSERT INTO je VALUES (%s, %s, %s, %s)", ROWS)
    con.commit()
    shop = shopcrm.Shop.from_dbapi(con, dialect="postgres", customers="jc", events="je")
    assert set(shop.members(RULE, now=NOW)) == expected() == {"a"}


@pytest.mark.mysql
def test_mysql_json(mysql_loader: Any) -> None:
    con = mysql_loader.con
    with con.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS jc (customer_id VARCHAR(10))")
        cur.execute("CREATE TABLE IF NOT EXISTS je (customer_id VARCHAR(10), event VARCHAR(10), ts DATETIME(6), properties JSON)")
        cur.execute("DELETE FROM jc")
        cur.execute("DELETE FROM je")
        cur.executemany("INSERT INTO jc VALUES (%s)", [(c,) for c in "abcd"])
        cur.executemany("INSERT INTO je VALUES (%s, %s, %s, %s)", ROWS)
    con.commit()
    shop = shopcrm.Shop.from_dbapi(con, dialect="mysql", customers="jc", events="je")
    assert set(shop.members(RULE, now=NOW)) == expected() == {"a"}
