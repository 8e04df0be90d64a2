"""Every playbook on a simulated clock: a small shop's events arrive hour by hour, a tick runs every hour
for nine days, and each playbook sends what it should, to whom, at the expected local time, once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from shopcrm import Shop
from shopcrm.campaigns import PLAYBOOKS, MessagingPolicy, bucket, playbook
from shopcrm.campaigns._policy import local, utc

ZONE = "Asia/Seoul"
D0 = datetime(2026, 11, 23)  # a Monday, local time


def kst(day: int, hour: int) -> datetime:
    """Day ``day`` after D0 at ``hour`` o'clock in Seoul, as naive UTC."""
    return utc(D0 + timedelta(days=day, hours=hour), ZONE)


def person(cid: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_id": cid, "name": "김하늘", "phone": "010-2222-3333", "sms_consent": True, "kakao_consent": True,
        "kakao_friend": True, "night_consent": False, "signed_up_at": kst(-400, 12),
    }
    row.update(changes)
    return row


def event(cid: str, name: str, at: datetime, **properties: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"customer_id": cid, "event": name, "ts": at, "product_id": None, "product_name": None,
                           "order_id": None, "amount": None, "old_price": None, "new_price": None,
                           "coupon_name": None, "expires_at": None}
    row.update(properties)
    return row


FIRST_ELEVEN = list(PLAYBOOKS)[:11]

CUSTOMERS = [
    person("new", signed_up_at=kst(0, 10)),
    person("nobody", signed_up_at=kst(0, 11), sms_consent=False, kakao_consent=False),
    person("carter"), person("buyer"), person("dropper"), person("holder"), person("receiver"),
    person("regular"), person("lapsed"),
]
HISTORY = [  # before the campaigns exist
    event("regular", "order_completed", kst(-60, 12), order_id="R1", amount=50_000),
    event("regular", "order_completed", kst(-31, 12), order_id="R2", amount=40_000),
    event("lapsed", "order_completed", kst(-120, 12), order_id="L1", amount=20_000),
]
LIVE = [  # arriving while the clock runs
    event("new", "signed_up", kst(0, 10), coupon_name="가입 축하 쿠폰"),
    event("nobody", "signed_up", kst(0, 11)),
    event("carter", "cart_added", kst(0, 14), product_id="P1", product_name="울 코트"),
    event("buyer", "cart_added", kst(0, 15), product_id="P2", product_name="머플러"),
    event("buyer", "order_completed", kst(0, 18), order_id="B1", amount=30_000, product_id="P2"),
    event("receiver", "order_delivered", kst(1, 15), order_id="V1"),
    event("regular", "order_completed", kst(2, 12), order_id="R3", amount=60_000),
    event("dropper", "price_dropped", kst(2, 22), product_name="패딩", old_price=100_000, new_price=80_000),
    event("holder", "coupon_expiring", kst(3, 9), coupon_name="겨울 쿠폰",
          expires_at=kst(4, 0) - timedelta(seconds=1)),  # the end of the 26th, Seoul time
]


def expected() -> set[tuple[str, str, str, str, datetime]]:
    """(customer, campaign, step, channel, local send time) of every message the nine days should bring."""
    day = lambda d, h: D0 + timedelta(days=d, hours=h)  # noqa: E731
    messages = {
        ("new", "welcome_coupon", "welcome", "brand_message", day(0, 10)),
        ("new", "signup_dropoff", "main", "brand_message", day(1, 10)),  # signed up a day ago, no order; once
        ("carter", "cart_reminder", "reminder", "brand_message", day(1, 14)),
        # buyer's order ended the cart scenario; the order brings its confirmation and, a week later at 11:00,
        # the first-purchase recommendation
        ("buyer", "order_completed", "confirmation", "alimtalk", day(0, 18)),
        ("buyer", "first_purchase_cross_sell", "recommendation", "brand_message", day(8, 11)),
        ("receiver", "delivered_review", "delivered", "alimtalk", day(1, 15)),
        ("receiver", "delivered_review", "review_request", "alimtalk", day(5, 10)),  # 3 days later, then 10:00
        ("regular", "cooling_off", "main", "brand_message", day(0, 11)),  # last order 31 days ago
        ("regular", "order_completed", "confirmation", "alimtalk", day(2, 12)),
        ("regular", "vip_upgrade", "grade_up", "alimtalk", day(2, 12)),  # the third order makes them loyal
        ("dropper", "price_drop", "price_drop", "brand_message", day(3, 8)),  # 22:00 is quiet: deferred to 08:00
        ("holder", "coupon_expiry", "expiry", "alimtalk", day(3, 9)),
    }
    if bucket("holdout:lapsed_winback", "lapsed") >= PLAYBOOKS["lapsed_winback"].document["holdout_percent"] * 100:
        messages.add(("lapsed", "lapsed_winback", "main", "brand_message", day(1, 11)))  # the first Tuesday
    return messages


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    shop = Shop.open()
    shop.messaging_policy = MessagingPolicy(sender_name="하늘상점", sender_contact="1588-1234", opt_out_number="080-555-0000")
    shop.load_customers(CUSTOMERS)
    shop.load_events(HISTORY)
    for name in FIRST_ELEVEN:  # the later ones: tests/campaigns/test_playbooks_products.py
        shop.enable_playbook(name, now=kst(0, 0) - timedelta(minutes=1))
    pending = sorted(LIVE, key=lambda e: e["ts"])
    messages = []
    suppressions = []
    for hour in range(9 * 24 + 1):
        now = kst(0, hour)
        arrived = [e for e in pending if e["ts"] <= now]
        pending = [e for e in pending if e["ts"] > now]
        if arrived:
            shop.load_events(arrived)
        result = shop.tick(now=now)
        messages += result.messages
        suppressions += result.suppressions
    return {"shop": shop, "messages": messages, "suppressions": suppressions}


def test_each_playbook_sends_what_it_should_when_it_should(run: dict[str, Any]) -> None:
    got = {(m.customer_id, m.campaign_id, m.step, m.channel, local(m.send_at, ZONE)) for m in run["messages"]}
    assert got == expected()


def test_no_message_is_planned_twice_and_the_outbox_holds_each(run: dict[str, Any]) -> None:
    keys = [m.key for m in run["messages"]]
    assert len(keys) == len(set(keys))
    planned = run["shop"].outbox()
    assert sorted(r.key for r in planned) == sorted(keys)


def test_the_copy_is_korean_with_the_right_particles_and_ad_lines(run: dict[str, Any]) -> None:
    texts = {(m.customer_id, m.campaign_id, m.step): m.chain for m in run["messages"]}
    welcome = texts[("new", "welcome_coupon", "welcome")]
    assert welcome[0].text.startswith("김하늘님, 가입을 환영합니다! 가입 축하 쿠폰이 발급되었어요.")
    assert welcome[0].text.endswith("무료수신거부 080-555-0000")  # Brand Message carries the 080 line
    assert welcome[1].kind == "lms"
    assert welcome[1].text.startswith("(광고) 하늘상점 1588-1234\n")
    drop = texts[("dropper", "price_drop", "price_drop")][0].text
    assert "패딩 가격이 100,000원에서 80,000원으로 내려갔어요" in drop
    order = texts[("buyer", "order_completed", "confirmation")][0]
    assert order.template_code == "SHOPCRM_ORDER_COMPLETED"
    assert order.text == "김하늘님, 주문이 완료되었습니다.\n주문번호: B1\n결제금액: 30,000원"
    expiry = texts[("holder", "coupon_expiry", "expiry")][0].text
    assert "보유하신 쿠폰(겨울 쿠폰)이 2026년 11월 26일에 소멸될 예정입니다" in expiry
    cart = texts[("carter", "cart_reminder", "reminder")][0].text
    assert "장바구니에 담아 두신 상품이 기다리고 있어요: 울 코트" in cart


def test_those_left_out_are_told_why(run: dict[str, Any]) -> None:
    reasons = {(s.customer_id, s.campaign_id, s.reason) for s in run["suppressions"]}
    assert ("nobody", "welcome_coupon", "no_consent") in reasons
    assert ("nobody", "signup_dropoff", "no_consent") in reasons
    assert ("buyer", "cart_reminder", "exited") in reasons
    assert ("new", "signup_dropoff", "already_received") in reasons  # still in the segment on day 2: once only


def test_a_playbook_adapts_without_touching_the_original() -> None:
    changed = playbook("cart_reminder", schedule={"steps": [{"wait": "3h"}, {"send": "reminder"}]}, priority=99)
    assert changed.priority == 99
    assert changed.schedule.steps[0].wait == timedelta(hours=3)
    assert playbook("cart_reminder").schedule.steps[0].wait == timedelta(days=1)  # type: ignore[union-attr]
    assert [book.name for book in PLAYBOOKS.values()] == [
        "welcome_coupon", "signup_dropoff", "cart_reminder", "price_drop", "coupon_expiry", "order_completed",
        "delivered_review", "first_purchase_cross_sell", "vip_upgrade", "cooling_off", "lapsed_winback",
        # issue 14
        "pending_payment", "cart_price_drop", "wishlist_low_stock", "grade_changed", "points_earned", "points_expiring",
        "membership_savings", "personal_gift", "last_chance_sale", "review_cross_sell",
        # the consent notices (K8, K9)
        "consent_reconfirmation", "opt_out_result", "consent_result",
    ]
