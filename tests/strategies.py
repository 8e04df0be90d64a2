"""Hypothesis strategies for random shops and random rules that provoke engines.

Shops have NULLs everywhere they may, strings that differ only in case, padding,
quotes, backslashes and wildcard characters, and timestamps exactly on the
window edges the rules use, at ``now`` and after it.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from shopcrm.dsl import Rule, parse_rule
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.timeline import parse_duration

CUSTOMER_COLUMNS: dict[str, ColumnType] = {
    "customer_id": ColumnType.STRING,  # or INTEGER, per shop
    "age": ColumnType.INTEGER,
    "grade": ColumnType.STRING,
    "score": ColumnType.FLOAT,
    "vip": ColumnType.BOOLEAN,
    "signed_up_at": ColumnType.TIMESTAMP,
}
EVENT_COLUMNS: dict[str, ColumnType] = {
    "customer_id": ColumnType.STRING,
    "event": ColumnType.STRING,
    "ts": ColumnType.TIMESTAMP,
    "category": ColumnType.STRING,
    "product_id": ColumnType.STRING,
    "amount": ColumnType.INTEGER,
    "price": ColumnType.FLOAT,
    "promotion_id": ColumnType.STRING,
}
EVENT_NAMES: tuple[str, ...] = ("product_viewed", "cart_added", "order_completed", "promotion_joined")
DURATIONS: tuple[str, ...] = ("1h", "12h", "1d", "7d", "30d")
NOWS: tuple[datetime, ...] = (datetime(2026, 3, 1, 12, 0, 0), datetime(2025, 12, 31, 23, 59, 59))
TEXTS: tuple[str, ...] = ("a", "A", "a ", "b", "é", "한", "'", '"', "\\", "%", "_", "", "ab", "aB")
STRING_FIELDS = ("category", "product_id", "promotion_id")


@attrs.frozen
class RandomShop:
    """Rows for the two tables, the instant to evaluate at, and their schema."""

    customers: list[dict[str, Any]]
    events: list[dict[str, Any]]
    now: datetime
    id_kind: Literal["int", "str"]
    schema: Schema


def _schema(id_kind: str) -> Schema:
    id_type = ColumnType.INTEGER if id_kind == "int" else ColumnType.STRING
    return Schema(
        Table("customers", {**CUSTOMER_COLUMNS, "customer_id": id_type}),
        Table("events", {**EVENT_COLUMNS, "customer_id": id_type}),
    )


texts = st.sampled_from(TEXTS)
small_ints = st.one_of(st.integers(-5, 100), st.sampled_from([10**9, -(10**9)]))
quarters = st.integers(-4000, 4000).map(lambda n: n / 4)


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _instants(now: datetime) -> st.SearchStrategy[datetime]:
    edges = [now - parse_duration(d) + timedelta(seconds=delta) for d in DURATIONS for delta in (-1, 0, 1)]
    return st.one_of(
        st.sampled_from(edges),
        st.sampled_from([now, now + timedelta(seconds=1), now + timedelta(days=1), now - timedelta(seconds=1)]),
        st.integers(1, 60 * 86400).map(lambda s: now - timedelta(seconds=s)),
    )


# The strategies a shop draws from, built once: a strategy built inside a draw is validated and labelled anew at
# every draw (a quarter of a small engine test's time went there); drawing from one built once gives the very
# same examples (hypothesis draws by the strategies' shape, not their identity).
_NULLABLE_INTS = _nullable(small_ints)
_NULLABLE_TEXTS = _nullable(texts)
_NULLABLE_QUARTERS = _nullable(quarters)
_NULLABLE_BOOLS = _nullable(st.booleans())
_INSTANTS = {now: _instants(now) for now in NOWS}
_NULLABLE_INSTANTS = {now: _nullable(instants) for now, instants in _INSTANTS.items()}
_ID_KINDS = st.sampled_from(["int", "str"])
_NOW = st.sampled_from(NOWS)
_EVENT_NAMES = st.sampled_from(EVENT_NAMES)


@functools.cache
def _int_ids(max_customers: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.integers(1, 10**6), min_size=1, max_size=max_customers, unique=True)


@functools.cache
def _str_ids(max_customers: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(
        st.text(alphabet="ab'한\\ \"%_", min_size=1, max_size=4).filter(lambda s: s.strip() == s),
        min_size=1, max_size=max_customers, unique=True,
    )


@functools.cache
def _event_counts(max_events: int) -> st.SearchStrategy[int]:
    return st.integers(0, max_events)


@st.composite
def shops(draw: st.DrawFn, max_customers: int = 12, max_events: int = 40) -> RandomShop:
    """A small random shop."""
    id_kind: Literal["int", "str"] = draw(_ID_KINDS)
    now = draw(_NOW)
    if id_kind == "int":
        ids: list[Any] = draw(_int_ids(max_customers))
        strangers: list[Any] = [10**7 + 1]
    else:
        ids = draw(_str_ids(max_customers))
        strangers = ["nobody"]
    instants, nullable_instants = _INSTANTS[now], _NULLABLE_INSTANTS[now]
    customers = [
        {
            "customer_id": cid,
            "age": draw(_NULLABLE_INTS),
            "grade": draw(_NULLABLE_TEXTS),
            "score": draw(_NULLABLE_QUARTERS),
            "vip": draw(_NULLABLE_BOOLS),
            "signed_up_at": draw(nullable_instants),
        }
        for cid in ids
    ]
    owners = st.sampled_from(ids + strangers) if ids else st.sampled_from(strangers)
    events = [
        {
            "customer_id": draw(owners),
            "event": draw(_EVENT_NAMES),
            "ts": draw(instants),
            "category": draw(_NULLABLE_TEXTS),
            "product_id": draw(_NULLABLE_TEXTS),
            "amount": draw(_NULLABLE_INTS),
            "price": draw(_NULLABLE_QUARTERS),
            "promotion_id": draw(_NULLABLE_TEXTS),
        }
        for _ in range(draw(_event_counts(max_events)))
    ]
    return RandomShop(customers, events, now, id_kind, _schema(id_kind))


# ---------------------------------------------------------------------- rules
durations = st.sampled_from(DURATIONS)
numbers_for = {"age": small_ints, "score": quarters, "amount": small_ints, "price": quarters}


@st.composite
def _age_range(draw: st.DrawFn) -> dict[str, str]:
    ops = draw(st.lists(st.sampled_from(["gte", "gt", "lte", "lt"]), min_size=1, max_size=2, unique=True))
    return {op: draw(durations) for op in ops}


@st.composite
def _window(draw: st.DrawFn, now: datetime = NOWS[0]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["last", "ago", "between"]))
    if kind == "last":
        return {"last": draw(durations)}
    if kind == "ago":
        return {"ago": draw(_age_range())}
    a, b = sorted(draw(st.lists(st.sampled_from(NOWS[0:1] + NOWS[1:]), min_size=2, max_size=2)))
    start = a - parse_duration(draw(durations))
    return {"between": [start.isoformat(), b.isoformat()]}


@st.composite
def _condition(draw: st.DrawFn, field: str, kind: ColumnType) -> Any:
    """An operator object (or a bare value) that fits the column type."""
    if kind is ColumnType.STRING:
        op = draw(st.sampled_from(["bare", "eq", "ne", "lt", "gte", "between", "in", "not_in", "contains", "starts_with", "is_null"]))
        value: st.SearchStrategy[Any] = texts
    elif kind is ColumnType.BOOLEAN:
        op = draw(st.sampled_from(["bare", "eq", "ne", "is_null", "in"]))
        value = st.booleans()
    elif kind is ColumnType.TIMESTAMP:
        op = draw(st.sampled_from(["ago", "is_null", "lt", "gte"]))
        value = st.sampled_from(NOWS).map(lambda t: (t - timedelta(days=7)).isoformat())
    else:
        op = draw(st.sampled_from(["bare", "eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_null"]))
        value = numbers_for[field]
    if op == "bare":
        return draw(value)
    if op == "is_null":
        return {"is_null": draw(st.booleans())}
    if op == "ago":
        return {"ago": draw(_age_range())}
    if op == "between":
        return {"between": sorted(draw(st.lists(value, min_size=2, max_size=2)))}
    if op in ("in", "not_in"):
        return {op: draw(st.lists(value, min_size=1, max_size=3))}
    return {op: draw(value)}


@st.composite
def _where(draw: st.DrawFn) -> dict[str, Any] | None:
    fields = draw(st.lists(st.sampled_from(["category", "product_id", "amount", "price", "promotion_id"]), max_size=2, unique=True))
    return {f: draw(_condition(f, EVENT_COLUMNS[f])) for f in fields} or None


@st.composite
def _count_cmp(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in"]))
    n = st.integers(0, 3)
    if op == "between":
        return {"between": sorted(draw(st.lists(n, min_size=2, max_size=2)))}
    if op in ("in", "not_in"):
        return {op: draw(st.lists(n, min_size=1, max_size=2))}
    return {op: draw(n)}


@st.composite
def _leaf(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["performed", "aggregate", "first", "last", "attribute", "sample", "everyone", "followed", "lifecycle"]))
    event = draw(st.sampled_from(EVENT_NAMES))
    node: dict[str, Any]
    if kind in ("performed", "followed"):
        node = {"performed": event}
        if draw(st.booleans()):
            node["where"] = draw(_where())
        if draw(st.booleans()):
            node["within"] = draw(_window())
        if draw(st.booleans()):
            node["times"] = draw(_count_cmp())
        if kind == "followed":
            follow: dict[str, Any] = {"performed": draw(st.sampled_from(EVENT_NAMES))}
            if draw(st.booleans()):
                follow["within"] = draw(durations)
            if draw(st.booleans()):
                follow["where"] = draw(_where())
            node["not_followed_by"] = follow
    elif kind == "aggregate":
        fn = draw(st.sampled_from(["sum", "avg", "min", "max", "count_distinct"]))
        of = draw(st.sampled_from(["amount", "price"]))
        node = {"aggregate": fn, "of": of, "performed": event}
        if draw(st.booleans()):
            node["where"] = draw(_where())
        if draw(st.booleans()):
            node["within"] = draw(_window())
        cmp = draw(_count_cmp()) if fn == "count_distinct" else None
        if cmp is None:
            op = draw(st.sampled_from(["eq", "ne", "lt", "gte", "between", "in"]))
            v = numbers_for[of]
            if op == "between":
                cmp = {"between": sorted(draw(st.lists(v, min_size=2, max_size=2)))}
            elif op == "in":
                cmp = {"in": draw(st.lists(v, min_size=1, max_size=2))}
            else:
                cmp = {op: draw(v)}
        node.update(cmp)
    elif kind in ("first", "last"):
        node = {f"{kind}_performed": event, "ago": draw(_age_range())}
        if draw(st.booleans()):
            node["where"] = draw(_where())
    elif kind == "attribute":
        field = draw(st.sampled_from(["age", "grade", "score", "vip", "signed_up_at"]))
        cond = draw(_condition(field, CUSTOMER_COLUMNS[field]))
        node = {"attribute": field, **(cond if isinstance(cond, dict) else {"eq": cond})}
    elif kind == "sample":
        node = {"sample": {"percent": draw(st.sampled_from([0, 10, 33.3, 50, 99.99, 100])), "salt": draw(st.sampled_from(["", "s", "홀드아웃", "a'b"]))}}
    elif kind == "lifecycle":
        which = draw(st.sampled_from(["stage", "moment", "rfm", "cycle"]))
        if which == "rfm":
            node = {"rfm": draw(st.sampled_from(["champions", "hibernating", "new_customers", "at_risk", "about_to_sleep"]))}
        elif which == "cycle":
            node = {"cycle": draw(st.sampled_from(["active", "at_risk", "churned"]))}
        else:
            stage = draw(st.sampled_from(["any", "never_purchased", "first_purchase", "repeat", "loyal"]))
            node = {"lifecycle": stage}
            if which == "moment":
                node["moment"] = draw(st.sampled_from(["cart_abandoned", "signup_dropoff", "cooling_off", "lapsed"]))
    else:
        node = {"everyone": True}
    return node


def _combine(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: {"and": xs}),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: {"or": xs}),
        children.map(lambda x: {"not": x}),
    )


def rule_dicts(max_depth: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    """Random rules as JSON-able dicts (every node type except in_segment)."""
    return st.recursive(_leaf(), _combine, max_leaves=max_depth * 2)


def rules(max_depth: int = 3) -> st.SearchStrategy[Rule]:
    """Random validated rule models."""
    return rule_dicts(max_depth).map(parse_rule)


@st.composite
def text_rule_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Rules that only compare strings: where engines' collations differ most."""
    field = draw(st.sampled_from(["grade", "category", "product_id"]))
    cond = draw(_condition(field, ColumnType.STRING))
    ops = cond if isinstance(cond, dict) else {"eq": cond}
    if field == "grade":
        return {"attribute": "grade", **ops}
    return {"performed": draw(st.sampled_from(EVENT_NAMES)), "where": {field: cond}}


def text_rules() -> st.SearchStrategy[Rule]:
    """String comparisons alone, and negated (NULLs must not leak)."""
    return st.one_of(text_rule_dicts(), text_rule_dicts().map(lambda r: {"not": r})).map(parse_rule)


def shops_and_rules(max_customers: int = 12, max_events: int = 40, max_depth: int = 3) -> st.SearchStrategy[tuple[RandomShop, Rule]]:
    """A shop and a rule to run on it."""
    return st.tuples(shops(max_customers, max_events), rules(max_depth))
