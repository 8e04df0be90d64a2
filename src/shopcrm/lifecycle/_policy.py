"""Every threshold of the lifecycle classifier, in one frozen policy object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import attrs

__all__ = ["DEFAULT_RFM_SEGMENTS", "MOMENTS", "STAGES", "LifecyclePolicy", "rfm_table", "rule_names", "snake"]

STAGES: tuple[str, ...] = ("never_purchased", "first_purchase", "repeat", "loyal")
MOMENTS: tuple[str, ...] = ("cart_abandoned", "signup_dropoff", "cooling_off", "lapsed")
CYCLE_STATUSES: tuple[str, ...] = ("active", "at_risk", "churned")

# R (rows, 5 = most recent) x F (columns 1..5), from the lifecycle contract
_DEFAULT_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal Customers", "Loyal Customers"),
    3: ("About To Sleep", "About To Sleep", "Need Attention", "Loyal Customers", "Loyal Customers"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
}


def snake(name: str) -> str:
    """A segment's name in rules (``{"rfm": ...}``): ``"Can't Lose Them"`` -> ``"cant_lose_them"``,
    ``"Big Spenders"`` -> ``"big_spenders"``, ``"VIP 고객"`` -> ``"vip_고객"``. Letters and digits are kept, in lower
    case; apostrophes are dropped; every other run of characters (spaces, hyphens, underscores, ...) is one
    underscore between words."""
    return "_".join(re.findall(r"[^\W_]+", "".join(ch for ch in name.lower() if ch not in "'\u2019")))


DEFAULT_RFM_SEGMENTS: dict[str, tuple[tuple[int, int], ...]] = {}
for _r, _row in _DEFAULT_GRID.items():
    for _f, _name in enumerate(_row, start=1):
        DEFAULT_RFM_SEGMENTS.setdefault(snake(_name), ())
        DEFAULT_RFM_SEGMENTS[snake(_name)] += ((_r, _f),)


def rfm_table(segments: Mapping[str, Iterable[tuple[int, int]]]) -> dict[tuple[int, int], str]:
    """The (R, F) -> segment lookup, after checking it is a complete partition of the 25 cells."""
    table: dict[tuple[int, int], str] = {}
    for name, cells in segments.items():
        for cell in cells:
            r, f = cell
            if not (1 <= r <= 5 and 1 <= f <= 5):
                raise ValueError(f"RFM segment {name!r} names cell {cell!r}; R and F scores run from 1 to 5")
            if (r, f) in table:
                raise ValueError(f"RFM cell R={r}, F={f} is in both {table[(r, f)]!r} and {name!r}; each cell needs one segment")
            table[(r, f)] = name
    gaps = [(r, f) for r in range(1, 6) for f in range(1, 6) if (r, f) not in table]
    if gaps:
        raise ValueError(f"RFM segments leave cells without a segment: {', '.join(f'R={r} F={f}' for r, f in gaps)}")
    return table


def rule_names(segments: Iterable[str]) -> dict[str, str]:
    """Each segment's name in rules (:func:`snake`) -> its name, after checking that rules can name every segment
    and no two alike."""
    names: dict[str, str] = {}
    for name in segments:
        spelled = snake(name)
        if not spelled:
            raise ValueError(
                f"RFM segment {name!r} has no letter or digit, so no rule can name it ({{'rfm': ...}} takes the name "
                "in snake case); give it a name with letters, e.g. 'Big Spenders' ({'rfm': 'big_spenders'})"
            )
        if spelled in names:
            raise ValueError(
                f"RFM segments {names[spelled]!r} and {name!r} are both {{'rfm': {spelled!r}}} in rules, which name "
                "segments in snake case; rename one of them"
            )
        names[spelled] = name
    return names


def _segments(value: Mapping[str, Iterable[tuple[int, int]]]) -> dict[str, tuple[tuple[int, int], ...]]:
    out = {name: tuple((int(r), int(f)) for r, f in cells) for name, cells in value.items()}
    rfm_table(out)
    rule_names(out)
    return out


@attrs.frozen(kw_only=True)
class LifecyclePolicy:
    """Thresholds of stages, moments, RFM and purchase-cycle risk; defaults from the lifecycle contract."""

    order_event: str = "order_completed"
    #: count distinct values of this event property as orders (None: every order event is an order)
    order_id_property: str | None = None
    amount_property: str = "amount"
    activity_events: tuple[str, ...] = ("session_started", "product_viewed", "cart_added", "order_completed")
    cart_event: str = "cart_added"
    signed_up_attribute: str = "signed_up_at"
    loyal_min_orders: int = attrs.field(default=3)
    cart_abandoned_ages: tuple[timedelta, timedelta] = (timedelta(days=1), timedelta(days=7))
    signup_dropoff_ages: tuple[timedelta, timedelta] = (timedelta(days=1), timedelta(days=7))
    cooling_off_ages: tuple[timedelta, timedelta] = (timedelta(days=30), timedelta(days=60))
    lapsed_after: timedelta = timedelta(days=90)
    rfm_lookback: timedelta = timedelta(days=365)
    rfm_segments: Mapping[str, tuple[tuple[int, int], ...]] = attrs.field(
        factory=lambda: dict(DEFAULT_RFM_SEGMENTS), converter=_segments
    )
    active_multiplier: float = 1.5
    at_risk_multiplier: float = 3.0

    @loyal_min_orders.validator
    def _at_least_three(self, _: object, value: int) -> None:
        if value < 3:
            raise ValueError(f"loyal_min_orders must be at least 3 (repeat customers have 2 orders); got {value}")

    def __attrs_post_init__(self) -> None:
        if not 0 < self.active_multiplier <= self.at_risk_multiplier:
            raise ValueError(
                f"cycle multipliers need 0 < active ({self.active_multiplier}) <= at_risk ({self.at_risk_multiplier})"
            )
        for name in ("cart_abandoned_ages", "signup_dropoff_ages", "cooling_off_ages"):
            low, high = getattr(self, name)
            if not timedelta(0) <= low < high:
                raise ValueError(f"{name} must be (from, to) with 0 <= from < to; got ({low}, {high})")

    def to_dict(self) -> dict[str, object]:
        """The policy as JSON-ready values (durations in seconds), for the settings table."""
        out: dict[str, object] = {}
        for field in attrs.fields(LifecyclePolicy):
            value = getattr(self, field.name)
            if isinstance(value, timedelta):
                value = value.total_seconds()
            elif field.name == "rfm_segments":
                value = {name: [list(cell) for cell in cells] for name, cells in value.items()}
            elif isinstance(value, tuple):
                value = [v.total_seconds() if isinstance(v, timedelta) else v for v in value]
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LifecyclePolicy:
        """The policy :meth:`to_dict` wrote; fields it lacks keep their defaults."""
        fields = {f.name: f for f in attrs.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"a lifecycle policy has no field {', '.join(map(repr, unknown))}; its fields are {', '.join(sorted(fields))}")
        defaults = cls()
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = getattr(defaults, name)
            if isinstance(default, timedelta):
                value = timedelta(seconds=float(value))
            elif name == "activity_events":
                value = tuple(value)
            elif isinstance(default, tuple):
                value = tuple(timedelta(seconds=float(v)) for v in value)
            values[name] = value
        return cls(**values)

    @property
    def rfm_lookup(self) -> dict[tuple[int, int], str]:
        return rfm_table(self.rfm_segments)

    @property
    def rfm_rule_names(self) -> dict[str, str]:
        """The name of each RFM segment in rules, its snake case (``{"rfm": "big_spenders"}`` for a segment named
        "Big Spenders"), -> the segment's name."""
        return rule_names(self.rfm_segments)

    def rfm_segment(self, rule_name: str) -> str:
        """The segment ``{"rfm": rule_name}`` selects; a ValueError naming the segments rules can name otherwise."""
        names = self.rfm_rule_names
        if rule_name not in names:
            known = ", ".join(n if n == names[n] else f"{n} ({names[n]})" for n in sorted(names))
            raise ValueError(f"no RFM segment is named {rule_name!r}; the policy has {known}")
        return names[rule_name]
