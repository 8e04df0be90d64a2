"""The product situations compiled to SQL (sqlglot trees): the meaning of :mod:`._situations`, on every engine.

No I/O: :func:`situations_query` takes the events and the product history as relations (functions from an alias to
what a query reads ``FROM``, like :meth:`shopcrm.schema.Table.relation`), ``now`` and a dialect, and returns one
query of derived event rows with the columns of :data:`SITUATION_COLUMNS`.  It uses derived tables and window
functions only (no CTEs), so that it nests anywhere, e.g. inside the events relation a rule reads:
:class:`SituationEvents` is the events table with the derived events appended (``events UNION ALL
situations(now)``), computed by the query that reads it and never stored.

Instants are compared as the dialect compares timestamp columns (SQLite: normalised text); the derived events'
``ts`` is the history row's own ``ts``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
from sqlglot import exp

from shopcrm.compiler._dialects import Dialect, dialect_for
from shopcrm.products._situations import (
    CART_PRICE_DROPPED,
    SITUATION_COLUMNS,
    SITUATIONS,
    WISHLIST_LOW_STOCK,
    ProductSituations,
)
from shopcrm.schema import ColumnType, Schema, Table

__all__ = ["ProductHistoryTable", "SituationEvents", "history_relation", "saved_policy", "situation_schema",
           "situations_query", "with_policy"]

#: a relation under an alias: ``Table.relation``, or ``lambda a: exp.to_table("t").as_(a)``
Relation = Callable[[str], exp.Expression]


def _c(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _s(value: str) -> exp.Expression:
    return exp.Literal.string(value)


def _n(value: float) -> exp.Expression:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return exp.Literal.number(value)


def _as(expression: exp.Expression, name: str) -> exp.Expression:
    return exp.Alias(this=expression, alias=exp.to_identifier(name, quoted=True))


def _and(*parts: exp.Expression) -> exp.Expression:
    out = parts[0]
    for part in parts[1:]:
        out = exp.And(this=out, expression=part)
    return out


def _not_null(value: exp.Expression) -> exp.Expression:
    return exp.Not(this=exp.Is(this=value, expression=exp.Null()))


def _flag(condition: exp.Expression) -> exp.Expression:
    return exp.Case(ifs=[exp.If(this=condition, true=_n(1))], default=_n(0))


def _null(kind: str, d: Dialect) -> exp.Expression:
    return exp.cast(exp.Null(), exp.DataType.build(kind, dialect=d.name))


def _window(fn: exp.Expression, partition: Sequence[exp.Expression], order: exp.Expression, desc: bool = False) -> exp.Expression:
    return exp.Window(this=fn, partition_by=list(partition),
                      order=exp.Order(expressions=[exp.Ordered(this=order, desc=desc)]))


class _Builder:
    def __init__(self, events: Relation, history: Relation, products: Relation | None, now: datetime, d: Dialect,
                 policy: ProductSituations) -> None:
        self.events, self.history, self.products = events, history, products
        self.d, self.policy = d, policy
        self.now = d.timestamp_literal(now)

    def name_is(self, column: exp.Expression, *names: str) -> exp.Expression:
        value = self.d.string_equality(column)
        return value.isin(*[self.d.string_equality(_s(n)) for n in names])

    def shop_events(self, alias: str) -> exp.Expression:
        """The events the stays read: ``customer_id, event, product_id, t`` (``t`` the comparable instant)."""
        query = exp.select(
            _as(_c("customer_id", "x"), "customer_id"), _as(_c("event", "x"), "event"),
            _as(_c("product_id", "x"), "product_id"), _as(self.d.timestamp_column(_c("ts", "x")), "t"),
        ).from_(self.events("x")).where(_and(
            self.name_is(_c("event", "x"), *self.policy.event_names()), _not_null(_c("customer_id", "x")),
            _not_null(_c("ts", "x"))))
        return query.subquery(alias)

    def stays(self, added: str, removed: str, alias: str, *, whole_order: bool) -> exp.Expression:
        """``customer_id, product_id, added, ended``: each add until the first removal, order or re-add of the
        product strictly after it (``ended`` NULL while it lasts)."""
        adds = exp.select(_c("customer_id", "a"), _c("product_id", "a"), _c("t", "a")).distinct().from_(
            self.shop_events("a")).where(_and(self.name_is(_c("event", "a"), added), _not_null(_c("product_id", "a"))))
        same = _and(exp.EQ(this=_c("product_id", "y"), expression=_c("product_id", "s")),
                    self.name_is(_c("event", "y"), added, removed, self.policy.order_event))
        ends: exp.Expression = exp.Paren(this=same)
        if whole_order:
            ends = exp.Or(this=ends, expression=exp.Paren(this=_and(
                exp.Is(this=_c("product_id", "y"), expression=exp.Null()), self.name_is(_c("event", "y"), self.policy.order_event))))
        on = _and(exp.EQ(this=_c("customer_id", "y"), expression=_c("customer_id", "s")),
                  exp.GT(this=_c("t", "y"), expression=_c("t", "s")), exp.Paren(this=ends))
        keys = [_c("customer_id", "s"), _c("product_id", "s"), _c("t", "s")]
        query = exp.select(
            _as(keys[0].copy(), "customer_id"), _as(keys[1].copy(), "product_id"), _as(keys[2].copy(), "added"),
            _as(exp.Min(this=_c("t", "y")), "ended"),
        ).from_(adds.subquery("s")).join(self.shop_events("y"), on=on, join_type="left").group_by(*keys)
        return query.subquery(alias)

    def changes(self, alias: str) -> exp.Expression:
        """The history with its state flags and the previous row's: ``product_id, ts, t, price, stock, low,
        in_stock, prev_low, prev_out``."""
        d = self.d
        stock, available = _c("stock", "h"), _c("available", "h")
        unavailable = _and(_not_null(available), exp.EQ(this=available.copy(), expression=d.boolean(False)))
        buyable = _and(_not_null(stock.copy()), exp.GT(this=stock.copy(), expression=_n(0)), exp.Not(this=exp.Paren(this=unavailable)))
        low = _and(exp.Paren(this=buyable.copy()), exp.LTE(this=stock.copy(), expression=_n(self.policy.low_stock)))
        out = exp.Or(this=exp.Paren(this=_and(_not_null(stock.copy()), exp.LTE(this=stock.copy(), expression=_n(0)))),
                     expression=exp.Paren(this=unavailable.copy()))
        flags = exp.select(
            _as(_c("product_id", "h"), "product_id"), _as(_c("ts", "h"), "ts"), _as(d.timestamp_column(_c("ts", "h")), "t"),
            _as(_c("price", "h"), "price"), _as(stock.copy(), "stock"), _as(_flag(low), "low"),
            _as(_flag(buyable), "in_stock"), _as(_flag(out), "out_of_stock"),
        ).from_(self.history("h")).where(_and(_not_null(_c("product_id", "h")), _not_null(_c("ts", "h"))))
        part, order = [_c("product_id", "f")], _c("t", "f")
        query = exp.select(
            *[_c(n, "f") for n in ("product_id", "ts", "t", "price", "stock", "low", "in_stock")],
            _as(_window(exp.Anonymous(this="LAG", expressions=[_c("low", "f")]), part, order), "prev_low"),
            _as(_window(exp.Anonymous(this="LAG", expressions=[_c("out_of_stock", "f")]), part, order), "prev_out"),
        ).from_(flags.subquery("f"))
        return query.subquery(alias)

    def during(self, stay: str, change: str) -> exp.Expression:
        """The change is inside the stay: after the add, before its end and before now."""
        t = _c("t", change)
        ended = _c("ended", stay)
        return _and(
            exp.EQ(this=_c("product_id", change), expression=_c("product_id", stay)),
            exp.GT(this=t, expression=_c("added", stay)), exp.LT(this=t.copy(), expression=self.now.copy()),
            exp.Paren(this=exp.Or(this=exp.Is(this=ended, expression=exp.Null()), expression=exp.LT(this=t.copy(), expression=ended.copy()))),
        )

    def row(self, source: str, event: str, old: exp.Expression, new: exp.Expression, percent: exp.Expression) -> list[exp.Expression]:
        d = self.d
        price = _c("price", source)
        return [
            _as(_c("customer_id", source), "customer_id"), _as(_s(event), "event"), _as(_c("ts", source), "ts"),
            _as(_c("product_id", source), "product_id"), _as(price, "price"), _as(old, "old_price"),
            _as(new, "new_price"), _as(percent, "percent"), _as(_c("stock", source), "stock"),
            _as(_c("name", "p") if self.products is not None else _null(d.text_type, d), "name"),
        ]

    def named(self, query: exp.Select, source: str) -> exp.Select:
        if self.products is None:
            return query
        names = exp.select(_c("product_id", "q"), exp.alias_(exp.Max(this=_c("name", "q")), "name", quoted=True)).from_(
            self.products("q")).group_by(_c("product_id", "q"))
        return query.join(names.subquery("p"), on=exp.EQ(this=_c("product_id", "p"), expression=_c("product_id", source)),
                          join_type="left")

    def price_drops(self) -> exp.Select:
        d = self.d
        stay_keys = [_c("customer_id", "s"), _c("product_id", "s"), _c("added", "s")]
        base = exp.select(
            *[_c(n, "s") for n in ("customer_id", "product_id", "added", "ended")], _as(_c("price", "h"), "old_price"),
            _as(_window(exp.RowNumber(), stay_keys, _c("t", "h"), desc=True), "rn"),
        ).from_(self.stays(self.policy.cart_event, self.policy.cart_removed_event, "s", whole_order=True)).join(
            self.changes("h"), on=_and(exp.EQ(this=_c("product_id", "h"), expression=_c("product_id", "s")),
                                      exp.LTE(this=_c("t", "h"), expression=_c("added", "s"))))
        priced = exp.select(*[_c(n, "b0") for n in ("customer_id", "product_id", "added", "ended", "old_price")]).from_(
            base.subquery("b0")).where(_and(exp.EQ(this=_c("rn", "b0"), expression=_n(1)),
                                            exp.GT(this=_c("old_price", "b0"), expression=_n(0))))
        keep = 100 - self.policy.price_drop_percent
        cheaper = exp.LTE(this=exp.Mul(this=_c("price", "h"), expression=_n(100)),
                          expression=exp.Mul(this=_c("old_price", "b"), expression=_n(keep)))
        drops = exp.select(
            _c("customer_id", "b"), _c("product_id", "b"), _c("old_price", "b"), _c("ts", "h"), _c("price", "h"),
            _c("stock", "h"),
            _as(_window(exp.RowNumber(), [_c("customer_id", "b"), _c("product_id", "b"), _c("added", "b")], _c("t", "h")), "rn"),
        ).from_(priced.subquery("b")).join(self.changes("h"), on=_and(self.during("b", "h"), _not_null(_c("price", "h")), cheaper))
        old, new = d.to_double(_c("old_price", "r")), d.to_double(_c("price", "r"))
        percent = exp.Div(this=exp.Mul(this=exp.Paren(this=exp.Sub(this=old, expression=new)), expression=_n(100)),
                          expression=old.copy(), typed=False, safe=False)
        query = exp.select(*self.row("r", CART_PRICE_DROPPED, _c("old_price", "r"), _c("price", "r"), percent)).from_(
            drops.subquery("r")).where(exp.EQ(this=_c("rn", "r"), expression=_n(1)))
        return self.named(query, "r")

    def stock_changes(self, name: str) -> exp.Select:
        d = self.d
        if name == WISHLIST_LOW_STOCK:
            entered = _and(exp.EQ(this=_c("low", "h"), expression=_n(1)),
                           exp.EQ(this=exp.Coalesce(this=_c("prev_low", "h"), expressions=[_n(0)]), expression=_n(0)))
        else:
            entered = _and(exp.EQ(this=_c("in_stock", "h"), expression=_n(1)), exp.EQ(this=_c("prev_out", "h"), expression=_n(1)))
        inner = exp.select(_c("customer_id", "s"), *[_c(n, "h") for n in ("product_id", "ts", "price", "stock")]).from_(
            self.stays(self.policy.wishlist_event, self.policy.wishlist_removed_event, "s", whole_order=False)).join(
            self.changes("h"), on=_and(self.during("s", "h"), entered))
        double = d.double_type
        query = exp.select(*self.row("w", name, _null(double, d), _null(double, d), _null(double, d))).from_(inner.subquery("w"))
        return self.named(query, "w")


def situations_query(
    events: Relation, history: Relation, *, now: datetime, dialect: Dialect, policy: ProductSituations | None = None,
    products: Relation | None = None, names: Iterable[str] = SITUATIONS,
) -> exp.Query:
    """Every derived event before ``now`` (columns :data:`SITUATION_COLUMNS`) as one query: the SQL form of
    :func:`shopcrm.products.product_situations`.

    ``events`` reads ``customer_id, event, ts, product_id``; ``history`` ``product_id, ts, price, stock,
    available``; ``products`` (optional) ``product_id, name``.
    """
    wanted = [n for n in SITUATIONS if n in set(names)]
    if not wanted:
        raise ValueError(f"name at least one of the product situations: {', '.join(SITUATIONS)}")
    builder = _Builder(events, history, products, now, dialect, policy or ProductSituations())
    parts: list[exp.Select] = []
    for name in wanted:
        parts.append(builder.price_drops() if name == CART_PRICE_DROPPED else builder.stock_changes(name))
    query: exp.Query = parts[0]
    for part in parts[1:]:
        query = exp.union(query, part, distinct=False, copy=False)
    return query


def history_relation(table: Table) -> Relation:
    """The history table as :func:`situations_query` reads it: a state column the table lacks reads as NULL."""
    if all(table.has(c) for c in ("price", "stock", "available")):
        return table.relation

    def relation(alias: str) -> exp.Expression:
        columns = [_as(_c(c, "h0") if table.has(c) else exp.Null(), c)
                   for c in ("product_id", "ts", "price", "stock", "available")]
        return exp.select(*columns).from_(table.relation("h0")).subquery(alias)

    return relation


_DERIVED_TYPES = {"price": ColumnType.FLOAT, "old_price": ColumnType.FLOAT, "new_price": ColumnType.FLOAT,
                  "percent": ColumnType.FLOAT, "stock": ColumnType.INTEGER, "name": ColumnType.STRING}


@attrs.frozen
class SituationEvents(Table):
    """The shop's events table with the product situations appended, as every reader of events sees it: its
    :meth:`relation` is ``events UNION ALL situations(now)`` (computed by the reading query), its columns the
    events' and the derived events' (``product_id, price, old_price, new_price, percent, stock, name``)."""

    events: Table = attrs.field(kw_only=True)
    history: Table = attrs.field(kw_only=True)
    products: Table | None = attrs.field(kw_only=True)
    now: datetime = attrs.field(kw_only=True)
    dialect: str = attrs.field(kw_only=True)
    policy: ProductSituations = attrs.field(kw_only=True)
    names: tuple[str, ...] = attrs.field(kw_only=True)

    def relation(self, alias: str) -> exp.Expression:
        d = dialect_for(self.dialect)
        products = self.products.relation if self.products is not None and self.products.has("name") else None
        derived = situations_query(self.events.relation, history_relation(self.history), now=self.now, dialect=d,
                                   policy=self.policy, products=products, names=self.names)
        own = list(self.events.columns)
        shop = exp.select(*[_as(_c(n, "e0"), n) for n in own], *[
            _as(exp.Null(), n) for n in SITUATION_COLUMNS if n not in self.events.columns]).from_(self.events.relation("e0"))
        situation = exp.select(*[
            _as(_c(n, "d0"), n) if n in SITUATION_COLUMNS else _as(exp.Null(), n) for n in own
        ], *[_as(_c(n, "d0"), n) for n in SITUATION_COLUMNS if n not in self.events.columns]).from_(derived.subquery("d0"))
        return exp.union(shop, situation, distinct=False, copy=False).subquery(alias)


@attrs.frozen
class ProductHistoryTable(Table):
    """The product history table, carrying the thresholds of the situations that rules and triggers read from it
    (the shop's ``product_situations`` setting, :attr:`shopcrm.Shop.product_situations_policy`)."""

    situations: ProductSituations = attrs.field(factory=ProductSituations, kw_only=True)


def with_policy(table: Table | None, policy: ProductSituations | None) -> Table | None:
    """The history table carrying ``policy`` (``table`` itself without one)."""
    if table is None or policy is None:
        return table
    return ProductHistoryTable(table.name, table.columns, sources=table.sources, values=table.values, situations=policy)


def saved_policy(document: Any) -> ProductSituations | None:
    """The policy of a shop's ``product_situations`` setting, if it has one."""
    return ProductSituations.from_dict(document) if document else None


def situation_schema(
    schema: Schema, *, now: datetime, dialect: str, names: Iterable[str], policy: ProductSituations | None = None,
) -> Schema:
    """``schema`` whose events include the product situations among ``names`` (the event names a rule or a
    trigger reads), when the shop keeps a product history; otherwise ``schema`` itself."""
    given = set(names)
    if isinstance(schema.events, SituationEvents):  # already read with situations: add the ones missing
        given |= set(schema.events.names)
        if given <= set(schema.events.names):
            return schema
        schema = attrs.evolve(schema, events=schema.events.events)
    wanted = tuple(n for n in SITUATIONS if n in given)
    history = schema.product_history
    if not wanted or history is None or not schema.events.has("product_id"):
        return schema
    columns = dict(schema.events.columns)
    for name in SITUATION_COLUMNS:
        if name not in columns:
            columns[name] = history.type_of("product_id") if name == "product_id" else _DERIVED_TYPES[name]
    chosen = policy or (history.situations if isinstance(history, ProductHistoryTable) else ProductSituations())
    events = SituationEvents(schema.events.name, columns, events=schema.events, history=history,
                             products=schema.products, now=now, dialect=dialect, policy=chosen, names=wanted)
    return attrs.evolve(schema, events=events)


