"""Labels people read: lifecycle stages, moments, purchase-cycle statuses, RFM segments and suppression
reasons in English (``"en"``, the default) or Korean (``"ko"``).

In English labels are the names themselves (``never_purchased``: what a rule spells); only what is
*shown* changes with the locale: rules, JSON, Arrow columns and ``to_dict()`` keep the names.

>>> label("stage", "repeat", locale="ko")
'재구매'
>>> with use_locale("ko"):
...     label("rfm", "champions")
'VIP 챔피언'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["LOCALES", "LABELS", "get_locale", "label", "pad", "set_locale", "use_locale"]

Locale = Literal["en", "ko"]
#: the locales labels exist in
LOCALES: tuple[str, ...] = ("en", "ko")

#: kind -> name -> Korean label (English labels are the names)
LABELS: dict[str, dict[str, str]] = {
    "stage": {
        "never_purchased": "미구매 가입자",
        "first_purchase": "첫 구매",
        "repeat": "재구매",
        "loyal": "충성 고객",
        "any": "전체",
    },
    "moment": {
        "cart_abandoned": "장바구니 이탈",
        "signup_dropoff": "가입 후 이탈",
        "cooling_off": "관심 감소",
        "lapsed": "휴면",
    },
    "cycle": {
        "active": "활성",
        "at_risk": "이탈 위험",
        "churned": "이탈",
    },
    "rfm": {
        "champions": "VIP 챔피언",
        "loyal_customers": "충성 고객",
        "potential_loyalists": "충성 고객 후보",
        "new_customers": "신규 고객",
        "promising": "성장 기대",
        "need_attention": "관심 필요",
        "about_to_sleep": "휴면 직전",
        "at_risk": "이탈 위험",
        "cant_lose_them": "놓치면 안 될 고객",
        "hibernating": "휴면",
    },
    "reason": {
        "already_planned": "이미 예약됨",
        "expired": "발송 시한 지남",
        "exited": "시나리오 종료",
        "no_recipient": "수신자 정보 없음",
        "no_contact": "연락처 없음",
        "opted_out": "수신 거부",
        "no_consent": "마케팅 수신 동의 없음",
        "consent_expired": "수신 동의 재확인 필요",
        "not_friend": "채널 친구 아님",
        "capped": "발송 빈도 제한",
        "holdout": "대조군(홀드아웃)",
        "global_control": "글로벌 대조군",
        "render_failed": "템플릿 오류",
        "not_in_audience": "대상 고객 아님",
        "already_received": "이미 받음",
    },
    "section": {
        "stage": "단계",
        "stage / moment": "단계 / 시점",
        "RFM segment": "RFM 세그먼트",
        "purchase cycle": "구매 주기",
    },
}

_current: list[str] = ["en"]


def _check(locale: str) -> str:
    if locale not in LOCALES:
        raise ValueError(f"{locale!r} is not a locale; use one of {', '.join(map(repr, LOCALES))}")
    return locale


def get_locale() -> str:
    """The locale reprs and summaries use now (``"en"`` unless :func:`set_locale` changed it)."""
    return _current[0]


def set_locale(locale: str) -> None:
    """Show labels in ``locale`` (``"en"`` or ``"ko"``) from now on, e.g. in a notebook's first cell."""
    _current[0] = _check(locale)


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Show labels in ``locale`` inside a ``with`` block."""
    before = _current[0]
    _current[0] = _check(locale)
    try:
        yield
    finally:
        _current[0] = before


def label(kind: str, name: str, *, locale: str | None = None) -> str:
    """What people read for ``name`` of ``kind`` (``stage``, ``moment``, ``cycle``, ``rfm``, ``reason``,
    ``section``); a name without a label (a custom RFM segment) is shown as it is."""
    if kind not in LABELS:
        raise ValueError(f"{kind!r} is not a kind of label; use one of {', '.join(LABELS)}")
    if _check(locale or _current[0]) == "ko":
        return LABELS[kind].get(name, name)
    return name


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns (Hangul and other wide characters take two)."""
    used = sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)
    return text + " " * max(0, width - used)
