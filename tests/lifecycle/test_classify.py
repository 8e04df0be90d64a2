"""The pure lifecycle classifier against the lifecycle contract."""

from __future__ import annotations

import re
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


def test_an_order_event_without_an_order_id_is_no_order_when_orders_are_counted_by_id() -> None:
    """With ``order_id_property``, orders are the distinct non-null ids: an order event whose id is NULL counts
    towards nothing, so a customer whose only order has none never purchased and has no RFM scores."""
    customers = [{"customer_id": c} for c in "pqr"]
    events = [ev("p", "order_completed", D, amount=5, order_id=None),
              ev("q", "order_completed", D * 2, amount=5, order_id="A"),
              ev("r", "order_completed", D * 3, amount=7, order_id="B"), ev("r", "order_completed", D, amount=100)]
    got = rows(customers, events, order_id_property="order_id")
    p, q, r = got["p"], got["q"], got["r"]
    assert (p.stage, p.orders, p.frequency, p.monetary) == ("never_purchased", 0, 0, 0)
    assert (p.r_score, p.f_score, p.m_score, p.rfm_segment, p.recency_days, p.cycle_status) == (None,) * 6
    # the scored customers are q and r alone; r's last order (with an id) is 3 days ago, and its M is 7
    assert (q.stage, q.orders, q.frequency, q.monetary, q.recency_days) == ("first_purchase", 1, 1, 5, 2.0)
    assert (r.stage, r.orders, r.frequency, r.monetary, r.recency_days) == ("first_purchase", 1, 1, 7, 3.0)
    assert (q.r_score, q.f_score, q.m_score) == (3, 1, 1)
    assert (r.r_score, r.f_score, r.m_score) == (1, 1, 3)
    # without the policy every order event is an order
    plain = rows(customers, events)
    assert (plain["p"].stage, plain["p"].r_score is not None, plain["r"].orders, plain["r"].monetary) == ("first_purchase", True, 2, 107)


def test_an_order_counted_by_id_is_placed_at_its_first_event() -> None:
    """A later event of an order (a re-sent order_completed) moves none of R, F and M: the order was placed at its
    first event, which may lie before the lookback, and its amount is that event's (as a conversion's revenue in
    measurement.md), counted once."""
    customers = [{"customer_id": c} for c in "st"]
    events = [ev("s", "order_completed", D * 5, amount=3, order_id="A"), ev("s", "order_completed", D, amount=3, order_id="A"),
              ev("t", "order_completed", D * 400, amount=9, order_id="B"), ev("t", "order_completed", D * 10, amount=9, order_id="B")]
    got = rows(customers, events, order_id_property="order_id")
    s, t = got["s"], got["t"]
    assert (s.orders, s.frequency, s.monetary, s.recency_days, s.r_score) == (1, 1, 3, 5.0, 1)
    # t's only order was placed 400 days ago: outside the lookback, so t has no RFM scores and no M
    assert (t.orders, t.frequency, t.monetary, t.recency_days, t.r_score, t.rfm_segment) == (1, 0, 0, 400.0, None, None)


def test_an_order_counted_by_id_has_the_amount_of_its_first_event() -> None:
    """Of an order's events the first one's amount counts; at one instant the larger (a missing amount the
    smallest), and a first event without an amount adds nothing even if a later one has one."""
    customers = [{"customer_id": c} for c in "uvw"]
    events = [ev("u", "order_completed", D * 3, amount=10, order_id="A"), ev("u", "order_completed", D * 2, amount=99, order_id="A"),
              ev("u", "order_completed", D * 2, amount=5, order_id="B"),
              ev("v", "order_completed", D * 3, amount=4, order_id="C"), ev("v", "order_completed", D * 3, amount=8, order_id="C"),
              ev("v", "order_completed", D * 3, amount=None, order_id="C"),
              ev("w", "order_completed", D * 3, amount=None, order_id="E"), ev("w", "order_completed", D, amount=50, order_id="E"),
              ev("w", "order_completed", D * 2, amount=1, order_id="F")]
    got = rows(customers, events, order_id_property="order_id")
    assert {c: (got[c].frequency, got[c].monetary) for c in "uvw"} == {"u": (2, 15), "v": (1, 8), "w": (2, 1)}


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


CELLS = [(r, f) for r in range(1, 6) for f in range(1, 6)]


def test_a_replaced_rfm_table_is_named_in_rules_by_snake_case() -> None:
    """A policy may replace the table, and rules name its segments in snake case: "Big Spenders" is
    {"rfm": "big_spenders"}, as the default "Can't Lose Them" is {"rfm": "cant_lose_them"}."""
    from shopcrm import RuleError, evaluate

    policy = LifecyclePolicy(rfm_segments={"Big Spenders": [c for c in CELLS if c[0] >= 3 and c != (5, 5)],
                                           "VIP 고객": [c for c in CELLS if c[0] < 3], "R5/F5": [(5, 5)]})
    assert policy.rfm_rule_names == {"big_spenders": "Big Spenders", "vip_고객": "VIP 고객", "r5_f5": "R5/F5"}
    customers = [{"customer_id": c} for c in "ab"]
    events = [ev("a", "order_completed", D, amount=1), ev("b", "order_completed", D * 2, amount=1)]
    got = rows(customers, events, rfm_segments=policy.rfm_segments)
    assert (got["a"].rfm_segment, got["b"].rfm_segment) == ("Big Spenders", "VIP 고객")  # the name itself (R 3, R 1)
    assert evaluate({"rfm": "big_spenders"}, customers, events, now=NOW, lifecycle_policy=policy) == {"a"}
    assert evaluate({"rfm": "vip_고객"}, customers, events, now=NOW, lifecycle_policy=policy) == {"b"}
    with pytest.raises(RuleError, match=r"rfm: no RFM segment is named 'champions'; the policy has big_spenders "
                                        r"\(Big Spenders\), r5_f5 \(R5/F5\), vip_고객 \(VIP 고객\)"):
        evaluate({"rfm": "champions"}, customers, events, now=NOW, lifecycle_policy=policy)
    with pytest.raises(RuleError, match=r"rules write it in snake case.*did you mean 'big_spenders'"):
        evaluate({"rfm": "Big Spenders"}, customers, events, now=NOW, lifecycle_policy=policy)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"Big Spenders": CELLS[:12], "big-spenders": CELLS[12:]}, "'Big Spenders' and 'big-spenders' are both {'rfm': 'big_spenders'}"),
        ({"Can't Lose": CELLS[:12], "cant lose": CELLS[12:]}, "are both {'rfm': 'cant_lose'}"),
        ({"Big Spenders": CELLS[:12], "★★★": CELLS[12:]}, "'★★★' has no letter or digit"),
    ],
)
def test_rfm_segment_names_that_rules_cannot_tell_apart_are_refused(segments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LifecyclePolicy(rfm_segments=segments)


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
