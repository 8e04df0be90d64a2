"""The pure reference of attribution (measurement.md sections 1-3 and 5), worked by hand, then by property."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shopcrm
from shopcrm import Shop
from shopcrm.measurement import (
    AttributionPolicy,
    Click,
    Conversion,
    Credits,
    Send,
    attribute,
    attributed,
    conversions,
    influenced,
    summarise,
)

T0 = datetime(2026, 3, 2, 9, 0)
US = timedelta(microseconds=1)
DAY = timedelta(days=1)


def send(key: str, *, customer: Any = "c1", campaign: str = "spring", variant: str = "A", step: str = "s1",
         channel: str = "email", kind: str = "", at: datetime = T0, cost: float = 0.0) -> Send:
    return Send(message_key=key, customer_id=customer, campaign_id=campaign, variant=variant, step=step,
                channel=channel, kind=kind or channel, sent_at=at, cost=cost)


def order(at: datetime, amount: Any = 10_000, *, customer: Any = "c1", order_id: Any = None, **props: Any) -> dict[str, Any]:
    properties = dict(props)
    if amount is not ...:
        properties["amount"] = amount
    if order_id is not None:
        properties["order_id"] = order_id
    return {"customer_id": customer, "event": "order_completed", "ts": at, "properties": properties}


def winner(credits: Credits) -> str | None:
    assert len(credits.attributed) <= 1
    return credits.attributed[0].send.message_key if credits.attributed else None


# ------------------------------------------------------------------------------------------ the policy
def test_default_windows_are_the_contracts_table() -> None:
    p = AttributionPolicy()
    assert (p.conversion_event, p.revenue_property, p.measurement_window) == ("order_completed", "amount", 7 * DAY)
    expected = {"email": (5 * DAY, DAY), "sms": (5 * DAY, timedelta(hours=12)), "lms": (5 * DAY, timedelta(hours=12)),
                "mms": (5 * DAY, timedelta(hours=12)), "alimtalk": (5 * DAY, DAY), "brand_message": (5 * DAY, DAY),
                "push": (3 * DAY, DAY), "webhook": (5 * DAY, timedelta(0))}
    assert {c: (p.click_window(c), p.receipt_window(c)) for c in expected} == expected
    assert (p.click_window("my_plugin"), p.receipt_window("my_plugin")) == (5 * DAY, timedelta(0))


def test_policy_round_trips_through_json() -> None:
    import json

    p = AttributionPolicy(conversion_event="purchase", revenue_property="total",
                          click_windows={"email": timedelta(days=2), "sms": timedelta(hours=36)},
                          receipt_windows={"email": timedelta(hours=6)}, measurement_window=timedelta(days=14))
    again = AttributionPolicy.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert AttributionPolicy.from_dict(AttributionPolicy().to_dict()) == AttributionPolicy()
    with pytest.raises(ValueError, match="no click window for channel 'push'"):
        again.click_window("push")  # a table given replaces the defaults whole, '*' included


def test_policy_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="no field 'windows'; its fields are"):
        AttributionPolicy.from_dict({"windows": {}})
    with pytest.raises(ValueError, match="'sms' window must be zero or longer"):
        AttributionPolicy(click_windows={"sms": timedelta(hours=-1)})
    with pytest.raises(ValueError, match="conversion_event must be a non-empty"):
        AttributionPolicy(conversion_event="")
    with pytest.raises(ValueError, match="measurement_window must be a positive"):
        AttributionPolicy(measurement_window=timedelta(0))


def test_the_shop_stores_its_attribution_policy(tmp_path: Any) -> None:
    path = tmp_path / "shop.duckdb"
    with Shop.open(path) as shop:
        assert shop.attribution_policy == AttributionPolicy()
        assert shop.settings.get("attribution_policy") is None
        shop.attribution_policy = AttributionPolicy(click_windows={"email": timedelta(days=1)})
    with Shop.open(path) as shop:
        assert shop.attribution_policy.click_window("email") == DAY
    assert shopcrm.AttributionPolicy is AttributionPolicy


# ------------------------------------------------------------------------------------------ conversions
def test_conversions_dedupe_by_order_keeping_the_earliest() -> None:
    events = [
        order(T0 + 2 * DAY, 30_000, order_id="o1"),
        order(T0 + DAY, 20_000, order_id="o1"),           # the earliest of o1: its time and revenue
        order(T0 + DAY, 5_000, order_id="o1", customer="c2"),  # another customer's o1 is another conversion
        order(T0 + 3 * DAY, 7_000, order_id=1),
        order(T0 + 4 * DAY, 8_000, order_id="1"),       # 1 and "1" are one order (compared as text)
        order(T0, None),                                # NULL revenue: a conversion worth 0
        order(T0, ...),                                 # missing revenue: a conversion worth 0
        order(T0, "12.5"),                              # a numeric string counts
        order(T0, "n/a"),                               # anything else is 0
        {"customer_id": "c1", "event": "page_viewed", "ts": T0, "properties": {"amount": 1}},
    ]
    got = conversions(events)
    assert sorted((c.customer_id, c.ts, c.revenue, c.order_id) for c in got) == sorted([
        ("c1", T0 + DAY, 20_000.0, "o1"), ("c2", T0 + DAY, 5_000.0, "o1"), ("c1", T0 + 3 * DAY, 7_000.0, "1"),
        ("c1", T0, 0.0, None), ("c1", T0, 0.0, None), ("c1", T0, 12.5, None), ("c1", T0, 0.0, None),
    ])
    # events without an order id are one conversion each, even when identical
    assert [c.seq for c in got if c.order_id is None and c.revenue == 0] == [0, 1, 2]


def test_same_instant_same_order_keeps_the_larger_revenue_and_honours_the_policy() -> None:
    assert [c.revenue for c in conversions([order(T0, 1, order_id="o"), order(T0, 9, order_id="o")])] == [9.0]
    policy = AttributionPolicy(conversion_event="purchase", revenue_property="total")
    rows = [{"customer_id": 7, "event": "purchase", "ts": "2026-03-02T09:00:00Z", "properties": '{"total": 3}'}]
    assert conversions(rows, policy) == [Conversion(customer_id=7, ts=T0, revenue=3.0)]
    assert conversions(rows) == []


# ------------------------------------------------------------------------------------------ last click
@pytest.mark.parametrize(("offset", "credited"), [
    (timedelta(0), True),                  # s itself is covered
    (5 * DAY - US, True),                  # the last microsecond of the window
    (5 * DAY, False),                      # s + window is not
    (-US, False),                          # before the click
])
def test_click_window_is_half_open_to_the_microsecond(offset: timedelta, credited: bool) -> None:
    click_at = T0 + timedelta(hours=1)
    credits = attribute([send("m1")], [Click(message_key="m1", clicked_at=click_at)], [order(click_at + offset)])
    assert winner(credits) == ("m1" if credited else None)


def test_the_latest_click_wins() -> None:
    sends = [send("m1", at=T0), send("m2", at=T0 + DAY, channel="sms")]
    clicks = [Click(message_key="m2", clicked_at=T0 + DAY + timedelta(hours=1)),
              Click(message_key="m1", clicked_at=T0 + 2 * DAY)]  # m1 clicked later though sent earlier
    credits = attribute(sends, clicks, [order(T0 + 3 * DAY)])
    assert winner(credits) == "m1"
    assert credits.attributed[0].clicked_at == T0 + 2 * DAY


def test_ties_go_to_the_later_send_then_the_smaller_key() -> None:
    at = T0 + DAY
    sends = [send("m1", at=T0), send("m2", at=T0 + timedelta(hours=2)), send("m0", at=T0 + timedelta(hours=2))]
    clicks = [Click(message_key=k, clicked_at=at) for k in ("m1", "m2", "m0")]
    assert winner(attribute(sends, clicks, [order(at)])) == "m0"   # m2 and m0 sent later than m1; m0 < m2
    assert winner(attribute(sends[:2], clicks, [order(at)])) == "m2"


def test_a_click_before_its_send_or_on_no_send_does_not_count() -> None:
    credits = attribute([send("m1", at=T0)],
                        [Click(message_key="m1", clicked_at=T0 - US), Click(message_key="ghost", clicked_at=T0)],
                        [order(T0 + timedelta(hours=1))])
    assert winner(credits) is None
    assert credits.clicks == ()
    assert summarise(credits)[0].clicked == 0


def test_a_click_credits_only_its_recipients_conversions() -> None:
    credits = attribute([send("m1", customer="c1")], [Click(message_key="m1", clicked_at=T0)],
                        [order(T0 + DAY, customer="c2")])
    assert credits.attributed == ()
    assert credits.receipts == ()


def test_the_carrying_channels_click_window_applies() -> None:
    # an AlimTalk that fell back to LMS is judged by sms's windows, a push by push's 3 days
    policy = AttributionPolicy(click_windows={"alimtalk": 10 * DAY, "sms": DAY, "push": 3 * DAY})
    fell_back = send("m1", channel="sms", kind="lms")
    click = Click(message_key="m1", clicked_at=T0)
    assert winner(attribute([fell_back], [click], [order(T0 + DAY - US)], policy)) == "m1"
    assert winner(attribute([fell_back], [click], [order(T0 + 2 * DAY)], policy)) is None
    assert winner(attribute([send("m1", channel="alimtalk")], [click], [order(T0 + 2 * DAY)], policy)) == "m1"
    pushed = send("m1", channel="push")
    assert winner(attribute([pushed], [click], [order(T0 + 3 * DAY - US)])) == "m1"
    assert winner(attribute([pushed], [click], [order(T0 + 3 * DAY)])) is None


def test_each_conversion_is_attributed_once_and_a_later_covering_click_takes_the_next() -> None:
    sends = [send("m1"), send("m2", at=T0 + DAY)]
    clicks = [Click(message_key="m1", clicked_at=T0), Click(message_key="m2", clicked_at=T0 + 2 * DAY)]
    credits = attribute(sends, clicks, [order(T0 + timedelta(hours=1), 100), order(T0 + 3 * DAY, 200)])
    assert sorted((c.send.message_key, c.conversion.revenue) for c in credits.attributed) == [("m1", 100), ("m2", 200)]
    assert credits.attributed_rows() == [(("c1", T0 + timedelta(hours=1), 100.0, 0), "m1"),
                                         (("c1", T0 + 3 * DAY, 200.0, 0), "m2")]
    keyed = attribute(sends, clicks, [order(T0 + timedelta(hours=1), 100, order_id=7)])
    assert keyed.attributed_rows() == [(("c1", "7"), "m1")]
    assert keyed.receipt_rows() == [(("c1", "7"), "m1")]


def test_duplicate_message_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="message key 'm1' is given for two sends"):
        attribute([send("m1"), send("m1")], [], [])


def test_clicks_on_rival_sends_compete_but_take_no_credit() -> None:
    """Contract section 3: the last click is chosen among every covering click, whatever campaign or time its
    message belongs to; the sends reported get a conversion only when their click is that winner."""
    spring = send("m-spring", campaign="spring", at=T0)
    autumn = send("m-autumn", campaign="autumn", at=T0 + DAY, channel="sms", kind="lms")
    clicks = [Click(message_key="m-spring", clicked_at=T0 + timedelta(hours=1)),
              Click(message_key="m-autumn", clicked_at=T0 + DAY + timedelta(hours=1))]
    events = [order(T0 + DAY + timedelta(hours=2), 100, order_id="o1")]
    assert winner(attribute([spring, autumn], clicks, events)) == "m-autumn"
    alone = attribute([spring], clicks, events, rivals=[autumn])    # spring's report: autumn's click wins
    assert alone.attributed == ()
    assert [k.message_key for k in alone.clicks] == ["m-spring"]   # spring was still clicked
    assert [s.message_key for s in alone.sends] == ["m-spring"]
    assert summarise(alone)[0].clicked == 1
    assert winner(attribute([autumn], clicks, events, rivals=[spring])) == "m-autumn"
    # influenced credit is per campaign: a rival takes none of it (the LMS covers the order for 12 hours)
    assert [c.send.message_key for c in attribute([autumn], [], events, rivals=[spring]).receipts] == ["m-autumn"]
    # a rival's click before its send, or on a message sent to another customer, competes for nothing
    early = [clicks[0], Click(message_key="m-autumn", clicked_at=T0 + DAY - US)]
    assert winner(attribute([spring], early, events, rivals=[autumn])) == "m-spring"
    other = send("m-other", customer="c2", campaign="autumn", at=T0 + DAY)
    late = [clicks[0], Click(message_key="m-other", clicked_at=T0 + DAY + timedelta(hours=1))]
    assert winner(attribute([spring], late, events, rivals=[other])) == "m-spring"
    with pytest.raises(ValueError, match="message key 'm-spring' is given for two sends"):
        attribute([spring], clicks, events, rivals=[spring])


# ------------------------------------------------------------------------------------------ influenced
@pytest.mark.parametrize(("channel", "window"), [
    ("email", DAY), ("sms", timedelta(hours=12)), ("push", DAY), ("alimtalk", DAY),
])
def test_receipt_window_is_half_open(channel: str, window: timedelta) -> None:
    for offset, covered in ((timedelta(0), True), (window - US, True), (window, False), (-US, False)):
        credits = attribute([send("m1", channel=channel)], [], [order(T0 + offset)])
        assert len(credits.receipts) == int(covered), (channel, offset)


def test_a_webhook_gets_no_receipt_credit() -> None:
    assert attribute([send("m1", channel="webhook")], [], [order(T0)]).receipts == ()


def test_influenced_counts_a_conversion_once_per_campaign_and_once_per_cell() -> None:
    sends = [
        send("a1", variant="A", step="s1", channel="email", at=T0),
        send("a2", variant="A", step="s2", channel="sms", at=T0 + timedelta(hours=1)),
        send("b1", variant="B", step="s1", channel="sms", at=T0 + timedelta(hours=2)),
        send("x1", campaign="other", at=T0),
    ]
    credits = attribute(sends, [], [order(T0 + timedelta(hours=3), 50_000)])
    assert len(credits.receipts) == 4                       # every covering send, raw
    per_campaign = influenced(credits)
    assert per_campaign == {("other",): shopcrm_tally(1, 50_000), ("spring",): shopcrm_tally(1, 50_000)}
    assert influenced(credits, by=("variant",)) == {
        ("other", "A"): shopcrm_tally(1, 50_000), ("spring", "A"): shopcrm_tally(1, 50_000),
        ("spring", "B"): shopcrm_tally(1, 50_000),
    }
    assert influenced(credits, by=("step",))[("spring", "s1")] == shopcrm_tally(1, 50_000)  # a1 and b1: once
    assert influenced(credits, by=("channel",))[("spring", "sms")] == shopcrm_tally(1, 50_000)  # a2 and b1: once
    rows = {s.campaign_id: s for s in summarise(credits)}
    assert (rows["spring"].influenced_conversions, rows["spring"].influenced_revenue) == (1, 50_000)
    assert rows["spring"].attributed_conversions == 0


def shopcrm_tally(conversions: int, revenue: float, customers: int = 1) -> Any:
    from shopcrm.measurement import Tally

    return Tally(conversions, float(revenue), customers)


def test_breakdowns_are_checked() -> None:
    credits = attribute([], [], [])
    with pytest.raises(ValueError, match="cannot break a campaign down by 'persona'; choose among 'variant'"):
        influenced(credits, by=("persona",))
    with pytest.raises(ValueError, match="names a dimension twice"):
        summarise(credits, by=("step", "step"))


# ------------------------------------------------------------------------------------------ ratios
def test_summary_figures_and_ratios() -> None:
    sends = [
        send("m1", customer="c1", variant="A", at=T0, cost=10),
        send("m2", customer="c2", variant="A", at=T0, channel="sms", kind="lms", cost=39),
        send("m3", customer="c3", variant="B", at=T0, cost=10),
        send("m4", customer="c1", variant="B", at=T0 + DAY, cost=10),
    ]
    clicks = [Click(message_key="m1", clicked_at=T0 + timedelta(hours=1)),
              Click(message_key="m1", clicked_at=T0 + timedelta(hours=2)),  # one clicked message, twice
              Click(message_key="m3", clicked_at=T0 + timedelta(hours=1))]
    events = [order(T0 + timedelta(hours=3), 100_000, customer="c1", order_id="o1"),
              order(T0 + timedelta(hours=4), 100_000, customer="c1", order_id="o1"),  # the same order
              order(T0 + timedelta(hours=5), 40_000, customer="c2")]
    credits = attribute(sends, clicks, events)
    [whole] = summarise(credits)
    assert (whole.sends, whole.recipients, whole.clicked, whole.cost) == (4, 3, 2, 69)
    assert (whole.attributed_conversions, whole.attributed_revenue) == (1, 100_000)
    assert (whole.influenced_conversions, whole.influenced_revenue) == (2, 140_000)
    assert whole.ctr == 0.5
    assert whole.roas == pytest.approx(100_000 / 69)
    assert whole.attributed_conversion_rate == pytest.approx(1 / 3)
    assert whole.influenced_conversion_rate == pytest.approx(2 / 3)
    assert whole.messages_per_purchase == 4.0
    assert attributed(credits, by=("variant",)) == {("spring", "A"): shopcrm_tally(1, 100_000)}
    a, b = summarise(credits, by=("variant",))
    assert (a.cell, a.sends, a.recipients, a.clicked, a.attributed_conversions, a.influenced_conversions) == (
        (("variant", "A"),), 2, 2, 1, 1, 2)
    # B: c3 clicked but bought nothing; m4 was sent after c1's order
    assert (b.cell, b.sends, b.attributed_conversions, b.influenced_conversions) == ((("variant", "B"),), 2, 0, 0)
    assert b.messages_per_purchase is None
    assert b.cost_per_conversion is None
    assert b.to_dict()["variant"] == "B"
    assert b.to_dict()["roas"] == 0.0


def test_zero_denominators_give_none() -> None:
    [row] = summarise(attribute([send("m1", cost=0)], [], []))
    assert (row.ctr, row.attributed_conversion_rate) == (0.0, 0.0)
    assert row.roas is None
    assert row.messages_per_purchase is None
    assert row.cost_per_conversion is None
    assert summarise(attribute([], [], [order(T0)])) == []  # no sends: no campaign row


def test_worked_example_of_the_docs() -> None:
    sends = [send("k-email", customer="c1", campaign="spring", channel="email", at=datetime(2026, 3, 2, 10)),
             send("k-talk", customer="c1", campaign="restock", channel="sms", kind="lms",  # AlimTalk fell back
                  at=datetime(2026, 3, 3, 10), cost=39)]
    clicks = [Click(message_key="k-email", clicked_at=datetime(2026, 3, 2, 12))]
    credits = attribute(sends, clicks, [order(datetime(2026, 3, 3, 18), 59_000, customer="c1", order_id="A-1")])
    assert winner(credits) == "k-email"
    assert sorted(c.send.message_key for c in credits.receipts) == ["k-talk"]  # 8 h after the LMS, 32 h after the e-mail


# ------------------------------------------------------------------------------------------ properties
CUSTOMERS = ["c1", "c2", 3]
CHANNELS = ["email", "sms", "alimtalk", "brand_message", "push", "webhook", "plugin"]
HOURS = st.integers(min_value=0, max_value=24 * 12)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Send], list[Click], list[dict[str, Any]]]:
    n = draw(st.integers(0, 12))
    sends = [Send(message_key=f"m{i}", customer_id=draw(st.sampled_from(CUSTOMERS)),
                  campaign_id=draw(st.sampled_from(["a", "b"])), variant=draw(st.sampled_from(["A", "B"])),
                  step=draw(st.sampled_from(["s1", "s2"])), channel=draw(st.sampled_from(CHANNELS)),
                  sent_at=T0 + timedelta(hours=draw(HOURS)), cost=draw(st.sampled_from([0, 10, 39])))
             for i in range(n)]
    keys = [s.message_key for s in sends] + ["ghost"]
    clicks = [Click(message_key=draw(st.sampled_from(keys)), clicked_at=T0 + timedelta(hours=draw(HOURS)))
              for _ in range(draw(st.integers(0, 12)))]
    events = [order(T0 + timedelta(hours=draw(HOURS)), draw(st.sampled_from([None, 0, 5_000, 12_000, "7"])),
                    customer=draw(st.sampled_from(CUSTOMERS)), order_id=draw(st.sampled_from([None, "o1", "o2", 3])))
              for _ in range(draw(st.integers(0, 10)))]
    return sends, clicks, events


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_invariants(history: tuple[list[Send], list[Click], list[dict[str, Any]]], rnd: random.Random) -> None:
    sends, clicks, events = history
    credits = attribute(sends, clicks, events)
    convs = credits.conversions
    credited = [c.conversion for c in credits.attributed]
    assert len(credited) == len(set(credited))                      # each conversion attributed at most once
    total = sum(c.revenue for c in convs)
    assert sum(c.revenue for c in credited) <= total + 1e-9
    for credit in credits.attributed:                               # the winner is a covering click of its send
        assert credit.send.customer_id == credit.conversion.customer_id
        assert credit.clicked_at is not None
        assert credit.send.sent_at <= credit.clicked_at <= credit.conversion.ts
    for (campaign,), tally in influenced(credits).items():
        assert tally.conversions <= len(convs)
        assert tally.revenue <= total + 1e-9
        cells = [t for (c, *_), t in influenced(credits, by=("variant", "channel")).items() if c == campaign]
        assert max(t.conversions for t in cells) <= tally.conversions <= sum(t.conversions for t in cells)
    whole = summarise(credits)
    parts = summarise(credits, by=("step",))
    for row in whole:                                               # attributed adds up across cells
        mine = [p for p in parts if p.campaign_id == row.campaign_id]
        assert sum(p.attributed_conversions for p in mine) == row.attributed_conversions
        assert sum(p.sends for p in mine) == row.sends
    shuffled = [list(x) for x in (sends, clicks, events)]
    for items in shuffled:
        rnd.shuffle(items)
    again = attribute(*shuffled)                                    # permutation invariance
    assert again == credits
    assert summarise(again, by=("variant",)) == summarise(credits, by=("variant",))


@settings(max_examples=100, deadline=None)
@given(histories())
def test_policy_round_trip_does_not_change_credit(history: tuple[list[Send], list[Click], list[dict[str, Any]]]) -> None:
    policy = attrs.evolve(AttributionPolicy(), click_windows={"email": DAY, "*": 2 * DAY})
    again = AttributionPolicy.from_dict(policy.to_dict())
    assert attribute(*history, policy) == attribute(*history, again)
    # built Conversion values give the same credit as the event rows
    sends, clicks, events = history
    assert attribute(sends, clicks, conversions(events), policy) == attribute(sends, clicks, events, policy)


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_subset_of_sends_with_the_rest_as_rivals_gets_the_wholes_credit(
        history: tuple[list[Send], list[Click], list[dict[str, Any]]], rnd: random.Random) -> None:
    """A report of some campaigns or some range gives each of its sends exactly the credit that send has when
    every send is attributed at once: per-campaign reports never credit one conversion twice."""
    sends, clicks, events = history
    whole = attribute(sends, clicks, events)
    chosen = [s for s in sends if rnd.random() < 0.5]
    keys = {s.message_key for s in chosen}
    part = attribute(chosen, clicks, events, rivals=[s for s in sends if s.message_key not in keys])
    assert part.conversions == whole.conversions
    assert part.attributed_rows() == sorted((row for row in whole.attributed_rows() if row[1] in keys), key=repr)
    assert part.receipt_rows() == sorted((row for row in whole.receipt_rows() if row[1] in keys), key=repr)
    assert part.clicks == tuple(k for k in whole.clicks if k.message_key in keys)
