"""Offline evaluation on a time split: recommend as of ``split_at``, score against what each customer then ordered.

The metrics are a pure function (:func:`score_lists`); :func:`evaluate` is the shell that reads the ground truth,
runs each strategy as of the split (one query per strategy for the whole audience, the same query
``for_customers`` runs) and, when the optional ``implicit`` package is installed and asked for, fits its ALS on the
orders before the split as a comparison.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

from shopcrm.recommend._strategies import RecommendError, parse_strategy

if TYPE_CHECKING:
    from shopcrm._view import ShopView

__all__ = ["DEFAULT_STRATEGIES", "Evaluation", "Metrics", "evaluate", "score_lists"]

#: what :func:`evaluate` compares by default (each a chain falling back to popular; ``popular`` is the baseline)
DEFAULT_STRATEGIES: tuple[str, ...] = ("popular", "personal", "also_bought", "also_viewed", "viewed_not_bought",
                                       "trending")


@attrs.frozen
class Metrics:
    """One strategy's figures at k over the customers with something to find."""

    strategy: str
    customers: int
    hit_rate: float  # share of customers with at least one ordered product among their k
    recall: float  # mean share of each customer's ordered products found in their k
    ndcg: float  # mean normalised discounted cumulative gain (binary relevance)
    coverage: float  # distinct products recommended / products known before the split

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def score_lists(strategy: str, recommended: Mapping[Hashable, Sequence[str]], truth: Mapping[Hashable, set[str]],
                k: int, catalog_size: int) -> Metrics:
    """The metrics of ``recommended`` lists (first k of each count) against ``truth`` (products each customer
    ordered after the split; customers without any are not scored)."""
    scored = [c for c, items in truth.items() if items]
    hits = recall = ndcg = 0.0
    shown: set[str] = set()
    for items in recommended.values():
        shown.update(items[:k])
    for customer in scored:
        wanted = truth[customer]
        top = list(recommended.get(customer, ()))[:k]
        found = [i for i, p in enumerate(top) if p in wanted]
        hits += 1.0 if found else 0.0
        recall += len(found) / len(wanted)
        dcg = sum(1.0 / math.log2(i + 2) for i in found)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), k)))
        ndcg += dcg / ideal
    n = len(scored)
    return Metrics(strategy, n, hits / n if n else 0.0, recall / n if n else 0.0, ndcg / n if n else 0.0,
                   len(shown) / catalog_size if catalog_size else 0.0)


@attrs.frozen
class Evaluation:
    """The figures of every strategy evaluated, the popularity baseline first."""

    split_at: datetime
    k: int
    rows: tuple[Metrics, ...]

    def metrics(self, strategy: str) -> Metrics:
        for row in self.rows:
            if row.strategy == strategy:
                return row
        raise KeyError(f"{strategy!r} was not evaluated; evaluated: {', '.join(r.strategy for r in self.rows)}")

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_pylist([r.as_dict() for r in self.rows])

    def __str__(self) -> str:
        lines = [f"offline evaluation at {self.split_at.isoformat(sep=' ')}, k={self.k}",
                 f"{'strategy':<22}{'customers':>10}{'hit rate':>10}{'recall':>9}{'NDCG':>8}{'coverage':>10}"]
        for r in self.rows:
            lines.append(f"{r.strategy:<22}{r.customers:>10,}{r.hit_rate:>10.4f}{r.recall:>9.4f}{r.ndcg:>8.4f}"
                         f"{r.coverage:>10.4f}")
        return "\n".join(lines)


def _label(strategy: Any) -> str:
    if isinstance(strategy, list | tuple):
        return " -> ".join(_label(s) for s in strategy)
    parsed = parse_strategy(strategy)
    extra = {k: v for k, v in parsed.model_dump().items() if k != "kind" and v != type(parsed)().model_dump()[k]}
    return str(parsed.kind) + (f"({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else "")


def _truth(shop: ShopView, split_at: datetime, until: datetime | None, *, repurchases: bool = False) -> dict[Any, set[str]]:
    """Per customer, the products ordered in ``[split_at, until)``; without ``repurchases``, only those the customer
    had not ordered before the split (buying again is not something a recommender finds)."""
    from shopcrm.compiler._dialects import dialect_for
    from shopcrm.recommend._shop import _c, _text

    events = shop.source.schema().events
    quirks = dialect_for(shop.source.dialect)
    order = shop.lifecycle_policy.order_event

    def ordered(lo: datetime | None, hi: datetime | None) -> exp.Select:
        ts = quirks.timestamp_column(_c("ts", "g"))
        where: list[exp.Expr] = [exp.EQ(this=_c("event", "g"), expression=exp.Literal.string(order)),
                                 exp.Not(this=exp.Is(this=_c("product_id", "g"), expression=exp.Null()))]
        if lo is not None:
            where.append(exp.GTE(this=ts, expression=quirks.timestamp_literal(lo)))
        if hi is not None:
            where.append(exp.LT(this=ts.copy(), expression=quirks.timestamp_literal(hi)))
        return exp.select(_c("customer_id", "g"), _c("product_id", "g")).distinct().from_(events.relation("g")).where(
            exp.and_(*where))

    truth: dict[Any, set[str]] = {}
    for customer, product in shop.source.fetch(ordered(split_at, until)):
        truth.setdefault(_text(customer), set()).add(_text(product))
    if not repurchases and truth:
        for customer, product in shop.source.fetch(ordered(None, split_at)):
            wanted = truth.get(_text(customer))
            if wanted is not None:
                wanted.discard(_text(product))
    return {customer: products for customer, products in truth.items() if products}


def _known_products(shop: ShopView, split_at: datetime) -> int:
    from shopcrm.compiler._dialects import dialect_for
    from shopcrm.recommend._shop import _c

    schema = shop.source.schema()
    if schema.products is not None:
        return int(shop.source.fetch(exp.select(exp.Count(this=exp.Star())).from_(schema.products.relation("kp")))[0][0])
    quirks = dialect_for(shop.source.dialect)
    inner = exp.select(_c("product_id", "kp")).distinct().from_(schema.events.relation("kp")).where(exp.and_(
        exp.Not(this=exp.Is(this=_c("product_id", "kp"), expression=exp.Null())),
        exp.LT(this=quirks.timestamp_column(_c("ts", "kp")), expression=quirks.timestamp_literal(split_at))))
    count = exp.select(exp.Count(this=exp.Star())).from_(exp.Subquery(
        this=inner, alias=exp.TableAlias(this=exp.to_identifier("kq", quoted=True))))
    return int(shop.source.fetch(count)[0][0])


def _als(shop: ShopView, customers: list[Any], split_at: datetime, k: int, factors: int, seed: int,
         alpha: float = 1.0, *, repurchases: bool = False) -> dict[Any, list[str]]:
    """``implicit``'s ALS fitted on the orders (and, weighted lower, views and cart additions) before the split;
    without ``repurchases`` it leaves out what each customer already ordered, like the strategies' ``not_bought``."""
    try:
        import numpy as np
        from implicit.als import AlternatingLeastSquares  # type: ignore[import-untyped]
        from scipy import sparse
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise RecommendError("the ALS comparison needs the optional 'implicit' package: "
                             "pip install 'shopcrm[recommend-eval]' (or leave als=False)") from None
    from shopcrm.compiler._dialects import dialect_for
    from shopcrm.recommend._shop import _c, _text

    quirks = dialect_for(shop.source.dialect)
    events = shop.source.schema().events
    order, cart = shop.lifecycle_policy.order_event, shop.lifecycle_policy.cart_event
    weights = ((order, 3), (cart, 2), ("product_viewed", 1))

    def weighed(name_weights: Sequence[tuple[str, int]]) -> exp.Select:
        weight = exp.Case()
        for name, w in name_weights:
            weight = weight.when(exp.EQ(this=_c("event", "g"), expression=exp.Literal.string(name)),
                                 exp.Literal.number(w))
        return (exp.select(_c("customer_id", "g"), _c("product_id", "g"),
                           exp.Sum(this=weight.else_(exp.Literal.number(0))))
                .from_(events.relation("g")).where(exp.and_(
                    exp.In(this=_c("event", "g"), expressions=[exp.Literal.string(n) for n, _ in name_weights]),
                    exp.Not(this=exp.Is(this=_c("product_id", "g"), expression=exp.Null())),
                    exp.LT(this=quirks.timestamp_column(_c("ts", "g")), expression=quirks.timestamp_literal(split_at))))
                .group_by(_c("customer_id", "g"), _c("product_id", "g")))

    rows = shop.source.fetch(weighed(weights))
    users = {c: i for i, c in enumerate(sorted({_text(r[0]) for r in rows}, key=str))}
    items = {p: i for i, p in enumerate(sorted({_text(r[1]) for r in rows}))}
    names = sorted(items, key=items.__getitem__)
    shape = (len(users), len(items))
    matrix = sparse.csr_matrix((np.array([alpha * float(r[2]) for r in rows], dtype=np.float32),
                                ([users[_text(r[0])] for r in rows], [items[_text(r[1])] for r in rows])), shape=shape)
    bought = [] if repurchases else shop.source.fetch(weighed(((order, 1),)))
    hidden = sparse.csr_matrix((np.ones(len(bought), dtype=np.float32),
                                ([users[_text(r[0])] for r in bought], [items[_text(r[1])] for r in bought])),
                               shape=shape)
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, not BLAS's
        model = AlternatingLeastSquares(factors=factors, iterations=15, regularization=0.05, random_state=seed)
        model.fit(matrix, show_progress=False)
    known = [c for c in customers if c in users]
    out: dict[Any, list[str]] = {c: [] for c in customers}
    if known:
        ids = np.array([users[c] for c in known])
        top, _ = model.recommend(ids, hidden[ids], N=k, filter_already_liked_items=not repurchases)
        for customer, row in zip(known, top, strict=True):
            out[customer] = [names[int(i)] for i in row if 0 <= int(i) < len(names)]
    return out


def evaluate(
    shop: ShopView, *, split_at: datetime | str, until: datetime | str | None = None, k: int = 10,
    strategies: Sequence[Any] | None = None, als: bool = False, als_factors: int = 64, seed: int = 0,
    max_customers: int | None = None, repurchases: bool = False,
) -> Evaluation:
    """Recommend as of ``split_at`` (only events before it count) and score the lists against the products each
    customer ordered in ``[split_at, until)``: hit rate, recall and NDCG at ``k`` and catalog coverage for each
    strategy (a name, dict or chain; each falls back as in ``for_customers``), the popularity baseline first.
    ``als=True`` adds ``implicit``'s ALS (the optional ``recommend-eval`` extra).  ``max_customers`` scores a
    reproducible sample of the customers with orders after the split (the smallest ids by a hash).

    By default the truth is what each customer ordered after the split that they had *not* ordered before it, and
    every strategy (and ALS) leaves out what the customer already ordered (``not_bought``): buying again is not a
    discovery, and a list that repeats past orders would score on it.  ``repurchases=True`` counts every order and
    filters nothing."""
    import hashlib

    from shopcrm.recommend._shop import _fetch, _instant, _Relations

    at = _instant(split_at)
    end = None if until is None else _instant(until)
    truth = _truth(shop, at, end, repurchases=repurchases)
    customers = sorted(truth, key=str)
    if max_customers is not None and len(customers) > max_customers:
        customers = sorted(customers, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())[:max_customers]
        truth = {c: truth[c] for c in customers}
    catalog_size = _known_products(shop, at)
    chosen = list(strategies) if strategies is not None else list(DEFAULT_STRATEGIES)
    if "popular" not in chosen:
        chosen.insert(0, "popular")
    else:
        chosen.insert(0, chosen.pop(chosen.index("popular")))
    norm = _Relations(shop).customer_value
    given = {norm(c): c for c in customers}
    rows: list[Metrics] = []
    for strategy in chosen:
        lists: dict[Any, list[str]] = {c: [] for c in customers}
        if customers:
            fetched, _names, _ = _fetch(shop, customers, strategy=strategy, k=k, now=at, exclude=None, arrow=False,
                                        not_bought=not repurchases)
            at_rank = sorted(fetched, key=lambda r: int(r[1]))
            for row in at_rank:
                c = row[0].decode() if isinstance(row[0], bytes) else row[0]
                product = row[2].decode() if isinstance(row[2], bytes) else row[2]
                lists.setdefault(given.get(c, c), []).append(product)
        rows.append(score_lists(_label(strategy), lists, truth, k, catalog_size))
    if als:
        rows.append(score_lists("implicit ALS", _als(shop, customers, at, k, als_factors, seed, repurchases=repurchases),
                                truth, k, catalog_size))
    return Evaluation(at, k, tuple(rows))
