"""The messaging policy against messaging-rules.md: a Korean policy only tightens the law, the checklist's lines in
every advertising message, consent lapsing on the calendar (K8), the three jurisdictions' sets, Kakao's hours in
Korean time, and ``friendtalk`` read as ``brand_message`` wherever a channel is named."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopcrm.campaigns import Cap, MessagingPolicy, Recipient, ShopState, Window, parse_campaign, plan

KOREA = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                        unsubscribe_url="https://shop.example/u/{customer_id}")
MORNING = datetime(2026, 11, 25, 1)  # 10:00 in Seoul


def campaign(channels: list[str], **changes: object) -> object:
    doc: dict[str, object] = {
        "id": "sale", "purpose": "advertising", "channels": channels,
        "variants": [{"name": "a", "content": {"text": "겨울 세일 20%", "subject": "겨울 세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T09:00:00"},
    }
    doc.update(changes)
    return parse_campaign(doc)


def person(**changes: object) -> Recipient:
    base: dict[str, object] = {
        "customer_id": "c1", "phone": "010-0000-0000", "email": "c1@example.com", "push_token": "tok",
        "kakao_friend": True,
        "consents": {"sms": datetime(2026, 1, 1), "email": datetime(2026, 1, 1), "push": datetime(2026, 1, 1),
                     "kakao": datetime(2026, 1, 1)},
    }
    base.update(changes)
    return Recipient(**base)  # type: ignore[arg-type]


def planned(channels: list[str], policy: MessagingPolicy = KOREA, now: datetime = MORNING, **changes: object) -> object:
    recipient = person(**changes)
    result = plan([campaign(channels)], ShopState(recipients={"c1": recipient}, audiences={"sale": ["c1"]}),
                  now=now, policy=policy)
    assert len(result.messages) == 1, result.suppressions
    return result.messages[0]


# -- a Korean policy tightens, never loosens --------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "named"), [
    ({"quiet_hours": Window(time(23), time(6))}, "quiet_hours 23:00-06:00"),
    ({"quiet_hours": Window(time(21), time(7))}, "quiet_hours 21:00-07:00"),
    ({"quiet_hours": Window(time(1), time(2))}, "quiet_hours 01:00-02:00"),
    ({"quiet_hours_exempt": frozenset({"email", "sms"})}, "quiet_hours_exempt"),
    ({"consent_valid_years": None}, "consent_valid_years"),
    ({"consent_valid_years": 3}, "consent_valid_years"),
])
def test_a_korean_policy_that_loosens_a_legal_rule_is_refused(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match="may tighten the law's rules but not loosen them") as info:
        MessagingPolicy(**changes)  # type: ignore[arg-type]
    assert named in str(info.value)
    assert "MessagingPolicy.united_states()" in str(info.value)  # what would be right


def test_a_korean_policy_may_tighten_every_legal_rule() -> None:
    policy = MessagingPolicy(quiet_hours=Window(time(20), time(9)), quiet_hours_exempt=frozenset(),
                             consent_valid_years=1, consent_valid_for=timedelta(days=180),
                             night_consent_lifts_quiet_hours=False)
    assert policy.quiet_hours == Window(time(20), time(9))
    # a span of 730 days or less alone also keeps consent within two years
    assert MessagingPolicy(consent_valid_years=None, consent_valid_for=timedelta(days=730)).consent_valid_years is None


def test_another_jurisdiction_loosens_the_korean_rules_and_an_unknown_one_is_refused() -> None:
    assert MessagingPolicy.united_states(quiet_hours=Window(time(21), time(8))).jurisdiction == "US"
    eu = MessagingPolicy.european_union(sender_name="Shop")
    assert (eu.jurisdiction, eu.consent_valid_years, eu.quiet_hours.contains(time(23))) == ("EU", None, False)
    with pytest.raises(ValueError, match="jurisdiction is one of 'KR', 'US', 'EU'"):
        MessagingPolicy(jurisdiction="JP")  # type: ignore[arg-type]


# -- what advertising needs (checked when campaigns are saved and planned) -------------------------------------

def test_korean_advertising_needs_the_sender_contact_and_a_free_080_number() -> None:
    assert KOREA.problems("advertising") == []
    without_contact = MessagingPolicy(sender_name="마음상점", opt_out_number="080-123-4567")
    assert any("sender_contact" in p for p in without_contact.problems("advertising"))
    for number in ("02-123-4567", "none", "080", "1588-0000"):
        found = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number=number).problems("advertising")
        assert any("not a free 080 number" in p for p in found), number
    for number in ("080-123-4567", "080-1234-5678", "0801234567"):
        assert MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number=number).problems("advertising") == []
    assert MessagingPolicy().problems("informational") == []


def test_us_commercial_email_needs_a_postal_address_and_says_it_is_an_advertisement() -> None:
    us = MessagingPolicy.united_states(sender_name="Shop", unsubscribe_url="https://shop.example/u/{customer_id}")
    assert us.problems("advertising", ["sms"]) == []
    assert any("postal_address" in p for p in us.problems("advertising", ["email"]))
    us = MessagingPolicy.united_states(sender_name="Shop {1}", postal_address="1 Main St, New York, NY 10001",
                                       unsubscribe_url="https://shop.example/u/{customer_id}")
    assert us.problems("advertising", ["email"]) == []
    message = planned(["email"], policy=us, now=datetime(2026, 11, 25, 15))  # 10:00 in New York
    text = message.chain[0].text  # type: ignore[attr-defined]
    assert "This is an advertisement from Shop {1}, 1 Main St, New York, NY 10001." in text
    assert "Unsubscribe: https://shop.example/u/c1" in text


# -- K6, K7 in every advertising message ---------------------------------------------------------------------------

def test_a_korean_advertising_push_carries_the_sender_and_ends_with_the_opt_out_line() -> None:
    text = planned(["push"]).chain[0].text  # type: ignore[attr-defined]
    assert text.startswith("(광고) 마음상점 1588-0000\n겨울 세일 20%")
    assert text.endswith("\n무료수신거부 080-123-4567")


def test_a_korean_advertising_email_names_its_sender_and_unsubscribe_link() -> None:
    rendered = planned(["email"]).chain[0]  # type: ignore[attr-defined]
    assert rendered.subject.startswith("(광고)")
    assert "마음상점 1588-0000\n수신을 원하지 않으시면 여기에서 수신거부하세요: https://shop.example/u/c1" in rendered.text


# -- K8: consent lapses on the same calendar date two years on --------------------------------------------------

def seoul(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour) - timedelta(hours=9)  # naive UTC of a Seoul wall time


@pytest.mark.parametrize(("given", "now", "lapsed"), [
    (seoul(2023, 6, 1, 10), seoul(2025, 5, 31, 23), False),  # 730 days after (2024 is a leap year): still valid
    (seoul(2023, 6, 1, 10), seoul(2025, 6, 1, 0), True),  # the same date two years on: re-confirm before it
    (seoul(2023, 6, 1, 23), seoul(2025, 5, 31, 23), False),
    (seoul(2024, 2, 29, 12), seoul(2026, 2, 27, 23), False),
    (seoul(2024, 2, 29, 12), seoul(2026, 2, 28, 0), True),  # 29 February lapses on 28 February
    (seoul(2024, 3, 1, 0), seoul(2026, 2, 28, 23), False),
    (seoul(2024, 3, 1, 0), seoul(2026, 3, 1, 0), True),
])
def test_consent_lapses_at_the_start_of_the_same_date_two_years_on(given: datetime, now: datetime, lapsed: bool) -> None:
    due = (now + timedelta(hours=9)).isoformat()  # the one-off comes due at ``now`` (Seoul wall time)
    result = plan([campaign(["sms"], schedule={"kind": "one_off", "at": due})],
                  ShopState(recipients={"c1": person(consents={"sms": given}, night_consent=True)}, audiences={"sale": ["c1"]}),
                  now=now, policy=KOREA)
    reasons = [s.reason for s in result.suppressions]
    assert len(result.messages) + len(reasons) == 1, (reasons, result.messages)
    assert ("consent_expired" in reasons) is lapsed, (reasons, [m.send_at for m in result.messages])


def test_settings_saved_before_consent_valid_years_read_730_days_as_the_two_years() -> None:
    old = KOREA.to_dict()
    del old["consent_valid_years"]
    old["consent_valid_for"] = timedelta(days=730).total_seconds()
    restored = MessagingPolicy.from_dict(old)
    assert (restored.consent_valid_years, restored.consent_valid_for) == (2, None)
    assert MessagingPolicy.from_dict(KOREA.to_dict()) == KOREA


# -- Kakao's hours are Korean time ----------------------------------------------------------------------------------

def test_a_brand_message_waits_for_kakaos_hours_in_seoul_whatever_the_recipients_zone() -> None:
    informational = parse_campaign({
        "id": "sale", "purpose": "informational", "channels": ["brand_message"],
        "variants": [{"name": "a", "content": {"text": "주문하신 상품이 출발했어요"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T09:00:00"},
    })
    now = datetime(2026, 11, 25, 13)  # 22:00 in Seoul, 08:00 in New York
    result = plan([informational], ShopState(recipients={"c1": person(timezone="America/New_York")},
                                             audiences={"sale": ["c1"]}), now=now, policy=KOREA)
    assert [m.send_at for m in result.messages] == [datetime(2026, 11, 25, 23)]  # 08:00 the next day in Seoul


# -- FriendTalk ended: friendtalk is brand_message wherever a channel is named -------------------------------------

def test_friendtalk_names_brand_message_in_caps_and_exemptions_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="FriendTalk ended on 2025-12-31; 'friendtalk' in a frequency cap"):
        cap = Cap("advertising", 1, timedelta(days=1), "friendtalk")
    assert cap.channel == "brand_message"
    assert cap.counts("advertising", "brand_message")
    with pytest.warns(DeprecationWarning, match="MessagingPolicy.quiet_hours_exempt"):
        policy = MessagingPolicy.united_states(quiet_hours_exempt={"email", "friendtalk"})
    assert policy.quiet_hours_exempt == frozenset({"email", "brand_message"})


# ------------------------------------------------------------------ local time, by the hour's offset
_ZONES = ("Asia/Seoul", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu",
          "Pacific/Chatham", "America/St_Johns", "UTC", "Europe/Dublin", "Africa/Casablanca")


def _exact_local(when: datetime, zone: str) -> datetime:
    from datetime import UTC
    from zoneinfo import ZoneInfo

    return when.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


@given(when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), zone=st.sampled_from(_ZONES))
def test_local_time_by_the_hours_offset_is_the_zones_own_fold_included(when: datetime, zone: str) -> None:
    from shopcrm.campaigns._policy import local

    got, exact = local(when, zone), _exact_local(when, zone)
    assert (got, got.fold) == (exact, exact.fold)


def test_local_time_is_exact_minute_by_minute_across_the_days_zones_change_their_offsets() -> None:
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from shopcrm.campaigns._policy import local, utc

    for zone in _ZONES:
        tz = ZoneInfo(zone)
        day = datetime(2025, 12, 31, 12)
        changes = []
        while day < datetime(2027, 1, 1):  # the days of 2026 whose offset differs from the day before
            after = day + timedelta(days=1)
            if day.replace(tzinfo=UTC).astimezone(tz).utcoffset() != after.replace(tzinfo=UTC).astimezone(tz).utcoffset():
                changes.append(day)
            day = after
        for start in changes:
            for minute in range(0, 24 * 60 + 1, 1):
                when = start + timedelta(minutes=minute, seconds=59, microseconds=999_999 * (minute % 2))
                got, exact = local(when, zone), _exact_local(when, zone)
                assert (got, got.fold) == (exact, exact.fold), (zone, when)
                assert utc(got, zone) == when, (zone, when)  # the way back
