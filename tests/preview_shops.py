"""Random small shops for the grouped preview's tests (``tests/campaigns/test_preview_sql.py`` and the engine
tests): campaigns, policies, customers tables, a ledger and recorded opt-outs, and the comparison of the grouped
preview with the per-customer one on a shop."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs
from hypothesis import strategies as st

import shopcrm
from shopcrm.campaigns import Campaign, LedgerEntry, MessagingPolicy, parse_campaign
from shopcrm.campaigns._policy import Cap
from shopcrm.campaigns._preview import _preview
from shopcrm.recipients import with_opt_outs
from shopcrm.sources._preview_groups import grouped_preview
from shopcrm.sources._reads import EngineReader
from shopcrm.ticking import _preview_audience, preview_state

NOW = datetime(2026, 11, 24, 1)  # 10:00 in Seoul
GIVEN = datetime(2026, 1, 1)
POLICY = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000")
TEXTS = [
    "{{ name|은는 }} VIP 겨울 세일 대상이에요.",
    "{{ name }}님, 오늘만 20% 할인!",
    "{{ name }}님 " + "가" * 33,  # an SMS or an LMS by the name's bytes
    "{{ name|이가 }} " + "나" * 36,
    "전 고객 세일",
    "{{ name }} {{ now.hour }}시",  # per zone
    "{{ name|upper }} 세일",  # not of the signature's shape: rendered per name
    "{{ 100 // n }}% 할인",  # a missing name: render_failed
]
NAMES = ["민수", "지영", "Kim", "가" * 30, " 민수", "민수 ", "", "😀", "₩", "A", "김", "이", None, "\ue000x", "ㄱ"]


def campaigns() -> st.SearchStrategy[Campaign]:
    @st.composite
    def build(draw: st.DrawFn) -> Campaign:
        channels = draw(st.lists(st.sampled_from(["brand_message", "sms", "alimtalk", "push"]), min_size=1, max_size=3,
                                 unique=True))
        variants = [{"name": f"v{i}", "weight": draw(st.integers(1, 5)),
                     "content": {"text": draw(st.sampled_from(TEXTS))}}
                    for i in range(draw(st.integers(1, 3)))]
        purpose = draw(st.sampled_from(["advertising", "informational"]))
        if purpose == "advertising" and "alimtalk" in channels:  # AlimTalk carries informational messages only
            channels.remove("alimtalk")
            channels = channels or ["sms"]
        return parse_campaign({
            "id": "sale", "name": "세일", "purpose": purpose,
            "holdout_percent": draw(st.sampled_from([0, 10, 33.3, 50])), "audience": {"everyone": True},
            "channels": channels, "variants": variants, "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"},
        })

    return build()


def policies() -> st.SearchStrategy[MessagingPolicy]:
    @st.composite
    def build(draw: st.DrawFn) -> MessagingPolicy:
        caps = draw(st.sampled_from([(), (Cap(purpose="advertising", limit=1, per=timedelta(days=1)),),
                                     (Cap(purpose="any", limit=0, per=timedelta(days=1), channel="sms"),)]))
        return attrs.evolve(POLICY, caps=caps, global_control_percent=draw(st.sampled_from([0, 5, 37.5])),
                            brand_message_friends_only=draw(st.booleans()),
                            prices={**POLICY.prices, "lms": draw(st.sampled_from([39, 39.5]))})

    return build()


COLUMNS = ["customer_id", "name", "phone", "email", "kakao_friend", "night_consent", "sms_consent", "kakao_consent",
           "timezone"]


@st.composite
def tables(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(draw(st.integers(1, 25))):
        rows.append((
            f"c{i}", draw(st.sampled_from(NAMES[:-2])),
            draw(st.sampled_from([None, "010-1234-5678", "", "  ", "\t\u3000", " 010"])),
            draw(st.sampled_from([None, "a@b.c"])),
            draw(st.sampled_from([None, True, False])), draw(st.sampled_from([None, True, False])),
            draw(st.sampled_from([None, True, False])), draw(st.sampled_from([None, True, False])),
            draw(st.sampled_from([None, "Asia/Seoul", "America/New_York"])),
        ))
    return rows


def _compare(shop: shopcrm.Shop, campaign: Campaign, policy: MessagingPolicy, ledger: list[LedgerEntry],
             opt_outs: dict[Any, dict[str, datetime]]) -> None:
    """The grouped preview on ``shop`` (with this ledger and these recorded opt-outs) equals the per-customer one."""
    shop.messaging_policy = policy
    stored = shop.source.campaign_store().opt_outs()  # the per-customer side would read them, the grouped not
    assert stored == {}, f"the library already holds opt-outs (left by another test?): {stored}"
    reader = EngineReader(shop.source, NOW, lifecycle_policy=shop.lifecycle_policy)
    why: list[str] = []
    found = grouped_preview(reader, campaign, _preview_audience(shop, reader, campaign, NOW), now=NOW, policy=policy,
                            columns=shop.recipient_columns, ledger=ledger, opt_outs=opt_outs, blockers=why)
    state = preview_state(shop, campaign, NOW)
    people = {cid: with_opt_outs(r, opt_outs[cid], now=NOW) if cid in opt_outs else r for cid, r in state.recipients.items()}
    expected = _preview(campaign, attrs.evolve(state, recipients=people, ledger=ledger), NOW, policy)
    assert why == [], why  # the grouped path answered
    assert found == expected


def _extras(draw: st.DrawFn, rows: list[tuple[Any, ...]]) -> tuple[list[LedgerEntry], dict[Any, dict[str, datetime]]]:
    ids = [r[0] for r in rows]
    ledger = [LedgerEntry(f"k{c}", c, "other", "advertising", "sms", NOW - timedelta(hours=2))
              for c in draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))]
    outs = {c: {draw(st.sampled_from(["sms", "kakao", "all"])): NOW - timedelta(days=1)}
            for c in draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))}
    return ledger, outs


