"""Rules to sqlglot trees.

Shape of every query: each event condition of the rules (a *leaf*) becomes one
aggregate column of a single grouped pass over the events table (the
``shopcrm_f`` CTE); ``not_followed_by`` leaves, which need a self-join, get a CTE
each.  The rules become booleans over the customers table left-joined to those
CTEs.  Identical leaves are computed once, so ``count_many`` shares the pass.

Predicates carry whether they can be NULL; ``not`` wraps a nullable one in
``COALESCE(p, FALSE)`` so SQL's three-valued logic never leaks.

``count_many`` on DuckDB (``Dialect.pass_masks``): each pass returns, per customer, the tests the rules
make of its aggregates as the bits of integer masks instead of the aggregates; the passes' rows are merged
(``UNION ALL``, ``BIT_OR``) and joined once to the customers, where each rule tests bits. Fewer, narrower
joins (issue 15).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

import attrs
from sqlglot import exp

from shopcrm.compiler._dialects import Dialect
from shopcrm.dsl import (
    Aggregate,
    And,
    Attribute,
    Comparison,
    Cycle,
    Everyone,
    FirstPerformed,
    Follow,
    InSegment,
    LastPerformed,
    Lifecycle,
    Not,
    Or,
    Performed,
    Rfm,
    Rule,
    Sample,
    window_bounds,
)
from shopcrm.dsl._json import json_ago_message, json_kind
from shopcrm.errors import RuleError, SchemaError
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.timeline import TsBound, to_utc_naive

__all__ = ["QueryBuilder"]

_CUSTOMERS = "c"
_EVENTS = "e"
_FEATURES = "shopcrm_f"
_LIFECYCLE = "shopcrm_lc"
_FLAGS = "shopcrm_masks"  # the merged pass masks (counts() calls its derived table of rule flags shopcrm_flags)
_MASK_BITS = 62  # bits per mask column: a BIGINT, its sign bit unused
_ORDER_OPS: dict[str, Callable[..., exp.Expression]] = {"lt": exp.LT, "lte": exp.LTE, "gt": exp.GT, "gte": exp.GTE}
_ALL_OPS: dict[str, Callable[..., exp.Expression]] = {"eq": exp.EQ, "ne": exp.NEQ, **_ORDER_OPS}


@attrs.frozen
class _Pred:
    expr: exp.Expression
    nullable: bool


@attrs.frozen
class _Field:
    """A column (or JSON key) as an expression, with its type."""

    expr: exp.Expression
    type: ColumnType
    name: str
    #: for ``properties.<key>``: the JSON column and the key
    json: tuple[exp.Expression, str] | None = None


def _join(path: str, *parts: str) -> str:
    return ".".join(p for p in (path, *parts) if p)


def _and(parts: Sequence[exp.Expression]) -> exp.Expression:
    if not parts:
        return exp.true()
    out = parts[0]
    for part in parts[1:]:
        out = exp.And(this=out, expression=part)
    return out


def _or(parts: Sequence[exp.Expression]) -> exp.Expression:
    out = parts[0]
    for part in parts[1:]:
        out = exp.Or(this=out, expression=part)
    return out


def _paren(e: exp.Expression) -> exp.Expression:
    return e if isinstance(e, exp.Paren | exp.Column | exp.Literal | exp.Boolean) else exp.Paren(this=e)


def _conjuncts(condition: exp.Expression) -> list[exp.Expression]:
    """The parts of a conjunction (through nested ANDs and parenthesised ANDs)."""
    inner = condition.this if isinstance(condition, exp.Paren) else condition
    if isinstance(inner, exp.And):
        return _conjuncts(inner.this) + _conjuncts(inner.expression)
    return [condition]


def _hoisted(conditions: Sequence[exp.Expression]) -> tuple[list[exp.Expression], set[str], bool]:
    """The conjuncts common to every feature condition of one grouped pass (they go to its WHERE, once), their
    texts, and whether some condition has nothing else (then those rows are all the pass needs).  Inside the pass
    the common conjuncts hold for every row, so a feature tests only the rest of its condition (ten category
    counts over one window test the window once per row, not ten times): see :func:`_within`."""
    split = [_conjuncts(c) for c in conditions]
    texts = [[p.sql() for p in parts] for parts in split]
    shared = set(texts[0]).intersection(*map(set, texts[1:]))
    common = [p.copy() for p, t in zip(split[0], texts[0], strict=True) if t in shared]
    return common, shared, any(set(t) <= shared for t in texts)


def _rest(condition: exp.Expression, shared: set[str]) -> exp.Expression | None:
    """``condition`` without the conjuncts whose text is in ``shared`` (None when none remains)."""
    rest = [p.copy() for p in _conjuncts(condition) if p.sql() not in shared]
    return _and(rest) if rest else None


def _within(aggregate: exp.Expression, shared: set[str]) -> exp.Expression:
    """``aggregate`` (a grouped pass's feature) with the pass's common conjuncts (true for each of its rows) taken
    out of its conditions: ``CASE WHEN common AND rest THEN x END`` becomes ``CASE WHEN rest THEN x END``, or
    ``x`` when nothing remains."""
    def reduce(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Case) and not node.args.get("default") and len(node.args.get("ifs") or []) == 1:
            branch = node.args["ifs"][0]
            rest = _rest(branch.this, shared)
            if rest is None:
                return branch.args["true"].copy()  # type: ignore[no-any-return]
            return exp.Case(ifs=[exp.If(this=rest, true=branch.args["true"].copy())])
        return node
    return aggregate.transform(reduce)


def _any_of(conditions: Sequence[exp.Expression]) -> exp.Expression | None:
    """``x IN (a, b, ...)`` for conditions that are all ``x = <literal>`` on one ``x`` (None otherwise): DuckDB
    tests the list by one lookup per row where the ORs are tested one by one (ten category counts)."""
    if len(conditions) < 2 or not all(isinstance(c, exp.EQ) and isinstance(c.expression, exp.Literal) for c in conditions):
        return None
    if len({c.this.sql() for c in conditions}) != 1:
        return None
    values = {c.expression.sql(): c.expression for c in conditions}
    return exp.In(this=conditions[0].this.copy(), expressions=[v.copy() for v in values.values()])


def _number(value: int | float) -> exp.Expression:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return exp.Literal.number(int(value))
    return exp.Literal.number(repr(value) if isinstance(value, float) else value)


_NOT_PLAIN = re.compile(r"[0-9eE.+-]+")


def _plain_text(value: Any) -> bool:
    """A string that no engine writes for a JSON number, boolean, null, array or object (then ``=`` on the text of
    a property needs no test of its type)."""
    return isinstance(value, str) and not (
        _NOT_PLAIN.fullmatch(value) or value[:1] in ("[", "{")
        or value.lower() in ("true", "false", "null", "nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")
    )


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class QueryBuilder:
    """Compiles rules for one schema, dialect and ``now`` into one query."""

    def __init__(self, schema: Schema, now: datetime, dialect: Dialect, lifecycle_policy: Any = None) -> None:
        self.schema = schema
        self.now = to_utc_naive(now)
        self.d = dialect
        self.lifecycle_policy = lifecycle_policy
        self._lifecycle: exp.Select | None = None  # the lifecycle query, when a rule reads it
        # one grouped pass per event name: {event: {leaf token: (column, aggregate)}}, and the
        # leaf conditions whose OR filters that pass's rows
        self._features: dict[str, dict[str, tuple[str, exp.Expression]]] = {}
        self._feature_conds: dict[str, dict[str, exp.Expression]] = {}
        self._feature_count = 0
        self._feature_tables: dict[str, str] = {}  # pass CTE name -> its event
        # count_many on a dialect with pass_masks: each test of a pass's features is one bit of a mask the pass
        # computes per customer; {event: {test text: (test over feature columns, true without rows, bit)}}
        self._masks = False
        self._atoms: dict[str, dict[str, tuple[exp.Expression, bool, int]]] = {}
        self._atom_count = 0
        self._current: tuple[str, exp.Expression] | None = None  # the last events-table leaf condition
        self._follows: dict[str, tuple[str, exp.Expression]] = {}
        # set form: a leaf's aggregate is inlined and its row filter recorded here
        self._inline = False
        self._leaf: tuple[exp.Expression, str, bool] | None = None  # (WHERE, events alias, zero_ok)

    # ------------------------------------------------------------------ tables
    def _table(self, table: Table, alias: str) -> exp.Expression:
        return table.relation(alias)

    def _col(self, name: str, alias: str) -> exp.Column:
        return exp.column(name, table=alias, quoted=True)

    def _customer_field(self, name: str, path: str) -> _Field:
        table = self.schema.customers
        if name.startswith("properties.") or not table.has(name):
            columns = sorted(table.columns)
            raise SchemaError.at(
                path,
                f"the customers table {table.name!r} has no column {name!r}{_did_you_mean(name, columns)}; "
                f"its columns are {', '.join(columns)}",
            )
        return _Field(self._col(name, _CUSTOMERS), table.type_of(name), name)

    def _event_field(self, name: str, path: str, alias: str = _EVENTS) -> _Field:
        table = self.schema.events
        if name.startswith("properties."):
            key = name.split(".", 1)[1]
            if not table.has("properties"):
                raise SchemaError.at(
                    path,
                    f"{name!r} reads the JSON column 'properties', which the events table "
                    f"{table.name!r} does not have; its columns are {', '.join(sorted(table.columns))}",
                )
            column = self._col("properties", alias)
            return _Field(self.d.json_text(column, key), ColumnType.JSON, name, (column, key))
        if not table.has(name):
            columns = sorted(table.columns)
            raise SchemaError.at(
                path,
                f"the events table {table.name!r} has no column {name!r}{_did_you_mean(name, columns)}; "
                f"its columns are {', '.join(columns)}",
            )
        return _Field(self._col(name, alias), table.type_of(name), name)

    # ------------------------------------------------------------- comparisons
    def _value(self, field: _Field, value: Any, op: str, path: str) -> tuple[exp.Expression, exp.Expression]:
        """(column side, literal side) for one value, checking that the types fit."""
        kind = field.type
        where = f"{field.name!r} ({kind.value})"
        if kind.is_numeric:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleError.at(path, f"{value!r} cannot be compared with numeric column {where}; use a number")
            return field.expr, _number(value)
        if kind is ColumnType.STRING:
            if not isinstance(value, str):
                raise RuleError.at(path, f"{value!r} cannot be compared with string column {where}; use a string")
            return field.expr, exp.Literal.string(value)
        if kind is ColumnType.BOOLEAN:
            if not isinstance(value, bool):
                raise RuleError.at(path, f"{value!r} cannot be compared with boolean column {where}; use true or false")
            if op not in ("eq", "ne", "in", "not_in"):
                raise RuleError.at(path, f"boolean column {where} takes eq, ne, in, not_in or is_null, not {op!r}")
            return field.expr, self.d.boolean(value)
        if kind is ColumnType.TIMESTAMP:
            if isinstance(value, bool) or not isinstance(value, str | datetime):
                raise RuleError.at(path, f"{value!r} cannot be compared with timestamp column {where}; use an ISO 8601 datetime string")
            try:
                at = to_utc_naive(value)
            except OverflowError:
                raise RuleError.at(
                    path, f"{value!r} is outside the years 1 to 9999 once converted to UTC; use an instant inside them"
                ) from None
            except ValueError:
                raise RuleError.at(
                    path, f"{value!r} is not an ISO 8601 datetime for timestamp column {where}; use e.g. '2026-01-31T09:00:00'"
                ) from None
            return self.d.timestamp_column(field.expr), self.d.timestamp_literal(at)
        raise RuleError.at(path, f"column {where} has a type rules cannot compare")

    def _cmp(self, field: _Field, op: str, value: Any, path: str) -> exp.Expression:
        left, right = self._value(field, value, op, path)
        if field.type is ColumnType.STRING:
            wrap = self.d.string_equality if op in ("eq", "ne") else self.d.string_order
            left, right = wrap(left), wrap(right)
        return _ALL_OPS[op](this=left, expression=right)

    def _bound(self, ts: exp.Expression, bound: TsBound) -> exp.Expression:
        return _ORDER_OPS[bound.op](this=ts, expression=self.d.timestamp_literal(bound.at))

    def _compare_json(self, field: _Field, ops: dict[str, Any], path: str) -> _Pred:
        """A JSON property against operators, each reading the value as the JSON type of its own rule value (a
        string for ``contains`` and ``starts_with``): a value of another type satisfies none of them (see
        ``docs/dsl.md``, JSON properties)."""
        assert field.json is not None
        column, key = field.json
        parts: list[exp.Expression] = []
        nullable = False
        for op, value in ops.items():
            if op == "is_null":
                test = self.d.json_is_null(column.copy(), key)
                parts.append(test if value else exp.Not(this=_paren(test)))
                continue
            if op == "ago":
                raise RuleError.at(_join(path, op), json_ago_message(field.name))
            kind = json_kind(op, value)
            if kind == "string" and op in ("eq", "in") and all(_plain_text(v) for v in (value if op == "in" else (value,))):
                # no other JSON type reads as this text on any engine: the text alone decides (and is cheaper)
                typed = field.expr.copy()
            else:
                typed = {"number": self.d.json_number, "string": self.d.json_string, "boolean": self.d.json_boolean}[kind](
                    column.copy(), key)
            if kind == "number":  # as the engines compare a double with a literal: the literal as a double
                value = tuple(float(v) for v in value) if isinstance(value, tuple) else float(value)
            as_type = {"number": ColumnType.FLOAT, "string": ColumnType.STRING, "boolean": ColumnType.BOOLEAN}[kind]
            parts.append(self._compare(_Field(typed, as_type, field.name), {op: value}, path).expr)
            nullable = True
        return _Pred(_paren(_and(parts)) if len(parts) > 1 else parts[0], nullable)

    def _compare(self, field: _Field, ops: dict[str, Any], path: str) -> _Pred:
        if field.type is ColumnType.JSON:
            return self._compare_json(field, ops, path)
        parts: list[exp.Expression] = []
        nullable = False
        for op, value in ops.items():
            at = _join(path, op)
            if op == "is_null":
                test = exp.Is(this=field.expr, expression=exp.Null())
                parts.append(test if value else exp.Not(this=test))
                continue
            nullable = True
            if op in _ALL_OPS:
                parts.append(self._cmp(field, op, value, at))
            elif op == "between":
                parts.append(self._cmp(field, "gte", value[0], f"{at}[0]"))
                parts.append(self._cmp(field, "lte", value[1], f"{at}[1]"))
            elif op in ("in", "not_in"):
                pairs = [self._value(field, v, op, f"{at}[{i}]") for i, v in enumerate(value)]
                left = pairs[0][0]
                rights = [p[1] for p in pairs]
                if field.type is ColumnType.STRING:
                    left = self.d.string_equality(left)
                    rights = [self.d.string_equality(r) for r in rights]
                membership: exp.Expression = exp.In(this=left, expressions=rights)
                parts.append(membership if op == "in" else exp.Not(this=exp.Paren(this=membership)))
            elif op in ("contains", "starts_with"):
                if field.type is not ColumnType.STRING:
                    raise RuleError.at(at, f"{op} works on strings; {field.name!r} is {field.type.value}")
                needle = exp.Literal.string(value)
                if op == "contains":
                    parts.append(exp.GT(this=self.d.position(field.expr, needle), expression=exp.Literal.number(0)))
                else:
                    prefix = self.d.substring(field.expr, len(value))
                    parts.append(exp.EQ(this=self.d.string_equality(prefix), expression=self.d.string_equality(needle)))
            elif op == "ago":
                if field.type is not ColumnType.TIMESTAMP:
                    raise RuleError.at(at, f"ago works on timestamps; {field.name!r} is {field.type.value}")
                ts = self.d.timestamp_column(field.expr)
                parts.extend(self._bound(ts, b) for b in value.bounds(self.now, at))
            else:  # pragma: no cover - the models admit no other operator
                raise RuleError.at(at, f"unknown operator {op!r}")
        return _Pred(_paren(_and(parts)) if len(parts) > 1 else parts[0], nullable)

    def _compare_number(self, value: exp.Expression, ops: dict[str, Any]) -> exp.Expression:
        """A count or sum (never NULL) against numeric operators."""
        parts: list[exp.Expression] = []
        for op, v in ops.items():
            if op in _ALL_OPS:
                parts.append(_ALL_OPS[op](this=value, expression=_number(v)))
            elif op == "between":
                parts.append(exp.GTE(this=value, expression=_number(v[0])))
                parts.append(exp.LTE(this=value, expression=_number(v[1])))
            elif op in ("in", "not_in"):
                test = exp.In(this=value, expressions=[_number(x) for x in v])
                parts.append(test if op == "in" else exp.Not(this=exp.Paren(this=test)))
        return _paren(_and(parts)) if len(parts) > 1 else parts[0]

    # ----------------------------------------------------------------- events
    def _event_condition(
        self, event: str, where: dict[str, Any] | None, bounds: Sequence[TsBound], path: str, alias: str
    ) -> exp.Expression:
        name_col = self._col("event", alias)
        exact = self.d.string_equality(name_col)
        parts: list[exp.Expression] = []
        # a grouped pass already keeps only this event's rows; where '=' is not exact (MySQL
        # collations) the exact test stays in the condition
        if alias != _EVENTS or self._inline or exact is not name_col:
            parts.append(exp.EQ(this=exact, expression=self.d.string_equality(exp.Literal.string(event))))
        for key, cond in (where or {}).items():
            field = self._event_field(key, _join(path, "where", key), alias)
            ops = cond.operators() if isinstance(cond, Comparison) else {"eq": cond}
            parts.append(self._compare(field, ops, _join(path, "where", key)).expr)
        ts = self.d.timestamp_column(self._col("ts", alias))
        parts.extend(self._bound(ts, b) for b in bounds)
        cond = _and(parts)
        if alias == _EVENTS:
            self._current = (event, cond)
        return cond

    def _feature(self, key: Any, make: Any) -> exp.Expression:
        """A column of the grouped pass over the current leaf's event (set form: the aggregate itself)."""
        if self._inline:
            return make()  # type: ignore[no-any-return]
        assert self._current is not None
        event, cond = self._current
        token = json.dumps(key, sort_keys=True, default=str)
        columns = self._features.setdefault(event, {})
        if token not in columns:
            columns[token] = (f"f{self._feature_count}", make())
            self._feature_count += 1
            self._feature_conds.setdefault(event, {})[cond.sql()] = cond
        table = f"{_FEATURES}{list(self._features).index(event)}"
        self._feature_tables[table] = event
        return exp.column(columns[token][0], table=table)

    def _atom(self, pred: _Pred, absent: bool) -> _Pred:
        """``pred``, a test of one grouped pass's features, as a bit of that pass's mask (mask mode only).

        The pass sets the bit where the test is TRUE (``absent``: where it is not TRUE, for a test that holds for
        a customer without rows, such as ``COALESCE(n, 0) = 0``), so a missing mask (0) reads as the test on no
        rows. NULL becomes FALSE, which every use of a nullable predicate already assumes (``not`` reads it
        through ``COALESCE(p, FALSE)``, a count through ``CASE WHEN``)."""
        if not self._masks or self._inline:
            return pred
        tables = {c.table for c in pred.expr.find_all(exp.Column)}
        if len(tables) != 1 or next(iter(tables)) not in self._feature_tables:
            return pred
        event = self._feature_tables[next(iter(tables))]
        atoms = self._atoms.setdefault(event, {})
        key = f"{absent}:{pred.expr.sql()}"
        if key not in atoms:
            atoms[key] = (pred.expr, absent, self._atom_count)
            self._atom_count += 1
        bit = atoms[key][2]
        mask = exp.Coalesce(this=exp.column(f"m{bit // _MASK_BITS}", table=_FLAGS), expressions=[exp.Literal.number(0)])
        test = exp.Paren(this=exp.BitwiseAnd(this=mask, expression=exp.Literal.number(1 << (bit % _MASK_BITS))))
        zero = exp.Literal.number(0)
        return _Pred(exp.EQ(this=test, expression=zero) if absent else exp.NEQ(this=test, expression=zero), False)

    def _performed(self, rule: Performed, path: str) -> _Pred:
        at = _join(path, "performed")
        bounds = window_bounds(rule.within, self.now, _join(at, "within"))
        ops = rule.times.operators() if rule.times else {"gte": 1}
        where = rule.model_dump(mode="json", include={"where"}).get("where")
        if rule.not_followed_by is not None:
            count = self._follow_count(rule, bounds, at)
        else:
            cond = self._event_condition(rule.performed, rule.where, bounds, at, _EVENTS)
            key = ("count", rule.performed, where, [(b.op, b.at) for b in bounds])
            # COUNT of a CASE without ELSE, not SUM(CASE ... ELSE 0): the same numbers as a BIGINT rather
            # than a HUGEINT/DECIMAL sum, cheaper to aggregate and to carry through the joins
            column = self._feature(
                key,
                lambda: exp.Count(this=exp.Star()) if self._inline else
                exp.Count(this=exp.Case(ifs=[exp.If(this=cond, true=exp.Literal.number(1))])),
            )
            count = column
            self._leaf = (cond, _EVENTS, _zero_ok(ops))
        if self._leaf is not None and rule.not_followed_by is not None:
            self._leaf = (self._leaf[0], self._leaf[1], _zero_ok(ops))
        if self._inline and rule.not_followed_by is not None:  # COUNT(*) of the set form's rows, never NULL
            return _Pred(self._compare_number(count, ops), False)
        return self._tally(count, ops)

    def _tally(self, total: exp.Expression, ops: dict[str, Any]) -> _Pred:
        """A count or sum, NULL for a customer without rows, against numeric operators.

        Where 0 fails the operators, the NULL is left as it is (it fails them too, and the predicate is
        marked nullable, so that ``not`` reads it as FALSE): one COALESCE less per customer row."""
        if self._inline or _zero_ok(ops):
            return self._atom(_Pred(self._compare_number(exp.Coalesce(this=total, expressions=[exp.Literal.number(0)]), ops),
                                    False), absent=True)
        return self._atom(_Pred(self._compare_number(total, ops), True), absent=False)

    def _follow_count(self, rule: Performed, bounds: Sequence[TsBound], path: str) -> exp.Expression:
        follow = rule.not_followed_by
        assert isinstance(follow, Follow)
        token = json.dumps(
            [rule.model_dump(mode="json", include={"performed", "where", "not_followed_by"}), [(b.op, str(b.at)) for b in bounds]],
            sort_keys=True,
        )
        if token not in self._follows or self._inline:
            name = f"shopcrm_nf{len(self._follows)}"
            a_cond = self._event_condition(rule.performed, rule.where, bounds, path, "a")
            b_bounds = [TsBound("lt", self.now)]
            b_cond = self._event_condition(follow.performed, follow.where, b_bounds, _join(path, "not_followed_by"), "b")
            a_ts = self.d.timestamp_column(self._col("ts", "a"))
            b_ts = self.d.timestamp_column(self._col("ts", "b"))
            later = [
                exp.EQ(this=self._col("customer_id", "b"), expression=self._col("customer_id", "a")),
                b_cond,
                exp.GT(this=b_ts, expression=a_ts),
            ]
            if follow.within is not None:
                from shopcrm.timeline import parse_duration

                seconds = int(parse_duration(follow.within).total_seconds())
                later.append(exp.LTE(this=b_ts, expression=self.d.plus_seconds(self._col("ts", "a"), seconds)))
            exists = exp.Exists(
                this=exp.select(exp.Literal.number(1)).from_(self._table(self.schema.events, "b")).where(_and(later), copy=False)
            )
            if self._inline:
                self._leaf = (_and([a_cond, exp.Not(this=exists)]), "a", False)
                return exp.Count(this=exp.Star())
            query = (
                exp.select(
                    exp.alias_(self._col("customer_id", "a"), "customer_id"),
                    exp.alias_(exp.Count(this=exp.Star()), "n"),
                )
                .from_(self._table(self.schema.events, "a"))
                .where(
                    _and(
                        [
                            exp.Not(this=exp.Is(this=self._col("customer_id", "a"), expression=exp.Null())),
                            a_cond,
                            exp.Not(this=exists),
                        ]
                    )
                )
                .group_by(self._col("customer_id", "a"), copy=False)
            )
            self._follows[token] = (name, query)
        name = self._follows[token][0]
        return exp.column("n", table=name)

    def _aggregate(self, rule: Aggregate, path: str) -> _Pred:
        at = _join(path, "aggregate")
        bounds = window_bounds(rule.within, self.now, _join(at, "within"))
        field = self._event_field(rule.of, _join(at, "of"))
        # count_distinct of a JSON property counts its numbers, strings and booleans, each type apart
        distinct_values: list[exp.Expression] = []
        if field.json is not None:
            column, key = field.json
            value: exp.Expression = self.d.json_number(column.copy(), key)
            distinct_values = [value, self.d.string_equality(self.d.json_string(column.copy(), key)),
                               self.d.json_boolean(column.copy(), key)]
        elif field.type.is_numeric or (rule.aggregate == "count_distinct" and field.type is not ColumnType.OTHER):
            value = self.d.timestamp_column(field.expr) if field.type is ColumnType.TIMESTAMP else field.expr
            if field.type is ColumnType.STRING:
                value = self.d.string_equality(value)
        else:
            raise RuleError.at(
                _join(at, "of"),
                f"{rule.aggregate} needs a numeric field; {rule.of!r} is {field.type.value}",
            )
        cond = self._event_condition(rule.performed, rule.where, bounds, at, _EVENTS)
        where = rule.model_dump(mode="json", include={"where"}).get("where")
        base = [rule.performed, where, rule.of, [(b.op, b.at) for b in bounds]]
        ops = rule.operators()

        def case(then: exp.Expression, default: exp.Expression | None = None) -> exp.Expression:
            if self._inline:  # the rows are already filtered by cond
                return then
            return exp.Case(ifs=[exp.If(this=cond, true=then)], default=default)

        zero = exp.Literal.number(0)
        self._leaf = (cond, _EVENTS, rule.aggregate in ("sum", "count_distinct") and _zero_ok(ops))
        if rule.aggregate == "sum":
            total = self._feature(["sum", *base], lambda: exp.Sum(this=case(value)))
            return self._tally(total, ops)
        if rule.aggregate == "count_distinct":
            if not distinct_values:
                distinct = self._feature(["count_distinct", *base], lambda: exp.Count(this=exp.Distinct(expressions=[case(value)])))
                return self._tally(distinct, ops)
            counts = [
                self._feature(["count_distinct", *base, kind],
                              lambda v=v: exp.Count(this=exp.Distinct(expressions=[case(v)])))
                for kind, v in zip(("number", "string", "boolean"), distinct_values, strict=True)
            ]
            total = counts[0]
            for part in counts[1:]:
                total = exp.Add(this=total, expression=part)
            return self._tally(total, ops)
        if rule.aggregate in ("min", "max"):
            fn = exp.Min if rule.aggregate == "min" else exp.Max
            extreme = self._feature([rule.aggregate, *base], lambda: fn(this=case(value)))
            return self._atom(_Pred(self._compare_number(extreme, ops), True), absent=False)
        # avg op v  <=>  sum op v * count (count > 0), in doubles on every engine: the SUM as a double against the
        # double v (its text read by the engine's correctly rounded parser) times the count
        total_column = self._feature(["sum", *base], lambda: exp.Sum(this=case(value)))
        present = exp.And(this=cond, expression=exp.Not(this=exp.Is(this=value, expression=exp.Null())))
        count = self._feature(
            ["count", *base],
            lambda: exp.Count(this=value) if self._inline else
            exp.Count(this=exp.Case(ifs=[exp.If(this=present, true=exp.Literal.number(1))])),
        )
        total = self.d.to_double(total_column)

        def times(v: Any) -> exp.Expression:
            return exp.Mul(this=self.d.to_double(exp.Literal.string(repr(float(v)))), expression=self.d.to_double(count.copy()))

        parts: list[exp.Expression] = [exp.GT(this=count, expression=zero)]
        for op, v in ops.items():
            if op in _ALL_OPS:
                parts.append(_ALL_OPS[op](this=total.copy(), expression=times(v)))
            elif op == "between":
                parts.append(exp.GTE(this=total.copy(), expression=times(v[0])))
                parts.append(exp.LTE(this=total.copy(), expression=times(v[1])))
            else:
                tests = [exp.EQ(this=total.copy(), expression=times(x)) for x in v]
                test = _paren(_or(tests))
                parts.append(test if op == "in" else exp.Not(this=test))
        return self._atom(_Pred(_paren(_and(parts)), True), absent=False)

    def _first_last(self, rule: FirstPerformed | LastPerformed, path: str) -> _Pred:
        first = isinstance(rule, FirstPerformed)
        event = rule.first_performed if isinstance(rule, FirstPerformed) else rule.last_performed
        at = _join(path, "first_performed" if first else "last_performed")
        cond = self._event_condition(event, rule.where, [TsBound("lt", self.now)], at, _EVENTS)
        where = rule.model_dump(mode="json", include={"where"}).get("where")
        fn = exp.Min if first else exp.Max
        self._leaf = (cond, _EVENTS, False)
        ts = self.d.timestamp_column(self._col("ts", _EVENTS))
        column = self._feature(
            ["first" if first else "last", event, where],
            lambda: fn(this=ts if self._inline else exp.Case(ifs=[exp.If(this=cond, true=ts)])),
        )
        parts = [self._bound(column, b) for b in rule.ago.bounds(self.now, _join(at, "ago"))]
        return self._atom(_Pred(_paren(_and(parts)), True), absent=False)

    # ------------------------------------------------------------------ rules
    def predicate(self, rule: Rule, path: str = "") -> _Pred:
        """The boolean over a customer row (alias ``c``) that the rule means."""
        if isinstance(rule, And | Or):
            items = rule.and_ if isinstance(rule, And) else rule.or_
            tag = "and" if isinstance(rule, And) else "or"
            preds = [self.predicate(r, f"{_join(path, tag)}[{i}]") for i, r in enumerate(items)]
            combine = _and if isinstance(rule, And) else _or
            if len(preds) == 1:
                return preds[0]
            return _Pred(exp.Paren(this=combine([_paren(p.expr) for p in preds])), any(p.nullable for p in preds))
        if isinstance(rule, Not):
            inner = self.predicate(rule.not_, _join(path, "not"))
            body = exp.Coalesce(this=inner.expr, expressions=[exp.false()]) if inner.nullable else _paren(inner.expr)
            return _Pred(exp.Not(this=body), False)
        if isinstance(rule, Everyone):
            return _Pred(exp.true(), False)
        if isinstance(rule, Attribute):
            at = _join(path, "attribute")
            field = self._customer_field(rule.attribute, at)
            return self._compare(field, rule.operators(), at)
        if isinstance(rule, Performed):
            return self._performed(rule, path)
        if isinstance(rule, Aggregate):
            return self._aggregate(rule, path)
        if isinstance(rule, FirstPerformed | LastPerformed):
            return self._first_last(rule, path)
        if isinstance(rule, Sample):
            return _Pred(self._sample(rule), False)
        if isinstance(rule, Lifecycle | Rfm | Cycle):
            return _Pred(self._lifecycle_member(rule, path), False)
        if isinstance(rule, InSegment):
            raise RuleError.at(
                _join(path, "in_segment"),
                f"named segment {rule.in_segment!r} is not resolved; run the rule through a Shop or "
                "pass segments= to to_sql (shopcrm.dsl.resolve_segments)",
            )
        raise RuleError.at(path, f"cannot compile {type(rule).__name__}")  # pragma: no cover

    def _lifecycle_member(self, rule: Lifecycle | Rfm | Cycle, path: str) -> exp.Expression:
        """``customer_id IN (customers of the lifecycle query with this stage/moment/segment/status)``."""
        from shopcrm.lifecycle import LifecyclePolicy
        from shopcrm.lifecycle._sql import compile_lifecycle

        policy = self.lifecycle_policy or LifecyclePolicy()
        if self._lifecycle is None:
            try:
                self._lifecycle = compile_lifecycle(self.schema, now=self.now, dialect=self.d.name, policy=policy)
            except OverflowError as exc:  # now - the policy's lookbacks falls before the year 1
                raise RuleError.at(
                    path, f"the lifecycle policy's look-back windows reach before the year 1 at now={self.now:%Y-%m-%d}; "
                    "evaluate lifecycle, RFM and cycle rules at a later instant"
                ) from exc
        conditions: list[exp.Expression] = []
        if isinstance(rule, Lifecycle):
            if rule.lifecycle != "any":
                conditions.append(exp.EQ(this=exp.column("stage", table=_LIFECYCLE), expression=exp.Literal.string(rule.lifecycle)))
            if rule.moment is not None:
                flag = exp.column(rule.moment, table=_LIFECYCLE)
                conditions.append(exp.EQ(this=flag, expression=self.d.boolean(True)))
        elif isinstance(rule, Rfm):
            try:
                segment = policy.rfm_segment(rule.rfm)
            except ValueError as exc:
                raise RuleError.at(_join(path, "rfm"), str(exc)) from None
            conditions.append(exp.EQ(this=exp.column("rfm_segment", table=_LIFECYCLE), expression=exp.Literal.string(segment)))
        else:
            conditions.append(exp.EQ(this=exp.column("cycle_status", table=_LIFECYCLE), expression=exp.Literal.string(rule.cycle)))
        members = exp.select(exp.column("customer_id", table=_LIFECYCLE)).from_(_LIFECYCLE)
        if conditions:
            members = members.where(_and(conditions), copy=False)
        return exp.In(this=self._col("customer_id", _CUSTOMERS), query=members.subquery(copy=False))

    def _attach_lifecycle(self, select: exp.Select) -> exp.Select:
        """Hoist the lifecycle query's CTEs into ``select``'s WITH, the query itself as ``shopcrm_lc``."""
        if self._lifecycle is None:
            return select
        body = self._lifecycle.copy()
        ctes = body.args.pop("with_").expressions
        for cte in ctes:
            select = select.with_(cte.alias, as_=cte.this, copy=False)
        return select.with_(_LIFECYCLE, as_=body, copy=False)

    def _sample(self, rule: Sample) -> exp.Expression:
        ident = self.d.to_text(self._col("customer_id", _CUSTOMERS))
        keyed = self.d.concat(exp.Literal.string(rule.sample.salt + ":"), ident)
        return exp.LT(this=_paren(self.d.md5_bucket(keyed)), expression=_number(rule.sample.percent * 100))

    # ------------------------------------------------------------------ query
    def _from(self, select: exp.Select) -> exp.Select:
        """FROM customers, joined to the feature CTEs (with the CTEs attached)."""
        customer_id = self._col("customer_id", _CUSTOMERS)
        select = select.from_(self._table(self.schema.customers, _CUSTOMERS))
        masks: list[exp.Select] = []
        for index, (event, columns) in enumerate(self._features.items()):
            name = f"{_FEATURES}{index}"
            customer = self._col("customer_id", _EVENTS)
            conditions = list(self._feature_conds[event].values())
            common, shared, whole = _hoisted(conditions)
            rests = [cast(exp.Expression, _rest(c, shared)) for c in conditions] if not whole else []
            rows = _and(
                [
                    exp.EQ(this=self._col("event", _EVENTS), expression=exp.Literal.string(event)),
                    exp.Not(this=exp.Is(this=customer, expression=exp.Null())),
                    *common,
                    *([(self._masks and _any_of(rests)) or _paren(_or([_paren(r) for r in rests]))] if rests else []),
                ]
            )
            aggregates = [_within(agg, shared) if shared else agg for _, agg in columns.values()]
            outputs = (self._pass_masks(name, event, dict(zip((col for col, _ in columns.values()), aggregates, strict=True)))
                       if self._masks else
                       [exp.alias_(agg, col) for (col, _), agg in zip(columns.values(), aggregates, strict=True)])
            features = (
                exp.select(exp.alias_(customer, "customer_id"), *outputs)
                .from_(self._table(self.schema.events, _EVENTS))
                .where(rows, copy=False)
                .group_by(self._col("customer_id", _EVENTS), copy=False)
            )
            if self._masks:
                masks.append(features)
                continue
            select = select.with_(name, as_=features, copy=False).join(
                exp.to_table(name),
                on=exp.EQ(this=customer_id.copy(), expression=exp.column("customer_id", table=name)),
                join_type="left",
                copy=False,
            )
        if masks:
            select = self._join_masks(select, masks)
        for name, query in self._follows.values():
            select = select.with_(name, as_=query.copy(), copy=False).join(
                exp.to_table(name),
                on=exp.EQ(this=customer_id.copy(), expression=exp.column("customer_id", table=name)),
                join_type="left",
                copy=False,
            )
        return self._attach_lifecycle(select)

    def _pass_masks(self, name: str, event: str, aggregates: dict[str, exp.Expression]) -> list[exp.Expr]:
        """A grouped pass's outputs in mask mode: ``m<j>``, the sum of ``CASE WHEN test THEN bit ELSE 0 END`` over
        the pass's tests whose bit is in mask column ``j`` (0 where none is), the tests reading the aggregates."""
        def inline(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and node.table == name:
                return aggregates[node.name].copy()
            return node

        zero = exp.Literal.number(0)
        sums: list[list[exp.Expression]] = [[] for _ in range((self._atom_count + _MASK_BITS - 1) // _MASK_BITS)]
        for test, absent, bit in self._atoms.get(event, {}).values():
            flag = exp.Literal.number(1 << (bit % _MASK_BITS))
            when = test.transform(inline)
            sums[bit // _MASK_BITS].append(
                exp.Case(ifs=[exp.If(this=when, true=zero.copy() if absent else flag)], default=flag if absent else zero.copy())
            )
        outputs: list[exp.Expr] = []
        for j, parts in enumerate(sums):
            total = parts[0] if parts else zero.copy()
            for part in parts[1:]:
                total = exp.Add(this=total, expression=part)
            outputs.append(exp.alias_(total, f"m{j}", copy=False))
        return outputs

    def _join_masks(self, select: exp.Select, passes: Sequence[exp.Select]) -> exp.Select:
        """customers LEFT JOIN one relation of (customer_id, m0, m1, ...): the passes' rows (UNION ALL) merged per
        customer. One join of the customers instead of one per pass.

        A pass's row whose masks are all 0 reads exactly as no row (each bit is set where its test is TRUE, or for
        a test true without rows where it is not TRUE), so those rows are dropped before the merge: a customer who
        viewed a category once is in the views' pass, but no ">= 2 views" test needs that row."""
        names = [f"m{j}" for j in range((self._atom_count + _MASK_BITS - 1) // _MASK_BITS)]
        rows: list[exp.Select] = []
        for index, query in enumerate(passes):
            select = select.with_(f"{_FEATURES}{index}", as_=query, copy=False)
            some = _or([exp.NEQ(this=exp.column(n), expression=exp.Literal.number(0)) for n in names])
            rows.append(exp.select("customer_id", *names).from_(f"{_FEATURES}{index}").where(some, copy=False))
        if len(rows) == 1:
            flags = rows[0]  # one row per customer already
        else:
            union: exp.Query = rows[0]
            for other in rows[1:]:
                union = exp.union(union, other, distinct=False, copy=False)
            flags = (
                exp.select(exp.column("customer_id"), *[exp.alias_(self.d.mask_union(exp.column(n)), n, copy=False) for n in names])
                .from_(union.subquery("shopcrm_rows", copy=False), copy=False)
                .group_by(exp.column("customer_id"), copy=False)
            )
        return select.with_(_FLAGS, as_=flags, copy=False).join(
            exp.to_table(_FLAGS),
            on=exp.EQ(this=self._col("customer_id", _CUSTOMERS), expression=exp.column("customer_id", table=_FLAGS)),
            join_type="left",
            copy=False,
        )

    def members(self, rule: Rule) -> exp.Select:
        """One-pass shape: customers joined to the grouped passes, filtered by the rule."""
        pred = self.predicate(rule)
        select = exp.select(exp.alias_(self._col("customer_id", _CUSTOMERS), "customer_id"))
        return self._from(select).where(pred.expr, copy=False)

    def counts(self, rules: Sequence[Rule], *, masks: bool | None = None) -> exp.Select:
        """One row of counts: per rule, the customers whose predicate holds.

        ``COUNT(CASE WHEN rule THEN 1 END)`` over the joined customer rows, in one aggregate; when a
        rule reads the lifecycle (a subquery), the flags are computed in a derived table first and
        summed: MariaDB refuses subqueries inside an aggregate.

        ``masks`` (default: the dialect's ``pass_masks``): each grouped pass computes its tests per customer as
        bits of masks, and the passes' masks are merged into one relation joined once to the customers, where
        the rules test bits (see :meth:`_atom`); otherwise each pass's aggregates are joined as columns.
        """
        self._masks = self.d.pass_masks if masks is None else masks
        preds = [self.predicate(r, "" if len(rules) == 1 else f"[{i}]") for i, r in enumerate(rules)]
        if self._masks and any(c.table in self._feature_tables for p in preds for c in p.expr.find_all(exp.Column)):
            # a test the masks do not carry (none is known): the column form, from a fresh builder
            return QueryBuilder(self.schema, self.now, self.d, self.lifecycle_policy).counts(rules, masks=False)
        one, zero = exp.Literal.number(1), exp.Literal.number(0)
        if self._lifecycle is None:
            return self._from(exp.select(*[
                exp.alias_(exp.Count(this=exp.Case(ifs=[exp.If(this=p.expr, true=one)])), f"c{i}") for i, p in enumerate(preds)
            ]))
        flags = self._from(
            exp.select(*[exp.alias_(exp.Case(ifs=[exp.If(this=p.expr, true=one)], default=zero), f"p{i}") for i, p in enumerate(preds)])
        )
        ctes = flags.args.pop("with_", None)
        columns = [
            exp.alias_(exp.Coalesce(this=exp.Sum(this=exp.column(f"p{i}")), expressions=[zero]), f"c{i}")
            for i in range(len(preds))
        ]
        query = exp.select(*columns).from_(flags.subquery("shopcrm_flags", copy=False), copy=False)
        if ctes is not None:
            query.set("with_", ctes)
        return query

    # ------------------------------------------------------------- set form
    def _customers_set(self, condition: exp.Expression | None = None) -> exp.Select:
        customer_id = self._col("customer_id", _CUSTOMERS)
        where = exp.Not(this=exp.Is(this=customer_id, expression=exp.Null()))
        return (
            exp.select(exp.alias_(customer_id, "customer_id"))
            .from_(self._table(self.schema.customers, _CUSTOMERS))
            .where(where if condition is None else exp.And(this=where, expression=_paren(condition)), copy=False)
        )

    def _operand(self, query: exp.Query, n: list[int]) -> exp.Query:
        """Set operations nest safely as subqueries."""
        if isinstance(query, exp.SetOperation):
            n[0] += 1
            return exp.select("customer_id").from_(query.subquery(f"s{n[0]}", copy=False), copy=False)
        return query

    def _explicit(self, part: tuple[exp.Query, bool, bool], n: list[int]) -> tuple[exp.Query, bool]:
        """A set result as a plain query (complements become customers EXCEPT ...)."""
        query, subset, complement = part
        if complement:
            return exp.except_(self._customers_set(), self._operand(query, n), distinct=True, copy=False), True
        return query, subset

    def _set(self, rule: Rule, path: str, n: list[int]) -> tuple[exp.Query, bool, bool]:
        """The ids a rule matches: (query, whether the query's ids are all customers' ids,
        whether the rule means customers EXCEPT query).

        Keeping complements symbolic lets ``and`` subtract them from its other parts
        (``A INTERSECT B EXCEPT C``) instead of materialising "every customer but C".
        """
        if isinstance(rule, And):
            parts = [self._set(r, f"{_join(path, 'and')}[{i}]", n) for i, r in enumerate(rule.and_)]
            positives = sorted((p for p in parts if not p[2]), key=lambda p: not p[1])
            negatives = [p[0] for p in parts if p[2]]
            if not positives:
                subset = all(p[1] for p in parts)
                return self._combine(exp.union, negatives, n), subset, True
            query = self._combine(exp.intersect, [p[0] for p in positives], n)
            for negative in negatives:
                query = exp.except_(self._operand(query, n), self._operand(negative, n), distinct=True, copy=False)
            return query, any(p[1] for p in positives), False
        if isinstance(rule, Or):
            # "did any of these at least once" is one scan with OR-ed conditions
            plain = [(i, r) for i, r in enumerate(rule.or_) if _plain(r)]
            explicit = [
                self._explicit(self._set(r, f"{_join(path, 'or')}[{i}]", n), n)
                for i, r in enumerate(rule.or_) if len(plain) < 2 or not _plain(r)
            ]
            if len(plain) >= 2:
                wheres = []
                for i, r in plain:
                    self._set(r, f"{_join(path, 'or')}[{i}]", n)
                    assert self._leaf is not None
                    wheres.append(_paren(self._leaf[0]))
                explicit.append((self._events_set(_or(wheres), _EVENTS), False))
            return self._combine(exp.union, [e[0] for e in explicit], n), all(e[1] for e in explicit), False
        if isinstance(rule, Not):
            inner, subset, complement = self._set(rule.not_, _join(path, "not"), n)
            return inner, subset, not complement
        if isinstance(rule, Everyone):
            return self._customers_set(), True, False
        if isinstance(rule, Attribute | Sample | InSegment | Lifecycle | Rfm | Cycle):
            return self._customers_set(self.predicate(rule, path).expr), True, False
        self._inline, self._leaf = True, None
        try:
            pred = self.predicate(rule, path)
        finally:
            self._inline = False
        assert self._leaf is not None
        where, alias, zero_ok = self._leaf
        customer_id = self._col("customer_id", alias)
        query = self._events_set(where, alias)
        if not _plain(rule):
            having = exp.Not(this=_paren(pred.expr)) if zero_ok else pred.expr
            query = query.group_by(customer_id, copy=False).having(having, copy=False)
        return query, False, zero_ok

    def _events_set(self, where: exp.Expression, alias: str) -> exp.Select:
        customer_id = self._col("customer_id", alias)
        return (
            exp.select(exp.alias_(customer_id, "customer_id"))
            .from_(self._table(self.schema.events, alias))
            .where(_and([exp.Not(this=exp.Is(this=customer_id, expression=exp.Null())), where]))
        )

    def _combine(self, op: Callable[..., exp.Query], queries: Sequence[exp.Query], n: list[int]) -> exp.Query:
        query = self._operand(queries[0], n)
        for other in queries[1:]:
            query = op(query, self._operand(other, n), distinct=True, copy=False)
        return query

    def members_in_sets(self, rule: Rule) -> exp.Select:
        """:meth:`members_by_sets` with the lifecycle CTEs attached, ready to run."""
        return self._attach_lifecycle(self.members_by_sets(rule))

    def members_by_sets(self, rule: Rule) -> exp.Select:
        """The members query as set operations of filtered subqueries (fastest on DuckDB for one rule)."""
        n = [0]
        query, subset, complement = self._set(rule, "", n)
        if complement:
            query = exp.except_(self._customers_set(), self._operand(query, n), distinct=True, copy=False)
        elif not subset:
            query = exp.intersect(self._customers_set(), self._operand(query, n), distinct=True, copy=False)
        return exp.select("customer_id").from_(query.subquery("shopcrm_members", copy=False), copy=False)

    def count_by_sets(self, rule: Rule) -> exp.Select:
        members = self.members_by_sets(rule)
        count = exp.select(exp.alias_(exp.Count(this=exp.Star()), "c0")).from_(members.subquery("shopcrm_count", copy=False),
                                                                             copy=False)
        return self._attach_lifecycle(count)


def _plain(rule: Rule) -> bool:
    """``performed`` at least once, with no follow condition: a plain filtered scan."""
    return (
        isinstance(rule, Performed)
        and rule.not_followed_by is None
        and (rule.times is None or rule.times.operators() == {"gte": 1})
    )


def _zero_ok(ops: dict[str, Any]) -> bool:
    """Whether a count or sum of 0 satisfies the operators (then customers without events match)."""
    tests: dict[str, Callable[[Any], bool]] = {
        "eq": lambda v: v == 0, "ne": lambda v: v != 0, "lt": lambda v: v > 0, "lte": lambda v: v >= 0,
        "gt": lambda v: v < 0, "gte": lambda v: v <= 0, "between": lambda v: v[0] <= 0 <= v[1],
        "in": lambda v: 0 in v, "not_in": lambda v: 0 not in v,
    }
    return all(tests[op](v) for op, v in ops.items())


# -- issue 14 (catalog): the product situations as events ----------------------------------------------------------
def with_situations(schema: Schema, rules: Sequence[Rule], now: datetime, dialect: str) -> Schema:
    """``schema`` whose events relation also holds the derived product situations (``events UNION ALL
    situations(now)``, see :mod:`shopcrm.products`) that ``rules`` name, when the shop keeps a product history;
    ``schema`` itself otherwise, so that rules naming none read the events table as before."""
    if schema.product_history is None:
        return schema
    from shopcrm.products._situations import SITUATIONS
    from shopcrm.products._sql import situation_schema

    text = " ".join(r.to_json() for r in rules)
    named = [n for n in SITUATIONS if f'"{n}"' in text]
    return situation_schema(schema, now=to_utc_naive(now), dialect=dialect, names=named) if named else schema
