"""The pure in-memory meaning of every recommender: rows in, ranked lists out.

The SQL compiler (:mod:`shopcrm.recommend._sql`) must return exactly these lists on every engine.  Inputs use the
compiler's relations' columns:

- events: ``customer, event, product_id, category, price, ts_us`` (instants as integer microseconds since 1970);
  only the catalog events before ``now_us`` with a customer and a product count.
- products (optional, the catalog): ``product_id, category, price, stock, image_url, available``.  With a catalog,
  only its products are recommended and its category and price are the product's; without one a product's
  category is the smallest (by code point) its events name and its price the latest its events carry.

Ranking: score descending, then product id ascending by code point.  Scores are ratios of exact integers computed
with one correctly rounded division (as the engines do), so that ties and order agree everywhere.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

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

__all__ = ["DAY_US", "Ranked", "recommend_reference"]

DAY_US = 86_400_000_000
#: (product_id, key, score): key orders, score is shown (they differ only for cosine, ranked by its square)
Ranked = tuple[str, float, float]


class _Data:
    def __init__(self, events: Iterable[Mapping[str, Any]], products: Sequence[Mapping[str, Any]] | None,
                 now_us: int) -> None:
        self.now_us = now_us
        self.events = [e for e in events if e.get("customer") is not None and e.get("product_id") is not None
                       and e.get("ts_us") is not None and e["ts_us"] < now_us and e.get("event") in CATALOG_EVENTS]
        self.catalog = products is not None
        self.category: dict[str, str | None] = {}
        self.price: dict[str, float | None] = {}
        self.product_rows: dict[str, Mapping[str, Any]] = {}
        if products is not None:
            for row in products:
                pid = row["product_id"]
                if pid is None:
                    continue
                self.product_rows[pid] = row
                self.category[pid] = row.get("category")
                self.price[pid] = row.get("price")
        else:
            latest: dict[str, tuple[int, float]] = {}
            for e in self.events:
                pid = e["product_id"]
                if e.get("category") is not None:
                    old = self.category.get(pid)
                    self.category[pid] = e["category"] if old is None else min(old, e["category"])
                else:
                    self.category.setdefault(pid, None)
                if e.get("price") is not None:
                    mark = (e["ts_us"], float(e["price"]))
                    if pid not in latest or mark > latest[pid]:
                        latest[pid] = mark
            self.price = {pid: latest[pid][1] if pid in latest else None for pid in self.category}
        # distinct (customer, product) pairs per event
        self.pairs: dict[str, set[tuple[Hashable, str]]] = defaultdict(set)
        for e in self.events:
            self.pairs[e["event"]].add((e["customer"], e["product_id"]))

    def known(self, pid: str) -> bool:
        return pid in self.product_rows if self.catalog else True

    def passes(self, pid: str, request: Recommendation) -> bool:
        """The filters that do not depend on the customer."""
        f = request.filters
        if not self.known(pid) or pid in f.exclude:
            return False
        row = self.product_rows.get(pid, {})
        if f.in_stock:
            stock = row.get("stock")
            if row.get("available") is False or row.get("available") == 0 or (stock is not None and stock <= 0):
                return False
        if f.has_image and not row.get("image_url"):
            return False
        if f.min_price is not None or f.max_price is not None:
            price = self.price.get(pid)
            if price is None:
                return False
            if f.min_price is not None and price < f.min_price:
                return False
            if f.max_price is not None and price > f.max_price:
                return False
        return True


def _ranked(items: Mapping[str, tuple[float, float]]) -> list[Ranked]:
    return [(pid, key, score) for pid, (key, score) in
            sorted(items.items(), key=lambda item: (-item[1][0], item[0]))]


def _by_customer(pairs: Iterable[tuple[Hashable, str]]) -> dict[Hashable, set[str]]:
    out: dict[Hashable, set[str]] = defaultdict(set)
    for customer, pid in pairs:
        out[customer].add(pid)
    return out


def _co_occurrence(data: _Data, strategy: AlsoBought | AlsoViewed, customers: Iterable[Hashable],
                   ok: set[str]) -> dict[Hashable, list[Ranked]]:
    event = "order_completed" if strategy.kind == "also_bought" else "product_viewed"
    pairs = data.pairs[event]
    per_customer = _by_customer(pairs)
    n_p: dict[str, int] = defaultdict(int)
    for _, pid in pairs:
        n_p[pid] += 1
    total = len(per_customer)
    n_ab: dict[tuple[str, str], int] = defaultdict(int)
    for items in per_customer.values():
        for a in items:
            for b in items:
                if a != b:
                    n_ab[(a, b)] += 1
    neighbours: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for (a, b), n in n_ab.items():
        if n < strategy.min_support or b not in ok:
            continue
        if strategy.measure == "lift":
            key = (n * total) / (n_p[a] * n_p[b])
            score = key
        else:
            key = (n * n) / (n_p[a] * n_p[b])
            score = n / math.sqrt(float(n_p[a] * n_p[b]))
        neighbours[a][b] = (key, score)
    out: dict[Hashable, list[Ranked]] = {}
    for customer in customers:
        best: dict[str, tuple[float, float]] = {}
        for a in per_customer.get(customer, ()):
            for b, (key, score) in neighbours.get(a, {}).items():
                old = best.get(b)
                best[b] = (key, score) if old is None else (max(old[0], key), max(old[1], score))
        out[customer] = _ranked(best)
    return out


def _viewed_not_bought(data: _Data, customers: Iterable[Hashable], ok: set[str]) -> dict[Hashable, list[Ranked]]:
    bought = data.pairs["order_completed"]
    views: dict[Hashable, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in data.events:
        if e["event"] == "product_viewed" and (e["customer"], e["product_id"]) not in bought and e["product_id"] in ok:
            views[e["customer"]][e["product_id"]] += 1
    return {c: _ranked({p: (float(n), float(n)) for p, n in views.get(c, {}).items()}) for c in customers}


def _global(data: _Data, strategy: Trending | Popular, ok: set[str]) -> list[Ranked]:
    now = data.now_us
    if isinstance(strategy, Trending):
        recent: dict[str, int] = defaultdict(int)
        base: dict[str, int] = defaultdict(int)
        for e in data.events:
            if e["event"] != strategy.event or e["product_id"] not in ok:
                continue
            if e["ts_us"] >= now - strategy.baseline_days * DAY_US:
                base[e["product_id"]] += 1
            if e["ts_us"] >= now - strategy.recent_days * DAY_US:
                recent[e["product_id"]] += 1
        factor = strategy.baseline_days / strategy.recent_days
        items = {}
        for pid, r in recent.items():
            key = r / (base[pid] + strategy.smoothing)
            items[pid] = (key, key * factor)
        return _ranked(items)
    since = None if strategy.days is None else now - strategy.days * DAY_US
    buyers: dict[str, set[Hashable]] = defaultdict(set)
    for e in data.events:
        if e["event"] != "order_completed" or e["product_id"] not in ok:
            continue
        if since is not None and e["ts_us"] < since:
            continue
        if strategy.category is not None and data.category.get(e["product_id"]) != strategy.category:
            continue
        buyers[e["product_id"]].add(e["customer"])
    return _ranked({pid: (float(len(c)), float(len(c))) for pid, c in buyers.items()})


def _personal(data: _Data, strategy: Personal, customers: Iterable[Hashable], ok: set[str]) -> dict[Hashable, list[Ranked]]:
    n_p: dict[str, int] = defaultdict(int)
    for _, pid in data.pairs["order_completed"]:
        n_p[pid] += 1
    n_c: dict[str, int] = defaultdict(int)
    by_category: dict[str, list[str]] = defaultdict(list)
    for pid, n in n_p.items():
        category = data.category.get(pid)
        if category is None:
            continue
        n_c[category] += n
        if pid in ok:
            by_category[category].append(pid)
    n_all = sum(n_c.values())
    prior = strategy.prior
    weights: dict[Hashable, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in data.events:
        category = data.category.get(e["product_id"])
        if category is not None:
            weights[e["customer"]][category] += AFFINITY_WEIGHTS[e["event"]]
    out: dict[Hashable, list[Ranked]] = {}
    for customer in customers:
        mine = weights.get(customer, {})
        total = sum(mine.values())
        items = {}
        for category in (by_category if prior and total else mine):
            w = mine.get(category, 0)
            for pid in by_category.get(category, ()):
                # exact integers, one correctly rounded division (as every engine computes it)
                key = (n_p[pid] * (w * n_all + prior * n_c[category])) / (n_c[category] * n_all * (total + prior))
                items[pid] = (key, key)
        out[customer] = _ranked(items)
    return out


def recommend_reference(
    request: Recommendation, *, events: Iterable[Mapping[str, Any]], audience: Iterable[Hashable], now_us: int,
    products: Sequence[Mapping[str, Any]] | None = None, exclusions: Mapping[Hashable, Iterable[str]] | None = None,
    everyone: bool = False,
) -> dict[Hashable, list[tuple[str, float, str]]]:
    """Up to ``request.k`` ``(product_id, score, strategy kind)`` per customer of ``audience``: the first strategy's
    ranking, then each next strategy's filling the places left with products not yet chosen.  ``exclusions`` holds
    further products per customer that must not be shown; ``everyone=True`` adds to the audience every customer
    with catalog events before now."""
    if request.filters.needs_catalog and products is None:
        raise RecommendError(f"the filters {', '.join(request.filters.needs_catalog)} need the shop's catalog "
                             "(Schema.products); load products first or leave those filters out")
    data = _Data(events, products, now_us)
    customers = list(dict.fromkeys(audience))
    if everyone:
        customers = list(dict.fromkeys([*customers, *(e["customer"] for e in data.events)]))
    candidates = set(data.category) | {pid for _, pid in data.pairs["order_completed"]}
    ok = {pid for pid in candidates if data.passes(pid, request)}
    if data.catalog:
        ok |= {pid for pid in data.product_rows if data.passes(pid, request)}
    bought = _by_customer(data.pairs["order_completed"])
    excluded: dict[Hashable, set[str]] = defaultdict(set)
    for customer in customers:
        if request.filters.not_bought:
            excluded[customer] |= bought.get(customer, set())
        if exclusions is not None:
            excluded[customer] |= set(exclusions.get(customer, ()))
    chosen: dict[Hashable, list[tuple[str, float, str]]] = {c: [] for c in customers}
    for strategy in request.strategies:
        if isinstance(strategy, AlsoBought | AlsoViewed):
            ranked = _co_occurrence(data, strategy, customers, ok)
        elif isinstance(strategy, ViewedNotBought):
            ranked = _viewed_not_bought(data, customers, ok)
        elif isinstance(strategy, Personal):
            ranked = _personal(data, strategy, customers, ok)
        else:
            shared = _global(data, strategy, ok)
            ranked = dict.fromkeys(customers, shared)
        for customer in customers:
            picked = chosen[customer]
            seen = {p for p, _, _ in picked}
            for pid, _key, score in ranked.get(customer, []):
                if len(picked) >= request.k:
                    break
                if pid in seen or pid in excluded[customer]:
                    continue
                picked.append((pid, score, strategy.kind))
                seen.add(pid)
    return chosen
