"""The reference evaluator: the executable meaning of the segment DSL.

A pure function over plain Python rows.  It is written to be read next to the
specification, not to be fast; every SQL engine must return exactly its answer
(the test suite compares them on random shops).
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shopcrm.dsl import (
    Aggregate,
    And,
    Attribute,
    Comparison,
    Cycle,
    Everyone,
    FirstPerformed,
    InSegment,
    LastPerformed,
    Lifecycle,
    Not,
    Or,
    Performed,
    Rfm,
    Rule,
    Sample,
    check_windows,
    parse_rule,
    resolve_segments,
    sample_bucket,
    window_bounds,
)
from shopcrm.dsl._json import JsonKind, json_kind
from shopcrm.dsl._parse import RuleLike
from shopcrm.errors import RuleError, SchemaError
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.schema import ColumnType, Schema
from shopcrm.timeline import TsBound, parse_duration, to_utc_naive

__all__ = ["CustomerId", "evaluate"]

CustomerId = str | int
Row = Mapping[str, Any]


def evaluate(
    rule: RuleLike,
    customers: Iterable[Row],
    events: Iterable[Row],
    *,
    now: datetime,
    segments: Mapping[str, RuleLike] | None = None,
    schema: Schema | None = None,
    lifecycle_policy: LifecyclePolicy | None = None,
) -> set[CustomerId]:
    """The ids of the customers matching ``rule`` as of ``now``.

    Parameters
    ----------
    rule:
        A rule model, builder, dict or JSON string.
    customers, events:
        Rows as mappings; a missing key is NULL.  Timestamps are datetimes (naive
        means UTC) or ISO 8601 strings.
    now:
        The instant of evaluation; only events with ``ts < now`` exist.
    segments:
        Named rules that ``in_segment`` refers to.
    schema:
        When given, every field the rule names is checked against it and values
        are compared by the declared column types.
    lifecycle_policy:
        The thresholds of ``lifecycle``, ``rfm`` and ``cycle`` nodes (defaults of the contract).
    """
    model = parse_rule(rule)
    named = {name: parse_rule(r) for name, r in (segments or {}).items()}
    model = resolve_segments(model, named.get)
    people = {row["customer_id"]: row for row in customers if row.get("customer_id") is not None}
    events = list(events)
    by_customer: dict[CustomerId, list[tuple[datetime, Row]]] = defaultdict(list)
    for row in events:
        cid, name, ts = row.get("customer_id"), row.get("event"), row.get("ts")
        if cid is None or name is None or ts is None or cid not in people:
            continue
        by_customer[cid].append((to_utc_naive(ts), row))
    for history in by_customer.values():
        history.sort(key=lambda pair: pair[0])
    evaluator = _Evaluator(to_utc_naive(now), schema)
    check_windows(model, evaluator.now)  # as the compiler does: whatever the data, before reading it
    if _uses_lifecycle(model):
        from shopcrm.lifecycle import LifecyclePolicy, classify_shop

        policy = lifecycle_policy or LifecyclePolicy()
        evaluator.lifecycle_policy = policy
        try:
            classified = classify_shop(list(people.values()), events, now=evaluator.now, policy=policy)
        except OverflowError as exc:  # now - the policy's lookbacks falls before the year 1 (as the compiler says)
            raise RuleError.at(
                "", f"the lifecycle policy's look-back windows reach before the year 1 at now={evaluator.now:%Y-%m-%d}; "
                "evaluate lifecycle, RFM and cycle rules at a later instant"
            ) from exc
        evaluator.lifecycle = {r.customer_id: r for r in classified}
    if schema is not None:
        evaluator.check_fields(model, "")
    return {cid for cid, row in people.items() if evaluator.holds(model, row, by_customer.get(cid, []), "")}


def _join(path: str, *parts: str) -> str:
    return ".".join(p for p in (path, *parts) if p)


def _uses_lifecycle(rule: Rule) -> bool:
    from shopcrm.dsl import children

    return isinstance(rule, Lifecycle | Rfm | Cycle) or any(_uses_lifecycle(c) for c in children(rule))


class _Evaluator:
    def __init__(self, now: datetime, schema: Schema | None) -> None:
        self.now = now
        self.schema = schema
        self.lifecycle: dict[Any, Any] = {}
        self.lifecycle_policy: LifecyclePolicy | None = None

    # ------------------------------------------------------------------ rules
    def holds(self, rule: Rule, person: Row, history: list[tuple[datetime, Row]], path: str) -> bool:
        if isinstance(rule, And):
            return all(self.holds(r, person, history, f"{_join(path, 'and')}[{i}]") for i, r in enumerate(rule.and_))
        if isinstance(rule, Or):
            return any(self.holds(r, person, history, f"{_join(path, 'or')}[{i}]") for i, r in enumerate(rule.or_))
        if isinstance(rule, Not):
            return not self.holds(rule.not_, person, history, _join(path, "not"))
        if isinstance(rule, Everyone):
            return True
        if isinstance(rule, Attribute):
            at = _join(path, "attribute")
            kind = self._column_type("customers", rule.attribute, at)
            return self.compare(person.get(rule.attribute), rule.operators(), kind, rule.attribute, at)
        if isinstance(rule, Performed):
            return self._performed(rule, history, _join(path, "performed"))
        if isinstance(rule, Aggregate):
            return self._aggregate(rule, history, _join(path, "aggregate"))
        if isinstance(rule, FirstPerformed | LastPerformed):
            return self._first_last(rule, history, path)
        if isinstance(rule, Sample):
            return sample_bucket(rule.sample.salt, person["customer_id"]) < rule.sample.percent * 100
        if isinstance(rule, Lifecycle):
            row = self.lifecycle[person["customer_id"]]
            stage_ok = rule.lifecycle == "any" or row.stage == rule.lifecycle
            return stage_ok and (rule.moment is None or rule.moment in row.moments)
        if isinstance(rule, Rfm):
            assert self.lifecycle_policy is not None
            try:
                segment = self.lifecycle_policy.rfm_segment(rule.rfm)
            except ValueError as exc:
                raise RuleError.at(_join(path, "rfm"), str(exc)) from None
            return bool(self.lifecycle[person["customer_id"]].rfm_segment == segment)
        if isinstance(rule, Cycle):
            return bool(self.lifecycle[person["customer_id"]].cycle_status == rule.cycle)
        if isinstance(rule, InSegment):  # resolve_segments removed them all
            raise RuleError.at(_join(path, "in_segment"), f"unresolved segment {rule.in_segment!r}")
        raise RuleError.at(path, f"unknown rule node {type(rule).__name__}")  # pragma: no cover

    def check_fields(self, rule: Rule, path: str) -> None:
        """Every field the rule names exists in the schema (before any row is read)."""
        from shopcrm.dsl import children

        def where(filters: Mapping[str, Any] | None, at: str) -> None:
            for key in filters or {}:
                self._column_type("events", "properties" if key.startswith("properties.") else key, _join(at, "where", key))

        if isinstance(rule, Attribute):
            self._column_type("customers", rule.attribute, _join(path, "attribute"))
        elif isinstance(rule, Performed):
            where(rule.where, _join(path, "performed"))
            if rule.not_followed_by is not None:
                where(rule.not_followed_by.where, _join(path, "performed", "not_followed_by"))
        elif isinstance(rule, Aggregate):
            where(rule.where, _join(path, "aggregate"))
            if not rule.of.startswith("properties."):
                self._column_type("events", rule.of, _join(path, "aggregate", "of"))
        elif isinstance(rule, FirstPerformed | LastPerformed):
            where(rule.where, path)
        tag = "and" if isinstance(rule, And) else "or" if isinstance(rule, Or) else "not"
        for i, child in enumerate(children(rule)):
            self.check_fields(child, _join(path, "not") if isinstance(rule, Not) else f"{_join(path, tag)}[{i}]")

    # ----------------------------------------------------------------- events
    def _matching(
        self,
        event: str,
        where: Mapping[str, Any] | None,
        bounds: Sequence[TsBound],
        history: list[tuple[datetime, Row]],
        path: str,
    ) -> list[tuple[datetime, Row]]:
        out = []
        for ts, row in history:
            if row.get("event") != event or not all(b.holds(ts) for b in bounds):
                continue
            if all(self._filter(row, key, cond, _join(path, "where", key)) for key, cond in (where or {}).items()):
                out.append((ts, row))
        return out

    def _filter(self, row: Row, key: str, cond: Any, path: str) -> bool:
        ops = cond.operators() if isinstance(cond, Comparison) else {"eq": cond}
        if key.startswith("properties."):
            self._column_type("events", "properties", path)
            return _json_holds(_property(row, key), ops)
        kind = self._column_type("events", key, path)
        return self.compare(row.get(key), ops, kind, key, path)

    def _performed(self, rule: Performed, history: list[tuple[datetime, Row]], path: str) -> bool:
        bounds = window_bounds(rule.within, self.now, _join(path, "within"))
        matching = self._matching(rule.performed, rule.where, bounds, history, path)
        follow = rule.not_followed_by
        if follow is not None:
            followers = self._matching(
                follow.performed, follow.where, [TsBound("lt", self.now)], history, _join(path, "not_followed_by")
            )
            limit = parse_duration(follow.within) if follow.within is not None else None
            matching = [
                (ts, row)
                for ts, row in matching
                if not any(ts < b_ts and (limit is None or b_ts - ts <= limit) for b_ts, _ in followers)
            ]
        ops = rule.times.operators() if rule.times else {"gte": 1}
        return _number_holds(len(matching), ops)

    def _aggregate(self, rule: Aggregate, history: list[tuple[datetime, Row]], path: str) -> bool:
        bounds = window_bounds(rule.within, self.now, _join(path, "within"))
        matching = self._matching(rule.performed, rule.where, bounds, history, path)
        values: list[Any] = []
        json_field = rule.of.startswith("properties.")
        for _, row in matching:
            if json_field:  # the JSON numbers (count_distinct: numbers, strings and booleans, each type apart)
                value = _property(row, rule.of)
                kind = _json_type(value)
                if rule.aggregate == "count_distinct":
                    value = None if kind is None else (kind, _double(value) if kind == "number" else value)
                else:
                    value = _double(value) if kind == "number" else None
            else:
                self._column_type("events", rule.of, _join(path, "of"))
                value = row.get(rule.of)
            if value is not None:
                values.append(value)
        ops = rule.operators()
        if rule.aggregate == "sum":
            return _number_holds(_added(values), ops)
        if rule.aggregate == "count_distinct":
            return _number_holds(len(set(values)), ops)
        if not values:  # avg, min, max of nothing are NULL: no match
            return False
        if rule.aggregate == "min":
            return _number_holds(min(values), ops)
        if rule.aggregate == "max":
            return _number_holds(max(values), ops)
        # avg op v is sum op v * count, in doubles as every engine computes it: the sum (exact for integers, else
        # added one by one) as a double, against the double v times the count
        total, count = float(_added(values)), float(len(values))
        return _number_holds(total, {op: _scaled(v, count) for op, v in ops.items()})

    def _first_last(self, rule: FirstPerformed | LastPerformed, history: list[tuple[datetime, Row]], path: str) -> bool:
        first = isinstance(rule, FirstPerformed)
        event = rule.first_performed if isinstance(rule, FirstPerformed) else rule.last_performed
        at = _join(path, "first_performed" if first else "last_performed")
        matching = self._matching(event, rule.where, [TsBound("lt", self.now)], history, at)
        if not matching:
            return False
        ts = matching[0][0] if first else matching[-1][0]
        return all(b.holds(ts) for b in rule.ago.bounds(self.now, _join(at, "ago")))

    # ------------------------------------------------------------ comparisons
    def _column_type(self, table: str, name: str, path: str) -> ColumnType | None:
        if self.schema is None:
            return None
        source = self.schema.customers if table == "customers" else self.schema.events
        if name.startswith("properties.") or not source.has(name):
            raise SchemaError.at(
                path,
                f"the {table} table {source.name!r} has no column {name!r}; its columns are "
                f"{', '.join(sorted(source.columns))}",
            )
        return source.type_of(name)

    def compare(self, value: Any, ops: Mapping[str, Any], kind: ColumnType | None, name: str, path: str) -> bool:
        """Whether a value satisfies every operator (NULL satisfies only ``is_null: true``)."""
        for op, expected in ops.items():
            if op == "is_null":
                if (value is None) != expected:
                    return False
                continue
            if value is None:
                return False
            if not self._one(value, op, expected, kind, name, _join(path, op)):
                return False
        return True

    def _one(self, value: Any, op: str, expected: Any, kind: ColumnType | None, name: str, path: str) -> bool:
        if op == "ago":
            ts = self._as_timestamp(value, name, path)
            return all(b.holds(ts) for b in expected.bounds(self.now, path))
        if op in ("contains", "starts_with"):
            if not isinstance(value, str):
                raise RuleError.at(path, f"{op} works on strings; {name!r} holds {value!r}")
            return expected in value if op == "contains" else value.startswith(expected)
        here = self._as_timestamp(value, name, path) if _is_timestamp(value, kind) else value
        if op == "between":
            low, high = (self._coerce(value, v, kind, name, f"{path}[{i}]") for i, v in enumerate(expected))
            return bool(low <= here <= high)
        if op in ("in", "not_in"):
            candidates = [self._coerce(value, v, kind, name, f"{path}[{i}]") for i, v in enumerate(expected)]
            return (here in candidates) == (op == "in")
        target = self._coerce(value, expected, kind, name, path)
        if op == "eq":
            return bool(here == target)
        if op == "ne":
            return bool(here != target)
        if isinstance(here, bool):
            raise RuleError.at(path, f"booleans take eq, ne, in, not_in or is_null, not {op!r}")
        return bool({"lt": here < target, "lte": here <= target, "gt": here > target, "gte": here >= target}[op])

    def _coerce(self, value: Any, expected: Any, kind: ColumnType | None, name: str, path: str) -> Any:
        """The rule's value as comparable with the row's value; a misfit is a RuleError."""
        expected_is_number = isinstance(expected, int | float) and not isinstance(expected, bool)
        if _is_timestamp(value, kind):
            if isinstance(expected, bool) or not isinstance(expected, str | datetime):
                raise RuleError.at(path, f"{expected!r} cannot be compared with timestamp {name!r}; use an ISO 8601 datetime")
            try:
                return to_utc_naive(expected)
            except OverflowError:
                raise RuleError.at(
                    path, f"{expected!r} is outside the years 1 to 9999 once converted to UTC; use an instant inside them"
                ) from None
            except ValueError:
                raise RuleError.at(path, f"{expected!r} is not an ISO 8601 datetime for timestamp {name!r}") from None
        if isinstance(value, bool) or kind is ColumnType.BOOLEAN:
            if not isinstance(expected, bool):
                raise RuleError.at(path, f"{expected!r} cannot be compared with boolean {name!r}; use true or false")
            return expected
        if isinstance(value, int | float) or (kind is not None and kind.is_numeric):
            if not expected_is_number:
                raise RuleError.at(path, f"{expected!r} cannot be compared with numeric {name!r}; use a number")
            return expected
        if isinstance(value, str) or kind is ColumnType.STRING:
            if not isinstance(expected, str):
                raise RuleError.at(path, f"{expected!r} cannot be compared with string {name!r}; use a string")
            return expected
        raise RuleError.at(path, f"{name!r} holds {value!r}, which rules cannot compare")

    def _as_timestamp(self, value: Any, name: str, path: str) -> datetime:
        if isinstance(value, datetime | str):
            try:
                return to_utc_naive(value)
            except (ValueError, OverflowError):
                pass
        raise RuleError.at(path, f"{name!r} holds {value!r}, which is not a timestamp")


def _is_timestamp(value: Any, kind: ColumnType | None) -> bool:
    return kind is ColumnType.TIMESTAMP or isinstance(value, datetime)


@functools.lru_cache(maxsize=4096)
def _loads(text: str) -> Any:
    return json.loads(text)


def _property(row: Row, field: str) -> Any:
    """The value of ``properties.<key>`` in an event row: its ``properties`` is a mapping or JSON text (read alike
    by filters and aggregates); None when there is no such key, or no object to hold it."""
    properties = row.get("properties")
    if isinstance(properties, str):
        properties = _loads(properties)
    return properties.get(field.split(".", 1)[1]) if isinstance(properties, Mapping) else None


def _json_type(value: Any) -> JsonKind | None:
    """The JSON type of a property's value that rules compare; None for null, arrays, objects (and anything else)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _double(number: int | float) -> float:
    """A JSON number as the engines' double (an integer beyond the doubles' range is infinite, as they read it)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _json_holds(value: Any, ops: Mapping[str, Any]) -> bool:
    """A JSON property against operators: each reads the value as the JSON type of its own rule value (a string
    for contains and starts_with), and a value of another type satisfies none of them, as NULL; numbers compare as
    doubles, as the engines compare them."""
    for op, expected in ops.items():
        if op == "is_null":
            if (value is None) != expected:
                return False
            continue
        if _json_type(value) != json_kind(op, expected):
            return False
        here, target = value, expected
        if isinstance(value, int | float) and not isinstance(value, bool):
            here = _double(value)
            target = tuple(float(v) for v in expected) if isinstance(expected, tuple) else float(expected)
        if not _JSON_TESTS[op](here, target):
            return False
    return True


_NUMBER_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda n, v: n == v,
    "ne": lambda n, v: n != v,
    "lt": lambda n, v: n < v,
    "lte": lambda n, v: n <= v,
    "gt": lambda n, v: n > v,
    "gte": lambda n, v: n >= v,
    "between": lambda n, v: v[0] <= n <= v[1],
    "in": lambda n, v: n in v,
    "not_in": lambda n, v: n not in v,
}


#: a JSON property's tests: the numeric ones, and the text ones (the value read as a string)
_JSON_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    **_NUMBER_TESTS,
    "contains": lambda n, v: v in n,
    "starts_with": lambda n, v: n.startswith(v),
}


def _added(values: Sequence[Any]) -> Any:
    """The values added one by one, in order, as the engines' ``SUM`` adds them: integers exactly, floats in double
    arithmetic (a left fold: Python 3.12's ``sum`` compensates float rounding, which no engine does)."""
    total: Any = 0
    for value in values:
        total = total + value
    return total


def _scaled(value: Any, count: float) -> Any:
    """``value * count`` in doubles (an avg's comparison value)."""
    if isinstance(value, tuple):
        return tuple(float(v) * count for v in value)
    return float(value) * count


def _number_holds(number: Any, ops: Mapping[str, Any]) -> bool:
    """A count, sum or extreme (never NULL here) against numeric operators."""
    return all(_NUMBER_TESTS[op](number, v) for op, v in ops.items())
