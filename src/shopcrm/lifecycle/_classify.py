"""The pure lifecycle classifier: stage, moments, RFM and purchase-cycle risk as of ``now``.

Per customer, :func:`customer_facts` gathers what the rules read and
:func:`classify` applies them; RFM scores and the shop-wide median gap need every
customer, so :func:`classify_shop` computes those first (:class:`ShopContext`) and
then classifies each customer.  All arithmetic on time is exact (integer
microseconds and fractions), so the SQL form can agree to the last digit.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import attrs

from shopcrm.lifecycle._policy import MOMENTS, LifecyclePolicy
from shopcrm.timeline import to_utc_naive

__all__ = ["CustomerFacts", "LifecycleRow", "ShopContext", "classify", "classify_shop", "customer_facts", "score"]

_DAY = Fraction(86_400_000_000)  # microseconds


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _aged(ts: datetime | None, now: datetime, low: timedelta, high: timedelta | None) -> bool:
    """``low <= now - ts < high`` (and ``ts < now``), as everywhere in the DSL."""
    if ts is None or ts >= now:
        return False
    age = now - ts
    return age >= low and (high is None or age < high)


@attrs.frozen
class CustomerFacts:
    """What the lifecycle rules read about one customer (events before ``now`` only)."""

    customer_id: Any
    orders: int
    order_times: tuple[datetime, ...]  # one per order, sorted
    last_seen: datetime | None
    signed_up_at: datetime | None
    cart_abandoned: bool
    frequency: int  # orders placed inside the RFM lookback
    monetary: Any  # sum of the amounts of the orders placed inside the lookback (by id: each first event's)
    last_order_in_lookback: datetime | None  # when the last order placed inside the lookback was placed


def customer_facts(customer: Mapping[str, Any], events: Iterable[Mapping[str, Any]], now: datetime, policy: LifecyclePolicy) -> CustomerFacts:
    """Gather one customer's facts from their rows (events of other customers must not be passed)."""
    now = to_utc_naive(now)
    past = sorted(
        ((to_utc_naive(e["ts"]), e) for e in events if e.get("ts") is not None and e.get("event") is not None),
        key=lambda pair: pair[0],
    )
    past = [(ts, e) for ts, e in past if ts < now]
    order_events = [(ts, e) for ts, e in past if e["event"] == policy.order_event]
    lookback_start = now - policy.rfm_lookback
    if policy.order_id_property:
        # orders are the distinct non-null ids, each placed at its first event: an order event without an id is no
        # order (no stage, R, F or M), and a later event of an order placed earlier moves nothing (not even its
        # order); its amount is its first event's (at one instant the largest; a missing amount the smallest), as a
        # conversion's revenue is in measurement.md, so a re-sent event adds nothing to M
        first_seen: dict[Any, tuple[datetime, Any]] = {}
        for ts, e in order_events:
            oid = e.get(policy.order_id_property)
            if oid is None:
                continue
            amount = e.get(policy.amount_property)
            seen = first_seen.get(oid)
            if seen is None or (seen[0] == ts and amount is not None and (seen[1] is None or amount > seen[1])):
                first_seen[oid] = (ts, amount)
        orders = sorted(first_seen.values(), key=lambda order: order[0])
    else:
        orders = [(ts, e.get(policy.amount_property)) for ts, e in order_events]
    order_times = tuple(ts for ts, _ in orders)
    placed = [(ts, amount) for ts, amount in orders if ts > lookback_start]  # the orders placed inside the lookback
    frequency = len(placed)
    # a left fold in event order, as the engines add
    monetary = sum((amount for _, amount in placed if amount is not None), start=0)
    activity = [ts for ts, e in past if e["event"] in policy.activity_events]
    signed = customer.get(policy.signed_up_attribute)
    signed_up_at = to_utc_naive(signed) if signed is not None else None
    last_seen = activity[-1] if activity else signed_up_at
    low, high = policy.cart_abandoned_ages
    order_ts = [ts for ts, _ in order_events]  # a cart is followed by an order event, with an id or not
    cart_abandoned = any(
        _aged(ts, now, low, high) and not any(ts < later for later in order_ts)
        for ts, e in past
        if e["event"] == policy.cart_event
    )
    return CustomerFacts(
        customer_id=customer["customer_id"],
        orders=len(order_times),
        order_times=order_times,
        last_seen=last_seen,
        signed_up_at=signed_up_at,
        cart_abandoned=cart_abandoned,
        frequency=frequency,
        monetary=monetary,
        last_order_in_lookback=placed[-1][0] if placed else None,
    )


def score(worse: int, scored: int) -> int:
    """``1 + floor(5 * worse / n)``: ties (equal ``worse``) always share a score."""
    return 1 + (5 * worse) // scored


def _gaps(times: Sequence[datetime]) -> list[int]:
    return [_micros(b - a) for a, b in itertools.pairwise(times)]


def _median(values: Sequence[int]) -> Fraction:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Fraction(ordered[middle])
    return Fraction(ordered[middle - 1] + ordered[middle], 2)


@attrs.frozen
class ShopContext:
    """What classifying one customer needs to know about all the others."""

    scored: int  # customers with an order in the RFM lookback
    last_orders: tuple[datetime, ...]  # sorted, one per scored customer
    frequencies: tuple[int, ...]  # sorted
    monetaries: tuple[Any, ...]  # sorted
    median_gap: Fraction | None  # microseconds, over every customer's consecutive orders

    @classmethod
    def of(cls, facts: Iterable[CustomerFacts]) -> ShopContext:
        facts = list(facts)
        scored = [f for f in facts if f.last_order_in_lookback is not None]
        gaps = [g for f in facts for g in _gaps(f.order_times)]
        return cls(
            scored=len(scored),
            last_orders=tuple(sorted(f.last_order_in_lookback for f in scored if f.last_order_in_lookback)),
            frequencies=tuple(sorted(f.frequency for f in scored)),
            monetaries=tuple(sorted(f.monetary for f in scored)),
            median_gap=_median(gaps) if gaps else None,
        )


@attrs.frozen
class LifecycleRow:
    """One customer's lifecycle as of ``now``."""

    customer_id: Any
    stage: str
    moments: tuple[str, ...]
    orders: int
    last_seen: datetime | None
    recency_days: float | None  # days since the last order, None if never ordered
    frequency: int
    monetary: Any
    r_score: int | None
    f_score: int | None
    m_score: int | None
    rfm_segment: str | None
    cycle_status: str | None
    expected_gap_days: float | None


def _strictly_below(sorted_values: Sequence[Any], value: Any) -> int:
    from bisect import bisect_left

    return bisect_left(sorted_values, value)


def stage_of(orders: int, policy: LifecyclePolicy) -> str:
    """The lifecycle stage of a customer with ``orders`` orders (distinct order ids when the policy names them)."""
    if orders == 0:
        return "never_purchased"
    if orders == 1:
        return "first_purchase"
    return "repeat" if orders < policy.loyal_min_orders else "loyal"


def classify(facts: CustomerFacts, now: datetime, policy: LifecyclePolicy, context: ShopContext) -> LifecycleRow:
    """Stage, moments, RFM and cycle status of one customer."""
    now = to_utc_naive(now)
    orders = facts.orders
    stage = stage_of(orders, policy)
    flags = {
        "cart_abandoned": facts.cart_abandoned,
        "signup_dropoff": orders == 0 and _aged(facts.signed_up_at, now, *policy.signup_dropoff_ages),
        "cooling_off": orders > 0 and _aged(facts.last_seen, now, *policy.cooling_off_ages),
        "lapsed": _aged(facts.last_seen, now, policy.lapsed_after, None),
    }
    moments = tuple(m for m in MOMENTS if flags[m])

    r = f = m = None
    segment = None
    if facts.last_order_in_lookback is not None and context.scored:
        n = context.scored
        # worse recency = an earlier last order; worse F and M = smaller values
        r = score(_strictly_below(context.last_orders, facts.last_order_in_lookback), n)
        f = score(_strictly_below(context.frequencies, facts.frequency), n)
        m = score(_strictly_below(context.monetaries, facts.monetary), n)
        segment = policy.rfm_lookup[(r, f)]

    last_order = facts.order_times[-1] if facts.order_times else None
    recency = None if last_order is None else _micros(now - last_order)
    status = expected = None
    if last_order is not None and recency is not None:
        own = _gaps(facts.order_times)
        gap = _median(own) if orders >= 3 and own else context.median_gap
        if gap is not None:
            expected = gap
            if recency <= Fraction(policy.active_multiplier) * gap:
                status = "active"
            elif recency <= Fraction(policy.at_risk_multiplier) * gap:
                status = "at_risk"
            else:
                status = "churned"
    return LifecycleRow(
        customer_id=facts.customer_id,
        stage=stage,
        moments=moments,
        orders=orders,
        last_seen=facts.last_seen,
        recency_days=None if recency is None else float(Fraction(recency) / _DAY),
        frequency=facts.frequency,
        monetary=facts.monetary,
        r_score=r,
        f_score=f,
        m_score=m,
        rfm_segment=segment,
        cycle_status=status,
        expected_gap_days=None if expected is None else float(expected / _DAY),
    )


def classify_shop(
    customers: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    policy: LifecyclePolicy | None = None,
) -> list[LifecycleRow]:
    """Every customer's lifecycle row, in customer order: the pure reference of ``shop.lifecycle``."""
    policy = policy or LifecyclePolicy()
    people = [c for c in customers if c.get("customer_id") is not None]
    ids = {c["customer_id"] for c in people}
    by_customer: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("customer_id") in ids:
            by_customer[event["customer_id"]].append(event)
    facts = [customer_facts(c, by_customer.get(c["customer_id"], []), now, policy) for c in people]
    context = ShopContext.of(facts)
    return [classify(f, now, policy, context) for f in facts]
