"""The lifecycle classifier as one SQL query for the whole shop (every engine of the compiler).

It computes exactly what :func:`shopcrm.lifecycle.classify_shop` computes; the
test suite compares them on random shops.  Time is compared as timestamps or as
integer microseconds since 1970, medians are kept doubled (``median2``) so they
stay integers, and RFM scores come from ``RANK()`` (ties share a rank).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
from sqlglot import exp

from shopcrm.compiler._dialects import Dialect, dialect_for
from shopcrm.lifecycle._classify import LifecycleRow
from shopcrm.lifecycle._policy import LifecyclePolicy
from shopcrm.schema import Schema
from shopcrm.timeline import to_utc_naive

__all__ = [
    "LIFECYCLE_COLUMNS", "RFM_COLUMNS", "arrow_from_sql", "compile_lifecycle", "compile_rfm", "rfm_arrow_from_sql",
    "rows_from_sql", "rows_to_arrow",
]

#: the columns of the query, in order
LIFECYCLE_COLUMNS: tuple[str, ...] = (
    "customer_id", "stage", "cart_abandoned", "signup_dropoff", "cooling_off", "lapsed", "orders", "last_seen",
    "recency_us", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment", "cycle_status", "gap2_us",
)
#: the columns of :func:`compile_rfm`, in order
RFM_COLUMNS: tuple[str, ...] = (
    "customer_id", "recency_us", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment",
)
_EPOCH = datetime(1970, 1, 1)
_DAY_US = 86_400_000_000.0  # exact in binary, so divisions round like the pure classifier's


def _lit(value: str) -> exp.Expression:
    return exp.Literal.string(value)


def _num(value: int | float) -> exp.Expression:
    return exp.Literal.number(value)


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _and(parts: Sequence[exp.Expression]) -> exp.Expression:
    out = parts[0]
    for part in parts[1:]:
        out = exp.And(this=out, expression=part)
    return out


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _no_amount() -> exp.Expression:
    """The amount of an order when events have no amount column: a NULL of a numeric type, since
    PostgreSQL cannot ``sum()`` an untyped NULL (``function sum(text) does not exist``)."""
    return exp.cast(exp.Null(), exp.DataType.build("BIGINT"))


def _case(*whens: tuple[exp.Expression, exp.Expression], default: exp.Expression | None = None) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=c, true=v) for c, v in whens], default=default)


class _Lifecycle:
    def __init__(self, schema: Schema, now: datetime, d: Dialect, policy: LifecyclePolicy) -> None:
        self.schema, self.now, self.d, self.p = schema, to_utc_naive(now), d, policy

    def table(self, which: str, alias: str) -> exp.Expression:
        return (self.schema.customers if which == "customers" else self.schema.events).relation(alias)

    def ts(self, column: exp.Expression) -> exp.Expression:
        return self.d.timestamp_column(column)

    def at(self, when: datetime) -> exp.Expression:
        return self.d.timestamp_literal(when)

    def aged(self, column: exp.Expression, low: timedelta, high: timedelta | None) -> exp.Expression:
        """``low <= now - column < high`` and ``column < now``, as bounds on the column."""
        parts: list[exp.Expression] = [
            exp.LT(this=column, expression=self.at(self.now)),
            exp.LTE(this=column, expression=self.at(self.now - low)),
        ]
        if high is not None:
            parts.append(exp.GT(this=column, expression=self.at(self.now - high)))
        return exp.Paren(this=_and(parts))

    def us(self, column: exp.Expression) -> exp.Expression:
        return self.d.epoch_micros(column)

    def string_eq(self, column: exp.Expression, value: str) -> exp.Expression:
        return exp.EQ(this=self.d.string_equality(column), expression=self.d.string_equality(_lit(value)))

    def median2(self, source: str, by_customer: bool) -> exp.Select:
        """Twice the median gap (exact integers): the middle row, doubled, or the two middle rows summed."""
        partition = [_col("customer_id")] if by_customer else []
        ranked = exp.select(
            *([_col("customer_id")] if by_customer else []),
            _col("gap"),
            exp.alias_(exp.Window(this=exp.RowNumber(), partition_by=partition, order=exp.Order(expressions=[exp.Ordered(this=_col("gap"))])), "rn"),
            exp.alias_(exp.Window(this=exp.Count(this=exp.Star()), partition_by=partition), "cnt"),
        ).from_(source)
        rn2 = exp.Mul(this=_num(2), expression=_col("rn"))
        middle = exp.Or(
            this=exp.EQ(this=rn2, expression=_col("cnt")),
            expression=exp.Or(
                this=exp.EQ(this=rn2, expression=exp.Add(this=_col("cnt"), expression=_num(1))),
                expression=exp.EQ(this=rn2, expression=exp.Add(this=_col("cnt"), expression=_num(2))),
            ),
        )
        doubled = _case(
            (exp.EQ(this=exp.Count(this=exp.Star()), expression=_num(1)), exp.Mul(this=_num(2), expression=exp.Sum(this=_col("gap")))),
            default=exp.Sum(this=_col("gap")),
        )
        query = exp.select(*([_col("customer_id")] if by_customer else []), exp.alias_(doubled, "median2")).from_(
            ranked.subquery("ranked")
        ).where(exp.Paren(this=middle))
        return query.group_by(_col("customer_id")) if by_customer else query

    def score_ctes(self, facts: str) -> list[tuple[str, exp.Expression]]:
        """RFM scores: ``1 + floor(5 * worse / n)`` from a histogram of each measure over the scored customers.

        One row per distinct value with a running count of the values below it, joined back by value:
        ties share a value, hence a score, and wide customer rows are never sorted.  ``facts`` has one
        row per customer id with ``last_lb`` (last order in the lookback), ``frequency`` and ``monetary``;
        only ids in the customers table are scored.
        """
        scored_rows = exp.select(
            exp.alias_(_col("customer_id", "c"), "customer_id"),
            exp.alias_(self.us(_col("last_lb", "x")), "r"),
            exp.alias_(exp.Coalesce(this=_col("frequency", "x"), expressions=[_num(0)]), "f"),
            exp.alias_(exp.Coalesce(this=_col("monetary", "x"), expressions=[_num(0)]), "m"),
        ).from_(self.table("customers", "c")).join(
            exp.to_table(facts).as_("x"), on=exp.EQ(this=_col("customer_id", "c"), expression=_col("customer_id", "x"))
        ).where(exp.Not(this=exp.Is(this=_col("last_lb", "x"), expression=exp.Null())))
        ctes: list[tuple[str, exp.Expression]] = [
            ("shopcrm_scored", scored_rows),
            ("shopcrm_n_scored", exp.select(exp.alias_(exp.Count(this=exp.Star()), "n")).from_("shopcrm_scored")),
        ]
        for measure in ("r", "f", "m"):
            below = exp.Paren(this=exp.Sub(
                this=exp.Window(this=exp.Sum(this=exp.Count(this=exp.Star())), order=exp.Order(expressions=[exp.Ordered(this=_col(measure))])),
                expression=exp.Count(this=exp.Star()),
            ))
            value = exp.Add(this=_num(1), expression=exp.Floor(this=exp.Div(
                this=exp.Mul(this=_num(5.0), expression=below), expression=exp.Max(this=_col("n", "n")),
            )))
            ctes.append((
                f"shopcrm_{measure}_scores",
                exp.select(exp.alias_(_col(measure), "v"), exp.alias_(exp.cast(value, exp.DataType.build("BIGINT")), "score"))
                .from_("shopcrm_scored")
                .join(exp.to_table("shopcrm_n_scored").as_("n"), join_type="cross")
                .group_by(_col(measure)),
            ))
        return ctes

    def join_scores(self, query: exp.Select, customer_id: exp.Expression | None = None) -> exp.Select:
        """Join the three scores (``rs``, ``fs``, ``ms``) of the scored row ``sc`` to ``query``.

        With ``customer_id``, ``sc`` is first left-joined on it (unscored customers keep NULL scores);
        without, ``query`` reads ``sc`` itself and every row has its scores.
        """
        join_type = "inner"
        if customer_id is not None:
            join_type = "left"
            query = query.join(
                exp.to_table("shopcrm_scored").as_("sc"), on=exp.EQ(this=customer_id.copy(), expression=_col("customer_id", "sc")), join_type="left",
                copy=False,
            )
        for measure in ("r", "f", "m"):
            alias = f"{measure}s"
            query = query.join(
                exp.to_table(f"shopcrm_{measure}_scores").as_(alias),
                on=exp.EQ(this=_col(measure, "sc"), expression=_col("v", alias)),
                join_type=join_type,
                copy=False,
            )
        return query

    def segment(self) -> exp.Expression:
        """The named RFM segment of ``r_score`` and ``f_score`` (NULL when unscored)."""
        # nested on r then f: at most ten tests a row instead of up to fifty for the flat (r, f) list
        by_r: dict[int, list[tuple[int, str]]] = {}
        for (r, f), name in sorted(self.p.rfm_lookup.items()):
            by_r.setdefault(r, []).append((f, name))
        return exp.Case(this=_col("r_score"), ifs=[
            exp.If(this=_num(r), true=exp.Case(this=_col("f_score"), ifs=[exp.If(this=_num(f), true=_lit(name)) for f, name in cells]))
            for r, cells in by_r.items()
        ])

    def orders_by_id(self, events: str, first: str) -> tuple[exp.Select, exp.Select]:
        """The CTE ``first`` (each order's id and first instant) and the query of one row per order
        (``customer_id, ts, amount``) over the CTE ``events`` (``customer_id, ts, amount, oid``, order events):
        an order is placed at its first event and has that event's amount, at one instant the largest (MAX skips
        a missing one), as a conversion has in measurement.md; an event without an id is no order."""
        firsts = exp.select(_col("customer_id"), _col("oid"), exp.alias_(exp.Min(this=_col("ts")), "ts")).from_(events).where(
            exp.Not(this=exp.Is(this=_col("oid"), expression=exp.Null()))).group_by(_col("customer_id"), _col("oid"))
        same = _and([exp.EQ(this=_col(c, "o"), expression=_col(c, "f")) for c in ("customer_id", "oid", "ts")])
        orders = exp.select(
            exp.alias_(_col("customer_id", "f"), "customer_id"), exp.alias_(_col("ts", "f"), "ts"),
            exp.alias_(exp.Max(this=_col("amount", "o")), "amount"),
        ).from_(exp.to_table(first).as_("f")).join(exp.to_table(events).as_("o"), on=same).group_by(
            _col("customer_id", "f"), _col("oid", "f"), _col("ts", "f"))
        return firsts, orders

    def build_rfm(self) -> exp.Select:
        """Recency, frequency, monetary, scores and segment of every customer with an order in the lookback."""
        p = self.p
        events = self.schema.events
        has_amount = events.has(p.amount_property)
        has_id = self._has_order_id()
        e_ts = self.ts(_col("ts", "e"))
        orders_before_now = [
            exp.Not(this=exp.Is(this=_col("customer_id", "e"), expression=exp.Null())),
            self.string_eq(_col("event", "e"), p.order_event),
            exp.LT(this=e_ts, expression=self.at(self.now)),
        ]
        in_lookback = exp.GT(this=e_ts.copy(), expression=self.at(self.now - p.rfm_lookback))
        amount = exp.Coalesce(this=exp.Sum(this=_col(p.amount_property, "e") if has_amount else _no_amount()), expressions=[_num(0)])
        extra: list[tuple[str, exp.Expression]] = []
        if has_id and p.order_id_property:
            # orders are the distinct ids, each placed at its first event (which may lie before the lookback) with
            # that event's amount (orders_by_id). R, F and M: the orders placed inside the lookback
            o = exp.select(
                exp.alias_(_col("customer_id", "e"), "customer_id"), exp.alias_(e_ts.copy(), "ts"),
                exp.alias_(_col(p.amount_property, "e") if has_amount else _no_amount(), "amount"),
                exp.alias_(_col(p.order_id_property, "e"), "oid"),
            ).from_(self.table("events", "e")).where(_and(orders_before_now))
            firsts, placed = self.orders_by_id("shopcrm_rfm_o", "shopcrm_rfm_first")
            facts = exp.select(
                _col("customer_id"), exp.alias_(exp.Max(this=_col("ts")), "last_lb"), exp.alias_(exp.Count(this=exp.Star()), "frequency"),
                exp.alias_(exp.Coalesce(this=exp.Sum(this=_col("amount")), expressions=[_num(0)]), "monetary"),
            ).from_("shopcrm_rfm_orders").where(exp.GT(this=_col("ts"), expression=self.at(self.now - p.rfm_lookback))).group_by(
                _col("customer_id"))
            extra = [("shopcrm_rfm_o", o), ("shopcrm_rfm_first", firsts), ("shopcrm_rfm_orders", placed)]
        else:
            facts = exp.select(
                exp.alias_(_col("customer_id", "e"), "customer_id"),
                exp.alias_(exp.Max(this=e_ts), "last_lb"),
                exp.alias_(exp.Count(this=exp.Star()), "frequency"),
                exp.alias_(amount, "monetary"),
            ).from_(self.table("events", "e")).where(_and([*orders_before_now, in_lookback])).group_by(_col("customer_id", "e"))
        # Scores without joining anything back by value. A score never falls as its measure grows, so each
        # score is 1 + the number of four cut points the measure reaches (one row of cuts per measure,
        # cross-joined), which spares three hash joins of every scored row:
        # - F and M (few distinct values): cut k is the smallest value of the histogram scoring k or more;
        # - R (the last order's instant, nearly unique): no histogram; 1 + floor(5 * below / n) >= k holds
        #   when at least q = ceil((k - 1) * n / 5) values lie below, i.e. when R exceeds the q-th smallest
        #   R, picked by ROW_NUMBER (5 * rn >= (k - 1) * n > 5 * rn - 5 is rn = q, in integers).
        cuts: list[tuple[str, exp.Expression]] = []
        scores: list[Any] = []  # aliased score columns
        rn, n = _col("rn"), _col("n", "n")
        for measure in ("r", "f", "m"):
            name = f"shopcrm_{measure}_cuts"
            if measure == "r":
                ranked = exp.select(
                    _col("r"), exp.alias_(exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=_col("r"))])), "rn")
                ).from_("shopcrm_scored")
                five_rn = exp.Mul(this=_num(5), expression=rn)
                cut_columns = [
                    exp.alias_(exp.Max(this=_case((_and([
                        exp.GTE(this=five_rn, expression=exp.Mul(this=_num(k - 1), expression=n)),
                        exp.LT(this=five_rn.copy(), expression=exp.Add(this=exp.Mul(this=_num(k - 1), expression=n.copy()), expression=_num(5))),
                    ]), _col("r")))), f"c{k}")
                    for k in range(2, 6)
                ]
                cuts.append((name, exp.select(*cut_columns).from_(ranked.subquery("ranked")).join(
                    exp.to_table("shopcrm_n_scored").as_("n"), join_type="cross")))
            else:
                cuts.append((name, exp.select(*[
                    exp.alias_(exp.Min(this=_case((exp.GTE(this=_col("score"), expression=_num(k)), _col("v")))), f"c{k}")
                    for k in range(2, 6)
                ]).from_(f"shopcrm_{measure}_scores")))
            steps: exp.Expression = _num(1)
            for k in range(2, 6):
                cut = _col(f"c{k}", f"{measure}c")
                reached = exp.GT(this=_col(measure, "sc"), expression=cut) if measure == "r" else exp.GTE(this=_col(measure, "sc"), expression=cut)
                steps = exp.Add(this=steps, expression=_case((reached, _num(1)), default=_num(0)))
            scores.append(exp.alias_(exp.cast(steps, exp.DataType.build("BIGINT")), f"{measure}_score"))
        scored = exp.select(
            _col("customer_id", "sc"),
            exp.alias_(exp.Sub(this=_num(_micros(self.now - _EPOCH)), expression=_col("r", "sc")), "recency_us"),
            exp.alias_(_col("f", "sc"), "frequency"),
            exp.alias_(_col("m", "sc"), "monetary"),
            *scores,
        ).from_(exp.to_table("shopcrm_scored").as_("sc"))
        for measure in ("r", "f", "m"):
            scored = scored.join(exp.to_table(f"shopcrm_{measure}_cuts").as_(f"{measure}c"), join_type="cross")
        final = exp.select(
            *[_col(c) for c in RFM_COLUMNS[:-1]], exp.alias_(self.segment(), "rfm_segment")
        ).from_(scored.subquery("shopcrm_rfm"))
        histograms = [c for c in self.score_ctes("shopcrm_rfm_facts") if c[0] != "shopcrm_r_scores"]
        for name, cte in [*extra, ("shopcrm_rfm_facts", facts), *histograms, *cuts]:
            final = final.with_(name, as_=cte, copy=False)
        return final

    def _has_order_id(self) -> bool:
        p, events = self.p, self.schema.events
        has_id = p.order_id_property is not None and events.has(p.order_id_property)
        if p.order_id_property is not None and not has_id:
            raise ValueError(
                f"the policy counts orders by {p.order_id_property!r}, which the events table does not have; "
                f"its columns are {', '.join(sorted(events.columns))}"
            )
        return has_id

    def build(self) -> exp.Select:
        p, d = self.p, self.d
        events, customers = self.schema.events, self.schema.customers
        has_amount = events.has(p.amount_property)
        has_id = self._has_order_id()
        now, lookback = self.at(self.now), self.at(self.now - p.rfm_lookback)
        e_ts = self.ts(_col("ts", "e"))
        not_null_id = exp.Not(this=exp.Is(this=_col("customer_id", "e"), expression=exp.Null()))

        # order events before now
        o = exp.select(
            exp.alias_(_col("customer_id", "e"), "customer_id"),
            exp.alias_(e_ts, "ts"),
            exp.alias_(_col(p.amount_property, "e") if has_amount else _no_amount(), "amount"),
            exp.alias_(_col(p.order_id_property, "e") if has_id and p.order_id_property else exp.Null(), "oid"),
        ).from_(self.table("events", "e")).where(
            _and([
                not_null_id,
                self.string_eq(_col("event", "e"), p.order_event),
                exp.LT(this=e_ts, expression=now),
            ])
        )
        # one row per order
        firsts: list[tuple[str, exp.Expression]] = []
        if has_id:
            first, orders = self.orders_by_id("shopcrm_o", "shopcrm_first")
            firsts = [("shopcrm_first", first)]
        else:
            orders = exp.select(_col("customer_id"), _col("ts")).from_("shopcrm_o")
        lagged = exp.select(
            _col("customer_id"),
            _col("ts"),
            exp.alias_(
                exp.Window(
                    this=exp.Lag(this=_col("ts")),
                    partition_by=[_col("customer_id")],
                    order=exp.Order(expressions=[exp.Ordered(this=_col("ts"))]),
                ),
                "prev",
            ),
        ).from_("shopcrm_orders")
        gaps = exp.select(
            _col("customer_id"),
            exp.alias_(exp.Sub(this=self.us(_col("ts")), expression=self.us(_col("prev"))), "gap"),
        ).from_(lagged.subquery("lagged")).where(exp.Not(this=exp.Is(this=_col("prev"), expression=exp.Null())))

        in_lookback = exp.GT(this=_col("ts"), expression=lookback)
        activity = exp.In(this=d.string_equality(_col("event", "e")), expressions=[d.string_equality(_lit(x)) for x in p.activity_events])
        low, high = p.cart_abandoned_ages
        seen_columns = [
            exp.alias_(_col("customer_id", "e"), "customer_id"),
            exp.alias_(exp.Max(this=_case((activity, e_ts))), "last_activity"),
            exp.alias_(
                exp.Max(this=_case((_and([self.string_eq(_col("event", "e"), p.cart_event), self.aged(e_ts, low, high)]), e_ts))),
                "last_cart",
            ),
        ]
        ctes: list[tuple[str, exp.Expression]] = [("shopcrm_o", o), *firsts, ("shopcrm_orders", orders), ("shopcrm_gaps", gaps)]
        if has_id:
            # orders are the distinct ids, each placed at its first event with its amount (shopcrm_orders): R, F
            # and M read the orders placed inside the lookback. An order event without an id is no order (the cart
            # moment still reads every order event: last_order_event)
            order_stats = exp.select(
                _col("customer_id"), exp.alias_(exp.Max(this=_col("ts")), "last_order_event"),
            ).from_("shopcrm_o").group_by(_col("customer_id"))
            placed = in_lookback
            order_count = exp.select(
                _col("customer_id"), exp.alias_(exp.Count(this=exp.Star()), "n_orders"), exp.alias_(exp.Max(this=_col("ts")), "last_order"),
                exp.alias_(exp.Count(this=_case((placed, _num(1)))), "frequency"),
                exp.alias_(exp.Max(this=_case((placed.copy(), _col("ts")))), "last_lb"),
                exp.alias_(exp.Coalesce(this=exp.Sum(this=_case((placed.copy(), _col("amount")))), expressions=[_num(0)]), "monetary"),
            ).from_("shopcrm_orders").group_by(_col("customer_id"))
            order_facts = exp.select(
                _col("customer_id", "oc"), _col("last_lb", "oc"), _col("frequency", "oc"), _col("monetary", "oc"),
            ).from_(exp.to_table("shopcrm_order_count").as_("oc")).join(
                exp.to_table("shopcrm_order_stats").as_("os"),
                on=exp.EQ(this=_col("customer_id", "oc"), expression=_col("customer_id", "os")), join_type="left",
            )
            seen = exp.select(*seen_columns)
            ctes += [("shopcrm_order_stats", order_stats), ("shopcrm_order_count", order_count),
                     ("shopcrm_order_facts", order_facts)]
            fact_tables = {"os": "shopcrm_order_stats", "oc": "shopcrm_order_count", "sn": "shopcrm_seen"}
        else:
            # every order event is an order: all per-customer facts in one pass over the events
            is_order = self.string_eq(_col("event", "e"), p.order_event)
            order_in_lookback = _and([is_order, exp.GT(this=e_ts, expression=lookback)])
            last_order = exp.Max(this=_case((is_order, e_ts)))
            seen = exp.select(
                *seen_columns,
                exp.alias_(last_order, "last_order_event"),
                exp.alias_(last_order.copy(), "last_order"),
                exp.alias_(exp.Sum(this=_case((is_order, _num(1)), default=_num(0))), "n_orders"),
                exp.alias_(exp.Max(this=_case((order_in_lookback, e_ts))), "last_lb"),
                exp.alias_(exp.Sum(this=_case((order_in_lookback, _num(1)), default=_num(0))), "frequency"),
                exp.alias_(
                    exp.Coalesce(
                        this=exp.Sum(this=_case((order_in_lookback, _col(p.amount_property, "e") if has_amount else _no_amount()))),
                        expressions=[_num(0)],
                    ),
                    "monetary",
                ),
            )
            fact_tables = {"sn": "shopcrm_seen"}
        seen = seen.from_(self.table("events", "e")).where(_and([not_null_id, exp.LT(this=e_ts, expression=now)])).group_by(
            _col("customer_id", "e")
        )
        ctes.append(("shopcrm_seen", seen))

        def fact(name: str, alias: str) -> exp.Column:
            return _col(name, alias if alias in fact_tables else "sn")

        signed = self.ts(_col(p.signed_up_attribute, "c")) if customers.has(p.signed_up_attribute) else exp.Null()
        n_orders = exp.Coalesce(this=fact("n_orders", "oc"), expressions=[_num(0)])
        last_seen = exp.Coalesce(this=fact("last_activity", "sn"), expressions=[signed])
        facts = "shopcrm_order_facts" if has_id else "shopcrm_seen"
        ctes += self.score_ctes(facts)

        stage = _case(
            (exp.EQ(this=n_orders, expression=_num(0)), _lit("never_purchased")),
            (exp.EQ(this=n_orders, expression=_num(1)), _lit("first_purchase")),
            (exp.LT(this=n_orders, expression=_num(p.loyal_min_orders)), _lit("repeat")),
            default=_lit("loyal"),
        )
        cart = _and([
            exp.Not(this=exp.Is(this=fact("last_cart", "sn"), expression=exp.Null())),
            exp.Paren(this=exp.Or(
                this=exp.Is(this=fact("last_order_event", "os"), expression=exp.Null()),
                expression=exp.GTE(this=fact("last_cart", "sn"), expression=fact("last_order_event", "os")),
            )),
        ])

        def flag(cond: exp.Expression) -> exp.Expression:
            return exp.Coalesce(this=_case((cond, exp.true()), default=exp.false()), expressions=[exp.false()])

        gap2 = _case(
            (_and([exp.GTE(this=n_orders, expression=_num(3)), exp.Not(this=exp.Is(this=_col("median2", "om"), expression=exp.Null()))]), _col("median2", "om")),
            default=_col("median2", "sm"),
        )
        recency = exp.Sub(this=_num(_micros(self.now - _EPOCH)), expression=self.us(fact("last_order", "oc")))
        c_id = _col("customer_id", "c")
        base = (
            exp.select(
                exp.alias_(c_id, "customer_id"),
                exp.alias_(stage, "stage"),
                exp.alias_(flag(cart), "cart_abandoned"),
                exp.alias_(flag(_and([exp.EQ(this=n_orders, expression=_num(0)), self.aged(signed, *p.signup_dropoff_ages)])), "signup_dropoff"),
                exp.alias_(flag(_and([exp.GT(this=n_orders, expression=_num(0)), self.aged(last_seen, *p.cooling_off_ages)])), "cooling_off"),
                exp.alias_(flag(self.aged(last_seen, p.lapsed_after, None)), "lapsed"),
                exp.alias_(n_orders, "orders"),
                exp.alias_(last_seen, "last_seen"),
                exp.alias_(recency, "recency_us"),
                exp.alias_(exp.Coalesce(this=fact("frequency", "oc"), expressions=[_num(0)]), "frequency"),
                exp.alias_(exp.Coalesce(this=fact("monetary", "oc"), expressions=[_num(0)]), "monetary"),
                exp.alias_(_col("score", "rs"), "r_score"),
                exp.alias_(_col("score", "fs"), "f_score"),
                exp.alias_(_col("score", "ms"), "m_score"),
                exp.alias_(_case((exp.Not(this=exp.Is(this=fact("last_order", "oc"), expression=exp.Null())), gap2)), "gap2_us"),
            )
            .from_(self.table("customers", "c"))
        )
        for alias, name in fact_tables.items():
            base = base.join(
                exp.to_table(name).as_(alias), on=exp.EQ(this=c_id.copy(), expression=_col("customer_id", alias)), join_type="left", copy=False
            )
        base = (
            self.join_scores(base, c_id)
            .join(exp.to_table("shopcrm_own_median").as_("om"), on=exp.EQ(this=c_id.copy(), expression=_col("customer_id", "om")), join_type="left",
                  copy=False)
            .join(exp.to_table("shopcrm_shop_median").as_("sm"), join_type="cross", copy=False)
            .where(exp.Not(this=exp.Is(this=c_id.copy(), expression=exp.Null())), copy=False)
        )
        twice = exp.Mul(this=_num(2), expression=_col("recency_us"))
        status = _case(
            (exp.Is(this=_col("gap2_us"), expression=exp.Null()), exp.cast(exp.Null(), exp.DataType.build(d.text_type, dialect=d.name))),
            (exp.LTE(this=twice, expression=exp.Mul(this=_num(p.active_multiplier), expression=_col("gap2_us"))), _lit("active")),
            (exp.LTE(this=twice, expression=exp.Mul(this=_num(p.at_risk_multiplier), expression=_col("gap2_us"))), _lit("at_risk")),
            default=_lit("churned"),
        )
        final = exp.select(
            *[_col(c) for c in LIFECYCLE_COLUMNS[:14]],
            exp.alias_(self.segment(), "rfm_segment"),
            exp.alias_(status, "cycle_status"),
            _col("gap2_us"),
        ).from_(base.subquery("shopcrm_base"))
        # only customers' orders count towards the shop-wide median gap
        shop_gaps = exp.select(_col("gap")).from_("shopcrm_gaps").where(
            exp.In(this=_col("customer_id"), query=exp.select(_col("customer_id", "k")).from_(self.table("customers", "k")).subquery())
        )
        ctes += [
            ("shopcrm_own_median", self.median2("shopcrm_gaps", by_customer=True)),
            ("shopcrm_shop_gaps", shop_gaps),
            ("shopcrm_shop_median", exp.select(exp.alias_(exp.Max(this=_col("median2")), "median2")).from_(
                self.median2("shopcrm_shop_gaps", by_customer=False).subquery("m"))),
        ]
        for name, cte in ctes:
            final = final.with_(name, as_=cte, copy=False)
        return final


def compile_lifecycle(schema: Schema, *, now: datetime, dialect: str, policy: LifecyclePolicy | None = None) -> exp.Select:
    """One query whose rows are every customer's lifecycle (columns :data:`LIFECYCLE_COLUMNS`)."""
    return _Lifecycle(schema, now, dialect_for(dialect), policy or LifecyclePolicy()).build()


def compile_rfm(schema: Schema, *, now: datetime, dialect: str, policy: LifecyclePolicy | None = None) -> exp.Select:
    """One query whose rows are the scored customers' RFM (columns :data:`RFM_COLUMNS`): R (microseconds
    since the last order), F, M over the policy's lookback, the three scores and the named segment,
    as in :func:`compile_lifecycle`."""
    return _Lifecycle(schema, now, dialect_for(dialect), policy or LifecyclePolicy()).build_rfm()


def rows_from_sql(raw: Sequence[Sequence[object]]) -> list[LifecycleRow]:
    """Engine rows of :func:`compile_lifecycle` as :class:`LifecycleRow` values (engine types normalised)."""
    from decimal import Decimal
    from fractions import Fraction

    day = Fraction(86_400_000_000)

    def number(value: object) -> object:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value

    def optional_int(value: object) -> int | None:
        return None if value is None else int(value)  # type: ignore[call-overload]

    out = []
    for row in raw:
        data = dict(zip(LIFECYCLE_COLUMNS, row, strict=True))
        seen = data["last_seen"]
        recency, gap2 = data["recency_us"], data["gap2_us"]
        out.append(
            LifecycleRow(
                customer_id=data["customer_id"],
                stage=str(data["stage"]),
                moments=tuple(m for m in ("cart_abandoned", "signup_dropoff", "cooling_off", "lapsed") if data[m]),
                orders=int(data["orders"]),  # type: ignore[call-overload]
                last_seen=None if seen is None else to_utc_naive(seen),  # type: ignore[arg-type]
                recency_days=None if recency is None else float(Fraction(int(recency)) / day),  # type: ignore[call-overload]
                frequency=int(data["frequency"]),  # type: ignore[call-overload]
                monetary=number(data["monetary"]),
                r_score=optional_int(data["r_score"]),
                f_score=optional_int(data["f_score"]),
                m_score=optional_int(data["m_score"]),
                rfm_segment=None if data["rfm_segment"] is None else str(data["rfm_segment"]),
                cycle_status=None if data["cycle_status"] is None else str(data["cycle_status"]),
                expected_gap_days=None if gap2 is None else float(Fraction(int(gap2), 2) / day),  # type: ignore[call-overload]
            )
        )
    return out


def rows_to_arrow(rows: Sequence[LifecycleRow]) -> object:
    """The lifecycle rows as a pyarrow Table (``to_pandas()``, ``polars.from_arrow``)."""
    import pyarrow as pa

    columns = [f.name for f in attrs.fields(LifecycleRow)]
    data = {name: [getattr(r, name) for r in rows] for name in columns}
    data["moments"] = [list(m) for m in data["moments"]]
    monetary = data["monetary"]
    if any(isinstance(v, float) for v in monetary):
        data["monetary"] = [None if v is None else float(v) for v in monetary]
    return pa.table(data)


def arrow_from_sql(raw: object) -> object:
    """The query's Arrow result as the documented lifecycle table (columns computed by pyarrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table: pa.Table = raw
    names = ("cart_abandoned", "signup_dropoff", "cooling_off", "lapsed")
    # moments as lists, vectorised: the (row, moment) pairs whose flag is set, sorted by row then moment
    def array(values: Any) -> Any:
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

    flags = [array(pc.fill_null(pc.cast(table[m], pa.bool_()), False)) for m in names]
    rows = [pc.indices_nonzero(f) for f in flags]
    pairs = pa.table({
        "row": pa.concat_arrays([pc.cast(r, pa.int64()) for r in rows]),
        "k": pa.concat_arrays([pa.repeat(pa.scalar(k, pa.int8()), len(r)) for k, r in enumerate(rows)]),
    })
    order = pc.sort_indices(pairs, sort_keys=[("row", "ascending"), ("k", "ascending")])
    values = array(pc.take(pa.array(names), pc.take(pairs["k"], order)))
    per_row = pc.cast(flags[0], pa.int64())
    for f in flags[1:]:
        per_row = pc.add(per_row, pc.cast(f, pa.int64()))
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), array(pc.cumulative_sum(per_row))])
    moments = pc.cast(pa.LargeListArray.from_arrays(offsets, values), pa.list_(pa.string()))
    monetary = _money(table["monetary"])
    last_seen = table["last_seen"]
    if not pa.types.is_timestamp(last_seen.type):  # SQLite: ISO text
        last_seen = pa.array([None if v is None else to_utc_naive(v) for v in last_seen.to_pylist()], pa.timestamp("us"))

    def integers(name: str) -> object:
        return pc.cast(table[name], pa.int64())

    return pa.table({
        "customer_id": table["customer_id"],
        "stage": pc.cast(table["stage"], pa.string()),
        "moments": moments,
        "orders": integers("orders"),
        "last_seen": last_seen,
        "recency_days": pc.divide(pc.cast(table["recency_us"], pa.float64()), _DAY_US),
        "frequency": integers("frequency"),
        "monetary": monetary,
        "r_score": integers("r_score"),
        "f_score": integers("f_score"),
        "m_score": integers("m_score"),
        "rfm_segment": pc.cast(table["rfm_segment"], pa.string()),
        "cycle_status": pc.cast(table["cycle_status"], pa.string()),
        "expected_gap_days": pc.divide(pc.cast(table["gap2_us"], pa.float64()), 2 * _DAY_US),
    })


def rfm_arrow_from_sql(raw: object) -> object:
    """The :func:`compile_rfm` Arrow result with engine types normalised (int64 scores, int or float money)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table: pa.Table = raw
    return pa.table({
        "customer_id": table["customer_id"],
        # divided here, not in SQL: PostgreSQL and MySQL would divide as decimals and round differently
        "recency_days": pc.divide(pc.cast(table["recency_us"], pa.float64()), _DAY_US),
        "frequency": pc.cast(table["frequency"], pa.int64()),
        "monetary": _money(table["monetary"]),
        "r_score": pc.cast(table["r_score"], pa.int64()),
        "f_score": pc.cast(table["f_score"], pa.int64()),
        "m_score": pc.cast(table["m_score"], pa.int64()),
        "rfm_segment": pc.cast(table["rfm_segment"], pa.string()),
    })


def _money(column: Any) -> Any:
    """Engine decimals (PostgreSQL, MySQL sums) as int64 when whole, else float64, like the pure classifier."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_decimal(column.type):
        return pc.cast(column, pa.int64() if column.type.scale == 0 else pa.float64())
    return column
