"""When a customer's membership of a rule can change with no new event: the rule's time boundaries.

A rule's answer for one customer, with that customer's events and attributes fixed, is a step function of
``now``: it can only change when one of its time-relative conditions flips.  Every such condition compares
an instant the data holds (an event's ``ts``, a timestamp property of an event, a timestamp attribute) with
``now`` shifted by a duration the rule names, so it flips at ``value + offset`` (or just after it).  A
:class:`Boundary` names such a value (the table, the column and, for events, the event name) and the
offsets.  :func:`next_change_at` is the pure reference: the earliest ``value + offset`` at or after ``now``
over the customer's rows.  The compiled form (``shopcrm.compiler.compile_next_changes``) returns, per
customer, the earliest such *value* per (boundary, offset); the offset is added in Python, so no engine
does interval arithmetic.

The bound is conservative, never late: every event of the named event counts, whatever the rule's
``where`` filter (more candidate instants only cost a recheck), and an offset of zero is always included
(an event or a timestamp attribute in the future becomes visible when ``now`` passes it).  Rules whose
answer depends on other customers, or on a state the library derives over the whole shop (``lifecycle``,
``rfm``, ``cycle``; RFM scores are quantiles of the population), have no per-customer boundary:
:attr:`Boundaries.full` names why, and a tracked segment with such a rule is recomputed in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

import attrs

from shopcrm.dsl._nodes import (
    Aggregate,
    Ago,
    And,
    Attribute,
    Comparison,
    Cycle,
    Everyone,
    FirstPerformed,
    InSegment,
    Last,
    LastPerformed,
    Lifecycle,
    Not,
    Or,
    Performed,
    Rfm,
    Rule,
    Sample,
)
from shopcrm.errors import RuleError
from shopcrm.timeline import parse_duration, to_utc_naive

__all__ = ["Boundaries", "Boundary", "boundaries", "next_change_at"]

_ZERO = timedelta(0)


@attrs.frozen
class Boundary:
    """Instants ``value + offset`` at which a condition may flip: ``value`` is ``column`` of the customer's
    row (``table="customers"``) or of each of the customer's ``event`` rows (``table="events"``)."""

    table: Literal["events", "customers"]
    column: str
    event: str | None
    offsets: tuple[timedelta, ...]


@attrs.frozen
class Boundaries:
    """A rule's time boundaries, or (``full`` set) why its members must be recomputed in full each time."""

    items: tuple[Boundary, ...] = ()
    full: str | None = None

    @property
    def static(self) -> bool:
        """No condition depends on ``now``: membership changes only with data."""
        return not self.items and self.full is None


def _ages(range_: Any) -> set[timedelta]:
    return set(range_.ages().values())


def _window(within: Any) -> set[timedelta]:
    if isinstance(within, Last):
        return {parse_duration(within.last)}
    if isinstance(within, Ago):
        return _ages(within.ago)
    return set()  # no window, or between: fixed instants, the event's own ts decides (offset 0)


def boundaries(rule: Rule) -> Boundaries:
    """The time boundaries of a rule whose named segments are resolved (see :func:`resolve_segments`)."""
    found: dict[tuple[str, str, str | None], set[timedelta]] = {}
    full: list[str] = []

    def add(table: str, column: str, event: str | None, offsets: Iterable[timedelta]) -> None:
        found.setdefault((table, column, event), {_ZERO}).update(offsets)

    def where(event: str, filters: Mapping[str, Any] | None) -> None:
        for key, cond in (filters or {}).items():
            if isinstance(cond, Comparison) and cond.ago is not None:
                if key.startswith("properties."):
                    full.append(f"the event property {key!r} is compared by age (a JSON value has no boundary here)")
                else:
                    add("events", key, event, _ages(cond.ago))

    stack: list[Rule] = [rule]
    while stack:
        node = stack.pop()
        if isinstance(node, And):
            stack.extend(node.and_)
        elif isinstance(node, Or):
            stack.extend(node.or_)
        elif isinstance(node, Not):
            stack.append(node.not_)
        elif isinstance(node, Performed | Aggregate):
            add("events", "ts", node.performed, _window(node.within))
            where(node.performed, node.where)
            follow = node.not_followed_by if isinstance(node, Performed) else None
            if follow is not None:
                add("events", "ts", follow.performed, ())
                where(follow.performed, follow.where)
        elif isinstance(node, FirstPerformed | LastPerformed):
            event = node.first_performed if isinstance(node, FirstPerformed) else node.last_performed
            add("events", "ts", event, _ages(node.ago))
            where(event, node.where)
        elif isinstance(node, Attribute):
            if node.ago is not None:
                add("customers", node.attribute, None, _ages(node.ago))
        elif isinstance(node, Lifecycle | Rfm | Cycle):
            full.append(f"{node.KEY!r} is derived over the whole shop (RFM scores rank customers against each other)")
        elif isinstance(node, InSegment):
            raise RuleError.at("", f"segment {node.in_segment!r} is not resolved; resolve named segments first")
        elif not isinstance(node, Everyone | Sample):  # pragma: no cover - every node kind is listed above
            full.append(f"{type(node).__name__} has no known boundary")
    items = tuple(
        Boundary(table, column, event, tuple(sorted(offsets)))  # type: ignore[arg-type]
        for (table, column, event), offsets in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))
    )
    return Boundaries(items, "; ".join(dict.fromkeys(full)) or None)


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime | str):
        try:
            return to_utc_naive(value)
        except (ValueError, OverflowError):
            return None
    return None


def earliest(values: Iterable[tuple[datetime | None, timedelta]], now: datetime) -> datetime | None:
    """The earliest ``value + offset`` at or after ``now`` (None: none)."""
    best: datetime | None = None
    for value, offset in values:
        if value is None:
            continue
        try:
            at = value + offset
        except OverflowError:  # past the year 9999: never
            continue
        if at >= now and (best is None or at < best):
            best = at
    return best


def next_change_at(
    found: Boundaries, person: Mapping[str, Any], events: Iterable[Mapping[str, Any]], *, now: datetime,
) -> datetime | None:
    """The earliest instant at or after ``now`` at which the customer's membership could change with no new
    event and no change to the customer's row (None: never).  ``events`` are the customer's rows, in any
    order, including those at or after ``now``.  Membership cannot differ from its value at ``now`` at any
    instant before the result; at the result it may (a recheck then tells).  ``found.full`` rules have no
    such instant: the caller recomputes them in full."""
    now = to_utc_naive(now)
    rows = list(events)
    pairs: list[tuple[datetime | None, timedelta]] = []
    for boundary in found.items:
        if boundary.table == "customers":
            values = [_instant(person.get(boundary.column))]
        else:
            values = [_instant(row.get(boundary.column)) for row in rows if row.get("event") == boundary.event]
        pairs += [(value, offset) for value in values for offset in boundary.offsets]
    return earliest(pairs, now)
