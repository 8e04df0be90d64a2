"""Preview, tick and the save-time check read what templates need for the whole audience in a fixed number
of set-based queries: the number of queries must not grow with the audience (issue 12, item 6)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy

NOW = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")

CART = {
    "id": "cart", "purpose": "informational", "channels": ["sms"],
    "variants": [{"name": "a", "content": {
        "text": "{{ name }}님, {{ event.product_id }} 상품{% if cart|length > 0 %}({{ cart[0].product_id }}){% endif %}이 기다려요"}}],
    "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"],
                 "steps": [{"wait": "1h"}, {"send": "reminder"}], "reentry": "every_time"},
}
SALE = {
    "id": "sale", "purpose": "informational", "audience": {"performed": "cart_added"}, "channels": ["sms"],
    "variants": [{"name": "a", "content": {"text": "{{ name }}님, 장바구니의 {{ cart[0].product_id }} 할인 중"}}],
    "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
}


def build(size: int) -> Shop:
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([
        {"customer_id": f"c{i:04d}", "name": "김민서", "phone": "010-1111-2222", "sms_consent": True} for i in range(size)
    ])
    events = []
    for i in range(size):
        cid = f"c{i:04d}"
        events += [
            {"customer_id": cid, "event": "cart_added", "ts": NOW - timedelta(hours=30), "product_id": f"OLD{i}"},
            {"customer_id": cid, "event": "cart_added", "ts": NOW - timedelta(hours=3), "product_id": f"P{i}"},
        ]
    shop.load_events(events)
    return shop


@contextmanager
def counted(shop: Shop) -> Iterator[list[str]]:
    """The queries the shop's source runs inside the block (their first 60 characters)."""
    source: Any = shop.source
    seen: list[str] = []
    fetch, fetch_arrow = source.fetch, source.fetch_arrow

    def counting_fetch(query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(query)[:60])
        return fetch(query, *args, **kwargs)

    def counting_arrow(query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(query)[:60])
        return fetch_arrow(query, *args, **kwargs)

    source.fetch, source.fetch_arrow = counting_fetch, counting_arrow
    try:
        yield seen
    finally:
        del source.fetch, source.fetch_arrow


def queries(size: int) -> dict[str, int]:
    shop = build(size)
    out = {}
    with counted(shop) as seen:
        shop.save_campaign(CART, now=NOW - timedelta(days=2))
        shop.save_campaign(SALE, now=NOW - timedelta(hours=2))  # after the carts were filled
    out["save"] = len(seen)
    for name in ("cart", "sale"):
        with counted(shop) as seen:
            preview = shop.preview(name, now=NOW)
        assert preview.planned == size, (name, str(preview))
        out[f"preview {name}"] = len(seen)
    with counted(shop) as seen:
        result = shop.tick(now=NOW)
    assert len(result.messages) == 2 * size, str(result)
    out["tick"] = len(seen)
    return out


def test_queries_do_not_grow_with_the_audience() -> None:
    small, large = queries(50), queries(500)
    assert small == large, f"queries for 50 customers {small}, for 500 {large}: a query per recipient crept in"


def test_the_preview_renders_each_customers_own_cart_and_trigger_event() -> None:
    shop = build(3)
    shop.save_campaign(CART, now=NOW - timedelta(days=2))
    from shopcrm.ticking import preview_state

    state = preview_state(shop, shop.campaign("cart"), NOW)
    assert {cid: (dict(c["event"])["product_id"], dict(c["cart"][0])["product_id"]) for cid, c in state.contexts.items()} == {
        f"c{i:04d}": (f"P{i}", f"P{i}") for i in range(3)
    }


def test_a_scenario_is_previewed_for_the_customers_its_window_still_walks() -> None:
    shop = build(4)
    shop.load_events([{"customer_id": "c0000", "event": "order_completed", "ts": NOW - timedelta(days=40)}])
    shop.load_customers([{"customer_id": "c9999", "name": "이서준", "phone": "010-2222-3333", "sms_consent": True}])
    shop.load_events([{"customer_id": "c9999", "event": "cart_added", "ts": NOW - timedelta(days=20), "product_id": "X"}])
    preview = shop.preview(CART, now=NOW)
    assert preview.audience == 4  # c9999's cart is older than the 1h wait (plus max_delay): no tick walks it
    assert preview.triggered_since is not None
    assert preview.triggered_since < NOW - timedelta(hours=1)
    assert "members whose trigger event is at or after" in str(preview)


def test_tick_rows_add_up_by_status() -> None:
    shop = build(5)
    shop.save_campaign(CART, now=NOW - timedelta(days=2))
    shop.load_events([{"customer_id": "c0000", "event": "order_completed", "ts": NOW - timedelta(minutes=150)}])
    result = shop.tick(now=NOW)
    assert result.rows_by_status == {"planned": 4, "exited": 1}
    assert sum(result.rows_by_status.values()) == result.recorded
    assert "outbox rows recorded: 5 = planned 4, exited 1" in str(result)


def test_a_broadcast_reading_the_cart_gets_each_members_current_cart_in_preview_and_tick() -> None:
    shop = build(3)
    shop.load_events([  # c0001 ordered what was in the cart: an empty cart, so its template fails in both
        {"customer_id": "c0001", "event": "order_completed", "ts": NOW - timedelta(hours=2), "product_id": None},
    ])
    shop.save_campaign(SALE, now=NOW - timedelta(hours=2, minutes=30))
    preview = shop.preview("sale", now=NOW)
    result = shop.tick(now=NOW)
    texts = {m.customer_id: m.chain[0].text for m in result.messages}
    assert sorted(texts) == ["c0000", "c0002"]
    assert "P0 할인" in texts["c0000"]
    assert "P2 할인" in texts["c0002"]
    assert preview.planned == len(result.messages)
    assert preview.suppressed == {"render_failed": 1}
    assert result.by_campaign()["sale"] == {"planned": 2, "render_failed": 1}
