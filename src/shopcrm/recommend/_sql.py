"""Recommendations compiled to SQL (sqlglot expression trees): top-k for a whole audience in ONE query.

The pure reference (:mod:`shopcrm.recommend._reference`) says what the lists are; this module builds the query
that computes the same lists where the data lives, on every engine.  No I/O: :func:`recommend_query` takes
relations (sqlglot expressions) and a dialect and returns a query.

Input relations and their columns (instants as exact integer microseconds since 1970-01-01 UTC):

- **events**: ``customer, event, product_id, category, price, ts_us``;
- **products** (optional, the catalog): ``product_id, category, price`` and, for the filters that read them,
  ``stock, available, image_url``;
- **audience**: ``customer`` (duplicates and NULLs are ignored);
- **exclusions** (optional): ``customer, product_id`` never to be shown to that customer (a trigger item).

Output: ``customer, rank, product_id, score, strategy`` (rank from 1; at most k rows per customer; customers with
nothing to recommend have no rows).

Exactness: every key compared is an integer count or ONE division of two exact integer-valued doubles, correctly
rounded on every engine as in Python; strings are compared as bytes (MySQL's collations ignore case) and ordered
by code point (PostgreSQL's ``COLLATE "C"``).  Each strategy keeps only the candidates that can still reach a
customer's top k: per anchor, category or overall ranking, k plus the number of products that customer has
excluded (an earlier strategy's picks can only displace as many of a later one's as they are, so k per strategy
suffices; the tests compare every list with the reference).
"""

from __future__ import annotations

from typing import cast

from sqlglot import exp

from shopcrm.compiler._dialects import Dialect
from shopcrm.measurement._sql import _alias as _as
from shopcrm.measurement._sql import _c, _n, _s, _sub
from shopcrm.recommend._reference import DAY_US
from shopcrm.recommend._strategies import (
    AFFINITY_WEIGHTS,
    CATALOG_EVENTS,
    AlsoBought,
    AlsoViewed,
    Personal,
    Popular,
    Recommendation,
    RecommendError,
    Trending,
    ViewedNotBought,
)

__all__ = ["OUTPUT_COLUMNS", "recommend_query"]

OUTPUT_COLUMNS = ("customer", "rank", "product_id", "score", "strategy")


def _t(name: str, alias: str) -> exp.Expr:
    return exp.alias_(exp.to_table(name, quoted=True), alias, table=True)


def _eq(a: exp.Expr, b: exp.Expr) -> exp.Expr:
    return exp.EQ(this=a, expression=b)


def _not_null(column: exp.Expr) -> exp.Expr:
    return exp.Not(this=exp.Is(this=column, expression=exp.Null()))


def _is_null(column: exp.Expr) -> exp.Expr:
    return exp.Is(this=column, expression=exp.Null())


class _Compiler:
    def __init__(self, request: Recommendation, dialect: Dialect, now_us: int, catalog: bool,
                 details: tuple[str, ...] = (), everyone: bool = False) -> None:
        self.request, self.d, self.now_us, self.catalog = request, dialect, now_us, catalog
        self.everyone = everyone
        self.details = details
        self.ctes: list[tuple[str, exp.Query]] = []
        self.names: set[str] = set()
        self.materialized: set[str] = set()
        self.limit = request.k

    def cte(self, name: str, query: exp.Query, materialized: bool = False) -> str:
        """``name``, added as a common table expression once; ``materialized`` asks DuckDB to compute it first
        (a hint its join-order optimiser otherwise undoes: filtering the audience's anchors before the join)."""
        if name not in self.names:
            self.ctes.append((name, query))
            self.names.add(name)
            if materialized and self.d.name == "duckdb":
                self.materialized.add(name)
        return name

    def double(self, value: exp.Expr) -> exp.Expr:
        return exp.cast(value, exp.DataType.build(self.d.double_type, dialect=self.d.name))

    def ratio(self, top: exp.Expr, bottom: exp.Expr) -> exp.Expr:
        return exp.Div(this=exp.Paren(this=top), expression=exp.Paren(this=bottom), typed=False, safe=False)

    def order_key(self, column: exp.Expr) -> exp.Expr:
        return self.d.string_order(cast(exp.Expression, column))

    def ranked(self, partition: list[exp.Expr], key: exp.Expr, product: exp.Expr) -> exp.Expr:
        return exp.Window(this=exp.RowNumber(), partition_by=partition, order=exp.Order(expressions=[
            exp.Ordered(this=key, desc=True), exp.Ordered(this=self.order_key(product))]))

    # -- shared relations -----------------------------------------------------------------------------------------
    def inputs(self, events: exp.Expr, products: exp.Expr | None, audience: exp.Expr,
               exclusions: exp.Expr | None) -> None:
        d, f = self.d, self.request.filters
        self.cte("shopcrm_re", exp.select(
            _as(d.string_equality(_c("customer", "e")), "customer"), _as(_c("event", "e"), "event"),
            _as(d.string_equality(_c("product_id", "e")), "product_id"),
            _as(d.string_equality(_c("category", "e")), "category"), _as(self.double(_c("price", "e")), "price"),
            _as(_c("ts_us", "e"), "ts_us"),
        ).from_(events).where(exp.and_(
            _not_null(_c("customer", "e")), _not_null(_c("product_id", "e")), _not_null(_c("ts_us", "e")),
            exp.LT(this=_c("ts_us", "e"), expression=_n(self.now_us)),
            exp.In(this=_c("event", "e"), expressions=[_s(n) for n in CATALOG_EVENTS]))))
        self.cte("shopcrm_rb", exp.select(_c("customer", "b"), _c("product_id", "b")).distinct()
                 .from_(_t("shopcrm_re", "b")).where(_eq(_c("event", "b"), _s("order_completed"))))
        given: exp.Query = exp.select(_as(d.string_equality(_c("customer", "a")), "customer")).from_(audience).where(
            _not_null(_c("customer", "a")))
        if self.everyone:  # the audience and every customer with history: per-customer lists need no restriction
            given = exp.union(given, exp.select(_c("customer", "eh")).from_(_t("shopcrm_re", "eh")), distinct=False)
        self.cte("shopcrm_ra", exp.select(_c("customer", "ag")).distinct().from_(_sub(given, "ag")))
        if products is not None:
            extra = [_c(n, "p") for n in ("stock", "available", "image_url") if n not in self.details
                     and getattr(f, {"stock": "in_stock", "available": "in_stock", "image_url": "has_image"}[n])]
            attrs = exp.select(
                _as(d.string_equality(_c("product_id", "p")), "product_id"),
                _as(d.string_equality(_c("category", "p")), "category"), _as(self.double(_c("price", "p")), "price"),
                *extra, *[_c(n, "p") for n in self.details]).from_(products).where(_not_null(_c("product_id", "p")))
        else:
            # the latest price: the largest at each product's last instant with one (grouping, not a window sort)
            last = (exp.select(_c("product_id", "lt0"), _as(exp.Max(this=_c("ts_us", "lt0")), "t"))
                    .from_(_t("shopcrm_re", "lt0")).where(_not_null(_c("price", "lt0"))).group_by(_c("product_id", "lt0")))
            latest = (exp.select(_c("product_id", "lp"), _as(exp.Max(this=_c("price", "lp")), "price"), _as(_n(1), "n"))
                      .from_(_t("shopcrm_re", "lp"))
                      .join(_sub(last, "lt1"), on=exp.and_(_eq(_c("product_id", "lt1"), _c("product_id", "lp")),
                                                           _eq(_c("t", "lt1"), _c("ts_us", "lp"))), join_type="inner")
                      .where(_not_null(_c("price", "lp"))).group_by(_c("product_id", "lp")))
            names = exp.select(_c("product_id", "ln"), _as(exp.Min(this=self.order_key(_c("category", "ln"))), "category")
                               ).from_(_t("shopcrm_re", "ln")).group_by(_c("product_id", "ln"))
            attrs = exp.select(_c("product_id", "nm"), _c("category", "nm"), _c("price", "lt")).from_(_sub(names, "nm")).join(
                _sub(latest, "lt"), on=exp.and_(_eq(_c("product_id", "lt"), _c("product_id", "nm")),
                                                _eq(_c("n", "lt"), _n(1))), join_type="left")
        self.cte("shopcrm_rp", attrs)
        keep: list[exp.Expr] = []
        if f.exclude:
            keep.append(exp.Not(this=exp.In(this=_c("product_id", "o"), expressions=[_s(p) for p in f.exclude])))
        if f.in_stock:
            keep.append(exp.Not(this=exp.Coalesce(this=_eq(_c("available", "o"), exp.false()),
                                                  expressions=[exp.false()])))
            keep.append(exp.or_(_is_null(_c("stock", "o")), exp.GT(this=_c("stock", "o"), expression=_n(0))))
        if f.has_image:
            keep.append(exp.and_(_not_null(_c("image_url", "o")),
                                 exp.NEQ(this=_c("image_url", "o"), expression=_s(""))))
        if f.min_price is not None:
            keep.append(exp.GTE(this=_c("price", "o"), expression=self.double(exp.Literal.number(repr(float(f.min_price))))))
        if f.max_price is not None:
            keep.append(exp.LTE(this=_c("price", "o"), expression=self.double(exp.Literal.number(repr(float(f.max_price))))))
        ok = exp.select(_c("product_id", "o")).from_(_t("shopcrm_rp", "o"))
        self.cte("shopcrm_rk", ok.where(exp.and_(*keep)) if keep else ok)
        # what each customer must not be shown, and so how far down each ranking to look
        parts: list[exp.Select] = []
        if f.not_bought:
            parts.append(exp.select(_c("customer", "xb"), _c("product_id", "xb")).from_(_t("shopcrm_rb", "xb")))
        if exclusions is not None:
            parts.append(exp.select(_as(d.string_equality(_c("customer", "xe")), "customer"),
                                    _as(d.string_equality(_c("product_id", "xe")), "product_id")).from_(exclusions)
                         .where(exp.and_(_not_null(_c("customer", "xe")), _not_null(_c("product_id", "xe")))))
        self.excluding = bool(parts)
        if parts:
            union: exp.Query = parts[0]
            for part in parts[1:]:
                union = exp.union(union, part, distinct=True)
            self.cte("shopcrm_rx", exp.select(_c("customer", "xu"), _c("product_id", "xu")).distinct()
                     .from_(_sub(union, "xu")))
            counts = (exp.select(_c("customer", "xc"), _as(exp.Count(this=exp.Star()), "m"))
                      .from_(_t("shopcrm_rx", "xc")).group_by(_c("customer", "xc")))
            lim: exp.Expr = exp.Add(this=_n(self.limit), expression=exp.Coalesce(this=_c("m", "xm"), expressions=[_n(0)]))
            self.cte("shopcrm_rl", exp.select(_c("customer", "al"), _as(lim, "lim")).from_(_t("shopcrm_ra", "al")).join(
                _sub(counts, "xm"), on=_eq(_c("customer", "xm"), _c("customer", "al")), join_type="left"))
        else:
            self.cte("shopcrm_rl", exp.select(_c("customer", "al"), _as(_n(self.limit), "lim")).from_(_t("shopcrm_ra", "al")))

    def deepest(self) -> exp.Expr:
        """How far down any customer needs a shared ranking: k, or k plus the most products one customer excludes."""
        if not self.excluding:
            return _n(self.limit)
        return exp.Subquery(this=exp.select(exp.Max(this=_c("lim", "dl"))).from_(_t("shopcrm_rl", "dl")))

    def pruned(self, ranked: exp.Select, column: str) -> exp.Select:
        """``ranked`` without the rows no customer can reach (joins then compare far fewer rows)."""
        return exp.select("*").from_(_sub(ranked, "pr_")).where(
            exp.LTE(this=_c(column, "pr_"), expression=self.deepest()))

    def distinct_pairs(self, event: str) -> str:
        if event == "order_completed":
            return "shopcrm_rb"
        return self.cte("shopcrm_rv", exp.select(_c("customer", "v"), _c("product_id", "v")).distinct()
                        .from_(_t("shopcrm_re", "v")).where(_eq(_c("event", "v"), _s(event))))

    def buyers(self) -> str:
        return self.cte("shopcrm_rn", exp.select(_c("product_id", "bn"), _as(exp.Count(this=exp.Star()), "n"))
                        .from_(_t("shopcrm_rb", "bn")).group_by(_c("product_id", "bn")))

    # -- strategies: each gives customer, product_id, key_, score ------------------------------------------------
    def co_occurrence(self, strategy: AlsoBought | AlsoViewed, i: int) -> exp.Select:
        ix = self.distinct_pairs("order_completed" if strategy.kind == "also_bought" else "product_viewed")
        counts = (exp.select(_c("product_id", "q"), _as(exp.Count(this=exp.Star()), "n"))
                  .from_(_t(ix, "q")).group_by(_c("product_id", "q")))
        total = exp.select(_as(exp.Count(this=exp.Distinct(expressions=[_c("customer", "tq")])), "n")).from_(_t(ix, "tq"))
        pairs = (exp.select(_as(_c("product_id", "i1"), "a"), _as(_c("product_id", "i2"), "b"),
                            _as(exp.Count(this=exp.Star()), "n"))
                 .from_(_t(ix, "i1")).join(_t(ix, "i2"), on=exp.and_(
                     _eq(_c("customer", "i2"), _c("customer", "i1")),
                     exp.NEQ(this=_c("product_id", "i2"), expression=_c("product_id", "i1"))), join_type="inner")
                 .group_by(_c("product_id", "i1"), _c("product_id", "i2"))
                 .having(exp.GTE(this=exp.Count(this=exp.Star()), expression=_n(strategy.min_support))))
        n, na, nb = self.double(_c("n", "pr")), self.double(_c("n", "na")), self.double(_c("n", "nb"))
        if strategy.measure == "lift":
            key = self.ratio(exp.Mul(this=n, expression=self.double(_c("n", "tt"))), exp.Mul(this=na, expression=nb))
            score = key.copy()
        else:
            key = self.ratio(exp.Mul(this=n, expression=n.copy()), exp.Mul(this=na, expression=nb))
            score = self.ratio(n.copy(), exp.Sqrt(this=exp.Mul(this=na.copy(), expression=nb.copy())))
        scored = (exp.select(_c("a", "pr"), _c("b", "pr"), _as(key, "key_"), _as(score, "score"))
                  .from_(_sub(pairs, "pr"))
                  .join(_sub(counts, "na"), on=_eq(_c("product_id", "na"), _c("a", "pr")), join_type="inner")
                  .join(_sub(counts.copy(), "nb"), on=_eq(_c("product_id", "nb"), _c("b", "pr")), join_type="inner")
                  .join(_t("shopcrm_rk", "ok"), on=_eq(_c("product_id", "ok"), _c("b", "pr")), join_type="inner")
                  .join(_sub(total, "tt"), join_type="cross"))
        ranked = exp.select(_c("a", "sc"), _c("b", "sc"), _c("key_", "sc"), _c("score", "sc"), _as(
            self.ranked([_c("a", "sc")], _c("key_", "sc"), _c("b", "sc")), "ra")).from_(_sub(scored, "sc"))
        name = self.cte(f"shopcrm_rc{i}", self.pruned(ranked, "ra"))
        per_customer = (exp.select(_c("customer", "an"), _as(_c("b", "nr"), "product_id"),
                                   _as(exp.Max(this=_c("key_", "nr")), "key_"), _as(exp.Max(this=_c("score", "nr")), "score"))
                        .from_(_t(ix, "an")))
        if self.excluding:  # how far down each anchor's list depends on the customer
            per_customer = (per_customer.join(_t("shopcrm_rl", "al"), on=_eq(_c("customer", "al"), _c("customer", "an")),
                                              join_type="inner")
                            .join(_t(name, "nr"), on=exp.and_(_eq(_c("a", "nr"), _c("product_id", "an")),
                                                              exp.LTE(this=_c("ra", "nr"), expression=_c("lim", "al"))),
                                  join_type="inner"))
        elif self.everyone:  # every customer with anchors is in the audience
            per_customer = (per_customer.from_(_t(ix, "an"))
                            .join(_t(name, "nr"), on=_eq(_c("a", "nr"), _c("product_id", "an")), join_type="inner"))
        else:  # the same depth for everyone: the pruned lists, for the audience's anchors
            anchors = exp.select(_c("customer", "ax"), _c("product_id", "ax")).from_(_t(ix, "ax")).where(
                exp.In(this=_c("customer", "ax"), query=exp.select(_c("customer", "aq")).from_(
                    _t("shopcrm_ra", "aq")).subquery()))
            held = self.cte(f"shopcrm_rq{i}", anchors, materialized=True)
            per_customer = (per_customer.from_(_t(held, "an"))
                            .join(_t(name, "nr"), on=_eq(_c("a", "nr"), _c("product_id", "an")), join_type="inner"))
        return per_customer.group_by(_c("customer", "an"), _c("b", "nr"))

    def viewed_not_bought(self) -> exp.Select:
        views = self.double(exp.Count(this=exp.Star()))
        return (exp.select(_c("customer", "e"), _c("product_id", "e"), _as(views, "key_"), _as(views.copy(), "score"))
                .from_(_t("shopcrm_re", "e"))
                .join(_t("shopcrm_ra", "a"), on=_eq(_c("customer", "a"), _c("customer", "e")), join_type="inner")
                .join(_t("shopcrm_rk", "ok"), on=_eq(_c("product_id", "ok"), _c("product_id", "e")), join_type="inner")
                .join(_t("shopcrm_rb", "b"), on=exp.and_(_eq(_c("customer", "b"), _c("customer", "e")),
                                                         _eq(_c("product_id", "b"), _c("product_id", "e"))),
                      join_type="left")
                .where(exp.and_(_eq(_c("event", "e"), _s("product_viewed")), _is_null(_c("product_id", "b"))))
                .group_by(_c("customer", "e"), _c("product_id", "e")))

    def shared(self, strategy: Trending | Popular, i: int) -> exp.Select:
        """A ranking that is the same for everyone, joined to each customer as far down as they need."""
        if isinstance(strategy, Trending):
            recent = exp.GTE(this=_c("ts_us", "e"), expression=_n(self.now_us - strategy.recent_days * DAY_US))
            r = exp.Sum(this=exp.Case().when(recent, _n(1)).else_(_n(0)))
            b = exp.Count(this=exp.Star())
            key = self.ratio(self.double(r), self.double(exp.Add(this=b, expression=_n(strategy.smoothing))))
            factor = self.double(exp.Literal.number(repr(strategy.baseline_days / strategy.recent_days)))
            inner = (exp.select(_c("product_id", "e"), _as(key, "key_"), _as(exp.Mul(this=key.copy(), expression=factor),
                                                                              "score"))
                     .from_(_t("shopcrm_re", "e"))
                     .join(_t("shopcrm_rk", "ok"), on=_eq(_c("product_id", "ok"), _c("product_id", "e")), join_type="inner")
                     .where(exp.and_(_eq(_c("event", "e"), _s(strategy.event)), exp.GTE(
                         this=_c("ts_us", "e"), expression=_n(self.now_us - strategy.baseline_days * DAY_US))))
                     .group_by(_c("product_id", "e")).having(exp.GTE(this=r.copy(), expression=_n(1))))
        else:
            n = self.double(exp.Count(this=exp.Distinct(expressions=[_c("customer", "e")])))
            where: list[exp.Expr] = [_eq(_c("event", "e"), _s("order_completed"))]
            if strategy.days is not None:
                where.append(exp.GTE(this=_c("ts_us", "e"), expression=_n(self.now_us - strategy.days * DAY_US)))
            inner = (exp.select(_c("product_id", "e"), _as(n, "key_"), _as(n.copy(), "score"))
                     .from_(_t("shopcrm_re", "e"))
                     .join(_t("shopcrm_rk", "ok"), on=_eq(_c("product_id", "ok"), _c("product_id", "e")), join_type="inner"))
            if strategy.category is not None:
                inner = inner.join(_t("shopcrm_rp", "pc"), on=_eq(_c("product_id", "pc"), _c("product_id", "e")),
                                   join_type="inner")
                where.append(_eq(_c("category", "pc"), self.d.string_equality(cast(exp.Expression, _s(strategy.category)))))
            inner = inner.where(exp.and_(*where)).group_by(_c("product_id", "e"))
        ranked = exp.select(_c("product_id", "g"), _c("key_", "g"), _c("score", "g"), _as(
            self.ranked([], _c("key_", "g"), _c("product_id", "g")), "gr")).from_(_sub(inner, "g"))
        name = self.cte(f"shopcrm_rc{i}", self.pruned(ranked, "gr"))
        return (exp.select(_c("customer", "al"), _c("product_id", "gl"), _c("key_", "gl"), _c("score", "gl"))
                .from_(_t("shopcrm_rl", "al"))
                .join(_t(name, "gl"), on=exp.LTE(this=_c("gr", "gl"), expression=_c("lim", "al")), join_type="inner"))

    def personal(self, strategy: Personal, i: int) -> exp.Select:
        buyers = self.buyers()
        products = (exp.select(_c("product_id", "bp"), _c("category", "pp"), _c("n", "bp")).from_(_t(buyers, "bp"))
                    .join(_t("shopcrm_rp", "pp"), on=_eq(_c("product_id", "pp"), _c("product_id", "bp")), join_type="inner")
                    .where(_not_null(_c("category", "pp"))))
        self.cte("shopcrm_rpc", products)
        self.cte("shopcrm_rcn", exp.select(_c("category", "cs"), _as(exp.Sum(this=_c("n", "cs")), "n"))
                 .from_(_t("shopcrm_rpc", "cs")).group_by(_c("category", "cs")))
        self.cte("shopcrm_rna", exp.select(_as(exp.Sum(this=_c("n", "ns")), "n")).from_(_t("shopcrm_rcn", "ns")))

        def ranked_by(partition: list[exp.Expr]) -> exp.Select:
            return (exp.select(_c("product_id", "pc"), _c("category", "pc"), _as(_c("n", "pc"), "n"),
                               _as(_c("n", "cn"), "ncat"), _as(self.ranked(partition, _c("n", "pc"), _c("product_id", "pc")), "gr"))
                    .from_(_t("shopcrm_rpc", "pc"))
                    .join(_t("shopcrm_rcn", "cn"), on=_eq(_c("category", "cn"), _c("category", "pc")), join_type="inner")
                    .join(_t("shopcrm_rk", "ok"), on=_eq(_c("product_id", "ok"), _c("product_id", "pc")), join_type="inner"))

        cand = self.cte(f"shopcrm_rc{i}", self.pruned(ranked_by([_c("category", "pc")]), "gr"))
        weight = exp.Case()
        for event, w in AFFINITY_WEIGHTS.items():
            weight = weight.when(_eq(_c("event", "e"), _s(event)), _n(w))
        affinity = (exp.select(_c("customer", "e"), _c("category", "p"), _as(exp.Sum(this=weight.else_(_n(0))), "w"))
                    .from_(_t("shopcrm_re", "e"))
                    .join(_t("shopcrm_ra", "a"), on=_eq(_c("customer", "a"), _c("customer", "e")), join_type="inner")
                    .join(_t("shopcrm_rp", "p"), on=_eq(_c("product_id", "p"), _c("product_id", "e")), join_type="inner")
                    .where(_not_null(_c("category", "p"))).group_by(_c("customer", "e"), _c("category", "p")))
        self.cte("shopcrm_rw", affinity)
        self.cte("shopcrm_rwt", exp.select(_c("customer", "ws"), _as(exp.Sum(this=_c("w", "ws")), "w"))
                 .from_(_t("shopcrm_rw", "ws")).group_by(_c("customer", "ws")))
        prior = strategy.prior

        def key(w: exp.Expr, cd: str) -> exp.Expr:
            # n(p) · (w·N + prior·n(c)) / (n(c) · N · (w(customer) + prior)): integers, one division
            mixed = exp.Add(this=exp.Mul(this=w, expression=_c("n", "na")),
                            expression=exp.Mul(this=_n(prior), expression=_c("ncat", cd)))
            scale = exp.Mul(this=_c("n", "na"), expression=exp.Paren(this=exp.Add(this=_c("w", "wt"), expression=_n(prior))))
            return self.ratio(exp.Mul(this=self.double(_c("n", cd)), expression=self.double(mixed)),
                              exp.Mul(this=self.double(_c("ncat", cd)), expression=self.double(scale)))

        touched = (exp.select(_c("customer", "w"), _c("product_id", "cd"), _as(key(_c("w", "w"), "cd"), "key_"))
                   .from_(_t("shopcrm_rw", "w"))
                   .join(_t("shopcrm_rwt", "wt"), on=_eq(_c("customer", "wt"), _c("customer", "w")), join_type="inner")
                   .join(_t("shopcrm_rl", "al"), on=_eq(_c("customer", "al"), _c("customer", "w")), join_type="inner")
                   .join(_t(cand, "cd"), on=exp.and_(_eq(_c("category", "cd"), _c("category", "w")),
                                                     exp.LTE(this=_c("gr", "cd"), expression=_c("lim", "al"))),
                         join_type="inner")
                   .join(_t("shopcrm_rna", "na"), join_type="cross"))
        if not prior:
            return exp.select(_c("customer", "pt"), _c("product_id", "pt"), _c("key_", "pt"),
                              _as(_c("key_", "pt"), "score")).from_(_sub(touched, "pt"))
        # with a prior every category counts a little: the shop's best-sellers reach each customer too (their own
        # categories' products among them score as above; the rest by prior alone)
        overall = self.cte(f"shopcrm_rg{i}", self.pruned(ranked_by([]), "gr"))
        seen = exp.Coalesce(this=_c("w", "w"), expressions=[_n(0)])
        everywhere = (exp.select(_c("customer", "wt"), _c("product_id", "cd"), _as(key(seen, "cd"), "key_"))
                      .from_(_t("shopcrm_rwt", "wt"))
                      .join(_t("shopcrm_rl", "al"), on=_eq(_c("customer", "al"), _c("customer", "wt")), join_type="inner")
                      .join(_t(overall, "cd"), on=exp.LTE(this=_c("gr", "cd"), expression=_c("lim", "al")),
                            join_type="inner")
                      .join(_t("shopcrm_rw", "w"), on=exp.and_(_eq(_c("customer", "w"), _c("customer", "wt")),
                                                               _eq(_c("category", "w"), _c("category", "cd"))),
                            join_type="left")
                      .join(_t("shopcrm_rna", "na"), join_type="cross"))
        both = exp.union(touched, everywhere, distinct=False)
        return (exp.select(_c("customer", "pb"), _c("product_id", "pb"), _as(exp.Max(this=_c("key_", "pb")), "key_"),
                           _as(exp.Max(this=_c("key_", "pb")), "score"))
                .from_(_sub(both, "pb")).group_by(_c("customer", "pb"), _c("product_id", "pb")))

    # -- the whole request ----------------------------------------------------------------------------------------
    def strategy(self, strategy: object, i: int) -> exp.Select:
        if isinstance(strategy, AlsoBought | AlsoViewed):
            return self.co_occurrence(strategy, i)
        if isinstance(strategy, ViewedNotBought):
            return self.viewed_not_bought()
        if isinstance(strategy, Personal):
            return self.personal(strategy, i)
        if isinstance(strategy, Trending | Popular):
            return self.shared(strategy, i)
        raise RecommendError(f"not a strategy: {strategy!r}")

    def query(self, attributes: bool = False) -> exp.Select:
        parts: list[exp.Select] = []
        for i, strategy in enumerate(self.request.strategies):
            found = self.strategy(strategy, i)
            source = _sub(found, "cs")
            candidates = exp.select(_c("customer", "cs"), _c("product_id", "cs"), _c("key_", "cs"), _c("score", "cs"))
            # in place (copy=False): a strategy's whole query would otherwise be deep-copied at each step
            if self.excluding:
                candidates = candidates.from_(source, copy=False).join(_t("shopcrm_rx", "x"), on=exp.and_(
                    _eq(_c("customer", "x"), _c("customer", "cs")), _eq(_c("product_id", "x"), _c("product_id", "cs"))),
                    join_type="left", copy=False).where(_is_null(_c("product_id", "x")), copy=False)
            else:
                candidates = candidates.from_(source, copy=False)
            ranked = exp.select(_c("customer", "r"), _c("product_id", "r"), _c("score", "r"), _as(
                self.ranked([_c("customer", "r")], _c("key_", "r"), _c("product_id", "r")), "rn")).from_(
                _sub(candidates, "r"), copy=False)
            parts.append(exp.select(_c("customer", "t"), _c("product_id", "t"), _c("score", "t"), _c("rn", "t"),
                                    _as(_n(i), "s"), _as(_s(strategy.kind), "strategy"))
                         .from_(_sub(ranked, "t"), copy=False)
                         .where(exp.LTE(this=_c("rn", "t"), expression=_n(self.limit)), copy=False))
        if len(parts) == 1:  # one strategy: its ranks are the final ones
            final = exp.select(_c("customer", "o1"), _as(_c("rn", "o1"), "rank"), _c("product_id", "o1"),
                               _c("score", "o1"), _c("strategy", "o1")).from_(_sub(parts[0], "o1"), copy=False)
            return self.finish(final, attributes)
        union: exp.Query = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False, copy=False)
        first = exp.Window(this=exp.RowNumber(), partition_by=[_c("customer", "u"), _c("product_id", "u")],
                           order=exp.Order(expressions=[exp.Ordered(this=_c("s", "u")), exp.Ordered(this=_c("rn", "u"))]))
        unique = exp.select(_c("customer", "u"), _c("product_id", "u"), _c("score", "u"), _c("rn", "u"), _c("s", "u"),
                            _c("strategy", "u"), _as(first, "dup")).from_(_sub(union, "u"), copy=False)
        place = exp.Window(this=exp.RowNumber(), partition_by=[_c("customer", "f")],
                           order=exp.Order(expressions=[exp.Ordered(this=_c("s", "f")), exp.Ordered(this=_c("rn", "f"))]))
        final = (exp.select(_c("customer", "f"), _as(place, "rank"), _c("product_id", "f"), _c("score", "f"),
                            _c("strategy", "f"))
                 .from_(_sub(unique, "f"), copy=False).where(_eq(_c("dup", "f"), _n(1)), copy=False))
        return self.finish(final, attributes)

    def finish(self, final: exp.Select, attributes: bool) -> exp.Select:
        # built in place (copy=False): each builder call would otherwise deep-copy the query built so far, and with
        # every CTE added one by one that was most of a recommendation's compile time (the same SQL: checked byte
        # for byte in every dialect)
        query = (exp.select(*[_c(name, "z") for name in OUTPUT_COLUMNS]).from_(_sub(final, "z"), copy=False)
                 .where(exp.LTE(this=_c("rank", "z"), expression=_n(self.request.k)), copy=False))
        if attributes:
            query = query.select(*[_c(n, "pz") for n in ("category", "price", *self.details)], copy=False).join(
                _t("shopcrm_rp", "pz"), on=_eq(_c("product_id", "pz"), _c("product_id", "z")), join_type="left",
                copy=False)
        for name, cte in self.ctes:
            query = query.with_(exp.to_identifier(name, quoted=True), as_=cte,
                                materialized=True if name in self.materialized else None, copy=False)
        return query


def recommend_query(
    request: Recommendation, *, events: exp.Expr, audience: exp.Expr, dialect: Dialect, now_us: int,
    products: exp.Expr | None = None, exclusions: exp.Expr | None = None, attributes: bool = False,
    details: tuple[str, ...] = (), ordered: bool = False, everyone: bool = False,
) -> exp.Select:
    """ONE query giving up to ``request.k`` recommendations for every customer of ``audience`` (see the module's
    docstring for the relations, their aliases' columns and the output).  The events relation must be aliased
    ``e``, products ``p``, audience ``a`` and exclusions ``xe`` (the aliases the query refers to).

    ``attributes=True`` adds each product's ``category`` and ``price`` (the catalog's, else the events') and the
    catalog columns named in ``details`` (``name``, ``image_url``, ...) after the output columns.  ``ordered=True``
    sorts the rows by customer (by code point, numbers as numbers) and rank.  ``everyone=True`` adds to the audience
    every customer with catalog events before now (a whole shop's run: the per-customer lists then need no
    restriction to the audience, which saves a join over every candidate)."""
    if request.filters.needs_catalog and products is None:
        raise RecommendError(f"the filters {', '.join(request.filters.needs_catalog)} need the shop's catalog "
                             "(Schema.products); load products first or leave those filters out")
    if details and products is None:
        raise RecommendError(f"the columns {', '.join(details)} come from the catalog, and there is none")
    compiler = _Compiler(request, dialect, now_us, products is not None, tuple(details), everyone)
    compiler.inputs(events, products, audience, exclusions)
    query = compiler.query(attributes)
    if ordered:
        query = query.order_by(exp.Ordered(this=dialect.string_order(cast(exp.Expression, _c("customer", "z")))),
                               exp.Ordered(this=_c("rank", "z")), copy=False)
    return query
