"""The idempotency keys a tick asks are remembered in a :class:`KeyCache` the tick owns, not in a global: the same
keys as :func:`idempotency_key`, a plan with a cache equal to one without, and nothing left behind between plans."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import shopcrm.campaigns._planner as planner
from shopcrm.campaigns import (
    KeyCache,
    MessagingPolicy,
    Recipient,
    ShopState,
    idempotency_key,
    parse_campaign,
    plan,
)
from shopcrm.campaigns._planner import entry_decision

GIVEN = datetime(2026, 11, 1)
NOW = datetime(2026, 11, 25, 3)
ids = st.one_of(st.text(max_size=8), st.integers(), st.tuples(st.integers(), st.text(max_size=3)), st.booleans())


@settings(max_examples=60, deadline=None)
@given(asked=st.lists(st.tuples(st.sampled_from(["sale", "reminder"]), st.sampled_from(["once", "2026-11-25T01:00:00"]),
                                st.sampled_from(["main", "again"]), ids), max_size=30), limit=st.integers(0, 5))
def test_the_cache_gives_exactly_the_keys_and_remembers_at_most_its_limit(asked: list[tuple[str, str, str, Any]],
                                                                          limit: int) -> None:
    cache = KeyCache(limit=limit)
    for campaign_id, occurrence, step, customer_id in asked * 2:  # asked again: remembered ones come back the same
        assert cache.key(campaign_id, occurrence, step, customer_id) == idempotency_key(
            campaign_id, occurrence, step, customer_id)
    remembered = {a for a in asked if type(a[3]) in (str, int)}  # 1 and "1", True and 1 keep apart
    assert len(cache) == min(limit, len(remembered))


def test_equal_ids_of_different_types_keep_their_own_keys() -> None:
    cache = KeyCache()
    keys = [cache.key("sale", "once", "main", c) for c in (1, "1", True, 1.0, (1,))]
    assert keys == [idempotency_key("sale", "once", "main", c) for c in (1, "1", True, 1.0, (1,))]
    assert len(set(keys)) == 5


def test_a_plan_fills_the_cache_it_is_given_and_plans_the_same_without_it() -> None:
    """What the tick does: its reads ask the entry keys of a scenario (``entry_decision`` with the cache), then
    its plan asks them again from the same cache; a plan without a cache makes its own and keeps nothing."""
    people = {f"c{i}": Recipient(customer_id=f"c{i}", phone="010", consents={"sms": GIVEN}) for i in range(3)}
    reminder = parse_campaign({
        "id": "reminder", "purpose": "informational", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "장바구니"}}],
        "schedule": {"kind": "triggered", "on": "cart_added", "steps": [{"send": "main"}, {"wait": "1h"}, {"send": "again"}]},
    })
    at = NOW - timedelta(hours=2)
    state = ShopState(recipients=people, triggers={"reminder": {c: [at] for c in people}})
    policy = MessagingPolicy(sender_name="s", sender_contact="1588", opt_out_number="080-000-0000")
    cache = KeyCache()
    assert all(entry_decision(reminder, c, at, set(), cache) is None for c in people)
    asked = len(cache)
    assert asked == 3 * 4  # entered, not entered and the two sends, per customer
    shared = plan([reminder], state, now=NOW, policy=policy, key_cache=cache)
    alone = plan([reminder], state, now=NOW, policy=policy)
    assert shared == alone
    assert len(alone.messages) == 6
    assert {m.key for m in shared.messages} | {e.key for e in shared.entries} <= set(cache._known.values())
    assert len(cache) == asked  # the plan asked the keys the reads had asked
    assert not [name for name, value in vars(planner).items() if hasattr(value, "cache_clear")]  # no global memo
