"""Playbooks: the usual situations of a Korean shop as ready campaigns, Korean copy by default.

``playbook(name, **changes)`` returns a :class:`Campaign` you can save as is or adapt:
``changes`` replace top-level fields (``channels``, ``holdout_percent``, ``priority`` ...),
``variants`` replaces the copy, and ``schedule`` may be a dict merged into the playbook's schedule
(``{"steps": [...]}``).  Every playbook lists the events or customer fields it needs.

AlimTalk bodies must match a template the shop has had approved by Kakao; the codes here
(``SHOPCRM_*``) are placeholders to replace with the shop's own.

Two playbooks are broadcasts the shop schedules itself: ``personal_gift`` (its audience is the
winners of :func:`draw_winners`) and ``last_chance_sale`` (``schedule.at`` is when to send); both
are inert until given those (nobody, and a date in 2099).  ``grade_changed`` triggers on the
``grade_changed`` events :func:`grade_changed_events` derives from two snapshots of the customers.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from shopcrm.campaigns._models import Campaign, parse_campaign

__all__ = ["PLAYBOOKS", "Playbook", "draw_winners", "grade_changed_events", "playbook", "winners_rule"]

_SHOP_LINK = {"name": "쇼핑 계속하기", "url": "{{ shop_url | default('https://shop.example.com') }}"}


@attrs.frozen(kw_only=True)
class Playbook:
    """A named situation: what it is for, what data it needs, and its campaign document."""

    name: str
    title: str
    situation: str
    needs: tuple[str, ...]
    document: dict[str, Any]

    def campaign(self, **changes: Any) -> Campaign:
        document = copy.deepcopy(self.document)
        schedule = changes.pop("schedule", None)
        if isinstance(schedule, dict):
            document["schedule"] = {**document["schedule"], **schedule}
        elif schedule is not None:
            document["schedule"] = schedule
        document.update(changes)
        return parse_campaign(document)


def _variant(text: str, **content: Any) -> list[dict[str, Any]]:
    return [{"name": "기본", "content": {"text": text, **content}}]


_BOOKS = [
    Playbook(
        name="welcome_coupon",
        title="가입 환영 + 가입 쿠폰",
        situation="A new member gets a welcome and the sign-up coupon right after signing up.",
        needs=("event signed_up (optional property coupon_name)", "customer name"),
        document={
            "id": "welcome_coupon", "name": "가입 환영 쿠폰", "purpose": "advertising", "priority": 50,
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 가입을 환영합니다! {{ (event.coupon_name | default('신규 가입 10% 할인 쿠폰'))|이가 }} "
                "발급되었어요. 첫 주문에 바로 사용해 보세요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {"kind": "triggered", "on": "signed_up", "steps": [{"send": "welcome"}], "reentry": "once"},
        },
    ),
    Playbook(
        name="signup_dropoff",
        title="가입 후 첫 구매 유도",
        situation="Members who signed up 1 to 7 days ago and have not ordered get one first-order nudge.",
        needs=("customer signed_up_at", "event order_completed"),
        document={
            "id": "signup_dropoff", "name": "첫 구매 유도", "purpose": "advertising", "priority": 40,
            "audience": {"lifecycle": "never_purchased", "moment": "signup_dropoff"},
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 아직 첫 주문 전이시네요. 첫 구매 고객께는 무료배송 혜택을 드려요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {"kind": "recurring", "at": "10:00", "reentry": "once"},
        },
    ),
    Playbook(
        name="cart_reminder",
        title="장바구니 리마인드",
        situation="A day after something is put in the cart without an order, one reminder (an order ends it).",
        needs=("event cart_added (product_id, optional product_name)", "event order_completed"),
        document={
            "id": "cart_reminder", "name": "장바구니 리마인드", "purpose": "advertising", "priority": 60,
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 장바구니에 담아 두신 상품이 기다리고 있어요: {{ event.product_name | default(event.product_id) }}"
                "{% if cart|length > 1 %} 외 {{ cart|length - 1 }}개{% endif %}",
                buttons=[{"name": "장바구니 보기", "url": "{{ cart_url | default('https://shop.example.com/cart') }}"}],
            ),
            "schedule": {
                "kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"], "reentry": "3d",
                "steps": [{"wait": "1d"}, {"send": "reminder"}],
            },
        },
    ),
    Playbook(
        name="price_drop",
        title="관심 상품 가격 인하",
        situation="A product in the customer's wish list or cart got cheaper (the shop emits price_dropped per customer).",
        needs=("event price_dropped (product_name, old_price, new_price)",),
        document={
            "id": "price_drop", "name": "가격 인하 알림", "purpose": "advertising", "priority": 55,
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님이 찜한 {{ event.product_name }} 가격이 {{ event.old_price|krw }}에서 "
                "{{ event.new_price|krw }}으로 내려갔어요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {"kind": "triggered", "on": "price_dropped", "reentry": "1d", "steps": [{"send": "price_drop"}]},
        },
    ),
    Playbook(
        name="coupon_expiry",
        title="쿠폰 소멸 예정 안내",
        situation="A coupon the customer holds expires soon (the shop emits coupon_expiring, e.g. a day before). "
                  "An expiry notice of an owned coupon is informational; it must not offer anything new.",
        needs=("event coupon_expiring (coupon_name, expires_at)",),
        document={
            "id": "coupon_expiry", "name": "쿠폰 소멸 안내", "purpose": "informational", "priority": 30,
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "{{ name }}님, 보유하신 {{ event.coupon_name|이가 }} {{ event.expires_at|date }}에 소멸됩니다.",
                alimtalk={
                    "template_code": "SHOPCRM_COUPON_EXPIRY",
                    "body": "#{고객명}님, 보유하신 쿠폰(#{쿠폰명})이 #{소멸일}에 소멸될 예정입니다.",
                    "variables": {"고객명": "{{ name }}", "쿠폰명": "{{ event.coupon_name }}", "소멸일": "{{ event.expires_at|date }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "coupon_expiring", "reentry": "every_time", "steps": [{"send": "expiry"}]},
        },
    ),
    Playbook(
        name="order_completed",
        title="주문 완료 안내",
        situation="The order confirmation, at once (informational: no quiet hours, no caps).",
        needs=("event order_completed (order_id, amount)",),
        document={
            "id": "order_completed", "name": "주문 완료", "purpose": "informational", "priority": 100,
            "channels": ["alimtalk", "sms"], "max_delay": "6h",
            "variants": _variant(
                "{{ name }}님, 주문이 완료되었습니다. 주문번호 {{ event.order_id }}, 결제금액 {{ event.amount|krw }}.",
                alimtalk={
                    "template_code": "SHOPCRM_ORDER_COMPLETED",
                    "body": "#{고객명}님, 주문이 완료되었습니다.\n주문번호: #{주문번호}\n결제금액: #{결제금액}",
                    "variables": {"고객명": "{{ name }}", "주문번호": "{{ event.order_id }}", "결제금액": "{{ event.amount|krw }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "order_completed", "reentry": "every_time", "steps": [{"send": "confirmation"}]},
        },
    ),
    Playbook(
        name="delivered_review",
        title="배송 완료 + 리뷰 요청",
        situation="The delivery notice at once, then a review request three days later at 10:00 "
                  "(informational while it offers no reward; with points it is advertising).",
        needs=("event order_delivered (order_id, optional product_name)",),
        document={
            "id": "delivered_review", "name": "배송 완료와 리뷰 요청", "purpose": "informational", "priority": 90,
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "{{ name }}님, 주문하신 상품이 배송 완료되었습니다. (주문번호 {{ event.order_id }})",
                alimtalk={
                    "template_code": "SHOPCRM_DELIVERED",
                    "body": "#{고객명}님, 주문하신 상품이 배송 완료되었습니다.\n주문번호: #{주문번호}",
                    "variables": {"고객명": "{{ name }}", "주문번호": "{{ event.order_id }}"},
                },
            ),
            "schedule": {
                "kind": "triggered", "on": "order_delivered", "reentry": "every_time",
                "steps": [
                    {"send": "delivered"},
                    {"wait": "3d"},
                    {"wait_until": "10:00"},
                    {"send": "review_request", "variants": _variant(
                        "{{ name }}님, 받아 보신 상품은 어떠셨나요? 소중한 후기를 남겨 주세요.",
                        alimtalk={
                            "template_code": "SHOPCRM_REVIEW_REQUEST",
                            "body": "#{고객명}님, 받아 보신 상품은 어떠셨나요?\n주문번호 #{주문번호}의 후기를 남겨 주세요.",
                            "variables": {"고객명": "{{ name }}", "주문번호": "{{ event.order_id }}"},
                        },
                        buttons=[{"name": "후기 쓰기", "url": "{{ review_url | default('https://shop.example.com/reviews') }}"}],
                    )},
                ],
            },
        },
    ),
    Playbook(
        name="first_purchase_cross_sell",
        title="첫 구매 후 추천",
        situation="A week after a first order, at 11:00, a recommendation; a second order before then ends it.",
        needs=("event order_completed (optional category)",),
        document={
            "id": "first_purchase_cross_sell", "name": "첫 구매 후 추천", "purpose": "advertising", "priority": 30,
            "audience": {"lifecycle": "first_purchase"},
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 첫 주문 고마워요! {{ (event.category | default('지난번 상품'))|과와 }} 함께 많이 찾는 상품을 모아 봤어요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {
                "kind": "triggered", "on": "order_completed", "exit_on": ["order_completed"], "reentry": "once",
                "steps": [{"wait": "7d"}, {"wait_until": "11:00"}, {"send": "recommendation"}],
            },
        },
    ),
    Playbook(
        name="vip_upgrade",
        title="단골 등급 상향 안내",
        situation="The order that makes a customer loyal (3rd order by default) brings a grade-up notice, once.",
        needs=("event order_completed",),
        document={
            "id": "vip_upgrade", "name": "등급 상향 안내", "purpose": "informational", "priority": 70,
            "audience": {"lifecycle": "loyal"},
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "{{ name }}님, 단골 고객 등급이 되셨어요. 늘 찾아 주셔서 감사합니다.",
                alimtalk={
                    "template_code": "SHOPCRM_GRADE_UP",
                    "body": "#{고객명}님, 회원 등급이 #{등급}(으)로 변경되었습니다.",
                    "variables": {"고객명": "{{ name }}", "등급": "{{ loyal_grade_name | default('단골') }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "order_completed", "reentry": "once", "steps": [{"send": "grade_up"}]},
        },
    ),
    Playbook(
        name="cooling_off",
        title="구매 뜸해진 고객 리텐션",
        situation="Purchasers last seen 30 to 60 days ago, once per 60 days, daily at 11:00.",
        needs=("events (last_seen)", "event order_completed"),
        document={
            "id": "cooling_off", "name": "구매 주기 리마인드", "purpose": "advertising", "priority": 20,
            "audience": {"lifecycle": "any", "moment": "cooling_off"},
            "channels": ["brand_message", "sms"],
            "variants": _variant("{{ name }}님, 요즘 뜸하셨네요. 새로 들어온 상품을 구경해 보세요.", buttons=[_SHOP_LINK]),
            "schedule": {"kind": "recurring", "at": "11:00", "reentry": "60d"},
        },
    ),
    Playbook(
        name="lapsed_winback",
        title="휴면 고객 윈백",
        situation="Purchasers not seen for 90 days or more, once per 90 days, Tuesdays at 11:00, with a 10% holdout "
                  "to measure the lift.",
        needs=("events (last_seen)", "event order_completed"),
        document={
            "id": "lapsed_winback", "name": "휴면 고객 윈백", "purpose": "advertising", "priority": 10,
            "audience": {"and": [{"lifecycle": "any", "moment": "lapsed"}, {"not": {"lifecycle": "never_purchased"}}]},
            "channels": ["brand_message", "sms"], "holdout_percent": 10,
            "variants": _variant("{{ name }}님, 오랜만이에요! 다시 찾아 주시면 15% 할인 쿠폰을 드려요.", buttons=[_SHOP_LINK]),
            "schedule": {"kind": "recurring", "at": "11:00", "weekdays": [1], "reentry": "90d"},
        },
    ),
]

#: a date no shop reaches: a broadcast playbook stays inert until ``schedule.at`` is set
_SET_ME = "2099-12-31T18:00:00"
#: nobody: the personal gift's audience until :func:`winners_rule` gives it the winners
_NOBODY = {"not": {"everyone": True}}

# the remaining seed situations (issue 14)
_BOOKS += [
    Playbook(
        name="pending_payment",
        title="무통장 입금 안내",
        situation="An order placed by bank transfer and not paid 12 hours later gets one deposit reminder (informational: "
                  "it is about the customer's own order); the payment, or the order's completion, ends it.",
        needs=("event order_placed (order_id, amount, optional bank_account, deposit_deadline)",
               "event payment_completed"),
        document={
            "id": "pending_payment", "name": "입금 대기 안내", "purpose": "informational", "priority": 95,
            "channels": ["alimtalk", "sms"], "max_delay": "6h",
            "variants": _variant(
                "{{ name }}님, 주문번호 {{ event.order_id }}의 입금이 아직 확인되지 않았어요. "
                "{{ event.amount|krw }}을 {{ event.bank_account | default('안내된 계좌', true) }}로 입금해 주세요.",
                alimtalk={
                    "template_code": "SHOPCRM_DEPOSIT_REMINDER",
                    "body": "#{고객명}님, 주문하신 상품의 입금이 확인되지 않았습니다.\n주문번호: #{주문번호}\n"
                            "입금액: #{입금액}\n입금계좌: #{입금계좌}\n입금기한: #{입금기한}",
                    "variables": {"고객명": "{{ name }}", "주문번호": "{{ event.order_id }}", "입금액": "{{ event.amount|krw }}",
                                  "입금계좌": "{{ event.bank_account | default('주문 내역에서 확인', true) }}",
                                  "입금기한": "{{ event.deposit_deadline|date('time') if event.deposit_deadline is defined and event.deposit_deadline else '주문 후 3일' }}"},
                },
            ),
            "schedule": {
                "kind": "triggered", "on": "order_placed", "exit_on": ["payment_completed", "order_completed"],
                "reentry": "every_time", "steps": [{"wait": "12h"}, {"send": "deposit_reminder"}],
            },
        },
    ),
    Playbook(
        name="cart_price_drop",
        title="장바구니 상품 가격 인하",
        situation="An item still in the cart got cheaper since it was added (the derived event cart_item_price_dropped), "
                  "at most once a day; an order ends it.",
        needs=("the catalog and its history (shop.load_products): the derived event cart_item_price_dropped "
               "(product_id, old_price, new_price, percent, name)",),
        document={
            "id": "cart_price_drop", "name": "장바구니 가격 인하", "purpose": "advertising", "priority": 58,
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 장바구니에 담아 두신 {{ event.name | default('상품', true) }} 가격이 {{ event.percent|float|round|int }}% "
                "내려갔어요. {{ event.old_price|krw }} → {{ event.new_price|krw }}",
                buttons=[{"name": "장바구니 보기", "url": "{{ cart_url | default('https://shop.example.com/cart') }}"}],
            ),
            "schedule": {"kind": "triggered", "on": "cart_item_price_dropped", "exit_on": ["order_completed"],
                         "reentry": "1d", "steps": [{"send": "price_drop"}]},
        },
    ),
    Playbook(
        name="wishlist_low_stock",
        title="찜한 상품 품절 임박",
        situation="An item on the wishlist is nearly sold out (the derived event wishlist_item_low_stock), once per 3 days.",
        needs=("the catalog and its history (shop.load_products): the derived event wishlist_item_low_stock "
               "(product_id, stock, name)",),
        document={
            "id": "wishlist_low_stock", "name": "찜 상품 품절 임박", "purpose": "advertising", "priority": 57,
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님이 찜하신 {{ event.name | default('상품', true) }}, 이제 {{ event.stock }}개 남았어요. "
                "품절되기 전에 만나 보세요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {"kind": "triggered", "on": "wishlist_item_low_stock", "reentry": "3d",
                         "steps": [{"send": "low_stock"}]},
        },
    ),
    Playbook(
        name="grade_changed",
        title="회원 등급 변경 안내",
        situation="The membership grade changed (up or down) between two loads of the customers: a notice of the "
                  "account's new grade (informational; no offer in it).",
        needs=("event grade_changed (old_grade, new_grade): shop.track_attribute('grade') writes them at each tick; "
               "or see grade_changed_events",),
        document={
            "id": "grade_changed", "name": "회원 등급 변경", "purpose": "informational", "priority": 75,
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "{{ name }}님의 회원 등급이 {{ event.old_grade }}에서 {{ event.new_grade|으로로 }} 변경되었습니다.",
                alimtalk={
                    "template_code": "SHOPCRM_GRADE_CHANGED",
                    "body": "#{고객명}님의 회원 등급이 변경되었습니다.\n이전 등급: #{이전등급}\n새 등급: #{새등급}",
                    "variables": {"고객명": "{{ name }}", "이전등급": "{{ event.old_grade }}", "새등급": "{{ event.new_grade }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "grade_changed", "reentry": "every_time", "steps": [{"send": "notice"}]},
        },
    ),
    Playbook(
        name="points_earned",
        title="포인트 적립 안내",
        situation="Points credited for an order or a review: the amount and the new balance (informational).",
        needs=("event points_earned (points, optional balance, reason)",),
        document={
            "id": "points_earned", "name": "포인트 적립", "purpose": "informational", "priority": 45,
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "{{ name }}님, {{ event.points|krw(unit='포인트') }}가 적립되었어요."
                "{% if event.balance is defined and event.balance is not none %} 보유 포인트 {{ event.balance|krw(unit='포인트') }}.{% endif %}",
                alimtalk={
                    "template_code": "SHOPCRM_POINTS_EARNED",
                    "body": "#{고객명}님, 포인트가 적립되었습니다.\n적립 포인트: #{적립}\n보유 포인트: #{잔액}",
                    "variables": {"고객명": "{{ name }}", "적립": "{{ event.points|krw(unit='포인트') }}",
                                  "잔액": "{{ event.balance|krw(unit='포인트') if event.balance is defined and event.balance is not none else '-' }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "points_earned", "reentry": "every_time", "steps": [{"send": "earned"}]},
        },
    ),
    Playbook(
        name="points_expiring",
        title="포인트 소멸 예정 안내",
        situation="Points the customer holds expire soon (the shop emits points_expiring, e.g. a week before): "
                  "informational, like the coupon expiry notice; it must not offer anything new.",
        needs=("event points_expiring (points, expires_at)",),
        document={
            "id": "points_expiring", "name": "포인트 소멸 안내", "purpose": "informational", "priority": 32,
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "{{ name }}님, 보유 포인트 중 {{ event.points|krw(unit='포인트') }}가 {{ event.expires_at|date }}에 소멸됩니다.",
                alimtalk={
                    "template_code": "SHOPCRM_POINTS_EXPIRING",
                    "body": "#{고객명}님, 보유하신 포인트 중 #{포인트}가 #{소멸일}에 소멸될 예정입니다.",
                    "variables": {"고객명": "{{ name }}", "포인트": "{{ event.points|krw(unit='포인트') }}",
                                  "소멸일": "{{ event.expires_at|date }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "points_expiring", "reentry": "every_time", "steps": [{"send": "expiry"}]},
        },
    ),
    Playbook(
        name="membership_savings",
        title="멤버십 절약 금액 월간 리포트",
        situation="On the 1st of every month at 10:00, members whose membership saved them something last month hear "
                  "how much (advertising: it promotes the membership, so it needs consent and the ad lines).",
        needs=("customer membership_saved (the shop's figure for last month, in won; refreshed before the 1st)",),
        document={
            "id": "membership_savings", "name": "멤버십 월간 혜택 리포트", "purpose": "advertising", "priority": 25,
            "audience": {"attribute": "membership_saved", "gte": 1},
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 지난달 멤버십으로 {{ membership_saved|krw }}을 아꼈어요. 이번 달에도 혜택을 누려 보세요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {"kind": "recurring", "at": "10:00", "month_days": [1], "reentry": "every_time"},
        },
    ),
    Playbook(
        name="personal_gift",
        title="개인 맞춤 선물 (추첨)",
        situation="A gift for N winners drawn from a segment: draw_winners(members, n, seed) draws them reproducibly "
                  "(the same members, n and seed give the same winners); give them as the audience "
                  "(winners_rule) and set schedule.at.",
        needs=("the winners: playbook('personal_gift', audience=winners_rule(draw_winners(...)), schedule={'at': ...})",),
        document={
            "id": "personal_gift", "name": "당첨 선물 안내", "purpose": "advertising", "priority": 65,
            "audience": _NOBODY,
            "channels": ["brand_message", "sms"], "max_delay": "1d",
            "variants": _variant(
                "{{ name }}님, 축하드려요! 감사의 마음을 담은 선물에 당첨되셨어요. 쿠폰함에서 확인해 보세요.",
                buttons=[{"name": "선물 확인하기", "url": "{{ coupon_url | default('https://shop.example.com/coupons') }}"}],
            ),
            "schedule": {"kind": "one_off", "at": _SET_ME},
        },
    ),
    Playbook(
        name="last_chance_sale",
        title="세일 마감 임박",
        situation="Hours before a sale ends, those who viewed or carted something in the last 14 days and have not "
                  "ordered since hear it ends at midnight; set schedule.at (by 18:00: a late tick may still plan it "
                  "for 2 hours, and the sale must not be announced after it ended or deferred past the night).",
        needs=("schedule.at (the send time, the day the sale ends)", "events product_viewed, cart_added, order_completed"),
        document={
            "id": "last_chance_sale", "name": "세일 마감 임박", "purpose": "advertising", "priority": 35,
            "audience": {"and": [
                {"or": [{"performed": "product_viewed", "within": {"last": "14d"}},
                        {"performed": "cart_added", "within": {"last": "14d"}}]},
                {"not": {"performed": "order_completed", "within": {"last": "14d"}}},
            ]},
            "channels": ["brand_message", "sms"], "max_delay": "2h",
            "variants": _variant(
                "{{ name }}님, 세일이 오늘 자정에 끝나요! 보셨던 상품을 마지막 할인가로 만나 보세요.",
                buttons=[_SHOP_LINK],
            ),
            "schedule": {"kind": "one_off", "at": _SET_ME},
        },
    ),
    Playbook(
        name="review_cross_sell",
        title="리뷰 요청 후 함께 사면 좋은 상품",
        situation="Three days after delivery at 10:00 a review request, two days later at 11:00 the products that go with "
                  "the order (also-bought recommendations, the delivered product left out); an order ends it.  "
                  "Advertising (it recommends products): use it instead of delivered_review's review step.",
        needs=("event order_delivered (order_id, optional product_id)", "shopcrm.recommend (also_bought)"),
        document={
            "id": "review_cross_sell", "name": "리뷰 요청과 연관 상품 추천", "purpose": "advertising", "priority": 28,
            "channels": ["brand_message", "sms"],
            "variants": _variant(
                "{{ name }}님, 받아 보신 상품은 어떠셨나요? 소중한 후기를 남겨 주세요.",
                buttons=[{"name": "후기 쓰기", "url": "{{ review_url | default('https://shop.example.com/reviews') }}"}],
            ),
            "schedule": {
                "kind": "triggered", "on": "order_delivered", "exit_on": ["order_completed"], "reentry": "every_time",
                "steps": [
                    {"wait": "3d"}, {"wait_until": "10:00"}, {"send": "review"},
                    {"wait": "2d"}, {"wait_until": "11:00"},
                    {"send": "cross_sell", "variants": [{"name": "기본", "content": {
                        "text": "{{ name }}님, 구매하신 상품과 함께 많이 찾는 상품이에요.\n{{ recommendations|sms_line }}",
                        "recommend": {"strategy": "also_bought", "k": 4},
                        "brand_message": {"layout": "list", "header": "함께 사면 좋은 상품"},
                    }}]},
                ],
            },
        },
    ),
]

_CONSENT_URL = "{{ consent_url | default('https://shop.example.com/my/consent') }}"
#: the consent group of an ``opted_out`` event, in Korean
_GROUP = ("{{ {'sms': '문자', 'kakao': '카카오톡', 'email': '이메일', 'push': '앱 푸시'}.get(event.channel, '모든 채널의') }}")

_BOOKS += [
    Playbook(
        name="consent_reconfirmation",
        title="광고성 정보 수신동의 재확인 (2년)",
        situation="Advertising consent lapses two years after it was given or last re-confirmed (K8). Customers whose "
                  "SMS consent is 700 to 729 days old hear, once, when they consented, that it is confirmed every "
                  "two years, and how to keep it or withdraw (the free 080 number). Informational: a notice the law "
                  "asks for, with no offer in it. Keeping the consent means the shop writes a new sms_consent_at.",
        needs=("customer sms_consent_at (when the SMS consent was given or last re-confirmed)",
               "MessagingPolicy sender_name and opt_out_number", "optional template value consent_url"),
        document={
            "id": "consent_reconfirmation", "name": "수신동의 재확인 안내", "purpose": "informational", "priority": 85,
            "audience": {"attribute": "sms_consent_at", "ago": {"gte": "700d", "lt": "730d"}},
            "channels": ["alimtalk", "sms"],
            "variants": _variant(
                "[{{ shop.name }}] {{ name }}님은 {{ sms_consent_at|date }}에 광고성 정보(문자) 수신에 동의하셨습니다. "
                "관련 법령에 따라 2년마다 수신 동의 여부를 확인해 드립니다. 계속 받으시려면 " + _CONSENT_URL + " 에서 "
                "동의를 다시 확인해 주세요. 원하지 않으시면 무료수신거부 {{ shop.opt_out_number }}",
                alimtalk={
                    "template_code": "SHOPCRM_CONSENT_RECONFIRM",
                    "body": "[#{보낸이}] #{고객명}님은 #{동의일}에 광고성 정보 수신에 동의하셨습니다.\n"
                            "관련 법령에 따라 2년마다 수신 동의 여부를 확인해 드립니다.\n"
                            "계속 받기: #{확인링크}\n수신 거부: #{수신거부번호}",
                    "variables": {"보낸이": "{{ shop.name }}", "고객명": "{{ name }}", "동의일": "{{ sms_consent_at|date }}",
                                  "확인링크": _CONSENT_URL, "수신거부번호": "{{ shop.opt_out_number }}"},
                },
            ),
            "schedule": {"kind": "recurring", "at": "10:00", "reentry": "365d"},
        },
    ),
    Playbook(
        name="opt_out_result",
        title="수신거부 처리 결과 안내",
        situation="An opt-out the library recorded (shop.record_opt_out: an 080 call; a one-click unsubscribe; a "
                  "provider's opted-out code) is confirmed to the customer, with its date, the channel and the "
                  "sender, at the next 10:00: within the 14 days the law allows (K9). Informational.",
        needs=("event opted_out (channel: the consent group, reason): written with every recorded opt-out",
               "MessagingPolicy sender_name"),
        document={
            "id": "opt_out_result", "name": "수신거부 처리 결과", "purpose": "informational", "priority": 80,
            "channels": ["alimtalk", "sms"], "max_delay": "13d",
            "variants": _variant(
                "[{{ shop.name }}] {{ name }}님, {{ event.ts|date }}에 요청하신 " + _GROUP + " 광고성 정보 수신거부가 "
                "처리되었습니다. 앞으로 광고성 정보를 보내 드리지 않습니다.",
                alimtalk={
                    "template_code": "SHOPCRM_OPT_OUT_RESULT",
                    "body": "[#{보낸이}] #{고객명}님, 요청하신 광고성 정보 수신거부가 처리되었습니다.\n"
                            "대상: #{대상}\n처리일: #{처리일}",
                    "variables": {"보낸이": "{{ shop.name }}", "고객명": "{{ name }}", "대상": _GROUP,
                                  "처리일": "{{ event.ts|date }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "opted_out", "reentry": "every_time",
                         "steps": [{"wait_until": "10:00"}, {"send": "result"}]},
        },
    ),
    Playbook(
        name="consent_result",
        title="수신동의·거부 처리 결과 안내",
        situation="A customer's SMS advertising consent was given or withdrawn between two loads of the customers: "
                  "the result, with its date and the sender, within the 14 days the law allows (K9), at the next "
                  "10:00. Informational (an opted-out customer still gets it).",
        needs=("event sms_consent_changed (old_sms_consent, new_sms_consent): shop.track_attribute('sms_consent') "
               "writes them at each tick", "MessagingPolicy sender_name"),
        document={
            "id": "consent_result", "name": "수신동의 처리 결과", "purpose": "informational", "priority": 80,
            "channels": ["alimtalk", "sms"], "max_delay": "13d",
            "variants": _variant(
                "[{{ shop.name }}] {{ name }}님, {{ event.ts|date }}에 광고성 정보(문자) 수신 "
                "{{ '동의' if event.new_sms_consent else '거부' }} 처리가 완료되었습니다.",
                alimtalk={
                    "template_code": "SHOPCRM_CONSENT_RESULT",
                    "body": "[#{보낸이}] #{고객명}님, 광고성 정보 수신 #{처리내용} 처리가 완료되었습니다.\n처리일: #{처리일}",
                    "variables": {"보낸이": "{{ shop.name }}", "고객명": "{{ name }}", "처리일": "{{ event.ts|date }}",
                                  "처리내용": "{{ '동의' if event.new_sms_consent else '거부' }}"},
                },
            ),
            "schedule": {"kind": "triggered", "on": "sms_consent_changed", "reentry": "every_time",
                         "steps": [{"wait_until": "10:00"}, {"send": "result"}]},
        },
    ),
]

#: every playbook by name, in the order of a customer's life (the first eleven), then the ones issue 14 added,
#: then the consent notices (K8, K9)
PLAYBOOKS: dict[str, Playbook] = {book.name: book for book in _BOOKS}


def draw_winners(members: Iterable[Any], n: int, seed: str) -> tuple[Any, ...]:
    """``n`` winners drawn from ``members`` (ids), reproducibly: each member's rank is a SHA-256 of ``seed`` and its
    id, so the same members, ``n`` and ``seed`` always give the same winners in the same order, whatever order the
    members come in.  Fewer than ``n`` members all win."""
    if n < 0:
        raise ValueError(f"n is how many winners to draw, 0 or more; got {n}")
    if not seed:
        raise ValueError("a draw needs a seed (e.g. '2026-12-gift'): the same seed draws the same winners")
    unique = dict.fromkeys(members)

    def rank(member: Any) -> bytes:
        return hashlib.sha256(f"{seed}\x00{type(member).__name__}:{member}".encode()).digest()

    return tuple(sorted(unique, key=rank)[:n])


def winners_rule(winners: Sequence[Any]) -> dict[str, Any]:
    """The audience rule of exactly ``winners`` (nobody for none)."""
    return {"attribute": "customer_id", "in": list(winners)} if winners else dict(_NOBODY)


def grade_changed_events(
    before: Mapping[Any, Any] | Iterable[Mapping[str, Any]], after: Mapping[Any, Any] | Iterable[Mapping[str, Any]],
    *, at: datetime, column: str = "grade",
) -> list[dict[str, Any]]:
    """The ``grade_changed`` events between two snapshots of the customers (``{customer_id: grade}`` or rows with
    ``customer_id`` and ``column``): one per customer whose grade differs, with ``old_grade`` and ``new_grade``, at
    ``at``.  A customer only in ``after`` (new) or only in ``before`` (gone) changed nothing.  Load them with the
    new customers (``shop.load_events(events)``): the ``grade_changed`` playbook sends on them."""
    old, new = _grades(before, column), _grades(after, column)
    return [{"customer_id": cid, "event": "grade_changed", "ts": at, "old_grade": old[cid], "new_grade": grade}
            for cid, grade in new.items() if cid in old and old[cid] != grade]


def _grades(snapshot: Mapping[Any, Any] | Iterable[Mapping[str, Any]], column: str) -> dict[Any, Any]:
    if isinstance(snapshot, Mapping):
        return dict(snapshot)
    out = {}
    for row in snapshot:
        if column not in row:
            raise ValueError(f"a customer row has no {column!r} column (it has {', '.join(map(str, row))}); pass column=")
        out[row["customer_id"]] = row[column]
    return out


def playbook(name: str, **changes: Any) -> Campaign:
    """The campaign of playbook ``name``, with ``changes`` applied (see the module docs)."""
    book = PLAYBOOKS.get(name)
    if book is None:
        raise KeyError(f"no playbook {name!r}; playbooks: {', '.join(PLAYBOOKS)}")
    return book.campaign(**changes)
