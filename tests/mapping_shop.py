"""One small shop twice: under its own table and column names (``members``/``activity_log``, ``member_no``,
``event_type``, ``occurred_at``, ``payload``, ``ORDER_PAID``) and under the library's names in the embedded
DuckDB shop.  A mapped shop must answer every question exactly as the reference does."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import shopcrm
from shopcrm.channels import JsonlChannel
from shopcrm.dispatching import Dispatcher
from shopcrm.mapping import CustomersMap, EventsMap, Mapping

NOW = datetime(2026, 3, 10, 12)

#: member_no, member_grade, name, phone, signed_up
MEMBERS = [
    (1, "VIP", "김민서", "010-1000-0001", datetime(2025, 1, 5)),
    (2, "GOLD", "이서준", "010-1000-0002", datetime(2025, 6, 1)),
    (3, "VIP", "박지우", "010-1000-0003", datetime(2026, 3, 9)),
    (4, "BASIC", "최하준", "010-1000-0004", datetime(2024, 12, 24)),
    (5, None, "정예린", None, datetime(2026, 1, 15)),
]
#: the shop's event names; ORDER_PAID stands for the library's order_completed, the others keep theirs
_ORDER = "ORDER_PAID"
#: member_no, event_type, occurred_at, payload (JSON text), amount
EVENTS: list[tuple[int, str, datetime, str | None, float | None]] = []
for _no, _days, _amount in [(1, 3, 42000), (1, 40, 18000), (1, 75, 9900), (1, 120, 31000), (2, 5, 120000), (2, 200, 5000),
                            (3, 1, 15000), (4, 300, 7000), (4, 340, 7000), (2, 1.5, 64000)]:
    EVENTS.append((_no, _ORDER, NOW - timedelta(days=_days), json.dumps({"order_id": f"o{_no}-{_days}", "amount": _amount,
                                                                          "device": "ios" if _no % 2 else "android"}), _amount))
for _no, _days, _category in [(1, 2, "shoes"), (1, 4, "shoes"), (2, 2, "bags"), (3, 0.5, "shoes"), (3, 0.7, "shoes"),
                              (5, 10, "shoes"), (5, 11, "bags"), (5, 12, "shoes")]:
    EVENTS.append((_no, "product_viewed", NOW - timedelta(days=_days), json.dumps({"category": _category}), None))
EVENTS.append((5, "cart_updated", NOW - timedelta(hours=30), json.dumps({"items": 2}), None))
EVENTS.append((3, "cart_updated", NOW - timedelta(hours=3), None, None))

MAPPING = Mapping(
    customers=CustomersMap("members", id="member_no", columns={"grade": "member_grade", "signed_up_at": "signed_up"}),
    events=EventsMap("activity_log", id="member_no", name="event_type", ts="occurred_at", properties="payload"),
    event_names={"order_completed": _ORDER},
)

RULES: list[dict[str, Any]] = [
    {"everyone": True},
    {"performed": "order_completed", "within": {"last": "30d"}},
    {"performed": "order_completed", "times": {"gte": 2}},
    {"aggregate": "sum", "of": "amount", "performed": "order_completed", "gte": 60000},
    {"attribute": "grade", "eq": "VIP"},
    {"attribute": "signed_up_at", "ago": {"lt": "90d"}},
    {"performed": "product_viewed", "where": {"properties.category": "shoes"}, "times": {"gte": 2}},
    {"performed": "order_completed", "where": {"properties.device": "ios"}},
    {"and": [{"performed": "product_viewed", "within": {"last": "7d"}},
             {"not": {"performed": "order_completed", "within": {"last": "7d"}}}]},
    {"lifecycle": "repeat"},
    {"rfm": "champions"},
    {"lifecycle": "any", "moment": "cart_abandoned"},
    {"not": {"performed": "ORDER_PAID"}},  # the shop's own name is the library's name once aliased
]


def reference_shop() -> shopcrm.Shop:
    """The same data under the library's names in the embedded DuckDB shop."""
    shop = shopcrm.Shop.open()
    shop.load_customers([
        {"customer_id": no, "grade": grade, "name": name, "phone": phone, "signed_up_at": signed}
        for no, grade, name, phone, signed in MEMBERS
    ])
    shop.load_events([
        {"customer_id": no, "event": "order_completed" if event == _ORDER else event, "ts": ts,
         "properties": payload, "amount": amount}
        for no, event, ts, payload, amount in EVENTS
    ])
    return shop


def fill(connection: Any, placeholder: str, *, id_type: str, json_type: str, timestamp: str = "TIMESTAMP",
         text: str = "VARCHAR(40)") -> None:
    """The shop's own tables, under its own names (dropped first)."""
    cursor = connection.cursor()
    for table in ("members", "activity_log"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(f"CREATE TABLE members (member_no {id_type}, member_grade {text}, name {text}, phone {text}, "
                   f"signed_up {timestamp})")
    cursor.execute(f"CREATE TABLE activity_log (member_no {id_type}, event_type {text}, occurred_at {timestamp}, "
                   f"payload {json_type}, amount DOUBLE PRECISION)")
    convert = str if "char" in id_type.lower() or "text" in id_type.lower() else int
    cursor.executemany(f"INSERT INTO members VALUES ({', '.join([placeholder] * 5)})",
                       [(convert(no), *rest) for no, *rest in MEMBERS])
    cursor.executemany(f"INSERT INTO activity_log VALUES ({', '.join([placeholder] * 5)})",
                       [(convert(no), *rest) for no, *rest in EVENTS])
    cursor.close()
    connection.commit()


def answers(shop: shopcrm.Shop) -> dict[str, Any]:
    """Everything a shop says about the data, with ids as text (a shop may keep them as text)."""
    lifecycle = sorted(
        (str(r.customer_id), r.stage, r.moments, r.orders, r.frequency, float(r.monetary), r.r_score, r.rfm_segment)
        for r in shop.lifecycle_rows(now=NOW)
    )
    return {
        "counts": shop.count_many(RULES, now=NOW),
        "members": [sorted(str(m) for m in shop.members(rule, now=NOW)) for rule in RULES],
        "lifecycle": lifecycle,
    }


def campaign_run(shop: shopcrm.Shop, tmp_path: Path) -> list[str]:
    """A campaign to recent buyers: previewed, ticked and dispatched to a JSONL file; (phone, text) sent."""
    shop.save_campaign({"id": "thanks", "purpose": "informational", "channels": ["sms"],
                        "audience": {"performed": "order_completed", "within": {"last": "7d"}},
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문 감사합니다."}}],
                        "schedule": {"kind": "one_off", "at": "2026-03-10T12:30:00"}}, now=NOW - timedelta(days=1))
    preview = shop.preview("thanks", now=NOW)
    at = NOW + timedelta(hours=1)
    messages = shop.tick(now=at).messages
    assert len(messages) == preview.planned, (messages, preview)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    asyncio.run(Dispatcher(shop, {"sms": sms}, clock=lambda: at).run())
    sent = [{**m, "customer_id": str(m["customer_id"]), "key": None} for m in sms.written()]  # the key hashes the id's type
    return sorted(json.dumps(m, sort_keys=True, ensure_ascii=False) for m in sent)
