"""The tick's ledger read (issue 15): ``ledger_since`` reads what frequency caps count of the planned
messages without their rendered chains, and must give exactly what ``planned_since`` (and ``planned_since_of``)
give, field for field, on every store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import shopcrm
from shopcrm.campaigns import LedgerEntry
from shopcrm.sources._campaign_store import CampaignStore, MemoryCampaignStore, OutboxRow

T0 = datetime(2026, 11, 24, 13)
IDS = st.one_of(st.sampled_from(["C1", "C2", 'a"b', "a\\b", "김민서", "c\tt"]), st.integers(-5, 5))


@st.composite
def outboxes(draw: st.DrawFn) -> list[OutboxRow]:
    rows = []
    for n in range(draw(st.integers(0, 12))):
        status = draw(st.sampled_from(["planned", "planned", "holdout", "capped", "entered"]))
        due = T0 + timedelta(hours=draw(st.integers(-30, 30)))
        send = due + timedelta(hours=draw(st.integers(0, 10))) if status == "planned" else None
        rows.append(OutboxRow(
            key=f"k{n}", customer_id=draw(IDS), campaign_id=draw(st.sampled_from(["sale", "cart"])), step="main",
            occurrence="once", variant="a", purpose=draw(st.sampled_from(["advertising", "informational"])),
            channel=draw(st.sampled_from(["sms", "alimtalk", ""])), kind="sms", status=status, due_at=due,
            send_at=send, cost=8.4, message='{"chain": []}', planned_at=T0))
    return rows


def _duckdb() -> CampaignStore:
    return shopcrm.Shop.open(":memory:").source.campaign_store()


def _sqlite() -> CampaignStore:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id TEXT, name TEXT)")
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP)")
    return shopcrm.Shop.from_dbapi(con, dialect="sqlite").source.campaign_store()


STORES: dict[str, Callable[[], CampaignStore]] = {"duckdb": _duckdb, "sqlite": _sqlite, "memory": MemoryCampaignStore}


def _key(send: LedgerEntry) -> Any:
    return send.key


def _as_sends(rows: list[OutboxRow]) -> list[LedgerEntry]:
    return sorted((LedgerEntry(r.key, r.customer_id, r.campaign_id, r.purpose, r.channel, r.send_at or r.due_at) for r in rows),
                  key=_key)


@settings(max_examples=25, deadline=None)
@given(rows=outboxes(), hours=st.integers(-30, 40), some=st.lists(IDS, max_size=4))
def test_the_ledger_read_equals_the_planned_rows_it_stands_for(rows: list[OutboxRow], hours: int, some: list[Any]) -> None:
    since = T0 + timedelta(hours=hours)
    expected = _as_sends([r for r in rows if r.status == "planned" and r.send_at is not None and r.send_at >= since])
    # equal ids of different types (1 and True) are not drawn; an id matches by its JSON text, as the stores do
    wanted = [r for r in expected if any(type(r.customer_id) is type(c) and r.customer_id == c for c in some)]
    for name, make in STORES.items():
        store = make()
        store.record(rows, [], T0)
        assert _as_sends(store.planned_since(since)) == expected, name
        assert sorted(store.ledger_since(since), key=_key) == expected, name
        assert sorted(store.ledger_since(since, some), key=_key) == wanted, name
        assert sorted(store.ledger_since(since, some), key=_key) == _as_sends(store.planned_since_of(since, some)), name
        for send in store.ledger_since(since):
            assert type(send.send_at) is datetime, name  # an instant, not its stored text
