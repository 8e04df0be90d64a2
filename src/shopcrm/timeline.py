"""Durations, ages and time windows: turning the DSL's relative times into instants.

Every relative time in a rule is an *age* (``now - ts``), and only events with a
positive age exist.  This module turns windows and ranges into explicit bounds on
``ts`` computed from ``now`` in Python, so that the reference evaluator and every
SQL engine compare timestamps against the very same instants (no interval
arithmetic in SQL, no clock).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import attrs

__all__ = [
    "TsBound",
    "iso_duration",
    "parse_duration",
    "to_utc_naive",
]

_SHORT = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d{1,6})?)S)?)?$"
)
_ISO_CALENDAR = re.compile(r"^P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T.*)?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HINT = "use forms like '30d', '12h', 'P30D'"


def iso_duration(value: timedelta) -> str:
    """``value`` as ISO 8601 in days, hours, minutes and seconds (``"P400DT5S"``, ``"PT1.5S"``), which
    :func:`parse_duration` reads back exactly.  (pydantic writes 365 days as ``"P1Y"``, a year this library refuses to
    read as a duration.)"""
    if value < timedelta(0):
        raise ValueError(f"{value!r} is negative: a duration here is at least 0")
    minutes, seconds = divmod(value.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    second = f"{seconds}.{value.microseconds:06d}".rstrip("0") if value.microseconds else str(seconds)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    clock += f"{second}S" if value.seconds % 60 or value.microseconds else ""
    day = f"{value.days}D" if value.days else ""
    return f"P{day}T{clock}" if clock else f"P{day or '0D'}"


def parse_duration(text: str) -> timedelta:
    """Parse ``"30d"``, ``"12h"``, ``"2w"``, ``"90m"``, ``"45s"`` or ISO 8601 ``"P30D"``, ``"PT12H"``.

    Months and years are rejected: their length depends on the calendar.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; {DURATION_HINT}")
    short = _SHORT.match(text)
    if short:
        return timedelta(seconds=int(short.group(1)) * _UNIT_SECONDS[short.group(2)])
    iso = _ISO.match(text.strip().upper())
    if iso and text.strip().upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {k: int(v) for k, v in iso.groupdict().items() if v and k != "s"}
        seconds, _, fraction = (iso.group("s") or "0").partition(".")
        return timedelta(
            weeks=parts.get("w", 0),
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=int(seconds),
            microseconds=int(fraction.ljust(6, "0")) if fraction else 0,
        )
    stripped = text.strip()
    if re.match(r"^\d+\s*(mo|mon|month|months|y|yr|year|years|M|Y)$", stripped) or (
        _ISO_CALENDAR.match(stripped.upper()) and re.search(r"\d+[YM]", stripped.upper().split("T")[0])
    ):
        raise ValueError(
            f"{text!r} is not a duration: months and years have no fixed length; "
            "use days or weeks instead, e.g. '30d', '90d', '52w'"
        )
    raise ValueError(f"{text!r} is not a duration; {DURATION_HINT}")


def to_utc_naive(value: datetime | date | str) -> datetime:
    """An instant as a naive UTC datetime: naive input already means UTC."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):  # a plain date is midnight UTC
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


BoundOp = Literal["lt", "lte", "gt", "gte"]


@attrs.frozen
class TsBound:
    """One condition ``ts <op> at`` on an event's (or attribute's) timestamp."""

    op: BoundOp
    at: datetime

    def holds(self, ts: datetime) -> bool:
        """Whether ``ts`` satisfies this bound."""
        if self.op == "lt":
            return ts < self.at
        if self.op == "lte":
            return ts <= self.at
        if self.op == "gt":
            return ts > self.at
        return ts >= self.at


_AGE_TO_TS: dict[str, BoundOp] = {"gte": "lte", "gt": "lt", "lte": "gte", "lt": "gt"}


def age_bounds(ages: dict[str, timedelta], now: datetime) -> tuple[TsBound, ...]:
    """Bounds on ``ts`` for a RANGE of ages, always including ``ts < now`` (age > 0).

    ``{"gte": 1d, "lt": 7d}`` is ``now - 7d < ts <= now - 1d``.
    """
    bounds = [TsBound("lt", now)]
    for op in ("gte", "gt", "lte", "lt"):
        if op in ages:
            bounds.append(TsBound(_AGE_TO_TS[op], now - ages[op]))
    return tuple(bounds)
