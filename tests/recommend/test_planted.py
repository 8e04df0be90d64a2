"""Planted structure is found: a complementary pair beats the best-seller under lift and cosine, and the personal
blend beats the popularity baseline on a shop whose customers keep to their favourite category."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

import shopcrm
from shopcrm.recommend import evaluate, for_customers

NOW = datetime(2026, 3, 1)


def _shop(events: list[dict[str, Any]], customers: list[str]) -> shopcrm.Shop:
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers([{"customer_id": c} for c in customers])
    shop.load_events(events)
    return shop


def _order(customer: str, product: str, category: str, ts: datetime) -> dict[str, Any]:
    return {"customer_id": customer, "event": "order_completed", "ts": ts, "product_id": product,
            "category": category, "price": 10_000.0}


@pytest.mark.parametrize("measure", ["lift", "cosine"])
def test_a_complementary_pair_beats_the_best_seller(measure: str) -> None:
    rng = random.Random(7)
    customers = [f"c{i:03d}" for i in range(200)]
    events = []
    for i, c in enumerate(customers):
        ts = NOW - timedelta(days=rng.randint(1, 60))
        if rng.random() < 0.8:
            events.append(_order(c, "BEST", "tops", ts))
        if i < 30:  # 30 buy the camera, 20 of them the memory card with it
            events.append(_order(c, "CAMERA", "electronics", ts))
            if i < 20:
                events.append(_order(c, "CARD", "electronics", ts))
        elif rng.random() < 0.03:
            events.append(_order(c, "CARD", "electronics", ts))
    events.append(_order("probe", "CAMERA", "electronics", NOW - timedelta(days=1)))
    shop = _shop(events, [*customers, "probe"])
    got = for_customers(shop, ["probe"], strategy={"kind": "also_bought", "measure": measure, "min_support": 3},
                        k=2, now=NOW)
    assert [i["product_id"] for i in got["probe"]][:2] == ["CARD", "BEST"]
    # raw co-occurrence would put the best-seller first: more camera buyers also bought it
    with_best = sum(1 for c in customers[:30] if any(e["customer_id"] == c and e["product_id"] == "BEST" for e in events))
    assert with_best > 20


def test_personal_beats_popular_when_customers_keep_to_a_category() -> None:
    rng = random.Random(11)
    categories = {"shoes": ["S1", "S2", "S3", "S4"], "bags": ["B1", "B2", "B3", "B4"], "beauty": ["K1", "K2", "K3", "K4"]}
    names = list(categories)
    split = NOW - timedelta(days=14)
    customers = [f"c{i:03d}" for i in range(240)]
    events = []
    for c in customers:
        favourite = names[rng.randrange(3)] if rng.random() < 0.8 else "shoes"  # shoes sell best overall
        for when in [split - timedelta(days=rng.randint(1, 60)) for _ in range(3)] + [split + timedelta(days=2)]:
            category = favourite if rng.random() < 0.9 else rng.choice(names)
            product = rng.choices(categories[category], weights=[4, 3, 2, 1])[0]
            events.append(_order(c, product, category, when))
            events.append({**_order(c, product, category, when - timedelta(hours=1)), "event": "product_viewed"})
    shop = _shop(events, customers)
    result = evaluate(shop, split_at=split, until=NOW, k=2, strategies=["personal"])
    assert result.metrics("personal").hit_rate > result.metrics("popular").hit_rate + 0.1
    assert result.metrics("personal").coverage > result.metrics("popular").coverage
