"""One shop's life, for a shop whose library tables live in a store of their own (issue 15) and for the embedded
shop it must equal: segments, a one-off broadcast and a triggered scenario, dispatch, a delivery report, the
campaign report; then a second Shop over the same data and store, which sees it all and plans nothing twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import shopcrm
from shopcrm.channels import DeliveryReport, JsonlChannel
from shopcrm.dispatching import Dispatcher

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
CUSTOMERS = [{"customer_id": f"c{i}", "name": f"고객{i}", "phone": f"010-4000-{i:04d}",
              "grade": "VIP" if i < 3 else "basic"} for i in range(5)]
EVENTS = [
    {"customer_id": "c3", "event": "cart_added", "ts": T0 - timedelta(hours=2), "product_id": "P1", "amount": None},
    {"customer_id": "c4", "event": "cart_added", "ts": T0 - timedelta(hours=3), "product_id": "P2", "amount": None},
    {"customer_id": "c4", "event": "order_completed", "ts": T0 - timedelta(hours=2), "product_id": "P2",
     "amount": 12000},
    {"customer_id": "c0", "event": "order_completed", "ts": T0 + timedelta(hours=2), "product_id": "P9",
     "amount": 30000},
]
NOTICE = {"id": "notice", "purpose": "informational", "audience": {"in_segment": "vip"}, "channels": ["sms"],
          "variants": [{"name": "a", "content": {"text": "{{ name }}님, VIP 공지입니다."}}],
          "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}
CART = {"id": "cart", "purpose": "informational", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 장바구니에 {{ event.product_id }} 상품이 있어요"}}],
        "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"],
                     "steps": [{"wait": "1h"}, {"send": "reminder"}], "reentry": "every_time"}}


def _dispatch(shop: shopcrm.Shop, channel: JsonlChannel, at: datetime) -> None:
    asyncio.run(Dispatcher(shop, {"sms": channel}, clock=lambda: at).run())


def _ledger(shop: shopcrm.Shop) -> list[tuple[str, str, str]]:
    return sorted((str(r.customer_id), r.campaign_id, r.state) for r in shop.source.campaign_store().sends())


def live(make: Callable[[], shopcrm.Shop], tmp_path: Path) -> dict[str, Any]:
    """What a shop made by ``make`` (the same data and store on every call) shows along the way."""
    seen: dict[str, Any] = {}
    shop = make()
    shop.save_segment("vip", {"attribute": "grade", "eq": "VIP"}, now=T0 - timedelta(days=1))
    seen["count"] = shop.count({"in_segment": "vip"}, now=T0)
    seen["members"] = [str(c) for c in shop.members({"in_segment": "vip"}, now=T0)]
    shop.save_campaign(NOTICE, now=T0 - timedelta(days=1))
    shop.save_campaign(CART, now=T0 - timedelta(days=1))
    first = shop.tick(now=T0)
    seen["planned"] = sorted((m.campaign_id, str(m.customer_id), m.chain[0].text) for m in first.messages)
    seen["again"] = len(shop.tick(now=T0 + timedelta(minutes=1)).messages)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    _dispatch(shop, sms, T0 + timedelta(minutes=2))
    seen["written"] = len(sms.written())
    store = shop.source.campaign_store()
    row = next(r for r in store.sends() if r.customer_id == "c0")
    report_of_c0 = DeliveryReport(key=row.key, delivered=True, code="4000", provider_id=row.provider_id)
    seen["delivered"] = shop.record_deliveries([report_of_c0],
                                               now=T0 + timedelta(minutes=3))
    seen["ledger"] = _ledger(shop)
    seen["message_events"] = sorted((str(e["customer_id"]), e["event"]) for e in store.message_events())
    report = shop.report(now=T0 + timedelta(hours=3))
    seen["report"] = [dict(row) for row in report.rows]
    shop.record_opt_out("c1", "sms", at=T0 + timedelta(minutes=4))
    # K2 evidence: c1 consents again to SMS (lifting the opt-out before it), c2 withdraws every consent
    shop.record_consent("c1", "sms", granted=True, how="app settings", by="app", text_version="mkt-v2",
                        at=T0 + timedelta(minutes=5), now=T0 + timedelta(minutes=5))
    shop.record_consent("c2", "all", granted=False, how="080 call", by="080-service", at=T0 + timedelta(minutes=6),
                        now=T0 + timedelta(minutes=7))
    shop.close()

    again = make()  # another process, later: the store has kept everything
    seen["later_segments"] = [s.name for s in again.segments()]
    seen["later_campaigns"] = sorted(c.id for c in again.campaigns())
    seen["later_outbox"] = sorted((r.campaign_id, str(r.customer_id)) for r in again.outbox())
    seen["later_ledger"] = _ledger(again)
    seen["later_opt_outs"] = {str(c): sorted(g) for c, g in again.source.campaign_store().opt_outs().items()}
    seen["later_consents"] = [(str(r.customer_id), r.group, r.granted, r.at, r.how, r.text_version, r.by, r.recorded_at)
                              for r in again.consent_log()]
    seen["later_tick"] = len(again.tick(now=T0 + timedelta(minutes=30)).messages)
    later = JsonlChannel(tmp_path / "later.jsonl")
    _dispatch(again, later, T0 + timedelta(minutes=31))
    seen["later_written"] = len(later.written())
    again.close()
    return seen


def check(seen: dict[str, Any]) -> None:
    """What every such shop must show (besides equalling the embedded shop)."""
    assert seen["count"] == 3
    assert seen["members"] == ["c0", "c1", "c2"]
    assert [(c, who) for c, who, _ in seen["planned"]] == [("cart", "c3"), ("notice", "c0"), ("notice", "c1"),
                                                          ("notice", "c2")]
    assert "P1 상품이 있어요" in seen["planned"][0][2]
    assert seen["again"] == 0
    assert seen["written"] == 4
    assert seen["delivered"] == {"delivered": 1}
    assert seen["ledger"] == [("c0", "notice", "delivered"), ("c1", "notice", "sent"), ("c2", "notice", "sent"),
                              ("c3", "cart", "sent")]
    notice = next(r for r in seen["report"] if r["campaign_id"] == "notice")
    assert notice["sent"] == 3
    assert notice["delivered"] == 1
    assert notice["influenced_revenue"] == 30000
    assert seen["later_segments"] == ["vip"]
    assert seen["later_campaigns"] == ["cart", "notice"]
    assert len(seen["later_outbox"]) == 4
    assert seen["later_ledger"] == seen["ledger"]
    assert seen["later_opt_outs"] == {"c2": ["all"]}
    assert seen["later_consents"] == [
        ("c1", "sms", True, T0 + timedelta(minutes=5), "app settings", "mkt-v2", "app", T0 + timedelta(minutes=5)),
        ("c2", "all", False, T0 + timedelta(minutes=6), "080 call", None, "080-service", T0 + timedelta(minutes=7)),
    ]
    assert seen["later_tick"] == 0
    assert seen["later_written"] == 0


def embedded(tmp_path: Path) -> Callable[[], shopcrm.Shop]:
    """The embedded DuckDB shop over the same data: what a shop with a separate store must equal."""
    path = tmp_path / "embedded.duckdb"

    def make() -> shopcrm.Shop:
        fresh = not path.exists()
        shop = shopcrm.Shop.open(path)
        if fresh:
            shop.load_customers(CUSTOMERS)
            shop.load_events(EVENTS)
        return shop

    return make


def sqlite_shop_file(path: Path) -> Path:
    """The shop's customers and events in a SQLite file (its own tables only)."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT, grade TEXT)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, product_id TEXT, "
                       "amount INTEGER)")
    connection.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                           [(c["customer_id"], c["name"], c["phone"], c["grade"]) for c in CUSTOMERS])
    connection.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                           [(e["customer_id"], e["event"], e["ts"].isoformat(sep=" "), e["product_id"], e["amount"])
                            for e in EVENTS])
    connection.commit()
    connection.close()
    return path
