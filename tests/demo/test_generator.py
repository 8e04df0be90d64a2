"""The synthetic shop: deterministic, realistic enough that every seed segment is non-empty."""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import shopcrm
from shopcrm.demo import DEMO_NOW, PLANTED_PAIRS, SEED_RULES, generate
from shopcrm.demo._generator import CATEGORIES, N_PRODUCTS


def test_same_seed_same_shop_other_seed_other_shop() -> None:
    a, b, c = generate(2000, seed=1), generate(2000, seed=1), generate(2000, seed=2)
    assert a.customers.equals(b.customers)
    assert a.events.equals(b.events)
    assert not a.events.equals(c.events)


def test_shape_and_types() -> None:
    demo = generate(5000)
    assert demo.customers.num_rows == 5000
    assert 9 * 5000 < demo.events.num_rows < 13 * 5000
    assert demo.events.schema.field("ts").type == pa.timestamp("us")
    assert set(demo.events.column("event").unique().to_pylist()) >= {"signed_up", "product_viewed", "order_completed", "cart_added"}
    ts = demo.events.column("ts").to_pylist()
    assert max(ts) < DEMO_NOW
    names = demo.customers.column("name").to_pylist()
    assert all(len(n) == 3 for n in names[:100])


def test_every_seed_segment_reaches_someone() -> None:
    demo = generate(20_000)
    shop = shopcrm.Shop.open()
    shop.load_customers(demo.customers)
    shop.load_events(demo.events)
    for name, rule in SEED_RULES.items():
        shop.save_segment(name, rule)
    counts = shop.count_many([{"in_segment": n} for n in SEED_RULES], now=DEMO_NOW)
    assert all(0 < c < 20_000 for c in counts), dict(zip(SEED_RULES, counts, strict=True))


# ---------------------------------------------------------------- the catalog and what is planted in it (issue 14)




@pytest.fixture(scope="module")
def shop10k() -> Any:
    return generate(10_000, seed=3)


def _rows(table: Any, event: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.filter(pc.equal(table["event"], event)).to_pylist()
    return rows


def test_the_catalog_holds_every_product_the_events_name(shop10k: Any) -> None:
    products = shop10k.products
    assert products.column_names == ["product_id", "name", "category", "price", "stock", "image_url", "product_url", "available"]
    assert products.num_rows == N_PRODUCTS
    ids = products["product_id"].to_pylist()
    assert ids == [f"P{i}" for i in range(1, N_PRODUCTS + 1)]
    named = set(pc.unique(shop10k.events["product_id"].drop_null()).to_pylist())
    assert named <= set(ids)
    assert all(name and any("\uac00" <= ch <= "\ud7a3" for ch in name) for name in products["name"].to_pylist())
    assert set(products["category"].to_pylist()) <= set(CATEGORIES)
    images = products["image_url"].to_pylist()
    assert 0 < images.count(None) < 0.1 * N_PRODUCTS  # a few products have no image
    assert all(url.endswith("/" + pid) for url, pid in zip(products["product_url"].to_pylist(), ids, strict=True))
    # an event's category is its product's
    category = dict(zip(ids, products["category"].to_pylist(), strict=True))
    viewed = _rows(shop10k.events, "product_viewed")
    assert all(e["category"] == category[e["product_id"]] for e in viewed)


def test_the_history_agrees_with_the_catalog_and_with_the_prices_events_carry(shop10k: Any) -> None:
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in shop10k.product_history.to_pylist():
        history[row["product_id"]].append(row)
    catalog = {row["product_id"]: row for row in shop10k.products.to_pylist()}
    assert set(history) == set(catalog)
    changed_price = 0
    for pid, rows in history.items():
        stamps = [r["ts"] for r in rows]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        assert all(r["stock"] >= 0 for r in rows)
        assert all(not r["available"] for r in rows if r["stock"] == 0)
        last = rows[-1]
        assert (last["price"], last["stock"], last["available"]) == (
            catalog[pid]["price"], catalog[pid]["stock"], catalog[pid]["available"])
        # one row per change: consecutive rows differ
        assert all((a["price"], a["stock"], a["available"]) != (b["price"], b["stock"], b["available"])
                   for a, b in itertools.pairwise(rows))
        changed_price += len({r["price"] for r in rows}) > 1
    assert 0.1 * N_PRODUCTS < changed_price < 0.3 * N_PRODUCTS
    # the price an event carries is the price its product had then (events after the history starts)
    checked = 0
    for event in _rows(shop10k.events, "order_completed") + _rows(shop10k.events, "cart_added"):
        rows = history[event["product_id"]]
        at = bisect.bisect_right([r["ts"] for r in rows], event["ts"]) - 1
        if at >= 0:
            assert event["price"] == rows[at]["price"], event
            checked += 1
    assert checked > 10_000
    # stock runs down and is restocked
    assert sum(1 for rows in history.values() for a, b in itertools.pairwise(rows) if b["stock"] > a["stock"]) > 100


def test_wishlist_events_name_products_and_removals_follow_additions(shop10k: Any) -> None:
    added, removed = _rows(shop10k.events, "wishlist_added"), _rows(shop10k.events, "wishlist_removed")
    assert len(added) > 0.05 * 10_000
    assert 0 < len(removed) < len(added)
    first_added = {}
    for e in added:
        assert e["product_id"] is not None
        first_added.setdefault((e["customer_id"], e["product_id"]), e["ts"])
    assert all((e["customer_id"], e["product_id"]) in first_added and e["ts"] >= first_added[(e["customer_id"], e["product_id"])]
               for e in removed)
    assert max(e["ts"] for e in added + removed) < DEMO_NOW


def test_also_bought_by_lift_recovers_every_planted_pair(shop10k: Any) -> None:
    """Lift with a minimum support of 5 co-buyers ranks each partner first."""
    buyers: dict[str, set[str]] = defaultdict(set)
    for e in _rows(shop10k.events, "order_completed"):
        buyers[e["product_id"]].add(e["customer_id"])
    people = len(set().union(*buyers.values()))
    for first, second in PLANTED_PAIRS:
        lift = {p: len(buyers[first] & s) * people / (len(buyers[first]) * len(s))
                for p, s in buyers.items() if p != first and len(buyers[first] & s) >= 5}
        assert max(lift, key=lambda p: lift[p]) == second, (first, second)


def test_customers_lean_to_one_or_two_favourite_categories(shop10k: Any) -> None:
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for name in ("product_viewed", "order_completed"):
        for e in _rows(shop10k.events, name):
            seen[e["customer_id"]][e["category"]] += 1
    shares = [sum(n for _, n in c.most_common(2)) / sum(c.values()) for c in seen.values() if sum(c.values()) >= 10]
    # ten categories and no tastes would put well under half of a customer's events in their top two
    assert sum(shares) / len(shares) > 0.6


def test_the_catalog_is_deterministic_and_at_now(shop10k: Any) -> None:
    again = generate(10_000, seed=3)
    assert again.products.equals(shop10k.products)
    assert again.product_history.equals(shop10k.product_history)
    assert max(shop10k.product_history["ts"].to_pylist()) <= datetime(2026, 11, 24)
