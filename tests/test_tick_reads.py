"""What a tick reads of its scenarios' customers (issue 15): a history holds only the events its rules read, and a
cart is read only once a send can come due.  Both must leave every decision as it was."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from shopcrm.campaigns import MessagingPolicy, Send, Wait, WaitUntil
from shopcrm.dsl import parse_rule
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.reference import evaluate
from shopcrm.sources.duckdb_store import DuckDBSource
from shopcrm.ticking import _lead, history_names
from strategies import RandomShop, rule_dicts, shops

POLICIES = st.sampled_from([LifecyclePolicy(), LifecyclePolicy(order_id_property="order_id"),
                            LifecyclePolicy(order_event="cart_added", cart_event="product_viewed",
                                            activity_events=("session_started",))])


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(shops(max_customers=6, max_events=40), rule_dicts(max_depth=2), POLICIES)
def test_a_rule_decides_the_same_on_the_events_it_reads(shop: RandomShop, rule: dict[str, object],
                                                         policy: LifecyclePolicy) -> None:
    """The reference gives the same members (the whole shop, and each customer alone as the planner asks) when
    the events are only those of the names :func:`history_names` says the rule reads."""
    model = parse_rule(rule)
    names = history_names(model, policy)
    kept = shop.events if names is None else [e for e in shop.events if e["event"] in names]
    for at in (shop.now, shop.now - timedelta(days=40)):
        def members(events: list[dict[str, object]], customers: list[dict[str, object]], at: datetime = at) -> set[object]:
            return evaluate(model, customers, events, now=at, schema=shop.schema, lifecycle_policy=policy)

        assert members(kept, shop.customers) == members(shop.events, shop.customers)
        for customer in shop.customers:
            mine = [e for e in shop.events if e["customer_id"] == customer["customer_id"]]
            assert members([e for e in mine if e in kept], [customer]) == members(mine, [customer])


@pytest.mark.parametrize("rule", [
    {"performed": "cart_added", "not_followed_by": {"performed": "order_completed"}},
    {"lifecycle": "any", "moment": "cart_abandoned"}, {"lifecycle": "any", "moment": "lapsed"},
    {"lifecycle": "repeat", "moment": "cooling_off"}, {"lifecycle": "never_purchased", "moment": "signup_dropoff"},
    {"lifecycle": "repeat"}, {"rfm": "champions"}, {"cycle": "at_risk"},
    {"and": [{"last_performed": "session_started", "ago": {"lt": "10d"}}, {"not": {"lifecycle": "loyal"}}]},
])
def test_a_rule_decides_the_same_on_the_events_it_reads_in_a_busy_history(rule: dict[str, object]) -> None:
    """Hand-made histories where the events a rule does not name would decide otherwise (a cart followed by an
    order, visits long after the last order), evaluated before, between and after them."""
    policy = LifecyclePolicy()
    start = datetime(2026, 1, 1)
    shapes = {
        "c1": [("signed_up", 0), ("order_completed", 1), ("order_completed", 9), ("cart_added", 20),
               ("order_completed", 21), ("session_started", 80), ("product_viewed", 80)],
        "c2": [("signed_up", 0), ("session_started", 2), ("cart_added", 3), ("cart_removed", 3.5), ("cart_added", 4)],
        "c3": [("order_completed", 1), ("order_completed", 2), ("session_started", 40), ("cart_added", 41)],
    }
    customers = [{"customer_id": cid, "signed_up_at": start} for cid in shapes]
    events = [{"customer_id": cid, "event": name, "ts": start + timedelta(days=day), "amount": 1000, "product_id": "P1"}
              for cid, shape in shapes.items() for name, day in shape]
    model = parse_rule(rule)
    names = history_names(model, policy)
    assert names is not None
    kept = [e for e in events if e["event"] in names]
    for day in (2, 4, 6, 10, 22, 25, 45, 60, 85, 100, 200):
        now = start + timedelta(days=day)
        for customer in customers:
            mine = [e for e in events if e["customer_id"] == customer["customer_id"]]
            assert (evaluate(model, [customer], [e for e in mine if e in kept], now=now, lifecycle_policy=policy)
                    == evaluate(model, [customer], mine, now=now, lifecycle_policy=policy)), (day, customer)


def test_history_names_by_node() -> None:
    policy = LifecyclePolicy()
    assert history_names(parse_rule({"everyone": True}), policy) == frozenset()
    assert history_names(parse_rule({"lifecycle": "loyal"}), policy) == {"order_completed"}
    assert history_names(parse_rule({"lifecycle": "any", "moment": "cart_abandoned"}), policy) == {
        "order_completed", "cart_added", "session_started", "product_viewed"}
    assert history_names(parse_rule({"and": [{"performed": "cart_added", "not_followed_by": {"performed": "order_completed"}},
                                             {"attribute": "age", "gte": 3}]}), policy) == {"cart_added", "order_completed"}


def test_the_lead_of_a_scenario_is_its_leading_waits() -> None:
    assert _lead([Wait(wait=timedelta(days=1)), Send(send="a")]) == timedelta(days=1)
    assert _lead([Wait(wait=timedelta(hours=1)), WaitUntil(wait_until="10:00"), Wait(wait=timedelta(hours=2)),
                  Send(send="a"), Wait(wait=timedelta(days=5))]) == timedelta(hours=3)
    assert _lead([Send(send="a")]) == timedelta(0)


def test_a_cart_reminder_renders_the_cart_when_its_send_comes_due_on_watermark_ticks() -> None:
    """A watermark tick does not read the cart of a customer whose reminder is not due yet, and the tick at which
    it comes due renders the cart as a tick reading the scenario whole does."""
    start = datetime(2026, 3, 2, 1)
    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR, name VARCHAR, phone VARCHAR, sms_consent BOOLEAN, "
                "night_consent BOOLEAN, signed_up_at TIMESTAMP)")
    con.execute("INSERT INTO customers VALUES ('c1', 'Kim', '01012345678', true, true, TIMESTAMP '2026-01-01'), "
                "('c2', 'Lee', '01087654321', true, true, TIMESTAMP '2026-01-01')")
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, product_id VARCHAR, "
                "product_name VARCHAR, price BIGINT, amount BIGINT)")
    con.execute("INSERT INTO events VALUES ('c1', 'cart_added', TIMESTAMP '2026-01-10', 'P0', '양말', 5000, NULL), "
                "('c1', 'order_completed', TIMESTAMP '2026-01-11', NULL, NULL, NULL, 5000), "
                "('c2', 'cart_added', TIMESTAMP '2026-03-01 23:00', 'P9', '우산', 9000, NULL)")
    shop = shopcrm.Shop(DuckDBSource(connection=con))
    shop.messaging_policy = MessagingPolicy(sender_name="가게", sender_contact="1588-0000", opt_out_number="080-000-0000",
                                            caps=())
    campaign = {"id": "cart", "purpose": "informational", "audience": {"everyone": True}, "channels": ["sms"],
                "variants": [{"name": "a", "content": {"text": "{{ cart | map(attribute='product_name') | join(', ') }} 남았어요"}}],
                "max_delay": "1d",
                "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"],
                             "steps": [{"wait": "2h"}, {"send": "reminder"}]}}
    shop.save_campaign(campaign, now=start - timedelta(days=1))
    shop.tick(now=start)  # reads the scenario whole and leaves the marks
    con.execute("INSERT INTO events VALUES ('c1', 'cart_added', TIMESTAMP '2026-03-02 01:10', 'P1', '모자', 7000, NULL), "
                "('c1', 'cart_added', TIMESTAMP '2026-03-02 01:20', 'P2', '장갑', 8000, NULL)")
    for minutes in (30, 100, 190, 200, 230):
        now = start + timedelta(minutes=minutes)
        marked, whole = shop.tick(now=now, dry_run=True), shop.tick(now=now, dry_run=True, full=True)
        assert [(m.key, m.chain) for m in marked.messages] == [(m.key, m.chain) for m in whole.messages]
        shop.tick(now=now)
    texts = {row.customer_id: row.message for row in shop.source.campaign_store().outbox() if row.status == "planned"}
    assert "모자" in texts["c1"]
    assert "장갑" in texts["c1"]
    assert "양말" not in texts["c1"]
    assert "우산" in texts["c2"]
