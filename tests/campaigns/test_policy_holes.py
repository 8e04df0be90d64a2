"""Policy holes closed: Brand Message reaches friends whatever the purpose; advertising never renders without its lines."""

from __future__ import annotations

from datetime import datetime

import pytest

from shopcrm.campaigns import (
    Campaign,
    Content,
    Decorations,
    MessagingPolicy,
    Recipient,
    Renderer,
    ShopState,
    check_templates,
    consent_block,
    needs_recheck,
    parse_campaign,
    plan,
    preview,
)
from shopcrm.errors import CampaignError

NOW = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
GIVEN = datetime(2026, 1, 1)
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")


def campaign(purpose: str, channels: list[str]) -> Campaign:
    return parse_campaign({
        "id": "c", "purpose": purpose, "channels": channels,
        "variants": [{"name": "a", "content": {"text": "주문이 접수되었어요"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T09:00:00"},
    })


def test_an_informational_brand_message_reaches_only_channel_friends() -> None:
    friend = Recipient(customer_id="f", phone="010", kakao_friend=True)
    stranger = Recipient(customer_id="s", phone="010")
    consented = Recipient(customer_id="m", phone="010", consents={"kakao": GIVEN})
    people = {r.customer_id: r for r in (friend, stranger, consented)}
    result = plan([campaign("informational", ["brand_message"])], ShopState(recipients=people, audiences={"c": list(people)}),
                  now=NOW, policy=POLICY)
    assert [m.customer_id for m in result.messages] == ["f"]
    assert {s.customer_id: s.reason for s in result.suppressions} == {"s": "not_friend", "m": "not_friend"}
    # with an SMS fallback the stranger still hears, by SMS
    result = plan([campaign("informational", ["brand_message", "sms"])], ShopState(recipients=people, audiences={"c": list(people)}),
                  now=NOW, policy=POLICY)
    assert {m.customer_id: m.channel for m in result.messages} == {"f": "brand_message", "s": "sms", "m": "sms"}
    # licensed channels (M/N targeting) reach non-friends with marketing consent only, whatever the purpose
    licensed = MessagingPolicy(brand_message_friends_only=False)
    assert consent_block("brand_message", consented, advertising=False, policy=licensed, now=NOW) is None
    assert consent_block("brand_message", stranger, advertising=False, policy=licensed, now=NOW) == "no_consent"
    assert consent_block("brand_message", friend, advertising=False, policy=POLICY, now=NOW) is None


def test_the_dispatcher_rechecks_every_brand_message_and_every_advertisement() -> None:
    assert needs_recheck("brand_message", "informational")
    assert needs_recheck("sms", "advertising")
    assert needs_recheck("sms", "unknown")  # unknown means advertising
    assert not needs_recheck("sms", "informational")
    assert not needs_recheck("alimtalk", "informational")


@pytest.mark.parametrize("channel", ["sms", "brand_message"])
def test_rendering_an_advertisement_without_its_lines_fails_closed(channel: str) -> None:
    with pytest.raises(CampaignError, match=f"an advertising {channel} message needs .*free opt-out line"):
        Renderer().render(Content(text="세일"), channel, {}, advertising=True, decorations=Decorations())
    if channel == "sms":
        with pytest.raises(CampaignError, match="needs the sender line"):
            Renderer().render(Content(text="세일"), channel, {}, advertising=True,
                              decorations=Decorations(opt_out_line="무료수신거부 080-123-4567"))
    # informational text carries no ad lines
    assert Renderer().render(Content(text="안내"), channel, {}, advertising=False, decorations=Decorations()).text == "안내"
    ad = Renderer().render(Content(text="세일"), channel, {}, advertising=True, decorations=POLICY.decorations())
    assert ad.text.endswith("무료수신거부 080-123-4567")


@pytest.mark.parametrize("bare", [MessagingPolicy(), MessagingPolicy(sender_name="마음상점"),
                                  MessagingPolicy.united_states(unsubscribe_url="https://x/u")])
def test_every_entry_point_refuses_advertising_without_its_lines(bare: MessagingPolicy) -> None:
    ad = campaign("advertising", ["sms"])
    person = Recipient(customer_id="p", phone="010", consents={"sms": GIVEN})
    state = ShopState(recipients={"p": person}, audiences={"c": ["p"]})
    with pytest.raises(CampaignError, match="c: "):
        plan([ad], state, now=NOW, policy=bare)
    with pytest.raises(CampaignError, match="c: "):
        preview(ad, state, now=NOW, policy=bare)
    problems = check_templates(ad, [person], now=NOW, policy=bare)
    assert problems
    assert all(where in ("policy", "main.a.sms") for where, _ in problems)
