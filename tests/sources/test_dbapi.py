"""A shop's own SQLite database through DB-API: ISO-text timestamps, declared types, segments."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

import shopcrm
from shopcrm.schema import ColumnType

NOW = datetime(2026, 3, 10)


def make(declared_signup: str = "TIMESTAMP") -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE TABLE members (customer_id TEXT, age INTEGER, vip BOOLEAN, signed_up_at {declared_signup})")
    con.execute("CREATE TABLE activity (customer_id TEXT, event TEXT, ts TEXT, amount REAL)")
    con.executemany("INSERT INTO members VALUES (?, ?, ?, ?)", [
        ("a", 25, 1, "2026-03-08T10:00:00Z"), ("b", 41, 0, "2026-01-01 00:00:00"), ("c", None, None, None),
    ])
    con.executemany("INSERT INTO activity VALUES (?, ?, ?, ?)", [
        ("a", "order_completed", "2026-03-09T12:00:00", 1000.0),
        ("b", "order_completed", "2026-03-03 00:00:00", 2000.0),  # exactly 7 days before now
        ("b", "order_completed", "2026-03-09T09:00:00+09:00", 500.0),  # 00:00 UTC
        ("c", "order_completed", "2026-03-10T00:00:00.000Z", 1.0),  # at now: not yet
    ])
    return con


def test_iso_text_timestamps_in_every_spelling() -> None:
    shop = shopcrm.Shop.from_dbapi(make(), dialect="sqlite", customers="members", events="activity")
    assert shop.members({"performed": "order_completed", "within": {"last": "7d"}}, now=NOW) == ["a", "b"]
    assert shop.members({"performed": "order_completed", "within": {"last": "1d"}}, now=NOW) == ["a"]  # b's is exactly 1d old
    assert shop.members({"aggregate": "sum", "of": "amount", "performed": "order_completed", "gte": 2500}, now=NOW) == ["b"]
    assert shop.members({"attribute": "signed_up_at", "ago": {"lt": "7d"}}, now=NOW) == ["a"]
    assert shop.members({"attribute": "vip", "eq": True}, now=NOW) == ["a"]
    assert shop.members({"sample": {"percent": 100, "salt": "s"}}, now=NOW) == ["a", "b", "c"]


def test_declared_types_and_overrides() -> None:
    shop = shopcrm.Shop.from_dbapi(make("TEXT"), dialect="sqlite", customers="members", events="activity")
    assert shop.schema.customers.columns["signed_up_at"] is ColumnType.STRING
    assert shop.schema.events.columns["ts"] is ColumnType.TIMESTAMP
    with pytest.raises(shopcrm.RuleError, match="ago works on timestamps"):
        shop.count({"attribute": "signed_up_at", "ago": {"lt": "7d"}}, now=NOW)
    typed = shopcrm.Shop.from_dbapi(make("TEXT"), dialect="sqlite", customers="members", events="activity",
                                    types={"signed_up_at": "timestamp"})
    assert typed.members({"attribute": "signed_up_at", "ago": {"lt": "7d"}}, now=NOW) == ["a"]


def test_missing_table_and_unknown_field_are_clear() -> None:
    with pytest.raises(ValueError, match="no table 'nope' is visible"):
        shopcrm.Shop.from_dbapi(make(), dialect="sqlite", customers="nope", events="activity").count({"everyone": True}, now=NOW)
    shop = shopcrm.Shop.from_dbapi(make(), dialect="sqlite", customers="members", events="activity")
    with pytest.raises(shopcrm.SchemaError, match="no column 'grade'; its columns are age, customer_id, signed_up_at, vip"):
        shop.count({"attribute": "grade", "eq": "VIP"}, now=NOW)


def test_segments_live_in_the_shops_database_and_tables_are_only_read() -> None:
    con = make()
    shop = shopcrm.Shop.from_dbapi(con, dialect="sqlite", customers="members", events="activity")
    assert shop.segments() == []
    shop.save_segment("buyers", {"performed": "order_completed"})
    again = shopcrm.Shop.from_dbapi(con, dialect="sqlite", customers="members", events="activity")
    assert again.count({"in_segment": "buyers"}, now=NOW) == 2
    assert con.execute("SELECT COUNT(*) FROM members").fetchone() == (3,)
    assert con.execute("SELECT name FROM shopcrm_segments").fetchall() == [("buyers",)]
