"""The planner's one-pass broadcast (``_Planner.broadcast``) plans exactly what the member-by-member walk does.

The batch path decides once what many members share (the channel chain per consent pattern, the clock rules
per zone, renderings per template values, prices per kind); these properties draw small random shops with
every case that path distinguishes and compare the two plans field by field.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopcrm.campaigns import (
    AudienceHashes,
    Campaign,
    LedgerEntry,
    MessagingPolicy,
    Recipient,
    ShopState,
    bucket,
    in_global_control,
    parse_campaign,
)
from shopcrm.campaigns._planner import _choose, _Planner, due_occurrence, idempotency_key, paused_gc
from shopcrm.campaigns._policy import Cap, Window
from shopcrm.campaigns._preview import _preview
from shopcrm.errors import CampaignError
from shopcrm.tracking import TrackingPolicy

GIVEN = datetime(2026, 1, 1)
OLD = datetime(2023, 6, 1)
TEXTS = [
    "{{ name }}님, 겨울 세일 20%",
    "{{ name|은는 }} 대상이에요. 오늘 {{ now.hour }}시",
    "{{ customer_id }} {{ campaign.id }}",  # a dict value: rendered per message
    "{{ 100 // n }}% 할인",  # fails for n = 0 (render_failed) and for a missing n
    "{{ name }} " + "가" * 40,  # an LMS for long names
    "{{ coupon }} 쿠폰 {{ link('https://shop.example/sale') }}",
    "{{ cart|length }}개",  # a list in the context: unhashable
    "{{ n }}점",  # equal values that print differently (1, 1.0, True; 0.0, -0.0) never share a rendering
]


@st.composite
def profile(draw: st.DrawFn) -> dict[str, Any]:
    attributes: dict[str, Any] = {"name": draw(st.sampled_from(["민수", "지영", "Kim", "가" * 30]))}
    if draw(st.booleans()):
        attributes["n"] = draw(st.integers(0, 3) | st.sampled_from([1.0, True, 0.0, -0.0, Decimal("1.0"), Decimal("1")]))
    return {
        "phone": draw(st.sampled_from([None, "010-1234-5678"])),
        "email": draw(st.sampled_from([None, "a@b.c"])),
        "push_token": draw(st.sampled_from([None, "tok"])),
        "kakao_friend": draw(st.booleans()),
        "timezone": draw(st.sampled_from([None, "Asia/Seoul", "America/New_York"])),
        "consents": draw(st.dictionaries(st.sampled_from(["sms", "kakao", "email", "push"]), st.sampled_from([GIVEN, OLD]))),
        "night_consent": draw(st.booleans()),
        "opted_out": frozenset(draw(st.sets(st.sampled_from(["sms", "kakao", "email", "all"]), max_size=2))),
        "attributes": attributes,
    }


@st.composite
def shops(draw: st.DrawFn) -> tuple[list[Campaign], ShopState, MessagingPolicy, datetime]:
    n = draw(st.integers(1, 25))
    ints = draw(st.booleans())
    ids: list[Any] = [i if ints else f"c{i}" for i in range(n)]
    people = {}
    contexts: dict[Any, dict[str, Any]] = {}
    # a few profiles, each member a copy with one field changed or not: members that differ in one thing only
    profiles = [draw(profile()) for _ in range(draw(st.integers(1, 3)))]
    for cid in ids:
        if draw(st.integers(0, 9)) == 0:
            continue  # in an audience, not among the recipients
        fields = dict(draw(st.sampled_from(profiles)))
        if draw(st.booleans()):
            other = draw(profile())
            changed = draw(st.sampled_from(sorted(other)))
            fields[changed] = other[changed]
        people[cid] = Recipient(customer_id=cid, **fields)
        extra = draw(st.sampled_from([None, {"coupon": "C1"}, {"coupon": "C2", "name": "덮어씀"}, {"cart": [1, 2]}]))
        if extra is not None:
            contexts[cid] = extra
    now = datetime(2026, 11, 24, 12) + timedelta(minutes=draw(st.integers(0, 60 * 30)))
    campaigns = []
    audiences: dict[str, list[Any]] = {}
    received: dict[str, dict[Any, datetime]] = {}
    settled: set[str] = set()
    planned: list[LedgerEntry] = []
    recorded: set[tuple[str, Any]] = set()  # (campaign, customer) of every settled and ledger key
    hashes: dict[str, AudienceHashes] = {}
    for k in range(draw(st.integers(1, 3))):
        texts = draw(st.lists(st.sampled_from(TEXTS), min_size=1, max_size=3))
        recurring = draw(st.booleans())
        hour = draw(st.integers(0, 23))
        purpose = draw(st.sampled_from(["advertising", "informational"]))
        offered = ["brand_message", "sms", "email", "push"] + (["alimtalk"] if purpose == "informational" else [])
        doc: dict[str, Any] = {
            "id": f"k{k}", "purpose": purpose,
            "channels": draw(st.lists(st.sampled_from(offered), min_size=1, max_size=3, unique=True)),
            "priority": draw(st.integers(0, 2)), "holdout_percent": draw(st.sampled_from([0, 10, 50])),
            "variants": [{"name": f"v{i}", "weight": draw(st.integers(1, 3)),
                          "content": {"text": text, "subject": "제목",
                                      "alimtalk": {"template_code": "T1", "body": "#{name}", "variables": {"name": "{{ name }}"}}}}
                         for i, text in enumerate(texts)],
            "schedule": ({"kind": "recurring", "at": f"{hour:02d}:30:00", "weekdays": [0, 1, 2, 3, 4, 5, 6],
                          "reentry": draw(st.sampled_from(["once", "every_time", "3d"]))} if recurring
                         else {"kind": "one_off", "at": f"2026-11-2{draw(st.integers(3, 5))}T{hour:02d}:00:00"}),
            "max_delay": draw(st.sampled_from(["1h", "1d", "7d"])),
        }
        campaign = parse_campaign(doc)
        campaigns.append(campaign)
        members = draw(st.lists(st.sampled_from(ids), max_size=30))  # duplicates: the second is already planned
        audiences[campaign.id] = members
        received[campaign.id] = {c: now - timedelta(days=draw(st.integers(0, 6))) for c in members if draw(st.booleans())}
        for c in members:
            if draw(st.integers(0, 7)) == 0:
                occurrence = "once" if not recurring else draw(st.sampled_from(["2026-11-24", "2026-11-25"]))
                recorded.add((campaign.id, c))
                if draw(st.booleans()):
                    settled.add(idempotency_key(campaign.id, occurrence, "main", c))
                else:  # planned by an earlier tick: in the ledger
                    planned.append(LedgerEntry(idempotency_key(campaign.id, occurrence, "main", c), c, campaign.id,
                                               campaign.purpose, campaign.channels[0], now - timedelta(hours=1)))
        due = due_occurrence(campaign, now)
        if due is not None and draw(st.booleans()):  # an engine's hashes beside the audience, some of them missing
            given = [python_hashes(campaign, due[0], c) for c in members]
            columns = [None if draw(st.integers(0, 3)) == 0 else [draw(st.sampled_from([None, row[k]])) for row in given]
                       for k in range(4)]
            hashes[campaign.id] = AudienceHashes(occurrence=due[0], step="main", members=list(members), keys=columns[0],
                                                 controlled=columns[1], held_out=columns[2], variant=columns[3])
    if campaigns and draw(st.booleans()):  # a campaign listed twice: its second listing finds the first's keys
        campaigns.append(draw(st.sampled_from(campaigns)))
    ledger = [
        LedgerEntry(f"old{i}", cid, "earlier", draw(st.sampled_from(["advertising", "informational"])),
                    draw(st.sampled_from(["sms", "brand_message"])), now - timedelta(hours=draw(st.integers(-30, 30))))
        for i, cid in enumerate(draw(st.lists(st.sampled_from(ids), max_size=15)))
    ] + planned
    recorded.update((e.campaign_id, e.customer_id) for e in ledger)
    policy = MessagingPolicy(
        sender_name="s", sender_contact="1588", opt_out_number="080-000-0000", unsubscribe_url="https://u/{customer_id}",
        consent_valid_for=draw(st.sampled_from([None, timedelta(days=730)])),
        brand_message_friends_only=draw(st.booleans()),
        night_consent_lifts_quiet_hours=draw(st.booleans()),
        quiet_hours=draw(st.sampled_from([Window(time(21), time(8)), Window(time(20), time(9))])),
        caps=draw(st.sampled_from([
            MessagingPolicy().caps, (), (Cap("advertising", 0, timedelta(days=1)),),
            (Cap("any", 2, timedelta(hours=12)), Cap("advertising", 1, timedelta(days=1), channel="sms")),
        ])),
        global_control_percent=draw(st.sampled_from([0.0, 20.0])),
        tracking=draw(st.sampled_from([None, TrackingPolicy(base_url="https://t.example/r", secret="s" * 32,
                                                            unsubscribe_url=draw(st.sampled_from(["", "https://t.example/u"])))])),
    )
    state = ShopState(recipients=people, audiences=audiences, ledger=ledger, received=received, settled=frozenset(settled),
                      contexts=contexts, hashes=hashes, recorded=draw(st.sampled_from([None, frozenset(recorded)])))
    return campaigns, state, policy, now


def python_hashes(campaign: Campaign, occurrence: str, customer_id: Any) -> tuple[Any, ...]:
    """What an engine would compute for a member (``AudienceHashes``), by the planner's own functions."""
    variants = campaign.variants_of(campaign.send_steps()[0])
    policy = MessagingPolicy(global_control_percent=20.0)
    return (idempotency_key(campaign.id, occurrence, "main", customer_id), in_global_control(customer_id, policy),
            bucket(f"holdout:{campaign.id}", customer_id) < campaign.holdout_percent * 100,
            variants.index(_choose(variants, campaign.id, "main", customer_id)))


def run(campaigns: list[Campaign], state: ShopState, policy: MessagingPolicy, now: datetime, **options: Any) -> Any:
    """The plan, or the problems of a refused campaign (a tracked link without a tracking base)."""
    try:
        with paused_gc():
            return _Planner(campaigns, state, now, policy, **options).run()
    except CampaignError as error:
        return error.problems


def plans(campaigns: list[Campaign], state: ShopState, policy: MessagingPolicy, now: datetime, **options: Any) -> tuple[Any, Any]:
    return run(campaigns, state, policy, now, **options), run(campaigns, state, policy, now, batch=False, **options)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops())
def test_the_one_pass_broadcast_plans_what_the_member_by_member_walk_plans(
    shop: tuple[list[Campaign], ShopState, MessagingPolicy, datetime],
) -> None:
    campaigns, state, policy, now = shop
    batch, walked = plans(campaigns, state, policy, now)
    assert batch == walked


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops())
def test_without_fallback_renderings_too(shop: tuple[list[Campaign], ShopState, MessagingPolicy, datetime]) -> None:
    campaigns, state, policy, now = shop
    batch, walked = plans(campaigns, state, policy, now, render_fallbacks=False)
    assert batch == walked


def test_members_sharing_template_values_share_one_rendering_object() -> None:
    people = {f"c{i}": Recipient(customer_id=f"c{i}", phone="010", consents={"sms": GIVEN}, attributes={"name": "민수"})
              for i in range(50)}
    campaign = parse_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님 세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    })
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000")
    now = datetime(2026, 11, 25, 2)
    batch, walked = plans([campaign], ShopState(recipients=people, audiences={"sale": list(people)}), policy, now)
    assert batch == walked
    assert len(batch.messages) == 50
    assert len({id(m.chain) for m in batch.messages}) == 1


def test_equal_values_that_print_differently_never_share_a_rendering() -> None:
    seoul = timezone(timedelta(hours=9))
    values = [1, True, 1.0, Decimal("1.0"), 0.0, -0.0, "1", datetime(2026, 1, 1, 9),
              datetime(2026, 1, 1, 9, tzinfo=seoul), datetime(2026, 1, 1, tzinfo=UTC)]  # one instant, two zones
    people = {f"c{i}": Recipient(customer_id=f"c{i}", phone="010", consents={"sms": GIVEN}, attributes={"n": v})
              for i, v in enumerate(values)}
    campaign = parse_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ n }}점"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    })
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000")
    batch, walked = plans([campaign], ShopState(recipients=people, audiences={"sale": list(people)}),
                          policy, datetime(2026, 11, 25, 2))
    assert batch == walked
    texts = {m.customer_id: m.chain[0].text for m in batch.messages}
    # instants reach templates in the recipient's local time (Seoul here): naive 09:00 is UTC, 18:00 in Seoul; the
    # aware two are one instant, 09:00 in Seoul
    assert [texts[f"c{i}"].split("점")[0].split()[-1] for i in range(len(values))] == [
        "1", "True", "1.0", "1.0", "0.0", "-0.0", "1", "18:00:00", "09:00:00", "09:00:00"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops())
def test_the_one_pass_preview_equals_the_member_by_member_preview(
    shop: tuple[list[Campaign], ShopState, MessagingPolicy, datetime],
) -> None:
    campaigns, state, policy, now = shop

    def preview(by_member: bool) -> Any:
        try:
            with paused_gc():
                return [_preview(c, state, now, policy, by_member=by_member) for c in campaigns]
        except CampaignError as error:
            return error.problems

    assert preview(by_member=False) == preview(by_member=True)


def test_members_alike_but_for_their_zone_or_night_consent_get_their_own_funnel_stage() -> None:
    base = {"phone": "010", "consents": {"sms": GIVEN}, "attributes": {"name": "민수"}}
    people = {
        "seoul": Recipient(customer_id="seoul", timezone="Asia/Seoul", **base),  # type: ignore[arg-type]
        "new-york": Recipient(customer_id="new-york", timezone="America/New_York", **base),  # type: ignore[arg-type]
        "night": Recipient(customer_id="night", timezone="Asia/Seoul", night_consent=True, **base),  # type: ignore[arg-type]
    }
    campaign = parse_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님 세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    })
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000")
    now = datetime(2026, 11, 25, 14)  # 23:00 in Seoul, 09:00 in New York
    state = ShopState(recipients=people, audiences={"sale": list(people)})
    fast, slow = (_preview(campaign, state, now, policy, by_member=b) for b in (False, True))
    assert fast == slow
    assert (fast.funnels[0].sendable_now, fast.funnels[0].deferred) == (2, 1)


def test_a_scenario_after_a_broadcast_counts_the_broadcasts_messages_against_its_caps() -> None:
    """The one-pass broadcast hands its messages to the caps in one batch: a lower-priority scenario planned after it
    in the same plan still sees them (one advertising message a day: the scenario's send is capped), and its own
    message is not counted twice."""
    people = {f"c{i}": Recipient(customer_id=f"c{i}", phone="010", consents={"sms": GIVEN}, attributes={"name": "민수"})
              for i in range(4)}
    sale = parse_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["sms"], "priority": 2,
        "variants": [{"name": "a", "content": {"text": "{{ name }}님 세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    })
    reminder = parse_campaign({
        "id": "reminder", "purpose": "advertising", "channels": ["sms"], "priority": 1,
        "variants": [{"name": "a", "content": {"text": "장바구니"}}],
        "schedule": {"kind": "triggered", "on": "cart_added", "steps": [{"send": "main"}, {"wait": "1h"}, {"send": "again"}]},
    })
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000",
                             caps=(Cap("advertising", 2, timedelta(days=1)),))
    now = datetime(2026, 11, 25, 3)
    state = ShopState(recipients=people, audiences={"sale": ["c0", "c1"]},
                      triggers={"reminder": {"c1": [now - timedelta(hours=2)], "c2": [now - timedelta(hours=2)]}})
    batch, walked = plans([sale, reminder], state, policy, now)
    assert batch == walked
    planned = sorted((m.campaign_id, m.customer_id, m.step) for m in batch.messages)
    # c1 got the sale: one reminder fits under the cap of two, the second is capped; c2 gets both reminders
    assert planned == [("reminder", "c1", "main"), ("reminder", "c2", "again"), ("reminder", "c2", "main"),
                       ("sale", "c0", "main"), ("sale", "c1", "main")]
    assert [(s.customer_id, s.step, s.reason) for s in batch.suppressions] == [("c1", "again", "capped")]


def test_the_positional_constructors_give_the_real_frozen_class() -> None:
    """``_maker`` builds a class without a ``__weakref__`` slot through a plain slotted twin, then gives it its real
    class: the object is of that class (equal, hashed and frozen like one built by ``__init__``); a class with the
    slot is filled through its slots' descriptors instead."""
    import attrs
    import pytest

    from shopcrm.campaigns._planner import PlannedMessage, Suppression, _maker, _new_message, _new_suppression

    message = _new_message("k", "c1", "sale", "main", "once", "a", "advertising", (), ("010",), GIVEN, GIVEN, 1.5,
                           False, True)
    assert type(message) is PlannedMessage
    assert message == PlannedMessage(key="k", customer_id="c1", campaign_id="sale", step="main", occurrence="once",
                                     variant="a", purpose="advertising", chain=(), contacts=("010",), due_at=GIVEN,
                                     send_at=GIVEN, estimated_cost=1.5, deferred=False, friend=True)
    assert type(_new_suppression("c1", "sale", "main", "holdout", "", "k", "once", GIVEN, GIVEN)) is Suppression
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.key = "other"  # type: ignore[misc]

    @attrs.frozen
    class Weak:  # a __weakref__ slot: CPython refuses the class change, so the descriptors fill it
        a: int
        b: str

    made = _maker(Weak)(1, "x")
    assert type(made) is Weak
    assert made == Weak(1, "x")


def test_members_whose_values_fail_the_template_render_it_once_per_channel(monkeypatch: Any) -> None:
    """The broadcast remembers a failed rendering by its values as it remembers a good one: fifty members with
    ``n = 0`` render ``100 // n`` once per channel (not fifty times), and each is left out as the walk leaves it out."""
    from shopcrm.campaigns._templates import Renderer

    people = {f"c{i}": Recipient(customer_id=f"c{i}", phone="010", consents={"sms": GIVEN, "kakao": GIVEN},
                                 kakao_friend=True, attributes={"n": 0}) for i in range(50)}
    campaign = parse_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["brand_message", "sms"],
        "variants": [{"name": "a", "content": {"text": "{{ 100 // n }}% 할인"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    })
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000")
    now = datetime(2026, 11, 25, 2)
    state = ShopState(recipients=people, audiences={"sale": list(people)})
    batch, walked = plans([campaign], state, policy, now)
    assert batch == walked
    assert batch.reasons() == {"render_failed": 50}
    renders = []
    original = Renderer.render

    def counted(self: Renderer, *args: Any, **kwargs: Any) -> Any:
        renders.append(args[1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Renderer, "render", counted)
    with paused_gc():
        _Planner([campaign], state, now, policy).run()
    assert renders == ["brand_message"]  # the chain's first channel fails: the member is left out there


def test_the_planner_takes_the_engines_hashes_as_given() -> None:
    """The hashes of ``ShopState.hashes`` decide (keys, holdout, variant), for the occurrence and step they name
    only; members without them are hashed by the planner."""
    people = {i: Recipient(customer_id=i, phone="010", consents={"sms": GIVEN}) for i in range(6)}
    campaign = parse_campaign({
        "id": "sale", "purpose": "informational", "channels": ["sms"], "holdout_percent": 10,
        "variants": [{"name": "a", "content": {"text": "A"}}, {"name": "b", "content": {"text": "B"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    })
    now = datetime(2026, 11, 25, 2)
    audience = [5, 4, 3, 2, 1, 0]  # the planner sorts them by repr, their hashes with them

    def planned(occurrence: str, members: list[Any] = audience) -> dict[Any, Any]:
        given = AudienceHashes(occurrence=occurrence, step="main", members=members,
                               keys=[None, None, None, None, "k1", "k0"], held_out=[None, None, None, False, False, True],
                               variant=[None, None, None, 0, 1, None])
        state = ShopState(recipients=people, audiences={"sale": audience}, hashes={"sale": given})
        result = run([campaign], state, MessagingPolicy(), now)
        return {**{m.customer_id: (m.key, m.variant) for m in result.messages},
                **{s.customer_id: (s.key, s.reason) for s in result.suppressions}}

    found = planned("once")
    python = run([campaign], ShopState(recipients=people, audiences={"sale": list(people)}), MessagingPolicy(), now)
    expected = {m.customer_id: (m.key, m.variant) for m in python.messages} | {
        s.customer_id: (s.key, s.reason) for s in python.suppressions}
    assert found[0] == ("k0", "holdout")
    assert found[1] == ("k1", "b")
    assert found[2] == (expected[2][0], "a")  # its key by the planner, its variant as given
    assert all(found[i] == expected[i] for i in (3, 4, 5))  # no hashes: the planner's
    assert planned("2026-11-25") == expected  # another occurrence's hashes are not this one's
    assert planned("once", list(range(6))) == expected  # nor another audience's
