"""Playbooks: the usual situations of a Korean shop as ready campaigns, Korean copy by default.

``playbook(name, **changes)`` returns a :class:`Campaign` you can save as is or adapt:
``changes`` replace top-level fields (``channels``, ``holdout_percent``, ``priority`` ...),
``variants`` replaces the copy, and ``schedule`` may be a dict merged into the playbook's schedule
(``{"steps": [...]}``).  Every playbook lists the events or customer fields it needs.

AlimTalk bodies must match a template the shop has had approved by Kakao; the codes here
(``SHOPCRM_*``) are placeholders to replace with the shop's own.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs

from shopcrm.campaigns._models import Campaign, parse_campaign

__all__ = ["PLAYBOOKS", "Playbook", "playbook"]

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

#: every playbook by name, in the order of a customer's life
PLAYBOOKS: dict[str, Playbook] = {book.name: book for book in _BOOKS}


def playbook(name: str, **changes: Any) -> Campaign:
    """The campaign of playbook ``name``, with ``changes`` applied (see the module docs)."""
    book = PLAYBOOKS.get(name)
    if book is None:
        raise KeyError(f"no playbook {name!r}; playbooks: {', '.join(PLAYBOOKS)}")
    return book.campaign(**changes)
