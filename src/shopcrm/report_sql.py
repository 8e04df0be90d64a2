"""The campaign report computed where the data lives: the shop's tables as the relations the attribution compiler
(:mod:`shopcrm.measurement._sql`) reads, and a handful of aggregate queries.

Used when the library's tables share the shop's database (the embedded DuckDB store, DB-API shops on SQLite,
PostgreSQL and MySQL); a shop whose campaign store lives elsewhere (Spark, in memory) is reported through the pure
reference instead (:mod:`shopcrm.report`).  Both paths return the same :class:`Figures`; the tests hold them equal.

How the library's rows meet the shop's: the ledger and outbox keep customer ids as JSON text and instants as ISO
text.  An id is compared in the events table's own type (``CAST`` to an integer for a numeric id column, the JSON
string's text otherwise), and every instant becomes integer microseconds since 1970 (SQLite keeps milliseconds).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlglot import exp

from shopcrm.compiler._dialects import Dialect, dialect_for
from shopcrm.measurement import AttributionPolicy, Outcome, Summary
from shopcrm.measurement._sql import SUMMARY_COLUMNS, _c, _n, _ref, _s, _sub, _with, attribution_queries
from shopcrm.measurement._sql import _alias as _as
from shopcrm.sources._event_values import event_property, register_sqlite_functions

if TYPE_CHECKING:
    from shopcrm._figures import Figures, SegmentLabels
    from shopcrm._view import ShopView

__all__ = ["SQL_DIALECTS", "can_compute", "sql_figures"]

#: the engines whose shops keep the library's tables beside their own, where the report runs as SQL
SQL_DIALECTS = ("duckdb", "sqlite", "postgres", "mysql")
_EPOCH = datetime(1970, 1, 1)
_SENT_STATES = ("sent", "delivered")


def _us(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _table(name: str, alias: str) -> exp.Expr:
    return _ref(name, alias)


def can_compute(shop: ShopView) -> bool:
    """Whether the report of ``shop`` runs as SQL: its library tables share its connection on a SQL engine (not
    when they live in a store of their own, issue 15: the report then computes in Python over the store)."""
    from shopcrm.sources._store import library_beside

    source = shop.source
    return source.dialect in SQL_DIALECTS and library_beside(source) is not None


class _Relations:
    """The shop's tables as the compiler's input relations."""

    def __init__(self, shop: ShopView, ids: Sequence[str] | None, lo: datetime | None, hi: datetime, now: datetime,
                 policy: AttributionPolicy, segments: SegmentLabels | None = None) -> None:
        source = shop.source
        self.shop, self.ids, self.policy = shop, ids, policy
        self.dialect = source.dialect
        self.quirks: Dialect = dialect_for(source.dialect)
        from shopcrm.sources._store import library_beside

        library = library_beside(source)
        if library is None:
            raise ValueError("the report's SQL needs the library's tables beside the shop's events; see can_compute")
        self.tables = library.tables
        self.events = source.schema().events
        self.numeric_ids = self.events.type_of("customer_id").is_numeric
        self.lo_us = None if lo is None else _us(lo)
        self.hi_us = _us(hi)
        self.now_us = _us(now)
        self.segments = segments
        #: compare customers as the library's JSON text (see :meth:`plain_conversions`): set by the caller
        self.json_keys = False

    @staticmethod
    def plain_conversions(conversions: str) -> exp.Select:
        """How many rows of the staged conversions ``conversions`` (built in ``json_keys`` mode: each customer id in
        quotes) have an id that is not plain text (printable ASCII without quotes or backslashes).  When none has,
        every converting customer's id in the library's tables (JSON text, written by ``json.dumps``) is exactly the
        id in quotes, and an id that is not plain cannot equal one in quotes (its JSON text escapes a character), so
        comparing customers in that form (``json_keys``) is exact: the million ids of the ledger and outbox are read
        as they are instead of parsed one by one.  DuckDB only (a regular expression)."""
        return exp.select(exp.Count(this=exp.Star())).from_(_table(conversions, "pc"), copy=False).where(exp.Not(
            this=_fn("regexp_full_match", _c("customer", "pc"), _s(r'"[ !#-\[\]-~]*"'))), copy=False)

    def segment(self, customer: exp.Expr) -> list[exp.Expr]:
        """The ``segment`` column of a breakdown by segment (the first segment whose members, compiled for the
        engine as of the chosen instant, include ``customer``; empty text otherwise), or nothing."""
        if self.segments is None:
            return []
        from shopcrm.compiler import compile_members

        case = exp.Case()
        for name, rule in self.segments.rules:
            members = compile_members(rule, self.shop.source.schema(), now=self.segments.at, dialect=self.dialect,
                                      lifecycle_policy=self.shop.lifecycle_policy)
            ids = exp.select(self.quirks.string_equality(_c("customer_id", "sg"))).from_(_sub(members, "sg"), copy=False)
            case = case.when(exp.In(this=self.quirks.string_equality(customer.copy()), query=ids.subquery()),  # type: ignore[arg-type]
                             _s(name))
        return [_as(case.else_(_s("")), "segment")]

    # -- conversions of the library's text ---------------------------------------------------------------------
    def customer(self, column: exp.Expr) -> exp.Expr:
        """A JSON customer id of the library's tables as the events table's id (as it is, in ``json_keys`` mode)."""
        if self.json_keys:
            return column
        if self.numeric_ids:
            return exp.cast(column, exp.DataType.build("BIGINT"))
        if self.dialect == "duckdb":
            return _fn("json_extract_string", column, _s("$"))
        if self.dialect == "sqlite":
            return _fn("json_extract", column, _s("$"))
        if self.dialect == "postgres":
            return exp.JSONBExtractScalar(this=exp.cast(column, exp.DataType.build("JSONB", dialect="postgres")),
                                          expression=_s("{}"))
        return _fn("JSON_UNQUOTE", _fn("JSON_EXTRACT", column, _s("$")))

    def text_us(self, column: exp.Expression) -> exp.Expr:
        """An ISO text instant of the library's tables in microseconds."""
        if self.dialect != "sqlite":
            column = exp.cast(column, exp.DataType.build(self.quirks.timestamp_type, dialect=self.dialect))
        return self.quirks.epoch_micros(column)

    def event_us(self, column: exp.Expression) -> exp.Expr:
        """A timestamp of the shop's events table in microseconds."""
        return self.quirks.epoch_micros(self.quirks.timestamp_column(column))

    def event_before(self, column: exp.Expression, upper_us: int, lower_us: int | None = None) -> exp.Expr:
        """An events table's ``ts`` in ``[lower, upper)``: on DuckDB compared with timestamp literals, as the segment
        compiler does, so that the scan skips row groups by their minimum and maximum; elsewhere in microseconds."""
        if self.dialect != "duckdb":
            us = self.event_us(column)
            return exp.and_(exp.LT(this=us, expression=_n(upper_us)),
                            *([exp.GTE(this=us.copy(), expression=_n(lower_us))] if lower_us is not None else []))

        def literal(us: int) -> exp.Expr:
            return cast(exp.Expr, self.quirks.timestamp_literal(_EPOCH + timedelta(microseconds=us)))

        ts = self.quirks.timestamp_column(column)
        return exp.and_(exp.LT(this=ts, expression=literal(upper_us)),
                        *([exp.GTE(this=ts.copy(), expression=literal(lower_us))] if lower_us is not None else []))

    def _campaigns(self, column: exp.Expr) -> list[exp.Expr]:
        if self.ids is None:
            return []
        return [exp.In(this=column, expressions=[_s(c) for c in self.ids])]

    def _range(self, column: exp.Expr, *, upper: int) -> exp.Expr:
        parts: list[exp.Expr] = [exp.LT(this=column, expression=_n(upper))]
        if self.lo_us is not None:
            parts.append(exp.GTE(this=column.copy(), expression=_n(self.lo_us)))
        return exp.and_(*parts)

    # -- message events -------------------------------------------------------------------------------------------
    def message_events(self, name: str, *, every: bool = False) -> exp.Query:
        """``message_key, ts_us`` of the events named ``name`` before now, from the events table (when it keeps
        message keys) and the library's ``message_events``: of the chosen campaigns, or (``every``) of all."""
        def chosen(column: exp.Expr) -> list[exp.Expr]:
            return [] if every else self._campaigns(column)

        parts: list[exp.Select] = [
            exp.select(_as(_c("message_key", "x"), "message_key"), _as(self.text_us(_c("ts", "x")), "ts_us"))
            .from_(_table(self.tables.message_events, "x"), copy=False)
            .where(exp.and_(exp.EQ(this=_c("event", "x"), expression=_s(name)), *chosen(_c("campaign_id", "x")),
                            exp.LT(this=self.text_us(_c("ts", "x")), expression=_n(self.now_us))), copy=False)
        ]
        if self.events.has("message_key"):
            where: list[exp.Expr] = [exp.EQ(this=_c("event", "e"), expression=_s(name)),
                                     self.event_before(_c("ts", "e"), self.now_us)]
            if self.events.has("campaign_id"):
                where += chosen(_c("campaign_id", "e"))
            parts.insert(0, exp.select(_as(_c("message_key", "e"), "message_key"),
                                       _as(self.event_us(_c("ts", "e")), "ts_us"))
                         .from_(self.events.relation("e"), copy=False).where(exp.and_(*where), copy=False))
        union: exp.Query = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False)
        return exp.select(_c("message_key", "u"), _c("ts_us", "u")).from_(_sub(union, "u"), copy=False)

    # -- the compiler's inputs ---------------------------------------------------------------------------------
    def ledger_gaps(self, *, every: bool = False) -> exp.Select:
        """How many sent rows of the chosen campaigns' ledger do not name their carrying channel or kind, and how
        many lack their send time (rows written before the ledger kept them): only then do the sends need the
        outbox, or the ``message_sent`` events, for them.  ``every`` adds the same two counts over every campaign's
        rows (for the rivals, see :meth:`sends`)."""
        def blank(name: str) -> exp.Expr:
            return exp.or_(exp.Is(this=_c(name, "l"), expression=exp.Null()),
                           exp.EQ(this=_c(name, "l"), expression=_s("")))

        def count(condition: exp.Expr) -> exp.Expr:
            return exp.Sum(this=exp.Case().when(condition, _n(1)).else_(_n(0)))

        gaps = (exp.or_(blank("channel"), blank("kind")), blank("sent_at"))
        sent = exp.In(this=_c("state", "l"), expressions=[_s(s) for s in _SENT_STATES])
        if every:
            chosen = [count(exp.and_(*self._campaigns(_c("campaign_id", "l")), gap.copy())) for gap in gaps]
            return exp.select(*chosen, *[count(gap) for gap in gaps]).from_(
                _table(self.tables.sends, "l"), copy=False).where(sent, copy=False)
        return exp.select(*[count(gap) for gap in gaps]).from_(_table(self.tables.sends, "l"), copy=False).where(
            exp.and_(sent, *self._campaigns(_c("campaign_id", "l"))), copy=False)

    def sends(self, *, outbox: bool = True, events: bool = True, joinable: bool = False,
              rivals: bool = False) -> exp.Select:
        """Sent or delivered messages in range (send time: the ledger's ``sent_at``, the instant the dispatcher
        recorded the ``message_sent`` event; for rows without it the earliest ``message_sent`` event, else the
        ledger row's last update), with their ledger state and chain index.  ``outbox=False`` leaves out the join
        with the outbox (variant and step empty, channel and kind the ledger's): a third faster, right when the
        breakdown needs neither variant nor step and the ledger names every send's channel and kind.
        ``events=False`` leaves out the ``message_sent`` events (right when every row has its ``sent_at``): the
        grouping of a million events by message is most of what the sends cost.  ``joinable`` keeps only the sends
        that can meet something: of a customer with a conversion (``shopcrm_cv``) or an opt-out, or clicked (the
        clicks staged as ``shopcrm_k``; the caller counts every send apart, see
        ``attribution_queries(send_counts=)``).

        ``rivals`` gives instead the sends whose clicks compete for the last click with the chosen ones
        (``attribution_queries(rivals=)``): of every campaign, sent at any time before now, clicked (a key in
        ``shopcrm_k``, which then holds every campaign's clicks) and sent to a customer with a conversion
        (``shopcrm_cv``).  The chosen sends are among them; that is allowed, and saves a join to leave them out."""
        first = (exp.select(_c("message_key", "f0"), _as(exp.Min(this=_c("ts_us", "f0")), "ts_us"))
                 .from_(_sub(self.message_events("message_sent", every=rivals), "f0"), copy=False)
                 .group_by(_c("message_key", "f0"), copy=False))
        recorded = self.text_us(_c("sent_at", "l"))
        sent_us = exp.Coalesce(this=recorded, expressions=[
            *([_c("ts_us", "f")] if events else []), self.text_us(_c("updated_at", "l"))])

        def carried(name: str) -> exp.Expr:
            fallback = [_c(name, "o"), _s("")] if outbox else [_s("")]
            return exp.Coalesce(this=exp.Nullif(this=_c(name, "l"), expression=_s("")), expressions=fallback)

        def planned(name: str) -> exp.Expr:
            return exp.Coalesce(this=_c(name, "o"), expressions=[_s("")]) if outbox else _s("")

        inner = exp.select(
            _as(_c("key_", "l"), "message_key"), _as(self.customer(_c("customer_id", "l")), "customer"),
            _as(_c("campaign_id", "l"), "campaign_id"), _as(planned("variant"), "variant"),
            _as(planned("step"), "step"),
            _as(carried("channel"), "channel"), _as(carried("kind"), "kind"), _as(sent_us, "sent_us"),
            _as(_c("cost", "l"), "cost"), _as(_c("state", "l"), "state"), _as(_c("chain_index", "l"), "chain_index"),
            *([] if rivals else self.segment(self.customer(_c("customer_id", "l")))),
        ).from_(_table(self.tables.sends, "l"), copy=False)
        if outbox:
            inner = inner.join(_table(self.tables.outbox, "o"), on=exp.EQ(this=_c("key_", "o"), expression=_c("key_", "l")),
                               join_type="left", copy=False)
        if events:
            inner = inner.join(_sub(first, "f"), on=exp.EQ(this=_c("message_key", "f"), expression=_c("key_", "l")),
                               join_type="left", copy=False)
        inner = inner.where(exp.and_(
                               exp.In(this=_c("state", "l"), expressions=[_s(s) for s in _SENT_STATES]),
                               *([] if rivals else self._campaigns(_c("campaign_id", "l")))), copy=False)
        if rivals:
            customer = self.quirks.string_equality(cast(exp.Expression, self.customer(_c("customer_id", "l"))))
            bought = exp.select(_c("customer", "rc")).from_(_table("shopcrm_cv", "rc"), copy=False)
            clicked = exp.select(_c("message_key", "rk")).from_(_table("shopcrm_k", "rk"), copy=False)
            inner = inner.where(exp.and_(exp.In(this=_c("key_", "l"), query=clicked.subquery()),
                                         exp.In(this=customer, query=bought.subquery())), append=True, copy=False)
            if not events:
                stamped = exp.Coalesce(this=_c("sent_at", "l"), expressions=[_c("updated_at", "l")])
                return inner.where(exp.and_(*self._text_range(stamped, self.now_us, None)), append=True, copy=False)
            return exp.select("*").from_(_sub(inner, "sb"), copy=False).where(
                exp.LT(this=_c("sent_us", "sb"), expression=_n(self.now_us)), copy=False)
        if joinable:
            customer = self.quirks.string_equality(cast(exp.Expression, self.customer(_c("customer_id", "l"))))
            bought = exp.select(_c("customer", "jc")).from_(_table("shopcrm_cv", "jc"), copy=False)
            opted = exp.select(self.quirks.string_equality(cast(exp.Expression, self.customer(_c("customer_id", "jo"))))
                               ).from_(_table(self.tables.opt_outs, "jo"), copy=False)
            clicked = exp.select(_c("message_key", "jk")).from_(_table("shopcrm_k", "jk"), copy=False)
            inner = inner.where(exp.or_(
                exp.In(this=customer, query=bought.subquery()),
                exp.In(this=customer.copy(), query=opted.subquery()),
                exp.In(this=_c("key_", "l"), query=clicked.subquery())), append=True, copy=False)
        if not events:  # the send time is the ledger's own: its range on the text, parsed only for the rows in it
            stamped = exp.Coalesce(this=_c("sent_at", "l"), expressions=[_c("updated_at", "l")])
            return inner.where(exp.and_(*self._text_range(stamped, min(self.hi_us, self.now_us), self.lo_us)),
                               append=True, copy=False)
        return exp.select("*").from_(_sub(inner, "sb"), copy=False).where(
            exp.and_(self._range(_c("sent_us", "sb"), upper=self.hi_us),
                     exp.LT(this=_c("sent_us", "sb"), expression=_n(self.now_us))), copy=False)

    def clicks(self, *, every: bool = False) -> exp.Select:
        """``message_key, clicked_us`` of the clicks before now, on the chosen campaigns' messages or (``every``)
        on any message."""
        return exp.select(_c("message_key", "kc"), _as(_c("ts_us", "kc"), "clicked_us")).from_(
            _sub(self.message_events("message_clicked", every=every), "kc"), copy=False)

    @property
    def contested(self) -> bool:
        """Whether sends the report leaves out can compete for its conversions' last click: unless the report
        takes every campaign's sends before now (no campaigns chosen, no ``since``, ``until`` not before now)."""
        return self.ids is not None or self.lo_us is not None or self.hi_us < self.now_us

    def conversion_events(self) -> exp.Select:
        """``customer, ts_us, revenue, order_id`` of the conversion events before now that can matter: an order is
        de-duplicated over all of its events (``attribution_queries(since_us=)`` then keeps the conversions from
        ``since``), so one first recorded before ``since`` is no conversion of the range.  With a ``since``, the
        events before it are read only for the orders that also have an event in range."""
        ts = self.event_us(_c("ts", "e"))
        customer: exp.Expr = _c("customer_id", "e")
        if self.json_keys:  # the id in quotes: its JSON text (plain ids only, see plain_conversions)
            customer = exp.DPipe(this=exp.DPipe(this=_s('"'), expression=customer, safe=True), expression=_s('"'),
                                 safe=True)
        inner = exp.select(
            _as(customer, "customer"), _as(ts, "ts_us"),
            _as(event_property(self.quirks, self.dialect, self.shop.source, self.policy.revenue_property, number=True),
                "revenue"),
            _as(event_property(self.quirks, self.dialect, self.shop.source, self.policy.order_property, number=False),
                "order_id"),
        ).from_(self.events.relation("e"), copy=False)
        conversion = exp.EQ(this=_c("event", "e"), expression=_s(self.policy.conversion_event))
        if self.lo_us is None:
            return inner.where(exp.and_(conversion, self.event_before(_c("ts", "e"), self.now_us)), copy=False)
        # from ``since`` on, and before it only the events of the orders recorded in range (an order that ends
        # before ``since`` cannot be a conversion of the range, whatever its events): all history is not read
        order = event_property(self.quirks, self.dialect, self.shop.source, self.policy.order_property, number=False)
        in_range = exp.select(order).from_(self.events.relation("e"), copy=False).where(exp.and_(
            conversion.copy(), self.event_before(_c("ts", "e"), self.now_us, self.lo_us)), copy=False)
        earlier = exp.and_(self.event_before(_c("ts", "e"), self.now_us),
                           exp.In(this=cast(exp.Expr, order.copy()), query=in_range.subquery(copy=False)))
        return inner.where(exp.and_(conversion, exp.or_(self.event_before(_c("ts", "e"), self.now_us, self.lo_us),
                                                        earlier)), copy=False)

    def decisions(self, *, buyers: str | None = None) -> exp.Select:
        """Planned and held-out outbox rows exposed in range: ``campaign_id, variant, step, status, customer,
        exposure_us``; with ``buyers`` (the name of the conversions relation) only the rows of customers who have a
        conversion (the members' sizes then come from :meth:`decision_sizes`)."""
        exposure = self.text_us(exp.Coalesce(this=_c("send_at", "ob"), expressions=[_c("due_at", "ob")]))
        inner = exp.select(
            _as(_c("campaign_id", "ob"), "campaign_id"), _as(_c("variant", "ob"), "variant"),
            _as(_c("step", "ob"), "step"), _as(_c("occurrence", "ob"), "occurrence"), _as(_c("status", "ob"), "status"),
            _as(_c("key_", "ob"), "message_key"), _as(_c("channel", "ob"), "channel"), _as(_c("kind", "ob"), "kind"),
            *self.segment(self.customer(_c("customer_id", "ob"))),
            _as(self.customer(_c("customer_id", "ob")), "customer"), _as(exposure, "exposure_us"),
        ).from_(_table(self.tables.outbox, "ob"), copy=False).where(exp.and_(
            exp.In(this=_c("status", "ob"), expressions=[_s("planned"), _s("holdout")]),
            *self._campaigns(_c("campaign_id", "ob")),
            *([exp.In(this=self.quirks.string_equality(cast(exp.Expression, self.customer(_c("customer_id", "ob")))),
                      query=exp.select(_c("customer", "by")).from_(_table(buyers, "by"), copy=False).subquery())]
              if buyers else [])), copy=False)
        if self.dialect == "duckdb":  # the range on the text: parsed only for the rows that remain
            return inner.where(exp.and_(*self._exposure_range()), append=True, copy=False)
        return exp.select("*").from_(_sub(inner, "dc"), copy=False).where(self._range(_c("exposure_us", "dc"), upper=self.hi_us), copy=False)

    def _exposure_range(self) -> list[exp.Expr]:
        """The outbox's exposure (planned send time, else due time) in range, as conditions on ``ob``: on DuckDB
        compared as the text it is (the library writes every instant in one fixed-width ISO form, whose order is
        the instants' order), elsewhere parsed."""
        exposure = exp.Coalesce(this=_c("send_at", "ob"), expressions=[_c("due_at", "ob")])
        return self._text_range(exposure, self.hi_us, self.lo_us)

    def _text_range(self, text: exp.Expression, upper_us: int, lower_us: int | None) -> list[exp.Expr]:
        """An instant of the library's tables (ISO text) in ``[lower, upper)``: on DuckDB compared as the text it
        is (the library writes every instant in one fixed-width form, ``YYYY-MM-DD HH:MM:SS.ffffff``, whose order
        is the instants' order), so that a million rows are not parsed; elsewhere parsed."""
        if self.dialect != "duckdb":
            us = self.text_us(text)
            return [exp.LT(this=us, expression=_n(upper_us)),
                    *([exp.GTE(this=us.copy(), expression=_n(lower_us))] if lower_us is not None else [])]

        def stamp(us: int) -> exp.Expr:
            return _s((_EPOCH + timedelta(microseconds=us)).isoformat(sep=" ", timespec="microseconds"))

        return [exp.LT(this=text, expression=stamp(upper_us)),
                *([exp.GTE(this=text.copy(), expression=stamp(lower_us))] if lower_us is not None else [])]

    def decision_sizes(self) -> exp.Select:
        """How many planned and held-out decisions were exposed in range, per campaign, variant and status:
        ``campaign_id, variant, status, n`` (the outbox's instants compared as the text they are on DuckDB, where
        the library writes every one in one fixed-width ISO form, so that a million rows are not parsed)."""
        in_range = self._exposure_range()
        cell = [_as(self.quirks.string_equality(_c(n, "ob")), n) for n in ("campaign_id", "variant")]
        return exp.select(*cell, _as(_c("status", "ob"), "status"), _as(exp.Count(this=exp.Star()), "n")).from_(
            _table(self.tables.outbox, "ob"), copy=False).where(exp.and_(
                exp.In(this=_c("status", "ob"), expressions=[_s("planned"), _s("holdout")]),
                *self._campaigns(_c("campaign_id", "ob")), *in_range), copy=False).group_by(
            *[self.quirks.string_equality(_c(n, "ob")) for n in ("campaign_id", "variant")], _c("status", "ob"), copy=False)

    def failed_decisions(self) -> exp.Select:
        """The ledger's failed rows with their planned decision (``shopcrm_f``), in no range yet: the join comes first
        so that the decisions' instants are read for these few rows only."""
        carried = {n: exp.Coalesce(this=exp.Nullif(this=_c(n, "l"), expression=_s("")), expressions=[_c(n, "ob")])
                   for n in ("channel", "kind")}
        return exp.select(
            *[_as(_c(n, "ob"), n) for n in ("campaign_id", "variant", "step")],
            *[_as(value, n) for n, value in carried.items()],
            *self.segment(self.customer(_c("customer_id", "ob"))),
            _as(exp.Coalesce(this=_c("send_at", "ob"), expressions=[_c("due_at", "ob")]), "exposure"),
        ).from_(_table(self.tables.sends, "l"), copy=False).join(
            _table(self.tables.outbox, "ob"), on=exp.EQ(this=_c("key_", "ob"), expression=_c("key_", "l")),
            join_type="inner", copy=False,
        ).where(exp.and_(exp.EQ(this=_c("state", "l"), expression=_s("failed")),
                         exp.EQ(this=_c("status", "ob"), expression=_s("planned")),
                         *self._campaigns(_c("campaign_id", "ob"))), copy=False)

    def failed(self, dims: Sequence[str]) -> exp.Select:
        """Failed messages of planned decisions in range, per cell, from ``shopcrm_f``."""
        cell: list[exp.Expr] = [_c("campaign_id", "f"), *[self.quirks.string_equality(_c(d, "f")) for d in dims]]
        return (exp.select(*cell, exp.Count(this=exp.Star())).from_(_table("shopcrm_f", "f"), copy=False)
                .where(self._range(self.text_us(_c("exposure", "f")), upper=self.hi_us), copy=False)
                .group_by(*[c.copy() for c in cell], copy=False))

    def outbox_census(self) -> exp.Select:
        """One pass over the chosen campaigns' planned and held-out decisions (DuckDB): per campaign, variant, step,
        occurrence and status, how many were exposed in range (``n``) and how many of the planned ones in range
        failed in the ledger (``failed``).  It answers :meth:`repeats_possible` (every group counts, in range or
        not), :meth:`decision_sizes` and :meth:`failed` (for cells no finer than variant and step) at once."""
        in_range = exp.and_(*self._exposure_range())
        failed_keys = exp.select(_c("key_", "fk")).from_(_table(self.tables.sends, "fk"), copy=False).where(
            exp.EQ(this=_c("state", "fk"), expression=_s("failed")), copy=False)
        failed = exp.and_(in_range.copy(), exp.EQ(this=_c("status", "ob"), expression=_s("planned")),
                          exp.In(this=_c("key_", "ob"), query=failed_keys.subquery()))
        group = [_c(n, "ob") for n in ("campaign_id", "variant", "step", "occurrence", "status")]
        return exp.select(
            *group, _as(exp.Sum(this=exp.Case().when(in_range, _n(1)).else_(_n(0))), "n"),
            _as(exp.Sum(this=exp.Case().when(failed, _n(1)).else_(_n(0))), "failed"),
        ).from_(_table(self.tables.outbox, "ob"), copy=False).where(exp.and_(
            exp.In(this=_c("status", "ob"), expressions=[_s("planned"), _s("holdout")]),
            *self._campaigns(_c("campaign_id", "ob"))), copy=False).group_by(*[g.copy() for g in group], copy=False)

    def repeats_possible(self) -> exp.Select:
        """How many of the chosen campaigns have decisions of more than one occurrence or step in the outbox (at any
        time, so a few more than needed): only in those can a customer have two decisions, or two sends (the ledger's
        rows are the outbox's planned decisions, key for key; a decision's key is its campaign, occurrence, step and
        customer)."""
        # the distinct (campaign, occurrence, step) first: a grouping of a few keys, cheaper than MIN/MAX of text
        parts = [self.quirks.string_equality(_c(n, "r")) for n in ("campaign_id", "occurrence", "step")]
        kinds = (exp.select(*[_as(p, n) for p, n in zip(parts, ("campaign_id", "occurrence", "step"), strict=True)])
                 .from_(_table(self.tables.outbox, "r"), copy=False)
                 .where(exp.and_(exp.In(this=_c("status", "r"), expressions=[_s("planned"), _s("holdout")]),
                                 *self._campaigns(_c("campaign_id", "r"))), copy=False)
                 .group_by(*[p.copy() for p in parts], copy=False))
        return exp.select(exp.Count(this=exp.Star())).from_(_sub(
            exp.select(_c("campaign_id", "k")).from_(_sub(kinds, "k"), copy=False).group_by(_c("campaign_id", "k"), copy=False)
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=_n(1)), copy=False), "rp"), copy=False)


def _sizes(census: Sequence[tuple[Any, ...]]) -> exp.Select:
    """The decisions' sizes (``campaign_id, variant, status, n``: exposed in range) from the outbox's census, as a
    relation of literal rows."""
    sizes: dict[tuple[str, str, str], int] = {}
    for campaign, variant, _step, _occurrence, status, n, _failed in census:
        if n:
            cell = (str(campaign), str(variant), str(status))
            sizes[cell] = sizes.get(cell, 0) + int(n)
    columns = ("campaign_id", "variant", "status", "n")
    if not sizes:
        return exp.select(*[_as(_s(""), c) for c in columns[:3]], _as(_n(0), "n")).where(exp.false(), copy=False)
    rows = [exp.Tuple(expressions=[_s(c), _s(v), _s(st), _n(n)]) for (c, v, st), n in sorted(sizes.items())]
    return exp.select(*[_c(c, "zs") for c in columns]).from_(
        exp.Values(expressions=rows, alias=exp.TableAlias(this=exp.to_identifier("zs"),
                                                           columns=[exp.to_identifier(c) for c in columns])), copy=False)


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


class _Runner:
    """Runs the report's queries: with their common table expressions attached, or (DuckDB) with each created
    once as a temporary table of this call (names suffixed, dropped afterwards), which is several times faster
    when every query reads the same sends and conversions."""

    def __init__(self, source: Any, ctes: Sequence[tuple[str, exp.Select]], lazy: Sequence[str] = (),
                 after: Mapping[str, Callable[[_Runner], None]] | None = None) -> None:
        self.source, self.ctes, self.lazy = source, list(ctes), set(lazy)
        #: a check run once the relation of that name is staged (staged runs only), which may raise to abandon the run
        self.after = dict(after or {})
        self.names = {name for name, _ in ctes}
        self.staged = source.dialect == "duckdb" and hasattr(source, "con")
        self.suffix = uuid.uuid4().hex[:12]
        self.created: list[str] = []

    def _rename(self, query: exp.Expr) -> exp.Expr:
        """``query`` reading this call's tables by their suffixed names: renamed in place (every query of a report
        is built for one use, and a name renamed already is no longer one of :attr:`names`)."""
        for node in list(query.find_all(exp.Table)):
            if not node.args.get("db") and node.name in self.names:
                node.set("this", exp.to_identifier(f"{node.name}_{self.suffix}", quoted=True))
        return query

    def __enter__(self) -> _Runner:
        if self.staged:

            try:
                for name, _ in self.ctes:
                    if name not in self.lazy:
                        self.stage(name)
                        if name in self.after:
                            self.after[name](self)
            except BaseException:
                self.__exit__()
                raise
        return self

    def stage(self, name: str) -> None:
        """Create the temporary table of the relation ``name`` (staged runs only; one left lazy until needed)."""
        from shopcrm.compiler import render

        if not self.staged:
            return
        query = dict(self.ctes)[name]
        table = f'"{name}_{self.suffix}"'
        sql = render(cast(exp.Expression, self._rename(query)), "duckdb", copy=False)
        self.source.con.execute(f"CREATE TEMP TABLE {table} AS {sql}")
        self.created.append(table)

    def __exit__(self, *_: object) -> None:
        for table in reversed(self.created):
            self.source.con.execute(f"DROP TABLE IF EXISTS {table}")

    def fetch(self, query: exp.Select) -> list[tuple[Any, ...]]:
        if self.staged:
            from shopcrm.compiler import render

            return self.source.con.execute(render(cast(exp.Expression, self._rename(query)), "duckdb", copy=False)).fetchall()  # type: ignore[no-any-return]
        return list(self.source.fetch(_with(query, self.ctes)))


def sql_figures(
    shop: ShopView, ids: Sequence[str] | None, lo: datetime | None, hi: datetime, now: datetime, dims: tuple[str, ...],
    policy: AttributionPolicy, fatigue: timedelta, segments: SegmentLabels | None = None,
) -> Figures:
    """The report's figures of ``shop`` computed by its engine (see the module's docstring)."""
    source = shop.source
    store = source.campaign_store()
    store.sends(keys=[])  # the library's tables exist (created on first use)
    if source.dialect == "sqlite":
        register_sqlite_functions(source)
    staged = source.dialect == "duckdb" and hasattr(source, "con")
    # DuckDB: compare customers as the library's JSON text when every converting customer's id is plain text (and
    # both tables keep ids as text, so that the library wrote each as a JSON string): tried first, and checked on the
    # staged conversions (see _Relations.plain_conversions); when an id is not plain, computed again without
    from shopcrm.schema import ColumnType

    schema = source.schema()
    text_ids = all(t.type_of("customer_id") is ColumnType.STRING for t in (schema.customers, schema.events))
    if staged and text_ids and segments is None:
        try:
            return _figures(shop, ids, lo, hi, now, dims, policy, fatigue, segments, json_keys=True)
        except _NotPlain:
            pass
    return _figures(shop, ids, lo, hi, now, dims, policy, fatigue, segments, json_keys=False)


class _NotPlain(Exception):
    """A converting customer's id is not plain text: the report is computed again without ``json_keys``."""


def _figures(
    shop: ShopView, ids: Sequence[str] | None, lo: datetime | None, hi: datetime, now: datetime, dims: tuple[str, ...],
    policy: AttributionPolicy, fatigue: timedelta, segments: SegmentLabels | None, *, json_keys: bool,
) -> Figures:
    from shopcrm._figures import Figures

    source = shop.source
    r = _Relations(shop, ids, lo, hi, now, policy, segments)
    r.json_keys = json_keys
    quirks = r.quirks
    # a report of chosen campaigns or of a range: the clicks of every other send before now compete for the last
    # click of its conversions (contract section 3), so those sends come in as rivals
    contested = r.contested
    if contested:
        [(no_channel, no_sent_at, any_no_channel, any_no_sent_at)] = source.fetch(r.ledger_gaps(every=True))
    else:
        [(no_channel, no_sent_at)] = source.fetch(r.ledger_gaps())
        any_no_channel, any_no_sent_at = no_channel, no_sent_at
    outbox = bool({"variant", "step"} & set(dims)) or bool(no_channel)
    staged = source.dialect == "duckdb" and hasattr(source, "con")
    # DuckDB: the outbox read once for the repeat check, the decisions' sizes and (cells no finer than variant and
    # step) the failed messages
    census = source.fetch(r.outbox_census()) if staged else None
    # every chosen campaign's decisions of one occurrence and step (a broadcast, a one-step scenario): no customer has
    # two decisions or two sends in one campaign, so recipients are sends and members need no ranking by exposure
    if census is not None:
        kinds: dict[str, set[tuple[str, str]]] = {}
        for campaign, _variant, step, occurrence, *_ in census:
            kinds.setdefault(campaign, set()).add((occurrence, step))
        single = all(len(k) == 1 for k in kinds.values())
    else:
        single = not source.fetch(r.repeats_possible())[0][0]
    census_failed = census is not None and segments is None and set(dims) <= {"variant", "step"}
    # no customer repeated: the members table holds only those who bought, the sizes counted from the outbox (and
    # the decisions' counts taken from the sizes: right when the cells are no finer than campaign and variant)
    outbox_counts = not set(dims) & {"channel", "kind"}
    buyers_only = single and staged and (not outbox_counts or set(dims) <= {"variant"})
    # DuckDB: every send counted straight from the ledger, and only the sends that can meet a click, a conversion or
    # an opt-out staged for the joins (a few hundred thousand rows of a million-message report, not all)
    narrow = staged and segments is None
    every_send = r.sends(outbox=outbox, events=bool(no_sent_at))
    queries = attribution_queries(
        send_counts="shopcrm_n" if narrow else None,
        sends=_sub(r.sends(outbox=outbox, events=bool(no_sent_at), joinable=narrow), "s"),
        clicks=_ref("shopcrm_k", "k0") if narrow or contested else _sub(r.clicks(), "k0"),
        events=_sub(r.conversion_events(), "e"), since_us=r.lo_us,
        rivals=_sub(r.sends(outbox=bool(any_no_channel), events=bool(any_no_sent_at), rivals=True), "r0")
        if contested else None,
        members=_sub(r.decisions(buyers="shopcrm_cv" if buyers_only else None), "m0"),
        member_sizes=(_sizes(census) if census is not None else r.decision_sizes()) if buyers_only else None,
        dialect=quirks, policy=policy, by=dims, now_us=r.now_us,
        send_extra=() if narrow else ("state", "chain_index"), one_send_per_customer=single,
        member_extra=(*(("step",) if "step" in dims else ()), *(("segment",) if segments is not None else ())))
    ctes = [*queries.ctes, ("shopcrm_f", r.failed_decisions())]
    cells = [quirks.string_equality(_c(n, "sc")) for n in ("campaign_id", *dims)]
    delivered_n = exp.Sum(this=exp.Case().when(exp.EQ(this=_c("state", "sc"), expression=_s("delivered")), _n(1)).else_(_n(0)))
    fallen_n = exp.Sum(this=exp.Case().when(exp.GT(this=_c("chain_index", "sc"), expression=_n(0)), _n(1)).else_(_n(0)))
    if narrow:
        recipients = exp.Count(this=exp.Star()) if single else exp.Count(this=exp.Distinct(
            expressions=[quirks.string_equality(_c("customer", "sc"))]))
        counts = exp.select(
            *[_as(c, n) for c, n in zip(cells, ("campaign_id", *dims), strict=True)],
            _as(exp.Count(this=exp.Star()), "sends"), _as(recipients, "recipients"), _as(exp.Sum(this=_c("cost", "sc")), "cost"),
            _as(delivered_n, "delivered"), _as(fallen_n, "fallen_back"),
        ).from_(_sub(every_send, "sc"), copy=False).group_by(*[c.copy() for c in cells], copy=False)
        # after the conversions (checked first); every campaign's clicks when they compete (see rivals above)
        ctes[1:1] = [("shopcrm_n", counts), ("shopcrm_k", r.clicks(every=contested))]
    elif contested:
        ctes.insert(1, ("shopcrm_k", r.clicks(every=True)))
    # the funnel's counts per cell: decisions (planned, held out) and, of the sends, delivered, fallen back and
    # recipients with an opt-out within the fatigue window after one of their sends
    group = [_c(n, "d") for n in ("campaign_id", *dims)] + [_c("status", "d")]
    decided = exp.select(*group, exp.Count(this=exp.Star())).from_(_table("shopcrm_m", "d"), copy=False).group_by(
        *[g.copy() for g in group], copy=False)
    opt_outs = exp.select(
        _as(quirks.string_equality(cast(exp.Expression, r.customer(_c("customer_id", "oo")))), "customer"),
        _as(r.text_us(_c("opted_out_at", "oo")), "t_us"),
    ).from_(_table(r.tables.opt_outs, "oo"), copy=False)
    tired = exp.select(_c("message_key", "sa")).distinct(copy=False).from_(_table("shopcrm_s", "sa"), copy=False).join(
        _sub(opt_outs, "op"), on=exp.and_(
            exp.EQ(this=_c("customer", "op"), expression=_c("customer", "sa")),
            exp.LTE(this=_c("sent_us", "sa"), expression=_c("t_us", "op")),
            exp.LT(this=_c("t_us", "op"), expression=exp.Add(this=_c("sent_us", "sa"), expression=_n(_us(_EPOCH + fatigue)))),
            exp.LT(this=_c("t_us", "op"), expression=_n(r.now_us)),
        ), join_type="inner", copy=False)
    cell_cols = [_c(n, "sd") for n in ("campaign_id", *dims)]
    # (narrow: delivered and fallen back counted with every send in shopcrm_n; the opt-outs from the staged sends,
    # which hold every send of a customer who opted out)
    sent_counts = exp.select(*[_c(n, "nn") for n in ("campaign_id", *dims, "delivered", "fallen_back")]).from_(
        _table("shopcrm_n", "nn"), copy=False)
    tired_counts = exp.select(
        *cell_cols, exp.Count(this=exp.Distinct(expressions=[_c("customer", "sd")]))).from_(_table("shopcrm_s", "sd"), copy=False).join(
        _sub(tired.copy(), "td"), on=exp.EQ(this=_c("message_key", "td"), expression=_c("message_key", "sd")),
        join_type="inner", copy=False).group_by(*[c.copy() for c in cell_cols], copy=False)

    def states() -> exp.Select:
        """Without ``shopcrm_n`` (every send staged): delivered, fallen back and tired recipients per cell."""
        delivered = exp.Case().when(exp.EQ(this=_c("state", "sd"), expression=_s("delivered")), _n(1)).else_(_n(0))
        fallen = exp.Case().when(exp.GT(this=_c("chain_index", "sd"), expression=_n(0)), _n(1)).else_(_n(0))
        tired_customer = exp.Case().when(
            exp.Not(this=exp.Is(this=_c("message_key", "td"), expression=exp.Null())), _c("customer", "sd"))
        return exp.select(
            *[c.copy() for c in cell_cols], exp.Sum(this=delivered), exp.Sum(this=fallen),
            exp.Count(this=exp.Distinct(expressions=[tired_customer])),
        ).from_(_table("shopcrm_s", "sd"), copy=False).join(
            _sub(tired.copy(), "td"), on=exp.EQ(this=_c("message_key", "td"), expression=_c("message_key", "sd")),
            join_type="left", copy=False,
        ).group_by(*[c.copy() for c in cell_cols], copy=False)

    funnel: dict[tuple[str, ...], dict[str, int]] = {}

    def add(cell: Sequence[Any], column: str, value: Any) -> None:
        key = tuple(str(_text(v)) for v in cell)
        funnel.setdefault(key, {})[column] = funnel.get(key, {}).get(column, 0) + int(value or 0)

    def plain(run: _Runner) -> None:
        if r.json_keys and run.fetch(r.plain_conversions("shopcrm_cv"))[0][0]:
            raise _NotPlain

    lazy = ("shopcrm_x", *(("shopcrm_f",) if census_failed else ()))
    with _Runner(source, ctes, lazy=lazy, after={"shopcrm_cv": plain}) as run:
        summary_rows = run.fetch(queries.bare["summary"])
        daily_rows = run.fetch(queries.bare["daily"])
        # ranking members by exposure is the costliest step of a broadcast's report; skip it when nobody is repeated
        # (certainly so when every campaign has decisions of one occurrence and step; else counted)
        unique = single or (run.staged and not run.fetch(queries.bare["repeated_members"])[0][0])
        if unique:
            member_rows = run.fetch(queries.bare["members_unique"])
        else:
            run.stage("shopcrm_x")
            member_rows = run.fetch(queries.bare["members"])
        if outbox_counts and unique and set(dims) <= {"variant"}:
            # the members' sizes are the decisions' counts then (both count shopcrm_m): no query of their own
            for c, v, st, n, *_ in member_rows:
                add((c, v) if dims else (c,), "planned" if st == "planned" else "held_out", n)
        elif outbox_counts:
            for got in run.fetch(decided):
                add(got[:-2], "planned" if got[-2] == "planned" else "held_out", got[-1])
        if narrow:
            for got in run.fetch(sent_counts):
                add(got[:1 + len(dims)], "delivered", got[-2])
                add(got[:1 + len(dims)], "fallen_back", got[-1])
            for got in run.fetch(tired_counts):
                add(got[:-1], "opt_outs_after", got[-1])
        else:
            for got in run.fetch(states()):
                delivered, fallen, tired_n = got[1 + len(dims):]
                add(got[:1 + len(dims)], "delivered", delivered)
                add(got[:1 + len(dims)], "fallen_back", fallen)
                add(got[:1 + len(dims)], "opt_outs_after", tired_n)
        if census_failed:
            positions = [("campaign_id", "variant", "step").index(d) for d in ("campaign_id", *dims)]
            for got in census or ():
                if got[-1]:
                    add([got[i] for i in positions], "failed", got[-1])
        else:
            for got in run.fetch(r.failed(dims)):
                add(got[:-1], "failed", got[-1])

    summaries = []
    for found in summary_rows:
        cell = tuple(_text(v) for v in found[:1 + len(dims)])
        values = dict(zip(SUMMARY_COLUMNS, found[1 + len(dims):], strict=True))
        money = {k: float(values.pop(k) or 0.0) for k in ("attributed_revenue", "influenced_revenue", "cost")}
        tallies = {k: int(v or 0) for k, v in values.items()}
        summaries.append(Summary(campaign_id=str(cell[0]), cell=tuple(zip(dims, map(str, cell[1:]), strict=True)),
                                 attributed_revenue=money["attributed_revenue"],
                                 influenced_revenue=money["influenced_revenue"], cost=money["cost"], **tallies))
    summaries.sort(key=lambda s: (s.campaign_id, tuple(v for _, v in s.cell)))
    daily = tuple((str(_text(c)), (_EPOCH + timedelta(days=int(day))).date().isoformat(), int(n), float(rev or 0.0))
                  for c, day, n, rev in daily_rows)
    outcomes = {(str(_text(c)), str(_text(v)), str(st)): Outcome(int(n), int(conv or 0), float(rev or 0.0),
                                                                   max(0.0, float(sq or 0.0)))
                for c, v, st, n, conv, rev, sq in member_rows}
    return Figures(summaries=tuple(summaries), funnel=funnel, outcomes=outcomes, daily=daily, method="sql")
