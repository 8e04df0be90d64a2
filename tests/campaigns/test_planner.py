"""The planner: consent, quiet hours, caps, holdout, idempotency and scenarios, as a pure function."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopcrm import evaluate
from shopcrm.campaigns import (
    Campaign,
    LedgerEntry,
    MessagingPolicy,
    Plan,
    Recipient,
    ShopState,
    parse_campaign,
    plan,
)
from shopcrm.campaigns._policy import local

POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                         unsubscribe_url="https://shop.example/u/{customer_id}")
# 2026-11-25 01:00 UTC is 10:00 in Seoul; 13:00 UTC is 22:00 in Seoul
MORNING = datetime(2026, 11, 25, 1)
NIGHT = datetime(2026, 11, 25, 13)
GIVEN = datetime(2026, 1, 1)


def broadcast(**changes: object) -> Campaign:
    doc = {
        "id": "winter-sale", "purpose": "advertising", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일 20%"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T09:00:00"},
    }
    doc.update(changes)
    return parse_campaign(doc)


def person(cid: str, **changes: object) -> Recipient:
    base: dict[str, object] = {"customer_id": cid, "phone": "010-0000-0000", "consents": {"sms": GIVEN}, "attributes": {"name": cid}}
    base.update(changes)
    return Recipient(**base)  # type: ignore[arg-type]


def state(recipients: list[Recipient], campaign: str = "winter-sale", **changes: object) -> ShopState:
    fields: dict[str, object] = {"audiences": {campaign: [r.customer_id for r in recipients]}, **changes}
    return ShopState(recipients={r.customer_id: r for r in recipients}, **fields)  # type: ignore[arg-type]


def test_every_member_is_planned_or_suppressed_with_a_reason() -> None:
    people = [
        person("ok"),
        person("nophone", phone=None),
        person("noconsent", consents={}),
        person("old", consents={"sms": datetime(2024, 1, 1)}),  # older than 2 years: K8
        person("optout", opted_out=frozenset({"sms"})),
    ]
    result = plan([broadcast()], state(people, audiences={"winter-sale": ["ok", "nophone", "noconsent", "old", "optout", "ghost"]}),
                  now=MORNING, policy=POLICY)
    assert [m.customer_id for m in result.messages] == ["ok"]
    assert {s.customer_id: s.reason for s in result.suppressions} == {
        "nophone": "no_contact", "noconsent": "no_consent", "old": "consent_expired", "optout": "opted_out", "ghost": "no_recipient",
    }
    message = result.messages[0]
    assert message.chain[0].text.startswith("(광고) 마음상점 1588-0000\nok님, 겨울 세일 20%")
    assert message.chain[0].text.endswith("무료수신거부 080-123-4567")


def test_informational_messages_need_no_marketing_consent() -> None:
    campaign = broadcast(purpose="informational", channels=["sms"])
    result = plan([campaign], state([person("noconsent", consents={})]), now=MORNING, policy=POLICY)
    assert len(result.messages) == 1
    assert "(광고)" not in result.messages[0].chain[0].text


def test_a_template_sees_instants_in_the_recipients_local_time() -> None:
    """Naive instants are UTC throughout the library; a message shows them as its recipient reads a clock: 23:30 UTC
    on 24 November is 08:30 on the 25th in Seoul and 18:30 on the 24th in New York (aware values are converted)."""
    from datetime import UTC

    campaign = broadcast(purpose="informational", variants=[{"name": "a", "content": {
        "text": "{{ joined_at|date('time') }} / {{ paid_at|date('time') }} / {{ name }}"}}])
    joined, paid = datetime(2026, 11, 24, 23, 30), datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    people = [person("seoul", attributes={"name": "S", "joined_at": joined, "paid_at": paid}),
              person("ny", timezone="America/New_York", attributes={"name": "N", "joined_at": joined, "paid_at": paid})]
    result = plan([campaign], state(people), now=MORNING, policy=POLICY)
    texts = {m.customer_id: m.chain[0].text for m in result.messages}
    assert texts == {"seoul": "11월 25일 08:30 / 11월 25일 08:30 / S", "ny": "11월 24일 18:30 / 11월 24일 18:30 / N"}


def test_quiet_hours_defer_advertising_to_the_next_eight_oclock_unless_night_consent_or_email() -> None:
    campaign = broadcast(schedule={"kind": "one_off", "at": "2026-11-25T22:00:00"})
    people = [person("night", night_consent=True), person("day"),
              person("mail", phone=None, email="a@b.c", consents={"email": GIVEN})]
    result = plan([broadcast(schedule={"kind": "one_off", "at": "2026-11-25T22:00:00"}, channels=["sms", "email"],
                             variants=[{"name": "a", "content": {"text": "세일", "subject": "세일"}}])],
                  state(people), now=NIGHT, policy=POLICY)
    del campaign
    when = {m.customer_id: (m.send_at, m.deferred) for m in result.messages}
    assert when["night"] == (NIGHT, False)
    assert when["mail"] == (NIGHT, False)  # e-mail is exempt (K4)
    assert when["day"] == (datetime(2026, 11, 25, 23), True)  # 08:00 Seoul on the 26th
    assert local(when["day"][0], "Asia/Seoul").time() == time(8)
    # the US set: no consent lifts the TCPA window
    us = MessagingPolicy.united_states(sender_name="Shop", unsubscribe_url="https://x/u")
    r = plan([broadcast(schedule={"kind": "one_off", "at": "2026-11-25T22:00:00"})],
             state([person("night", night_consent=True, timezone="America/New_York")]), now=datetime(2026, 11, 26, 3), policy=us)
    assert local(r.messages[0].send_at, "America/New_York").time() == time(8)
    assert r.messages[0].chain[0].text.endswith("Reply STOP to opt out")


def test_brand_message_only_to_friends_and_inside_its_hours_else_the_sms_fallback() -> None:
    campaign = broadcast(channels=["brand_message", "sms"], variants=[{"name": "a", "content": {"text": "세일"}}])
    friend = person("friend", kakao_friend=True, consents={"sms": GIVEN, "kakao": GIVEN}, night_consent=True)
    stranger = person("stranger", consents={"sms": GIVEN, "kakao": GIVEN})
    result = plan([campaign], state([friend, stranger]), now=datetime(2026, 11, 25, 11, 55), policy=POLICY)  # 20:55 Seoul
    by = {m.customer_id: m for m in result.messages}
    assert [r.channel for r in by["friend"].chain] == ["brand_message", "sms"]
    assert local(by["friend"].send_at, "Asia/Seoul") == datetime(2026, 11, 26, 8)  # Kakao closes at 20:50
    assert [r.channel for r in by["stranger"].chain] == ["sms"]
    assert by["stranger"].estimated_cost == 12


def test_caps_bind_in_priority_order_and_informational_is_exempt() -> None:
    high = broadcast(id="high", priority=10)
    low = broadcast(id="low")
    info = broadcast(id="info", purpose="informational")
    people = [person("p")]
    st_ = ShopState(recipients={"p": people[0]}, audiences={"high": ["p"], "low": ["p"], "info": ["p"]})
    result = plan([low, info, high], st_, now=MORNING, policy=POLICY)
    assert sorted(m.campaign_id for m in result.messages) == ["high", "info"]
    assert [(s.campaign_id, s.reason, s.detail) for s in result.suppressions] == [("low", "capped", "advertising:1/1d")]
    # two advertising messages in the last 7 days: the weekly cap binds
    ledger = [LedgerEntry(f"k{i}", "p", "old", "advertising", "sms", MORNING - timedelta(days=d)) for i, d in enumerate((2, 5))]
    again = plan([high], ShopState(recipients={"p": people[0]}, audiences={"high": ["p"]}, ledger=ledger), now=MORNING, policy=POLICY)
    assert again.suppressions[0].detail == "advertising:2/7d"


def test_holdout_is_the_dsl_sample_and_stable_across_ticks() -> None:
    people = [person(f"c{i}") for i in range(400)]
    campaign = broadcast(holdout_percent=25)
    result = plan([campaign], state(people), now=MORNING, policy=POLICY)
    held = {s.customer_id for s in result.suppressions if s.reason == "holdout"}
    rule = {"sample": {"percent": 25, "salt": "holdout:winter-sale"}}
    assert held == evaluate(rule, [{"customer_id": p.customer_id} for p in people], [], now=MORNING)
    assert 60 < len(held) < 140
    assert len(result.messages) + len(held) == 400


def test_a_holdout_is_exposed_when_it_would_have_been_sent() -> None:
    # measurement.md 6: "for a holdout: the time it would have been planned": due at 22:00 Seoul, the treatment is
    # deferred to 08:00 by the night rule, and so is every holdout's (and global control's) exposure
    people = [person(f"c{i}") for i in range(200)]
    campaign = broadcast(holdout_percent=25, schedule={"kind": "one_off", "at": "2026-11-25T22:00:00"})
    result = plan([campaign], state(people), now=NIGHT, policy=POLICY)
    held = [s for s in result.suppressions if s.reason == "holdout"]
    assert held
    assert {s.send_at for s in held} == {m.send_at for m in result.messages} == {datetime(2026, 11, 25, 23)}
    assert {s.due_at for s in held} == {NIGHT}


def test_running_a_tick_twice_plans_nothing_twice() -> None:
    people = [person(f"c{i}") for i in range(20)]
    first = plan([broadcast()], state(people), now=MORNING, policy=POLICY)
    second = plan([broadcast()], state(people, ledger=first.ledger_entries()), now=MORNING + timedelta(minutes=5), policy=POLICY)
    assert second.messages == ()
    assert {s.reason for s in second.suppressions} == {"already_planned"}
    late = plan([broadcast()], state(people), now=MORNING + timedelta(days=2), policy=POLICY)
    assert {s.reason for s in late.suppressions} == {"expired"}


def test_ab_variants_split_by_weight_deterministically() -> None:
    variants = [{"name": "a", "weight": 3, "content": {"text": "A"}}, {"name": "b", "weight": 1, "content": {"text": "B"}}]
    people = [person(f"c{i}", consents={"sms": GIVEN}) for i in range(800)]
    r1 = plan([broadcast(variants=variants)], state(people), now=MORNING, policy=POLICY)
    r2 = plan([broadcast(variants=variants)], state(people), now=MORNING, policy=POLICY)
    share = sum(m.variant == "a" for m in r1.messages) / len(r1.messages)
    assert 0.68 < share < 0.82
    assert [m.variant for m in r1.messages] == [m.variant for m in r2.messages]


CART = {
    "id": "cart-reminder", "purpose": "advertising", "channels": ["sms"],
    "variants": [{"name": "a", "content": {"text": "장바구니에 상품이 남아 있어요"}}],
    "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"], "reentry": "7d",
                 "steps": [{"wait": "1d"}, {"send": "first"}, {"wait": "2d"},
                           {"if": {"performed": "product_viewed"}, "then": [{"send": "viewed"}], "else": [{"send": "second"}]}]},
}


def tick_through(campaign: Campaign, st_: ShopState, start: datetime, days: int) -> list[tuple[str, str, datetime]]:
    """A simulated clock: a tick every hour, the ledger fed back each time."""
    ledger: list[LedgerEntry] = []
    sent = []
    for hour in range(days * 24):
        now = start + timedelta(hours=hour)
        result = plan([campaign], ShopState(**{**_fields(st_), "ledger": ledger}), now=now, policy=POLICY)
        ledger += result.ledger_entries()
        sent += [(m.customer_id, m.step, m.send_at) for m in result.messages]
    return sent


def _fields(st_: ShopState) -> dict[str, object]:
    import attrs

    return {f.name: getattr(st_, f.name) for f in attrs.fields(ShopState)}


def test_cart_reminder_scenario_over_a_week_of_hourly_ticks() -> None:
    campaign = parse_campaign(CART)
    t0 = datetime(2026, 11, 20, 2)  # 11:00 Seoul
    people = [person("buyer", night_consent=True), person("browser", night_consent=True), person("idle", night_consent=True)]
    histories = {
        "buyer": ({"customer_id": "buyer"}, [{"customer_id": "buyer", "event": "cart_added", "ts": t0},
                                             {"customer_id": "buyer", "event": "order_completed", "ts": t0 + timedelta(days=2)}]),
        "browser": ({"customer_id": "browser"}, [{"customer_id": "browser", "event": "cart_added", "ts": t0},
                                                 {"customer_id": "browser", "event": "product_viewed", "ts": t0 + timedelta(days=2)}]),
        "idle": ({"customer_id": "idle"}, [{"customer_id": "idle", "event": "cart_added", "ts": t0}]),
    }
    st_ = ShopState(
        recipients={p.customer_id: p for p in people},
        triggers={"cart-reminder": {cid: [e["ts"] for e in h[1] if e["event"] == "cart_added"] for cid, h in histories.items()}},
        exits={"cart-reminder": {"buyer": [t0 + timedelta(days=2)]}},
        histories=histories,
    )
    sent = tick_through(campaign, st_, t0, days=6)
    assert sorted(sent) == sorted([
        ("buyer", "first", t0 + timedelta(days=1)),
        ("browser", "first", t0 + timedelta(days=1)),
        ("browser", "viewed", t0 + timedelta(days=3)),
        ("idle", "first", t0 + timedelta(days=1)),
        ("idle", "second", t0 + timedelta(days=3)),
    ])  # the buyer ordered on day 2: no second reminder


# -- properties -------------------------------------------------------------------------------

@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Campaign], ShopState, list[datetime]]:
    n = draw(st.integers(1, 12))
    people = []
    for i in range(n):
        people.append(Recipient(
            customer_id=f"c{i}",
            phone=draw(st.sampled_from([None, "010"])),
            email=draw(st.sampled_from([None, "a@b.c"])),
            kakao_friend=draw(st.booleans()),
            timezone=draw(st.sampled_from([None, "Asia/Seoul", "America/New_York", "Europe/Berlin"])),
            consents=draw(st.dictionaries(st.sampled_from(["sms", "kakao", "email"]), st.sampled_from([GIVEN, datetime(2023, 1, 1)]))),
            night_consent=draw(st.booleans()),
            opted_out=frozenset(draw(st.sets(st.sampled_from(["sms", "email", "all"]), max_size=1))),
            attributes={"name": f"n{i}"},
        ))
    campaigns = []
    for k in range(draw(st.integers(1, 4))):
        purpose = draw(st.sampled_from(["advertising", "informational"]))
        channels = draw(st.lists(st.sampled_from(["sms", "email", "brand_message"]), min_size=1, max_size=3, unique=True))
        hour = draw(st.integers(0, 23))
        schedule = (
            {"kind": "one_off", "at": f"2026-11-25T{hour:02d}:00:00"} if draw(st.booleans())
            else {"kind": "recurring", "at": f"{hour:02d}:30:00", "weekdays": [0, 1, 2, 3, 4, 5, 6]}
        )
        campaigns.append(parse_campaign({
            "id": f"k{k}", "purpose": purpose, "channels": channels, "priority": draw(st.integers(0, 3)),
            "holdout_percent": draw(st.sampled_from([0, 10, 50])),
            "variants": [{"name": "a", "content": {"text": "hi {{ name }}", "subject": "s"}}], "schedule": schedule,
        }))
    ids = [p.customer_id for p in people]
    audiences = {c.id: draw(st.lists(st.sampled_from(ids), unique=True)) for c in campaigns}
    start = datetime(2026, 11, 24, 12) + timedelta(minutes=draw(st.integers(0, 600)))
    ticks = sorted(start + timedelta(minutes=draw(st.integers(0, 60 * 72))) for _ in range(draw(st.integers(1, 6))))
    return campaigns, ShopState(recipients={p.customer_id: p for p in people}, audiences=audiences), ticks


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(worlds())
def test_planner_invariants_over_sequences_of_ticks(world: tuple[list[Campaign], ShopState, list[datetime]]) -> None:
    campaigns, st_, ticks = world
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000", unsubscribe_url="https://u/{customer_id}")
    ledger: list[LedgerEntry] = []
    planned: list[Plan] = []
    seen_keys: set[str] = set()
    for now in ticks:
        result = plan(campaigns, ShopState(**{**_fields(st_), "ledger": list(ledger)}), now=now, policy=policy)
        planned.append(result)
        for m in result.messages:
            assert m.key not in seen_keys, "an idempotency key was planned twice"
            seen_keys.add(m.key)
            assert m.send_at >= m.due_at
            assert m.send_at >= now
            recipient = st_.recipients[m.customer_id]
            if m.purpose == "advertising":
                zone = recipient.timezone or policy.timezone
                hour = local(m.send_at, zone).time()
                non_email = [r for r in m.chain if r.channel != "email"]
                if non_email and not recipient.night_consent:
                    assert not policy.quiet_hours.contains(hour), "advertising planned inside quiet hours"
                if any(r.channel == "brand_message" for r in m.chain):  # Kakao's hours are Korean time
                    assert not policy.brand_message_closed.contains(local(m.send_at, "Asia/Seoul").time())
                    assert recipient.kakao_friend
        ledger += result.ledger_entries()
        # every audience member of every due campaign is planned or has a reason, exactly once
        for campaign in campaigns:
            members = set(st_.audiences.get(campaign.id, ()))
            got = [m.customer_id for m in result.messages if m.campaign_id == campaign.id]
            got += [s.customer_id for s in result.suppressions if s.campaign_id == campaign.id]
            assert len(got) == len(set(got))
            assert set(got) in (members, set())
    # caps are never exceeded, in any rolling window
    for customer in st_.recipients:
        times = sorted(e.send_at for e in ledger if e.customer_id == customer and e.purpose == "advertising")
        for cap in policy.caps:
            for i, start in enumerate(times):
                assert sum(1 for t in times[i:] if t < start + cap.per) <= cap.limit, f"cap {cap.name} exceeded"


def test_campaign_rules_are_checked_when_built() -> None:
    from shopcrm.errors import CampaignError

    with pytest.raises(CampaignError, match="AlimTalk carries informational messages only"):
        broadcast(channels=["alimtalk"])
    with pytest.warns(DeprecationWarning, match="FriendTalk ended on 2025-12-31"):
        c = broadcast(channels=["friendtalk", "sms"])
    assert c.channels == ("brand_message", "sms")
    with pytest.raises(CampaignError, match=r"schedule.triggered.steps.0: a step is one of"):
        parse_campaign({**CART, "schedule": {**CART["schedule"], "steps": [{"sleep": "1d"}]}})  # type: ignore[dict-item]
    with pytest.raises(CampaignError, match="wait: '1 day' is not a duration"):
        parse_campaign({**CART, "schedule": {**CART["schedule"], "steps": [{"wait": "1 day"}, {"send": "x"}]}})  # type: ignore[dict-item]
    round_trip = parse_campaign(parse_campaign(CART).to_json())
    assert round_trip == parse_campaign(CART)


def test_advertising_without_the_sender_and_opt_out_lines_is_refused_not_sent() -> None:
    from shopcrm.errors import CampaignError

    with pytest.raises(CampaignError, match=r"winter-sale: advertising needs the free opt-out number \(무료수신거부 080-...\)"):
        plan([broadcast()], state([person("p")]), now=MORNING, policy=MessagingPolicy(sender_name="마음상점"))
    # informational messages carry no ad lines, so the bare policy plans them
    informational = plan([broadcast(purpose="informational")], state([person("p")]), now=MORNING)
    assert len(informational.messages) == 1


def test_a_template_that_fails_for_some_customers_suppresses_them_each_with_the_reason() -> None:
    campaign = broadcast(variants=[{"name": "a", "content": {"text": "{{ coupon|krw }} 쿠폰"}}])
    people = [person("ok", attributes={"coupon": 3000}), person("bad1", attributes={"coupon": "x"}),
              person("bad2", attributes={"coupon": "x"})]
    result = plan([campaign], state(people), now=MORNING, policy=POLICY)
    assert [m.customer_id for m in result.messages] == ["ok"]
    failed = [(s.customer_id, s.reason, s.detail) for s in result.suppressions]
    assert failed == [(c, "render_failed", "sms.text: krw needs a number of won; got 'x'") for c in ("bad1", "bad2")]
