"""A scenario's entry rule decided for one customer (issue 15): the lifecycle-stage rules the playbooks use are
decided without the reference's whole classification, and must decide exactly as the reference does."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopcrm.campaigns._entry import entry_rule
from shopcrm.dsl import parse_rule
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.reference import evaluate
from strategies import RandomShop, rule_dicts, shops

POLICIES = st.sampled_from([None, LifecyclePolicy(), LifecyclePolicy(order_id_property="order_id"),
                            LifecyclePolicy(loyal_min_orders=4, rfm_lookback=timedelta(days=3)),
                            LifecyclePolicy(order_event="cart_added", cart_event="product_viewed",
                                            activity_events=("session_started",))])
STAGES = st.sampled_from(["any", "never_purchased", "first_purchase", "repeat", "loyal"])


@st.composite
def stage_rules(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    if depth == 0 or draw(st.booleans()):
        return {"everyone": True} if draw(st.integers(0, 6)) == 0 else {"lifecycle": draw(STAGES)}
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        return {"not": draw(stage_rules(depth - 1))}
    return {kind: draw(st.lists(stage_rules(depth - 1), min_size=1, max_size=3))}


def reference(rule: Any, person: dict[str, Any], events: list[dict[str, Any]], now: datetime,
              policy: LifecyclePolicy | None) -> bool:
    return person.get("customer_id") in evaluate(rule, [person], events, now=now, lifecycle_policy=policy)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops(max_customers=5, max_events=40), stage_rules(), POLICIES, st.data())
def test_a_stage_rule_decides_as_the_reference(shop: RandomShop, rule: dict[str, Any], policy: LifecyclePolicy | None,
                                               data: st.DataObject) -> None:
    """Random shops (ids, duplicate order ids, events at the very instant), random rules of stages: each customer
    alone, at the shop's now and at each of their events' instants plus a microsecond (what the planner asks)."""
    model = parse_rule(rule)
    decide = entry_rule(model, policy)
    assert decide is not None
    for customer in shop.customers:
        mine = [e for e in shop.events if e["customer_id"] == customer["customer_id"]]
        if data.draw(st.booleans()):  # an order id per order, some shared (the same order sent twice)
            mine = [{**e, "order_id": data.draw(st.sampled_from([None, "o1", "o2", "o3"]))} for e in mine]
        instants = {shop.now, *(e["ts"] + timedelta(microseconds=1) for e in mine if isinstance(e.get("ts"), datetime))}
        for now in sorted(instants):
            assert decide(customer, mine, now) == reference(model, customer, mine, now, policy), (rule, now)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops(max_customers=3, max_events=20), rule_dicts(max_depth=2))
def test_other_rules_are_left_to_the_reference(shop: RandomShop, rule: dict[str, Any]) -> None:
    """A rule with anything but stages (a moment, RFM, events, attributes) has no fast form; one with only stages
    has one that agrees."""
    model = parse_rule(rule)
    decide = entry_rule(model, None)
    if decide is None:
        return
    for customer in shop.customers:
        mine = [e for e in shop.events if e["customer_id"] == customer["customer_id"]]
        assert decide(customer, mine, shop.now) == reference(model, customer, mine, shop.now, None)


def test_which_rules_have_a_fast_form() -> None:
    assert entry_rule(parse_rule({"lifecycle": "loyal"}), None) is not None
    assert entry_rule(parse_rule({"and": [{"lifecycle": "any"}, {"not": {"lifecycle": "repeat"}}]}), None) is not None
    assert entry_rule(parse_rule({"lifecycle": "any", "moment": "lapsed"}), None) is None
    assert entry_rule(parse_rule({"or": [{"lifecycle": "loyal"}, {"rfm": "champions"}]}), None) is None
    assert entry_rule(parse_rule({"performed": "order_completed"}), None) is None


def test_orders_at_the_instant_count_and_later_ones_do_not() -> None:
    start = datetime(2026, 3, 1)
    person = {"customer_id": 7, "signed_up_at": start}
    orders = [{"customer_id": 7, "event": "order_completed", "ts": start + timedelta(days=d), "amount": 100} for d in (1, 2, 3)]
    loyal = entry_rule(parse_rule({"lifecycle": "loyal"}), None)
    first = entry_rule(parse_rule({"lifecycle": "first_purchase"}), None)
    assert loyal is not None
    assert first is not None
    assert loyal(person, orders, start + timedelta(days=3, microseconds=1)) is True
    assert loyal(person, orders, start + timedelta(days=3)) is False  # the third order is not before `now`
    assert first(person, orders, start + timedelta(days=1, microseconds=1)) is True
    # another customer's events and events without an instant or a name are not theirs
    noise = [{"customer_id": 8, "event": "order_completed", "ts": start}, {"customer_id": 7, "event": None, "ts": start},
             {"customer_id": 7, "event": "order_completed", "ts": None}]
    assert first(person, [*noise, orders[0]], start + timedelta(days=5)) is True


@pytest.mark.parametrize(("person", "events"), [
    ({"customer_id": 1, "signed_up_at": "not a date"}, []),
    ({"customer_id": 1}, [{"customer_id": 1, "event": "order_completed", "ts": "yesterday"}]),
    ({"customer_id": 1}, [{"customer_id": 1, "event": "order_completed", "ts": datetime(2026, 3, 1), "amount": 1.5},
                          {"customer_id": 1, "event": "order_completed", "ts": datetime(2026, 3, 2), "amount": Decimal(2)}]),
])
def test_what_the_reference_refuses_is_refused(person: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Values the reference converts on the way (a sign-up instant, event instants, order amounts) fail alike."""
    decide = entry_rule(parse_rule({"lifecycle": "loyal"}), None)
    assert decide is not None
    now = datetime(2026, 4, 1)
    with pytest.raises((TypeError, ValueError)) as ours:
        decide(person, events, now)
    with pytest.raises((TypeError, ValueError)) as theirs:
        reference({"lifecycle": "loyal"}, person, events, now, None)
    assert type(ours.value) is type(theirs.value)


def test_an_instant_whose_look_back_reaches_before_the_year_1_is_left_to_the_reference() -> None:
    decide = entry_rule(parse_rule({"lifecycle": "loyal"}), None)
    assert decide is not None
    assert decide({"customer_id": 1}, [], datetime(1, 6, 1)) is None


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops(max_customers=4, max_events=30), st.lists(stage_rules(), min_size=2, max_size=4), POLICIES)
def test_rules_sharing_a_stage_memo_decide_as_each_alone(shop: RandomShop, rules: list[dict[str, Any]],
                                                         policy: LifecyclePolicy | None) -> None:
    """Rules of one plan share the stages they find (the same customer at the same instant): each decides as it does
    alone, and a stage found from other events (a copy of the list, one event fewer) is not reused."""
    memo: dict[Any, Any] = {}
    shared = [entry_rule(parse_rule(r), policy, memo) for r in rules]
    alone = [entry_rule(parse_rule(r), policy) for r in rules]
    for customer in shop.customers:
        mine = [e for e in shop.events if e["customer_id"] == customer["customer_id"]]
        for events in (mine, list(mine), mine[1:]):
            for now in sorted({shop.now, *(e["ts"] + timedelta(microseconds=1) for e in mine if isinstance(e.get("ts"), datetime))}):
                for fast, slow in zip(shared, alone, strict=True):
                    assert fast is not None
                    assert slow is not None
                    assert fast(customer, events, now) == slow(customer, events, now)


def test_a_stage_memo_is_used() -> None:
    """The second rule asked about the same customer, events and instant reads the first one's stage."""
    start = datetime(2026, 3, 1)
    person = {"customer_id": 7, "signed_up_at": start}
    orders = [{"customer_id": 7, "event": "order_completed", "ts": start + timedelta(days=d), "amount": 100} for d in (1, 2, 3)]
    memo: dict[Any, Any] = {}
    loyal = entry_rule(parse_rule({"lifecycle": "loyal"}), None, memo)
    first = entry_rule(parse_rule({"lifecycle": "first_purchase"}), None, memo)
    assert loyal is not None
    assert first is not None
    at = start + timedelta(days=4)
    assert loyal(person, orders, at) is True
    assert memo == {(7, at): (person, orders, "loyal")}
    memo[(7, at)] = (person, orders, "first_purchase")  # what the memo says is what the second rule decides by
    assert first(person, orders, at) is True
    assert first(person, list(orders), at) is False  # other events (a new list): found again
