"""Scenario entry rules decided for one customer without the reference evaluator's whole machinery.

A triggered scenario decides its audience rule once per trigger, for one customer at the trigger's instant
(:meth:`shopcrm.campaigns._planner._Planner.matches`).  The reference evaluator
(:func:`shopcrm.reference.evaluate`) does that by classifying a one-customer shop: every fact of the lifecycle
(RFM scores, purchase cycle, moments) for a rule that reads only the stage.  A watermark tick at 1M customers
decides about 12,000 such entries, and the reference's classification was a second of it.

:func:`entry_rule` gives, for the rules made only of lifecycle *stages* (``{"lifecycle": "loyal"}``, the
playbooks' entry rules) joined by ``and``, ``or`` and ``not`` (and ``everyone``), a function of one customer's
row, events and instant that returns exactly what the reference returns: the stage counts the customer's orders
before the instant as :func:`shopcrm.lifecycle.customer_facts` does (distinct order ids when the policy names the
property), and the values the reference converts on the way (every event's instant, the sign-up attribute, the
order amounts inside the RFM look-back) are converted too, so a value the reference refuses is refused alike.  An
instant whose look-back reaches before the year 1, and any other rule, is left to the reference (None).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shopcrm.dsl import And, Everyone, Not, Or, Rule
from shopcrm.dsl._nodes import Lifecycle
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.lifecycle._classify import stage_of
from shopcrm.timeline import to_utc_naive

__all__ = ["EntryRule", "StageMemo", "entry_rule"]

#: one customer's row, their events and the instant of evaluation -> whether the rule holds (None: ask the reference)
EntryRule = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], datetime], bool | None]


def _stages_only(rule: Rule) -> bool:
    if isinstance(rule, Lifecycle):
        return rule.moment is None
    if isinstance(rule, And):
        return all(map(_stages_only, rule.and_))
    if isinstance(rule, Or):
        return all(map(_stages_only, rule.or_))
    if isinstance(rule, Not):
        return _stages_only(rule.not_)
    return isinstance(rule, Everyone)


def _uses_stage(rule: Rule) -> bool:
    if isinstance(rule, Lifecycle):
        return True
    if isinstance(rule, And):
        return any(map(_uses_stage, rule.and_))
    if isinstance(rule, Or):
        return any(map(_uses_stage, rule.or_))
    if isinstance(rule, Not):
        return _uses_stage(rule.not_)
    return False


def _holds(rule: Rule, stage: str) -> bool:
    if isinstance(rule, Lifecycle):
        return rule.lifecycle == "any" or rule.lifecycle == stage
    if isinstance(rule, And):
        return all(_holds(r, stage) for r in rule.and_)
    if isinstance(rule, Or):
        return any(_holds(r, stage) for r in rule.or_)
    if isinstance(rule, Not):
        return not _holds(rule.not_, stage)
    return True  # everyone


#: the stages already found in one plan, by (customer id, instant): the row and events they were found from, and the
#: stage (scenarios on the same trigger ask the same customer at the same instant, each with its own stage rule)
StageMemo = dict[tuple[Any, datetime], tuple[Mapping[str, Any], Sequence[Mapping[str, Any]], str]]


def entry_rule(rule: Rule, policy: LifecyclePolicy | None, stages: StageMemo | None = None) -> EntryRule | None:
    """A function deciding ``rule`` for one customer exactly as :func:`shopcrm.reference.evaluate` does with
    ``customers=[row]``, or None when ``rule`` is not made of lifecycle stages (and, or, not, everyone).

    ``stages``: a memo shared by the rules of one plan (the same policy): a stage found for a customer at an
    instant is reused by another rule asked about the same row and events (the same objects) at that instant."""
    if not _stages_only(rule):
        return None
    if not _uses_stage(rule):
        constant = _holds(rule, "")
        return lambda person, events, now: constant if person.get("customer_id") is not None else False
    chosen = policy or LifecyclePolicy()
    order_event, order_id, amount = chosen.order_event, chosen.order_id_property, chosen.amount_property
    signed_up, lookback = chosen.signed_up_attribute, chosen.rfm_lookback

    def decide(person: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime) -> bool | None:
        customer_id = person.get("customer_id")
        if customer_id is None:
            return False  # the reference evaluates no customer without an id
        now = to_utc_naive(now)
        memo = stages if stages is not None and _hashable(customer_id) else None
        if memo is not None:
            known = memo.get((customer_id, now))
            if known is not None and known[0] is person and known[1] is events:
                return _holds(rule, known[2])
        try:
            lookback_start = now - lookback
        except OverflowError:
            return None  # the reference's error names the rule
        orders: list[tuple[datetime, Mapping[str, Any]]] = []
        for event in events:
            ts, name = event.get("ts"), event.get("event")
            if ts is None or name is None or event.get("customer_id") != customer_id:
                continue
            if type(ts) is not datetime or ts.tzinfo is not None:
                ts = to_utc_naive(ts)
            if name == order_event and ts < now:
                orders.append((ts, event))
        orders.sort(key=_first)
        signed = person.get(signed_up)
        if signed is not None:
            to_utc_naive(signed)  # what the reference converts (and refuses) on the way
        sum(a for a in (e.get(amount) for ts, e in orders if ts > lookback_start) if a is not None)
        if order_id:
            count = len({key for _, e in orders if (key := e.get(order_id)) is not None})
        else:
            count = len(orders)
        stage = stage_of(count, chosen)
        if memo is not None:
            memo[(customer_id, now)] = (person, events, stage)
        return _holds(rule, stage)

    return decide


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:  # an id that cannot be hashed: its stage is not remembered
        return False
    return True


def _first(pair: tuple[datetime, Mapping[str, Any]]) -> datetime:
    return pair[0]
