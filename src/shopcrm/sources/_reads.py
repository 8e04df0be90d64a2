"""The queries the shell's workers run on the shop's engine (issue 15: one home for operational SQL).

Every statement the shell runs is written under ``shopcrm.sources``: the library's own tables in
``_library`` (DDL, settings), ``_campaign_store`` (campaigns, outbox, occurrences, send ledger, opt-outs,
message events), ``_tick_marks`` (watermarks and wake-ups) and ``_sql_segments`` (saved segments); and here,
what ticks, previews and the dispatcher read of the shop's customers and events, built as sqlglot trees on the
engine's dialect.  Rules, lifecycle stages, reports and recommendations are compiled by the pure compilers of
the core (``shopcrm.compiler``, ``lifecycle._sql``, ``measurement._sql``, ``recommend._sql``, ``products._sql``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

from shopcrm.compiler import compile_members
from shopcrm.compiler._dialects import dialect_for
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:
    from shopcrm.dsl import Rule
    from shopcrm.lifecycle import LifecyclePolicy
    from shopcrm.sources._base import Source

__all__ = ["EngineReader", "Preloaded"]


@attrs.frozen
class Preloaded:
    """A watermark tick's customers: their events up to the tick (by customer, in the engine's order) and their
    customers rows."""

    events: Mapping[Any, Sequence[dict[str, Any]]]
    rows: Mapping[Any, dict[str, Any]]
    #: per set of names, each customer's events of those names (in the same order): a tick takes a few sets for
    #: tens of thousands of customers, each scenario once or twice
    _named: dict[frozenset[str], dict[Any, list[dict[str, Any]]]] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def take(self, ids: Iterable[Any], names: Collection[str] | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """The events of these customers named ``names`` (any when None) at or after ``since``."""
        if names is None:
            return [e for cid in ids for e in self.events.get(cid, ()) if since is None or e["ts"] >= since]
        key = frozenset(names)
        named = self._named.get(key)
        if named is None:
            named = self._named[key] = {}
            for cid, events in self.events.items():
                kept = [e for e in events if e["event"] in key]
                if kept:
                    named[cid] = kept
        return [e for cid in ids for e in named.get(cid, ()) if since is None or e["ts"] >= since]


class EngineReader:
    """Builds and runs, on the shop's engine, the queries a tick, a preview and a dispatcher's recheck read at
    ``now``: trigger and exit events, customers rows, histories, audiences.  ``triggers``: the event names scenarios
    start and end on (a product situation among them is read as a derived event, issue 14)."""

    def __init__(
        self, source: Source, now: datetime, *, lifecycle_policy: LifecyclePolicy, triggers: Sequence[str] = (),
    ) -> None:
        self.source = source
        self.now = now
        self.lifecycle_policy = lifecycle_policy
        self.schema = source.schema()
        if triggers and self.schema.product_history is not None:  # issue 14: product situations as trigger events
            from shopcrm.products import situation_schema

            self.schema = situation_schema(self.schema, now=now, dialect=source.dialect, names=triggers)
        self.quirks = dialect_for(source.dialect)

    def col(self, name: str, table: str) -> exp.Column:
        return exp.column(name, table=table, quoted=True)

    def ts(self, table: str) -> exp.Expression:
        return self.quirks.timestamp_column(self.col("ts", table))

    def at(self, when: datetime) -> exp.Expression:
        return self.quirks.timestamp_literal(when)

    def events_named(self, names: Sequence[str], since: datetime | None, alias: str = "e") -> exp.Expr:
        """``event IN names AND since <= ts <= now`` on events aliased ``alias``."""
        conditions: list[exp.Expression] = [
            self.quirks.one_of(self.col("event", alias), names),
            exp.LTE(this=self.ts(alias), expression=self.at(self.now)),
        ]
        if since is not None:
            conditions.append(exp.GTE(this=self.ts(alias), expression=self.at(since)))
        return exp.and_(*conditions)

    def events_table(self, alias: str) -> exp.Expr:
        return self.schema.events.relation(alias)

    def customers_table(self, alias: str) -> exp.Expr:
        return self.schema.customers.relation(alias)

    def triggered_ids(self, on: str, since: datetime) -> exp.Select:
        """The customers with an ``on`` event in ``[since, now]``."""
        return exp.select(self.col("customer_id", "t")).distinct().from_(self.events_table("t")).where(
            self.events_named([on], since, "t"))

    def arrivals(self, names: Sequence[str], since: datetime) -> list[tuple[Any, str]]:
        """(customer, event) of the events of ``names`` in ``[since, now]``: a watermark tick's new arrivals."""
        return [(cid, str(name)) for cid, name in self.source.fetch(self.arrived(names, since, with_names=True))]

    def arrived(self, names: Sequence[str], since: datetime, *, with_names: bool = False) -> exp.Select:
        """The customers (and, ``with_names``, the event names) of the events of ``names`` in ``[since, now]``."""
        columns = [self.col("customer_id", "t"), *([self.col("event", "t")] if with_names else [])]
        return exp.select(*columns).distinct().from_(self.events_table("t")).where(
            self.events_named(list(dict.fromkeys(names)), since, "t"))

    def preload(
        self, ids: Sequence[Any], *, names: Sequence[str] | None = None, since: datetime | None = None,
        arrived: exp.Select | None = None,
    ) -> Preloaded:
        """The events (up to ``now``; of ``names`` at or after ``since`` when given) and the customers row of
        these customers and of those ``arrived`` selects (a query, so that a tick's many new customers are not
        listed in the statement), each table read once for all of a watermark tick's scenarios (a scan of the
        events per scenario and read is what a tick with little new cannot afford); on DuckDB the selected and the
        listed customers in one statement (a scan each, not two)."""
        where: exp.Expr = (exp.LTE(this=self.ts("e"), expression=self.at(self.now)) if names is None
                           else self.events_named(list(dict.fromkeys(names)), since))
        if names is None and since is not None:
            where = exp.and_(where, exp.GTE(this=self.ts("e"), expression=self.at(since)))
        events: dict[Any, list[dict[str, Any]]] = {}
        rows: dict[Any, dict[str, Any]] = {}
        columns = list(self.schema.customers.columns)
        listed: list[exp.Select | Sequence[Any]] = ([arrived] if arrived is not None else []) + ([ids] if ids else [])
        parts: list[exp.Select | Sequence[Any] | _Either] = list(listed)
        if len(listed) == 2 and self.source.dialect == "duckdb":
            parts = [_Either(listed)]
        for part in parts:
            found: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for event in self.events(where, part):
                found[event["customer_id"]].append(event)
            # a customer both selected and listed is read once (the first read stands)
            events.update((cid, got) for cid, got in found.items() if cid not in events)
            for row in self.customers(columns, part):
                rows.setdefault(row["customer_id"], row)
        return Preloaded(events=events, rows=rows)

    def _in(self, alias: str, ids: exp.Select | Sequence[Any] | _Either) -> list[exp.Expr]:
        """``customer_id IN (subquery)``, or IN lists of at most 1,000 values (engines bound a statement's size;
        DuckDB does not: one list, one scan); for :class:`_Either`, one condition: either of its parts."""
        column = self.col("customer_id", alias)
        if isinstance(ids, _Either):  # the query's ids and the listed ones, as one query (an OR of two INs is slow)
            queries = [part if isinstance(part, exp.Select) else _unnested_texts(part) if _plain_texts(part) else exp.select(
                exp.column("customer_id", table="v")).from_(
                exp.Values(expressions=[exp.Tuple(expressions=[_literal(v)]) for v in part],
                           alias=exp.TableAlias(this=exp.to_identifier("v"), columns=[exp.to_identifier("customer_id")])))
                for part in ids.parts if isinstance(part, exp.Select) or part]
            union: exp.Query = queries[0]
            for query in queries[1:]:
                union = exp.union(union, query, distinct=False)
            return [column.isin(query=union)]
        if isinstance(ids, exp.Select):
            if ids.args.get("limit") is not None:  # MariaDB takes no LIMIT directly inside IN: a derived table does
                ids = exp.select(exp.column("customer_id", table="limited")).from_(ids.subquery("limited"))
            return [column.isin(query=ids)]
        values = list(ids)
        if self.source.dialect == "duckdb" and len(values) > _LITERALS and _plain_texts(values):
            return [column.isin(query=_unnested_texts(values))]
        size = self._list_size()
        # literals built directly: ``isin`` deep-copies each one, which costs more than the query for 10,000 ids
        return [exp.In(this=column.copy(), expressions=[_literal(v) for v in values[i:i + size]])
                for i in range(0, len(values), size)]

    def _list_size(self) -> int:
        """The most ids one IN list holds."""
        return 100_000 if self.source.dialect == "duckdb" else 1000

    def customers(self, columns: Sequence[str], ids: exp.Select | Sequence[Any] | _Either) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for condition in self._in("c", ids):
            query = exp.select(*[self.col(c, "c") for c in columns]).from_(self.customers_table("c")).where(
                condition, copy=False)
            out += map(dict, map(zip, repeat(columns), self.source.fetch(query)))
        return out

    def customer_columns(
        self, columns: Sequence[str], ids: exp.Select | Sequence[Any] | None,
        computed: Mapping[str, exp.Expression] | None = None,
    ) -> dict[str, list[Any]]:
        """Like :meth:`customers`, column-wise (through Arrow where the engine speaks it); ``ids`` None: every customer
        with an id (the members of ``everyone``), in one scan of the table rather than the table semi-joined with its
        own ids (0.15 s of a 1M broadcast's read).  ``computed``: more columns, by name, each an expression over the
        customers table aliased ``c`` (an audience's hashes)."""
        extra = dict(computed or {})
        names = [*columns, *extra]
        out: dict[str, list[Any]] = {c: [] for c in names}
        everyone = [exp.not_(self.col("customer_id", "c").is_(exp.null()))]
        for condition in everyone if ids is None else self._in("c", ids):
            query = exp.select(*[self.col(c, "c") for c in columns],
                               *[exp.alias_(e.copy(), name, quoted=True) for name, e in extra.items()]).from_(
                self.customers_table("c")).where(condition, copy=False)
            table = self.source.fetch_arrow(query, names)
            for name in names:
                out[name] += table.column(name).to_pylist()
        return out

    def events(self, where: exp.Expr, ids: exp.Select | Sequence[Any] | _Either) -> list[dict[str, Any]]:
        columns = list(self.schema.events.columns)
        at = columns.index("ts")
        rows: list[dict[str, Any]] = []
        for condition in self._in("e", ids):
            query = exp.select(*[self.col(c, "e") for c in columns]).from_(self.events_table("e")).where(
                exp.and_(where.copy(), condition, copy=False), copy=False)
            found = self.source.fetch(query)
            if not found:
                continue
            # each row as a dict, made in C loops (a tick reads tens of thousands of events)
            events = list(map(dict, map(zip, repeat(columns), found)))
            stamps = list(map(itemgetter(at), found))
            if set(map(type, stamps)) != {datetime} or any(map(attrgetter("tzinfo"), stamps)):
                for event in events:  # text, dates or aware instants (the engine's types): naive UTC
                    ts = event["ts"]
                    if not isinstance(ts, datetime) or ts.tzinfo is not None:
                        event["ts"] = to_utc_naive(ts)
            rows += events
        return rows

    def members(self, rule: Rule) -> exp.Select:
        return compile_members(rule, self.schema, now=self.now, dialect=self.source.dialect,
                               lifecycle_policy=self.lifecycle_policy)


@attrs.frozen
class _Either:
    """The customers of any of ``parts`` (queries, lists), read in one statement (:meth:`EngineReader._in`)."""

    parts: Sequence[exp.Select | Sequence[Any]]


#: on DuckDB, a longer list of text ids is one JSON text unnested (one literal, not thousands: building, copying and
#: rendering thousands of literals costs more than the query, and DuckDB parses the JSON faster than the long IN list)
_LITERALS = 1000


def _plain_texts(values: Sequence[Any]) -> bool:
    """Whether every value is text that a JSON array carries unchanged (no control character, no lone surrogate)."""
    return all(isinstance(v, str) and v.isprintable() for v in values)


def _unnested_texts(values: Sequence[str]) -> exp.Select:
    """``SELECT UNNEST(CAST(JSON('[...]') AS TEXT[]))``: the values as rows of text, from one JSON literal."""
    text = json.dumps(values, ensure_ascii=False)
    return exp.select(exp.Unnest(expressions=[exp.cast(exp.Anonymous(this="json", expressions=[exp.Literal.string(text)]),
                                                       exp.DataType.build("TEXT[]", dialect="duckdb"))]))


def _literal(value: Any) -> exp.Expr:
    """A customer id as a SQL literal (text and integers directly; anything else as sqlglot converts it)."""
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return exp.Literal.number(value)
    return exp.convert(value)
