"""Rules to SQL: sqlglot expression trees for DuckDB, SQLite, PostgreSQL, MySQL, Spark, Trino, BigQuery, Snowflake.

Every engine must return exactly what :func:`shopcrm.reference.evaluate` returns;
the test suite checks this on random shops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlglot import exp

from shopcrm.compiler._compile import QueryBuilder, with_situations
from shopcrm.compiler._dialects import DIALECTS, SQLITE_FUNCTIONS, dialect_for
from shopcrm.dsl import (
    Aggregate,
    Attribute,
    Comparison,
    FirstPerformed,
    LastPerformed,
    Performed,
    Rule,
    check_depth,
    check_windows,
    parse_rule,
    resolve_segments,
)
from shopcrm.dsl._parse import RuleLike
from shopcrm.errors import RuleError
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.schema import ColumnType, Schema, Table

__all__ = [
    "DIALECTS",
    "SQLITE_FUNCTIONS",
    "compile_counts",
    "compile_members",
    "infer_schema",
    "render",
    "to_sql",
]


def compile_members(
    rule: Rule, schema: Schema, *, now: datetime, dialect: str, lifecycle_policy: LifecyclePolicy | None = None
) -> exp.Select:
    """``SELECT customer_id FROM customers WHERE <rule>`` as a sqlglot tree.

    Raises
    ------
    SchemaError
        When the rule names a field the schema does not have.
    RuleError
        When a value does not fit its column, or a named segment is unresolved.
    """
    quirks = dialect_for(dialect)
    schema = with_situations(schema, [rule], now, dialect)  # issue 14: rules may name product situations
    builder = QueryBuilder(schema, now, quirks, lifecycle_policy)
    _check(rule, builder.now, "")
    return builder.members_in_sets(rule) if quirks.set_form else builder.members(rule)


def compile_counts(
    rules: Sequence[Rule], schema: Schema, *, now: datetime, dialect: str, lifecycle_policy: LifecyclePolicy | None = None
) -> exp.Select:
    """One row whose column ``c<i>`` counts the customers matching ``rules[i]``.

    All rules share one grouped pass over the events table.
    """
    if not rules:
        raise ValueError("compile_counts needs at least one rule")
    quirks = dialect_for(dialect)
    schema = with_situations(schema, rules, now, dialect)  # issue 14: rules may name product situations
    builder = QueryBuilder(schema, now, quirks, lifecycle_policy)
    for i, rule in enumerate(rules):
        _check(rule, builder.now, "" if len(rules) == 1 else f"[{i}]")
    if quirks.set_form and len(rules) == 1:
        return builder.count_by_sets(rules[0])
    return builder.counts(rules)


def _check(rule: Rule, now: datetime, path: str) -> None:
    """What the reference evaluator also refuses before reading any data: rules nested
    too deeply, and windows reaching outside the years 1 to 9999 at ``now``."""
    check_depth(rule, path)
    check_windows(rule, now, path)


def render(query: exp.Expression, dialect: str, *, pretty: bool = False, copy: bool = True) -> str:
    """The SQL text of a compiled query for a dialect (``copy=False``: the generator may rewrite ``query`` in
    place, for a caller that made it for this one rendering)."""
    dialect_for(dialect)
    return query.sql(dialect=dialect, pretty=pretty, copy=copy)


def _fields(rule: Rule) -> tuple[dict[str, ColumnType], dict[str, ColumnType]]:
    customers: dict[str, ColumnType] = {"customer_id": ColumnType.STRING}
    events: dict[str, ColumnType] = {
        "customer_id": ColumnType.STRING,
        "event": ColumnType.STRING,
        "ts": ColumnType.TIMESTAMP,
    }

    def kind(ops: dict[str, Any]) -> ColumnType:
        if "ago" in ops:
            return ColumnType.TIMESTAMP
        if "contains" in ops or "starts_with" in ops:
            return ColumnType.STRING
        for value in ops.values():
            sample = value[0] if isinstance(value, tuple) else value
            if isinstance(sample, bool):
                return ColumnType.BOOLEAN if "is_null" not in ops or len(ops) > 1 else ColumnType.STRING
            if isinstance(sample, int | float):
                return ColumnType.FLOAT
            if isinstance(sample, str):
                return ColumnType.STRING
        return ColumnType.STRING

    def where(filters: dict[str, Any] | None) -> None:
        for key, cond in (filters or {}).items():
            name = "properties" if key.startswith("properties.") else key
            ops = cond.operators() if isinstance(cond, Comparison) else {"eq": cond}
            events.setdefault(name, ColumnType.JSON if name == "properties" else kind(ops))

    def walk(node: Rule) -> None:
        from shopcrm.dsl import children

        if isinstance(node, Attribute):
            ops = node.operators()
            ops.pop("is_null", None) if len(ops) > 1 else None
            customers.setdefault(node.attribute, kind(ops))
        elif isinstance(node, Performed):
            where(node.where)
            if node.not_followed_by is not None:
                where(node.not_followed_by.where)
        elif isinstance(node, Aggregate):
            where(node.where)
            events.setdefault("properties" if node.of.startswith("properties.") else node.of,
                              ColumnType.JSON if node.of.startswith("properties.") else ColumnType.FLOAT)
        elif isinstance(node, FirstPerformed | LastPerformed):
            where(node.where)
        for child in children(node):
            walk(child)

    walk(rule)
    return customers, events


def infer_schema(rule: Rule, customers: str = "customers", events: str = "events") -> Schema:
    """A permissive schema in which every field the rule names exists.

    Types are guessed from the values the rule compares them with; use a real
    source's schema to have fields checked.
    """
    customer_columns, event_columns = _fields(rule)
    return Schema(Table(customers, customer_columns), Table(events, event_columns))


def to_sql(
    rule: RuleLike,
    dialect: str = "duckdb",
    *,
    now: datetime,
    schema: Schema | None = None,
    segments: Mapping[str, RuleLike] | None = None,
    pretty: bool = False,
) -> str:
    """The members query of a rule as SQL text for a dialect.

    ``segments`` resolves ``in_segment`` references; ``schema`` checks fields
    (without one, every field the rule names is assumed to exist).
    """
    model = parse_rule(rule)
    if segments is not None:
        known = {name: parse_rule(r) for name, r in segments.items()}
        model = resolve_segments(model, known.get)
    elif _has_segment(model):
        raise RuleError.at("", "the rule uses in_segment; pass segments={name: rule, ...} to resolve it")
    query = compile_members(model, schema or infer_schema(model), now=now, dialect=dialect)
    return render(query, dialect, pretty=pretty)


def _has_segment(rule: Rule) -> bool:
    from shopcrm.dsl import InSegment, children

    return isinstance(rule, InSegment) or any(_has_segment(c) for c in children(rule))
