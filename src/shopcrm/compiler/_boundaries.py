"""The compiled form of :func:`shopcrm.dsl._boundaries.next_change_at`, and a schema restricted to some customers.

:func:`compile_next_changes` returns queries whose rows are ``customer_id`` and, per (boundary, offset), the
earliest value (integer microseconds since 1970) with ``value + offset >= now``; the cutoff ``now - offset``
is computed in Python and bound as a literal, and :func:`next_changes_from_rows` adds the offsets back,
so no engine does interval arithmetic.  :func:`only_candidates` turns a schema into one whose customers and
events tables hold only some customers (those with an event at or after an instant, and listed ids), so a
rule compiled on it answers for those customers alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import attrs
from sqlglot import exp

from shopcrm.compiler._dialects import dialect_for
from shopcrm.dsl._boundaries import Boundaries
from shopcrm.errors import SchemaError
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.timeline import to_utc_naive

__all__ = ["CandidateTable", "ListedTable", "compile_next_changes", "next_changes_from_rows", "only_candidates",
           "only_listed"]

_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
#: the last instant a datetime holds, in microseconds since the epoch
_LAST = (datetime.max - _EPOCH) // _MICROSECOND
#: literal ids per IN list (engines bound a statement's size)
_CHUNK = 1000


def _col(name: str, alias: str) -> exp.Column:
    return exp.column(name, table=alias, quoted=True)


#: engines that join a subquery of VALUES (a hash semi-join) where a long IN list would be compared row by row
_VALUES_JOIN = ("duckdb", "postgres")


def _ids_in(column: exp.Expression, ids: Sequence[Any], dialect: str = "") -> list[exp.Expression]:
    """Conditions (to be OR'ed) that hold for exactly ``ids``: one semi-join on a VALUES list where the engine
    joins it, else IN lists of at most 1,000 values."""
    if not ids:
        return []
    if dialect in _VALUES_JOIN:
        rows = exp.values([exp.Tuple(expressions=[exp.convert(v)]) for v in ids], alias="v", columns=["id"])
        return [column.copy().isin(query=exp.select(exp.column("id", table="v")).from_(rows))]
    return [column.copy().isin(*[exp.convert(v) for v in ids[i:i + _CHUNK]]) for i in range(0, len(ids), _CHUNK)]


@attrs.frozen
class CandidateTable(Table):
    """A customers or events table restricted to the candidates: customers with an event at or after
    ``since`` in ``events`` (when given) and the customers listed in ``ids``, who must not be among the first
    (the caller leaves them out: the two parts are appended, not merged)."""

    base: Table = attrs.field(kw_only=True)
    events: Table = attrs.field(kw_only=True)
    since: datetime | None = attrs.field(kw_only=True)
    ids: tuple[Any, ...] = attrs.field(kw_only=True)
    dialect: str = attrs.field(kw_only=True)

    def relation(self, alias: str) -> exp.Expression:
        """The base table's rows of the candidates: the customers with a recent event (a semi-join on the events)
        and, disjoint from them, the listed ones (IN lists), as one UNION ALL; never an OR of the two, which
        engines (DuckDB) cannot run as a join."""
        d = dialect_for(self.dialect)
        column = _col("customer_id", "k0")
        columns = [exp.alias_(_col(c, "k0"), c, quoted=True) for c in self.base.columns]
        parts: list[exp.Select] = []
        if self.since is not None:
            recent = exp.select(_col("customer_id", "k1")).from_(self.events.relation("k1")).where(
                exp.GTE(this=d.timestamp_column(_col("ts", "k1")), expression=d.timestamp_literal(self.since)))
            parts.append(exp.select(*columns).from_(self.base.relation("k0")).where(column.copy().isin(query=recent)))
        listed = _ids_in(column, list(self.ids), self.dialect)
        if listed:
            parts.append(exp.select(*columns).from_(self.base.relation("k0")).where(exp.or_(*listed)))
        if not parts:
            parts.append(exp.select(*columns).from_(self.base.relation("k0")).where(exp.false()))
        query: exp.Query = parts[0]
        for part in parts[1:]:
            query = exp.union(query, part, distinct=False)
        return query.subquery(alias)


@attrs.frozen
class ListedTable(Table):
    """A table's rows of the customers in another table's ``customer_id`` column (a semi-join: where that table
    is small, a hash join the engine builds on it)."""

    base: Table = attrs.field(kw_only=True)
    listed: Table = attrs.field(kw_only=True)

    def relation(self, alias: str) -> exp.Expression:
        keys = exp.select(_col("customer_id", "k")).from_(self.listed.relation("k"))
        return exp.select(*[exp.alias_(_col(c, "r"), c, quoted=True) for c in self.base.columns]).from_(
            self.base.relation("r")).where(_col("customer_id", "r").isin(query=keys)).subquery(alias)


def only_listed(table: Table, listed: Table) -> ListedTable:
    """``table`` restricted to the customers of ``listed`` (see :class:`ListedTable`)."""
    return ListedTable(table.name, table.columns, base=table, listed=listed)


def only_candidates(schema: Schema, *, since: datetime | None, ids: Iterable[Any], dialect: str) -> Schema:
    """``schema`` with its customers and events restricted to the candidates (see :class:`CandidateTable`)."""
    listed = tuple(ids)

    def restricted(table: Table) -> CandidateTable:
        return CandidateTable(table.name, table.columns, base=table, events=schema.events, since=since, ids=listed,
                              dialect=dialect)

    return attrs.evolve(schema, customers=restricted(schema.customers), events=restricted(schema.events))


def compile_next_changes(
    found: Boundaries, schema: Schema, *, now: datetime, dialect: str,
) -> list[tuple[exp.Select, list[timedelta]]]:
    """Queries of ``customer_id`` and columns ``b0, b1, ...`` (one per boundary and offset: the earliest value in
    microseconds with ``value + offset >= now``), each with the offsets of its columns in order; at most one
    query over the events (grouped by customer) and one over the customers."""
    if found.full is not None:
        raise ValueError(f"this rule has no per-customer boundary ({found.full}); recompute it in full")
    d = dialect_for(dialect)
    now = to_utc_naive(now)
    out: list[tuple[exp.Select, list[timedelta]]] = []
    for table_name in ("events", "customers"):
        table = schema.events if table_name == "events" else schema.customers
        alias = "b"
        columns: list[exp.Expr] = []
        offsets: list[timedelta] = []
        names: set[str] = set()
        for boundary in found.items:
            if boundary.table != table_name:
                continue
            if not table.has(boundary.column):
                raise SchemaError.at("", f"the {table_name} table {table.name!r} has no column {boundary.column!r}; "
                                     f"its columns are {', '.join(sorted(table.columns))}")
            if table.type_of(boundary.column) is not ColumnType.TIMESTAMP:
                raise SchemaError.at("", f"{boundary.column!r} of the {table_name} table is compared by age but is not "
                                     "a timestamp column; give it a TIMESTAMP type")
            value = d.timestamp_column(_col(boundary.column, alias))
            for offset in boundary.offsets:
                conditions: list[exp.Expr] = []
                if boundary.event is not None:
                    names.add(boundary.event)
                    conditions.append(exp.EQ(this=_col("event", alias), expression=exp.Literal.string(boundary.event)))
                with suppress(OverflowError):  # a cutoff before the year 1: every value qualifies
                    conditions.append(exp.GTE(this=value.copy(), expression=d.timestamp_literal(now - offset)))
                case = exp.Case(ifs=[exp.If(this=exp.and_(*conditions) if conditions else exp.true(),
                                            true=d.epoch_micros(value.copy()))])
                name = f"b{len(columns)}"
                columns.append(exp.alias_(exp.Min(this=case) if table_name == "events" else case, name, quoted=True))
                offsets.append(offset)
        if not columns:
            continue
        query = exp.select(exp.alias_(_col("customer_id", alias), "customer_id", quoted=True), *columns).from_(
            table.relation(alias))
        if table_name == "events":
            query = query.where(_col("event", alias).isin(*[exp.Literal.string(n) for n in sorted(names)])).group_by(
                _col("customer_id", alias))
        out.append((query, offsets))
    return out


def next_changes_from_rows(
    results: Iterable[tuple[Iterable[Sequence[Any]], Sequence[timedelta]]], *, now: datetime,
) -> dict[Any, datetime]:
    """Per customer, the earliest ``value + offset >= now`` over the rows of every query of
    :func:`compile_next_changes` (customers without one are left out): :func:`~shopcrm.dsl._boundaries.earliest`
    in integer microseconds (an instant past the year 9999 is never), a datetime made once per customer."""
    now_us = (to_utc_naive(now) - _EPOCH) // _MICROSECOND
    best: dict[Any, int] = {}
    known = best.get
    for rows, offsets in results:
        rows = rows if isinstance(rows, list) else list(rows)
        # column by column: a value counts when now <= value + shift <= the last instant, i.e. within [low, high]
        for column, offset in enumerate(offsets, 1):
            shift = offset // _MICROSECOND
            low, high = now_us - shift, _LAST - shift
            for row in rows:
                value = row[column]
                if value is not None and low <= (value := int(value)) <= high:
                    moment, earlier = value + shift, known(row[0])
                    if earlier is None or moment < earlier:
                        best[row[0]] = moment
    return {cid: _EPOCH + timedelta(microseconds=at) for cid, at in best.items()}
