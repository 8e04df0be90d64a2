"""Offline evaluation of recommendations: a time split, hit rate, recall and NDCG at k, and catalog coverage.

Every strategy recommends as of the split instant (it reads only what happened before it); the truth is what each
customer went on to order after it that they had not ordered before it (a repurchase is not something a
recommender finds).  The customers evaluated are those with such an order; each strategy is scored on the same
customers and compared with the popularity baseline.  ``implicit``'s ALS, trained on the same history, can be put
beside them (``als=True``, the ``recommend-als`` extra).

The metrics, for one customer with truth ``T`` and recommendations ``R`` (at most ``k``, ranked):

- hit: 1 when ``R`` and ``T`` share a product;
- recall: ``|R ∩ T| / |T|``;
- NDCG: ``sum(1 / log2(rank + 1) for hits) / sum(1 / log2(i + 1) for i in 1..min(|T|, k))``;

each averaged over the customers.  Coverage is the share of the catalog (of the products seen before the split
without one) that the strategy recommends to anybody.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

if TYPE_CHECKING:
    from shopcrm.shop import Shop

__all__ = ["Evaluation", "Score", "evaluate", "score"]

#: how much each kind of event weighs in ALS's implicit feedback (an order says most)
ALS_WEIGHTS = {"product_viewed": 1.0, "cart_added": 3.0, "wishlist_added": 3.0, "order_completed": 6.0}
_ALS_HINT = "the ALS comparison needs implicit and scipy: pip install 'shopcrm[recommend-als]'"


@attrs.frozen
class Score:
    """One strategy's figures on the evaluated customers."""

    strategy: str
    customers: int
    hit_rate: float
    recall: float
    ndcg: float
    coverage: float
    #: how many evaluated customers got fewer than k items
    short: int = 0


def _dcg(ranks: Iterable[int]) -> float:
    return sum(1.0 / math.log2(rank + 1) for rank in ranks)


def score(
    strategy: str, recommended: Mapping[Any, Sequence[Any]], truth: Mapping[Any, set[Any]], *, k: int, catalog: int,
) -> Score:
    """The figures of ``recommended`` (customer -> ranked products) against ``truth`` (customer -> products
    ordered after the split), over the customers of ``truth``; ``catalog`` is how many products could be
    recommended.  Pure: the evaluation's arithmetic, tested on its own."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    hits = recall = ndcg = 0.0
    short = 0
    shown: set[Any] = set()
    for customer, wanted in truth.items():
        if not wanted:
            continue
        ranked = list(recommended.get(customer, ()))[:k]
        shown.update(ranked)
        short += len(ranked) < k
        found = [rank for rank, product in enumerate(ranked, start=1) if product in wanted]
        hits += bool(found)
        recall += len(found) / len(wanted)
        ndcg += _dcg(found) / _dcg(range(1, min(len(wanted), k) + 1))
    n = sum(1 for wanted in truth.values() if wanted)
    return Score(strategy=strategy, customers=n, hit_rate=hits / n if n else 0.0, recall=recall / n if n else 0.0,
                 ndcg=ndcg / n if n else 0.0, coverage=len(shown) / catalog if catalog else 0.0, short=short)


@attrs.frozen
class Evaluation:
    """The scores of every strategy at one split, best hit rate first, and the popularity baseline's."""

    split_at: datetime
    #: the end of the truth (None: every later order)
    until: datetime | None
    k: int
    scores: tuple[Score, ...]
    baseline: str

    def score_of(self, strategy: str) -> Score:
        for found in self.scores:
            if found.strategy == strategy:
                return found
        raise KeyError(f"no strategy {strategy!r} was evaluated; there are {[s.strategy for s in self.scores]}")

    def lift(self, strategy: str, metric: str = "hit_rate") -> float:
        """``strategy``'s ``metric`` over the baseline's (inf when the baseline scores 0)."""
        base = float(getattr(self.score_of(self.baseline), metric))
        value = float(getattr(self.score_of(strategy), metric))
        return value / base if base else math.inf

    def rows(self) -> list[dict[str, Any]]:
        return [attrs.asdict(s) | {"vs_baseline": self.lift(s.strategy)} for s in self.scores]

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_pylist(self.rows())

    def __str__(self) -> str:
        until = "the end" if self.until is None else f"{self.until:%Y-%m-%d %H:%M}"
        head = (f"recommendations at k={self.k}, split at {self.split_at:%Y-%m-%d %H:%M}, truth until {until}, "
                f"{self.scores[0].customers if self.scores else 0:,} customers")
        lines = [head, f"{'strategy':<22}{'hit rate':>10}{'recall':>9}{'NDCG':>9}{'coverage':>10}{'vs ' + self.baseline:>14}"]
        for s in self.scores:
            lines.append(f"{s.strategy:<22}{s.hit_rate:>10.4f}{s.recall:>9.4f}{s.ndcg:>9.4f}{s.coverage:>10.4f}"
                         f"{self.lift(s.strategy):>13.2f}x")
        return "\n".join(lines)


def _events(shop: Shop, names: Sequence[str], lo: datetime | None, hi: datetime) -> Any:
    """``customer_id, event, product_id, ts`` of the named events with a product in ``[lo, hi)``, as Arrow."""
    from shopcrm.compiler._dialects import dialect_for

    source = shop.source
    events = source.schema().events
    if not events.has("product_id"):
        raise ValueError(f"the events table {events.name!r} has no product_id column: there is nothing to evaluate "
                         "recommendations on")
    quirks = dialect_for(source.dialect)
    ts = exp.column("ts", "e", quoted=True)
    where: list[exp.Expression] = [
        exp.In(this=exp.column("event", "e", quoted=True), expressions=[exp.Literal.string(n) for n in names]),
        exp.Not(this=exp.Is(this=exp.column("product_id", "e", quoted=True), expression=exp.Null())),
        exp.LT(this=ts.copy(), expression=quirks.timestamp_literal(hi)),
    ]
    if lo is not None:
        where.append(exp.GTE(this=ts.copy(), expression=quirks.timestamp_literal(lo)))
    query = exp.select(
        *[exp.column(c, "e", quoted=True) for c in ("customer_id", "event")],
        exp.cast(exp.column("product_id", "e", quoted=True), exp.DataType.build(quirks.text_type, dialect=quirks.name)),
    ).from_(events.relation("e")).where(exp.and_(*where))
    return source.fetch_arrow(query, ["customer_id", "event", "product_id"])


def _truth(shop: Shop, split_at: datetime, until: datetime) -> dict[Any, set[Any]]:
    """Per customer, the products ordered in ``[split_at, until)`` that they had not ordered before."""
    order = shop.lifecycle_policy.order_event
    after = _events(shop, [order], split_at, until).to_pylist()
    truth: dict[Any, set[Any]] = {}
    for row in after:
        truth.setdefault(row["customer_id"], set()).add(row["product_id"])
    if not truth:
        return truth
    before = _events(shop, [order], None, split_at).to_pylist()
    for row in before:
        wanted = truth.get(row["customer_id"])
        if wanted is not None:
            wanted.discard(row["product_id"])
    return {customer: products for customer, products in truth.items() if products}


def _catalog_size(shop: Shop, split_at: datetime) -> int:
    schema = shop.source.schema()
    if schema.products is not None:
        query = exp.select(exp.Count(this=exp.Distinct(expressions=[exp.column("product_id", "p", quoted=True)]))).from_(
            schema.products.relation("p"))
        return int(shop.source.fetch(query)[0][0] or 0)
    seen = _events(shop, list(ALS_WEIGHTS), None, split_at).column("product_id").unique()
    return len(seen)


def _ranked(table: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[tuple[int, Any]]] = {}
    for row in table.select(["customer_id", "rank", "product_id"]).to_pylist():
        out.setdefault(row["customer_id"], []).append((row["rank"], row["product_id"]))
    return {customer: [p for _, p in sorted(items, key=lambda item: item[0])] for customer, items in out.items()}


def _als(shop: Shop, customers: Sequence[Any], split_at: datetime, k: int, factors: int, iterations: int,
         seed: int) -> dict[Any, list[Any]]:
    """``implicit``'s ALS on the weighted events before the split: top ``k`` unbought products per customer."""
    try:
        import numpy as np
        from scipy import sparse

        als_module = importlib.import_module("implicit.als")
        threads = importlib.import_module("threadpoolctl")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(_ALS_HINT) from error
    history = _events(shop, list(ALS_WEIGHTS), None, split_at)
    users = history.column("customer_id").to_pylist()
    items = history.column("product_id").to_pylist()
    names = history.column("event").to_pylist()
    user_index = {u: i for i, u in enumerate(dict.fromkeys(users))}
    item_ids = list(dict.fromkeys(items))
    item_index = {p: i for i, p in enumerate(item_ids)}
    weights = np.array([ALS_WEIGHTS.get(n, 1.0) for n in names], dtype=np.float32)
    rows = np.array([user_index[u] for u in users], dtype=np.int32)
    cols = np.array([item_index[p] for p in items], dtype=np.int32)
    matrix = sparse.csr_matrix((weights, (rows, cols)), shape=(len(user_index), len(item_ids)))
    # what a customer already ordered is not recommended to them (as the strategies' "not bought" filter)
    bought = np.array([n == shop.lifecycle_policy.order_event for n in names], dtype=bool)
    ordered = sparse.csr_matrix((np.ones(int(bought.sum()), dtype=np.float32), (rows[bought], cols[bought])),
                                shape=matrix.shape)
    with threads.threadpool_limits(1, "blas"):  # implicit's advice: its own threads, not BLAS's
        model = als_module.AlternatingLeastSquares(factors=factors, iterations=iterations, random_state=seed,
                                                   calculate_training_loss=False)
        model.fit(matrix, show_progress=False)
    known = [c for c in customers if c in user_index]
    if not known:
        return {}
    ids = np.array([user_index[c] for c in known], dtype=np.int32)
    found, _ = model.recommend(ids, ordered[ids], N=k, filter_already_liked_items=True)
    return {c: [item_ids[j] for j in row if j >= 0] for c, row in zip(known, found, strict=True)}


def evaluate(
    shop: Shop, *, split_at: datetime, k: int = 10, strategies: Sequence[Any] | None = None,
    until: datetime | None = None, horizon: timedelta | None = None, baseline: str = "popular", als: bool = False,
    als_factors: int = 64, als_iterations: int = 15, seed: int = 0,
) -> Evaluation:
    """Score recommendation strategies on ``shop`` by a time split at ``split_at`` (see the module's docstring).

    ``until`` (or ``split_at + horizon``) ends the truth; by default every later order counts.  ``strategies``
    are names or strategy values accepted by ``shop.recommend``; ``baseline`` is always evaluated too.
    ``als=True`` adds ``implicit``'s ALS trained on the events before the split."""
    if until is not None and horizon is not None:
        raise ValueError("give until or horizon, not both")
    end = until or (split_at + horizon if horizon is not None else datetime.max)
    if end <= split_at:
        raise ValueError(f"until ({end}) must be after split_at ({split_at})")
    chosen = list(strategies) if strategies is not None else [baseline, "also_bought", "personal"]
    if baseline not in [str(getattr(s, "name", s)) for s in chosen]:
        chosen.insert(0, baseline)
    truth = _truth(shop, split_at, end)
    customers = sorted(truth, key=str)
    catalog = _catalog_size(shop, split_at)
    scores = []
    for strategy in chosen:
        table = shop.recommend(customers, k=k, strategy=strategy, now=split_at)  # type: ignore[attr-defined]
        scores.append(score(str(getattr(strategy, "name", strategy)), _ranked(table), truth, k=k, catalog=catalog))
    if als:
        recommended = _als(shop, customers, split_at, k, als_factors, als_iterations, seed)
        scores.append(score("als (implicit)", recommended, truth, k=k, catalog=catalog))
    scores.sort(key=lambda s: (-s.hit_rate, s.strategy))
    return Evaluation(split_at=split_at, until=None if end == datetime.max else end, k=k, scores=tuple(scores), baseline=baseline)
