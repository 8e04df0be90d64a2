"""The playbooks issue 14 added, on a simulated clock as the first eleven: a small shop's events arrive hour by hour,
a tick runs every hour for nine days, and each playbook sends what it should, to whom, at the expected local time,
once (payments, price drops, low stock, grade changes, points, the monthly savings report, a drawn gift, a last-chance
sale, and a review request followed by recommendations)."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

import shopcrm.ticking
from shopcrm import Shop
from shopcrm.campaigns import (
    PLAYBOOKS,
    MessagingPolicy,
    draw_winners,
    grade_changed_events,
    parse_campaign,
    playbook,
    winners_rule,
)
from shopcrm.campaigns._policy import local, utc
from shopcrm.dsl import parse_rule
from shopcrm.errors import CampaignError
from shopcrm.tracking import TrackingPolicy

ZONE = "Asia/Seoul"
D0 = datetime(2026, 11, 23)  # a Monday, local time; day 8 is the 1st of December
NEW = list(PLAYBOOKS)[11:21]  # the consent notices after them: tests/campaigns/test_playbooks_consent.py
TRACKING = TrackingPolicy(base_url="https://shop.example.com/r", secret="a-test-secret-of-enough-bytes")


def kst(day: int, hour: int) -> datetime:
    return utc(D0 + timedelta(days=day, hours=hour), ZONE)


def person(cid: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_id": cid, "name": "이서연", "phone": "010-2222-3333", "sms_consent": True, "kakao_consent": True,
        "kakao_friend": True, "night_consent": False, "signed_up_at": kst(-400, 12), "grade": "일반",
        "membership_saved": 0,
    }
    row.update(changes)
    return row


COLUMNS = ("product_id", "name", "order_id", "amount", "bank_account", "old_price", "new_price", "percent",
           "stock", "points", "balance", "expires_at", "old_grade", "new_grade")


def event(cid: str, event_name: str, at: datetime, **properties: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"customer_id": cid, "event": event_name, "ts": at, **dict.fromkeys(COLUMNS)}
    row.update(properties)
    return row


GIFT_POOL = ["gift1", "gift2", "gift3", "gift4", "gift5"]
BEFORE = [person("member", grade="실버"), person("earner"), person("expirer")]
CUSTOMERS = [
    person("payer"), person("prompt"), person("carter"), person("nightowl"), person("wisher"),
    person("member", grade="골드"), person("earner"), person("expirer"), person("saver", membership_saved=12_300),
    person("browser"), person("receiver"), person("returner"),
    *[person(cid, grade="VIP") for cid in GIFT_POOL],
]
LIVE = [
    event("payer", "order_placed", kst(0, 9), order_id="W1", amount=45_000, bank_account="국민 123-45-6789"),
    event("prompt", "order_placed", kst(0, 10), order_id="W2", amount=30_000),
    event("prompt", "payment_completed", kst(0, 12), order_id="W2"),
    event("carter", "cart_item_price_dropped", kst(1, 12), product_id="P7", name="울 머플러",
          old_price=50_000, new_price=40_000, percent=20.0),
    event("nightowl", "cart_item_price_dropped", kst(1, 22), product_id="P7", old_price=50_000, new_price=45_000,
          percent=10.0),
    event("wisher", "wishlist_item_low_stock", kst(2, 15), product_id="P8", name="캐시미어 니트", stock=3),
    *[{**dict.fromkeys(COLUMNS), **e} for e in grade_changed_events(BEFORE, CUSTOMERS[:8], at=kst(3, 9))],
    event("earner", "points_earned", kst(3, 14), points=1_500, balance=12_000),
    event("expirer", "points_expiring", kst(4, 9), points=3_000,
          expires_at=kst(11, 0) - timedelta(seconds=1)),  # the end of 3 December, Seoul time
    event("browser", "product_viewed", kst(3, 20), product_id="P9"),
    event("receiver", "order_delivered", kst(1, 15), order_id="V1", product_id="P5"),
    event("returner", "order_delivered", kst(1, 16), order_id="V2", product_id="P6"),
    event("returner", "order_completed", kst(5, 12), order_id="V3", amount=20_000),
]
WINNERS = draw_winners(GIFT_POOL, 2, seed="2026-11-gift")


class Recommender:
    """Also-bought stand-in: P20, P21, ... without what is excluded."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], str, int, Mapping[Any, Collection[Any]] | None]] = []

    def __call__(self, shop: Any, customer_ids: list[Any], *, strategy: str, k: int, now: datetime,
                 exclude: Mapping[Any, Collection[Any]] | None = None) -> dict[Any, list[dict[str, Any]]]:
        self.calls.append((sorted(customer_ids), strategy, k, exclude))
        out = {}
        for cid in customer_ids:
            skip = {f"P{n}" for n in range(1, 20)} & set((exclude or {}).get(cid, ()))
            out[cid] = [{"product_id": f"P{n}", "name": f"추천 상품 {n}", "price": 1_000 * n, "category": "living",
                         "image_url": f"https://shop.example.com/i/{n}.jpg", "product_url": f"https://shop.example.com/p/{n}",
                         "strategy": strategy} for n in range(20, 30) if f"P{n}" not in skip][:k]
        return out


def expected() -> set[tuple[str, str, str, str, datetime]]:
    day = lambda d, h: D0 + timedelta(days=d, hours=h)  # noqa: E731
    return {
        ("payer", "pending_payment", "deposit_reminder", "alimtalk", day(0, 21)),  # 12 hours on; informational: at night
        ("carter", "cart_price_drop", "price_drop", "brand_message", day(1, 12)),
        ("nightowl", "cart_price_drop", "price_drop", "brand_message", day(2, 8)),  # 22:00 is quiet: 08:00
        ("wisher", "wishlist_low_stock", "low_stock", "brand_message", day(2, 15)),
        ("member", "grade_changed", "notice", "alimtalk", day(3, 9)),
        ("earner", "points_earned", "earned", "alimtalk", day(3, 14)),
        ("expirer", "points_expiring", "expiry", "alimtalk", day(4, 9)),
        ("saver", "membership_savings", "main", "brand_message", day(8, 10)),  # the 1st of the month
        *{(w, "personal_gift", "main", "brand_message", day(2, 10)) for w in WINNERS},
        ("browser", "last_chance_sale", "main", "brand_message", day(4, 18)),
        ("receiver", "review_cross_sell", "review", "brand_message", day(5, 10)),  # 3 days on, then 10:00
        ("receiver", "review_cross_sell", "cross_sell", "brand_message", day(7, 11)),  # 2 more days, then 11:00
        ("returner", "review_cross_sell", "review", "brand_message", day(5, 10)),  # its order ends the rest
    }


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    recommender = Recommender()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shopcrm.ticking, "_for_customers", recommender)
        shop = Shop.open()
        shop.messaging_policy = MessagingPolicy(sender_name="하늘상점", sender_contact="1588-1234",
                                                opt_out_number="080-555-0000", tracking=TRACKING)
        shop.load_customers(CUSTOMERS)
        saved = kst(0, 0) - timedelta(minutes=1)
        for name in NEW:
            if name == "personal_gift":
                shop.enable_playbook(name, now=saved, audience=winners_rule(WINNERS),
                                     schedule={"at": "2026-11-25T10:00:00"})
            elif name == "last_chance_sale":
                shop.enable_playbook(name, now=saved, schedule={"at": "2026-11-27T18:00:00"})
            else:
                shop.enable_playbook(name, now=saved)
        pending = sorted(LIVE, key=lambda e: e["ts"])
        messages, suppressions = [], []
        for hour in range(9 * 24 + 1):
            now = kst(0, hour)
            arrived = [e for e in pending if e["ts"] <= now]
            pending = [e for e in pending if e["ts"] > now]
            if arrived:
                shop.load_events(arrived)
            result = shop.tick(now=now)
            messages += result.messages
            suppressions += result.suppressions
        yield {"shop": shop, "messages": messages, "suppressions": suppressions, "recommender": recommender}


def test_each_new_playbook_sends_what_it_should_when_it_should(run: dict[str, Any]) -> None:
    got = {(m.customer_id, m.campaign_id, m.step, m.channel, local(m.send_at, ZONE)) for m in run["messages"]}
    assert got == expected()
    keys = [m.key for m in run["messages"]]
    assert len(keys) == len(set(keys))


def test_the_copy_is_korean_and_follows_the_purpose(run: dict[str, Any]) -> None:
    texts = {(m.customer_id, m.campaign_id, m.step): m.chain for m in run["messages"]}
    deposit = texts[("payer", "pending_payment", "deposit_reminder")][0]
    assert deposit.template_code == "SHOPCRM_DEPOSIT_REMINDER"
    assert deposit.text == ("이서연님, 주문하신 상품의 입금이 확인되지 않았습니다.\n주문번호: W1\n입금액: 45,000원\n"
                            "입금계좌: 국민 123-45-6789\n입금기한: 주문 후 3일")
    assert deposit.text.count("(광고)") == 0
    drop = texts[("carter", "cart_price_drop", "price_drop")]
    assert drop[0].text.startswith("이서연님, 장바구니에 담아 두신 울 머플러 가격이 20% 내려갔어요. 50,000원 → 40,000원")
    assert drop[0].text.endswith("무료수신거부 080-555-0000")
    assert drop[1].text.startswith("(광고) 하늘상점 1588-1234\n")  # the SMS fallback carries the ad lines
    night = texts[("nightowl", "cart_price_drop", "price_drop")][0].text
    assert "담아 두신 상품 가격이 10% 내려갔어요" in night  # no product name: a neutral word
    assert "찜하신 캐시미어 니트, 이제 3개 남았어요" in texts[("wisher", "wishlist_low_stock", "low_stock")][0].text
    grade = texts[("member", "grade_changed", "notice")][0]
    assert grade.text == "이서연님의 회원 등급이 변경되었습니다.\n이전 등급: 실버\n새 등급: 골드"
    earned = texts[("earner", "points_earned", "earned")][0]
    assert "적립 포인트: 1,500포인트\n보유 포인트: 12,000포인트" in earned.text
    assert "보유하신 포인트 중 3,000포인트가 2026년 12월 3일에 소멸될 예정입니다" in texts[("expirer", "points_expiring", "expiry")][0].text
    assert "지난달 멤버십으로 12,300원을 아꼈어요" in texts[("saver", "membership_savings", "main")][0].text
    assert "세일이 오늘 자정에 끝나요" in texts[("browser", "last_chance_sale", "main")][0].text


def test_review_then_cross_sell_recommends_without_the_delivered_product(run: dict[str, Any]) -> None:
    (cross,) = [m for m in run["messages"] if m.step == "cross_sell"]
    listed = cross.chain[0]
    assert (listed.layout, listed.header) == ("list", "함께 사면 좋은 상품")
    assert [title for title, *_ in listed.items] == ["추천 상품 20", "추천 상품 21", "추천 상품 22", "추천 상품 23"]
    assert all(link.startswith("https://shop.example.com/r/") for *_, link, _ in listed.items)  # tracked
    sms = cross.chain[1]
    assert sms.kind == "lms"
    assert "추천 상품 20 20,000원 https://shop.example.com/r/" in sms.text
    # one batch per tick that had due scenario customers; the trigger's product left out for each
    calls = run["recommender"].calls
    assert calls
    assert all(strategy == "also_bought" and k == 4 for _, strategy, k, _ in calls)
    assert any(exclude and exclude.get("receiver") == {"P5"} for *_, exclude in calls)


def test_those_left_out_are_told_why(run: dict[str, Any]) -> None:
    reasons = {(s.customer_id, s.campaign_id, s.reason) for s in run["suppressions"]}
    assert ("prompt", "pending_payment", "exited") in reasons  # paid within the 12 hours
    assert ("returner", "review_cross_sell", "exited") in reasons  # ordered again before the recommendations
    sent_to = {m.customer_id for m in run["messages"] if m.campaign_id == "personal_gift"}
    assert sent_to == set(WINNERS)
    assert not {m.customer_id for m in run["messages"] if m.campaign_id == "membership_savings"} - {"saver"}


def test_a_draw_is_reproducible_and_independent_of_order() -> None:
    members = [f"C{i}" for i in range(1000)]
    first = draw_winners(members, 10, seed="2026-12-gift")
    shuffled = members[:]
    random.Random(4).shuffle(shuffled)
    assert draw_winners(shuffled + members[:50], 10, seed="2026-12-gift") == first  # duplicates count once
    assert len(set(first)) == 10
    assert draw_winners(members, 10, seed="2027-01-gift") != first
    assert draw_winners(members, 5, seed="2026-12-gift") == first[:5]  # fewer winners: a prefix of the same ranking
    assert set(draw_winners(["a", "b"], 5, seed="s")) == {"a", "b"}  # fewer members than winners: all win
    with pytest.raises(ValueError, match="a draw needs a seed"):
        draw_winners(members, 1, seed="")
    assert winners_rule([]) == {"not": {"everyone": True}}


def test_grade_changes_come_from_two_snapshots() -> None:
    at = datetime(2026, 12, 1)
    events = grade_changed_events({"a": "실버", "b": "골드", "gone": "VIP"}, [
        {"customer_id": "a", "grade": "골드"}, {"customer_id": "b", "grade": "골드"}, {"customer_id": "new", "grade": "일반"}],
        at=at)
    assert events == [{"customer_id": "a", "event": "grade_changed", "ts": at, "old_grade": "실버", "new_grade": "골드"}]
    with pytest.raises(ValueError, match="has no 'tier' column"):
        grade_changed_events([], [{"customer_id": "a", "grade": "x"}], at=at, column="tier")


def test_monthly_schedules_take_days_one_to_28() -> None:
    assert playbook("membership_savings").schedule.month_days == (1,)  # type: ignore[union-attr]
    with pytest.raises(CampaignError, match="month_days are days 1 to 28"):
        parse_campaign({**PLAYBOOKS["membership_savings"].document,
                        "schedule": {"kind": "recurring", "at": "10:00", "month_days": [31]}})


def test_inert_until_the_shop_sets_them() -> None:
    gift, sale = playbook("personal_gift"), playbook("last_chance_sale")
    assert gift.audience == parse_rule({"not": {"everyone": True}})  # nobody
    assert gift.schedule.at.year == 2099  # type: ignore[union-attr]
    assert sale.schedule.at.year == 2099  # type: ignore[union-attr]
