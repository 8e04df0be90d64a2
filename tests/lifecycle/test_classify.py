"""The pure lifecycle classifier against the lifecycle contract."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopcrm.lifecycle import DEFAULT_RFM_SEGMENTS, LifecyclePolicy, classify_shop, rfm_table, score

NOW = datetime(2026, 3, 10)
D = timedelta(days=1)


def ev(cid: str, name: str, ago: timedelta, **props: Any) -> dict[str, Any]:
    return {"customer_id": cid, "event": name, "ts": NOW - ago, **props}


def rows(customers: list[dict[str, Any]], events: list[dict[str, Any]], **policy: Any) -> dict[Any, Any]:
    return {r.customer_id: r for r in classify_shop(customers, events, now=NOW, policy=LifecyclePolicy(**policy))}


def test_stages_follow_the_number_of_orders() -> None:
    customers = [{"customer_id": c} for c in "abcde"]
    events = [ev("b", "order_completed", D)]
    events += [ev("c", "order_completed", D * i) for i in (1, 2)]
    events += [ev("d", "order_completed", D * i) for i in (1, 2, 3)]
    events += [ev("e", "order_completed", D * i) for i in (1, 2, 3)]
    events += [ev("a", "order_completed", timedelta(0))]  # at now: not yet an order
    got = rows(customers, events)
    assert [got[c].stage for c in "abcde"] == ["never_purchased", "first_purchase", "repeat", "loyal", "loyal"]
    assert rows(customers, events, loyal_min_orders=4)["d"].stage == "repeat"


def test_distinct_order_ids_count_once() -> None:
    events = [ev("a", "order_completed", D, order_id="O1"), ev("a", "order_completed", D, order_id="O1"),
              ev("a", "order_completed", D * 2, order_id="O2")]
    assert rows([{"customer_id": "a"}], events)["a"].orders == 3
    assert rows([{"customer_id": "a"}], events, order_id_property="order_id")["a"].orders == 2


def test_moments_on_their_edges() -> None:
    customers = [
        {"customer_id": "cart", "signed_up_at": NOW - D * 400},
        {"customer_id": "bought_later", "signed_up_at": NOW - D * 400},
        {"customer_id": "new", "signed_up_at": NOW - D},  # exactly 1 day: in
        {"customer_id": "too_new", "signed_up_at": NOW - D + timedelta(seconds=1)},
        {"customer_id": "cooling", "signed_up_at": NOW - D * 400},
        {"customer_id": "lapsed", "signed_up_at": NOW - D * 90},  # no activity: falls back to sign-up
    ]
    events = [
        ev("cart", "cart_added", D * 7 - timedelta(seconds=1)),
        ev("bought_later", "cart_added", D * 2), ev("bought_later", "order_completed", D),
        ev("cooling", "order_completed", D * 30),
    ]
    got = rows(customers, events)
    assert got["cart"].moments == ("cart_abandoned",)
    assert got["bought_later"].moments == ()
    assert got["new"].moments == ("signup_dropoff",)
    assert got["too_new"].moments == ()
    assert got["cooling"].moments == ("cooling_off",)
    assert got["lapsed"].moments == ("lapsed",)
    assert got["lapsed"].last_seen == NOW - D * 90


def test_rfm_scores_ties_and_segments() -> None:
    customers = [{"customer_id": f"c{i}"} for i in range(10)]
    events = []
    for i in range(10):
        events += [ev(f"c{i}", "order_completed", D * (i + 1), amount=1000 * (i % 3)) for _ in range(1 + i // 2)]
    got = rows(customers, [*events, ev("c0", "order_completed", D * 400, amount=10 ** 9)])  # outside the lookback
    c0, c9 = got["c0"], got["c9"]
    assert (c0.r_score, c0.f_score, c0.m_score, c0.frequency, c0.monetary) == (5, 1, 1, 1, 0)
    assert (c9.r_score, c9.f_score) == (1, 5)
    assert c9.rfm_segment == "cant_lose_them"
    assert c0.rfm_segment == "new_customers"
    # ties share a score: c0 and c1 both have one order
    assert got["c1"].f_score == c0.f_score
    assert rows([{"customer_id": "z"}], [])["z"].r_score is None


def test_cycle_status_uses_own_median_with_three_orders_else_the_shop_median() -> None:
    customers = [{"customer_id": c} for c in "ab"]
    events = [ev("a", "order_completed", D * d) for d in (40, 30, 20)]  # own gaps 10, 10: median 10 days
    events += [ev("b", "order_completed", D * d) for d in (100, 70)]  # one gap of 30; shop gaps 10, 10, 30
    got = rows(customers, events)
    assert got["a"].expected_gap_days == 10
    assert got["a"].cycle_status == "at_risk"
    assert got["b"].expected_gap_days == 10
    assert got["b"].cycle_status == "churned"


def test_rfm_table_must_partition_the_grid() -> None:
    assert len(rfm_table(DEFAULT_RFM_SEGMENTS)) == 25
    broken = dict(DEFAULT_RFM_SEGMENTS)
    broken.pop("champions")
    with pytest.raises(ValueError, match="leave cells without a segment: R=5 F=4, R=5 F=5"):
        LifecyclePolicy(rfm_segments=broken)
    with pytest.raises(ValueError, match="is in both"):
        LifecyclePolicy(rfm_segments={**DEFAULT_RFM_SEGMENTS, "extra": ((1, 1),)})
    with pytest.raises(ValueError, match="at least 3"):
        LifecyclePolicy(loyal_min_orders=2)


@given(st.lists(st.integers(0, 20), min_size=1, max_size=60))
def test_scores_share_ties_and_cover_one_to_five(values: list[int]) -> None:
    ordered = sorted(values)
    n = len(values)
    scores = {v: score(ordered.index(v), n) for v in values}
    assert all(1 <= s <= 5 for s in scores.values())
    assert scores[min(values)] == 1
    assert all(scores[a] <= scores[b] for a in values for b in values if a <= b)
    if len(set(values)) == n >= 5:
        assert set(scores.values()) == {1, 2, 3, 4, 5}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 500)), max_size=40))
def test_every_customer_gets_exactly_one_stage(orders: list[tuple[int, int]]) -> None:
    customers = [{"customer_id": i} for i in range(10)]
    events = [ev(i, "order_completed", timedelta(hours=h + 1)) for i, h in orders]  # type: ignore[arg-type]
    got = classify_shop(customers, events, now=NOW)
    assert len(got) == 10
    for row in got:
        expected = sum(1 for i, _ in orders if i == row.customer_id)
        assert row.orders == expected
        assert (row.r_score is None) == (expected == 0)
