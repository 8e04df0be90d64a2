"""Random small shops for the recommenders: catalog events, an optional catalog, an audience and a request, as
plain rows (instants in microseconds), the reference's lists, and a comparison of an engine's rows with them.

The shops provoke engines: product ids and categories that differ only in case or a trailing space, counts that
tie, pairs exactly at ``min_support``, events at ``now`` and on the trending windows' edges, customers with no
history (who must be served by the fallback), filters that leave nothing.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from hypothesis import strategies as st
from sqlglot import exp

from shopcrm.recommend import Filters, Recommendation, parse_strategy
from shopcrm.recommend._reference import DAY_US, recommend_reference
from shopcrm.recommend._sql import OUTPUT_COLUMNS

NOW = 1_790_000_000_000_000
EVENT_COLUMNS = ("customer", "event", "product_id", "category", "price", "ts_us")
PRODUCT_COLUMNS = ("product_id", "category", "price", "stock", "available", "image_url")
PRODUCTS = ("A", "a", "B", "b", "C", "A ", "D")
CATEGORIES = ("x", "X", "y", None)
EVENTS = ("order_completed", "order_completed", "product_viewed", "product_viewed", "cart_added", "cart_removed")
OFFSETS = (1, 2, 3 * DAY_US, 7 * DAY_US, 7 * DAY_US + 1, 7 * DAY_US - 1, 28 * DAY_US, 28 * DAY_US + 1, 40 * DAY_US,
           0, -1)  # 0 and -1: at and after now, never read


@attrs.frozen
class RecShop:
    id_kind: str
    events: list[dict[str, Any]]
    products: list[dict[str, Any]] | None
    audience: list[Any]
    exclusions: dict[Any, list[str]] | None
    request: Recommendation
    everyone: bool = False
    now_us: int = NOW

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        if name == "events":
            return [tuple(e[c] for c in EVENT_COLUMNS) for e in self.events]
        if name == "products":
            return [tuple(p[c] for c in PRODUCT_COLUMNS) for p in self.products or []]
        if name == "audience":
            return [(c,) for c in self.audience]
        return [(c, p) for c, ps in (self.exclusions or {}).items() for p in ps]

    def expected(self) -> list[tuple[Any, ...]]:
        lists = recommend_reference(self.request, events=self.events, audience=self.audience, now_us=self.now_us,
                                    products=self.products, exclusions=self.exclusions, everyone=self.everyone)
        return sorted((c, i + 1, p, s, kind) for c, items in lists.items() for i, (p, s, kind) in enumerate(items))


def relations(shop: RecShop, prefix: str = "") -> dict[str, exp.Expr]:
    """The compiler's input relations over tables named ``{prefix}events`` etc."""
    out: dict[str, exp.Expr] = {"events": exp.to_table(f"{prefix}events").as_("e"),
                                "audience": exp.to_table(f"{prefix}audience").as_("a")}
    if shop.products is not None:
        out["products"] = exp.to_table(f"{prefix}products").as_("p")
    if shop.exclusions is not None:
        out["exclusions"] = exp.to_table(f"{prefix}exclusions").as_("xe")
    return out


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def check(rows: list[tuple[Any, ...]], shop: RecShop) -> None:
    """An engine's output rows equal the reference's lists (scores to 1e-12 relative)."""
    got = sorted((_text(c) if shop.id_kind == "str" else int(c), int(r), _text(p), float(s), _text(k))
                 for c, r, p, s, k in rows)
    want = shop.expected()
    assert [(c, r, p, k) for c, r, p, _, k in got] == [(c, r, p, k) for c, r, p, _, k in want], (got, want)
    for g, w in zip(got, want, strict=True):
        assert math.isclose(g[3], w[3], rel_tol=1e-12), (g, w)
    assert len(OUTPUT_COLUMNS) == 5


_strategy = st.one_of(
    st.builds(lambda m, s: {"kind": "also_bought", "measure": m, "min_support": s},
              st.sampled_from(["lift", "cosine"]), st.integers(1, 3)),
    st.builds(lambda m, s: {"kind": "also_viewed", "measure": m, "min_support": s},
              st.sampled_from(["lift", "cosine"]), st.integers(1, 2)),
    st.just({"kind": "viewed_not_bought"}),
    st.builds(lambda r, b, e, m: {"kind": "trending", "recent_days": r, "baseline_days": r + b, "event": e,
                                  "smoothing": m},
              st.sampled_from([3, 7]), st.sampled_from([21, 25]), st.sampled_from(["order_completed", "product_viewed"]),
              st.sampled_from([1, 10])),
    st.builds(lambda c, d: {"kind": "popular", "category": c, "days": d},
              st.sampled_from([None, None, "x", "X"]), st.sampled_from([None, 7, 30])),
    st.just({"kind": "personal"}), st.builds(lambda p: {"kind": "personal", "prior": p}, st.integers(0, 7)),
)


@st.composite
def shops(draw: st.DrawFn) -> RecShop:
    id_kind = draw(st.sampled_from(["str", "int"]))
    pool: list[Any] = ["c1", "C1", "c2", "c3", "c1 "] if id_kind == "str" else [1, 2, 3, 4, 5]
    customers = draw(st.lists(st.sampled_from(pool), min_size=0, max_size=5, unique=True))
    events = []
    for _ in range(draw(st.integers(0, 30))):
        events.append({
            "customer": draw(st.sampled_from(customers)) if customers else pool[0],
            "event": draw(st.sampled_from(EVENTS)), "product_id": draw(st.sampled_from(PRODUCTS)),
            "category": draw(st.sampled_from(CATEGORIES)), "price": draw(st.sampled_from([None, 10.0, 20.0, 20.5])),
            "ts_us": NOW - draw(st.sampled_from(OFFSETS)),
        })
    # a customer who buys the same pair as another, so that min_support 2 is met
    if events and draw(st.booleans()):
        for customer in customers[:3]:
            for pid in ("A", "B"):
                events.append({"customer": customer, "event": "order_completed", "product_id": pid, "category": "x",
                               "price": 10.0, "ts_us": NOW - 5 * DAY_US})
    products = None
    if draw(st.booleans()):
        products = [{"product_id": pid, "category": draw(st.sampled_from(CATEGORIES)),
                     "price": draw(st.sampled_from([None, 10.0, 20.0])), "stock": draw(st.sampled_from([None, 0, 3])),
                     "available": draw(st.sampled_from([None, True, False])),
                     "image_url": draw(st.sampled_from([None, "", "https://img/x.jpg"]))}
                    for pid in draw(st.lists(st.sampled_from(PRODUCTS), unique=True, max_size=6))]
    audience = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
    exclusions = None
    if draw(st.booleans()):
        exclusions = {c: draw(st.lists(st.sampled_from(PRODUCTS), unique=True, max_size=2)) for c in audience[:2]}
    chain = tuple(parse_strategy(s) for s in draw(st.lists(_strategy, min_size=1, max_size=3)))
    catalog = products is not None
    filters = Filters(
        in_stock=catalog and draw(st.booleans()), has_image=catalog and draw(st.booleans()),
        not_bought=draw(st.booleans()), exclude=tuple(draw(st.lists(st.sampled_from(PRODUCTS), unique=True, max_size=2))),
        min_price=draw(st.sampled_from([None, None, 15.0])), max_price=draw(st.sampled_from([None, None, 20.0])),
    )
    request = Recommendation(strategies=chain, k=draw(st.integers(1, 4)), filters=filters)
    return RecShop(id_kind, events, products, audience, exclusions, request, draw(st.booleans()))
