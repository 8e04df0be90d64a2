"""On the demo shop, the recommenders find what the generator planted (issue 14): also-bought recovers the
complementary pairs, and the personal blend beats the popularity baseline on a time split."""

from __future__ import annotations

from datetime import timedelta

import pytest

import shopcrm
from shopcrm.demo import PLANTED_PAIRS, generate
from shopcrm.recommend import evaluate, for_customers


@pytest.fixture(scope="module")
def shop() -> shopcrm.Shop:
    demo = generate(100_000)
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers(demo.customers)
    shop.load_events(demo.events)
    shop.load_product_history(demo.product_history)
    shop.load_products(demo.products, at=demo.now)
    return shop


def test_also_bought_recovers_every_planted_pair(shop: shopcrm.Shop) -> None:
    from shopcrm.demo import DEMO_NOW

    # one new customer per pair, whose only order is the pair's first product
    probes = [f"probe-{a}" for a, _ in PLANTED_PAIRS]
    shop.load_customers([{"customer_id": p} for p in probes])
    shop.load_events([{"customer_id": f"probe-{a}", "event": "order_completed", "ts": DEMO_NOW - timedelta(hours=1),
                       "product_id": a} for a, _ in PLANTED_PAIRS])
    for measure in ("lift", "cosine"):
        found = for_customers(shop, probes, strategy={"kind": "also_bought", "measure": measure},
                                                k=1, now=DEMO_NOW)
        assert {p: [item["product_id"] for item in found[p]] for p in probes} == {
            f"probe-{a}": [b] for a, b in PLANTED_PAIRS}, measure


def test_the_personal_blend_beats_popularity_at_10(shop: shopcrm.Shop) -> None:
    from shopcrm.demo import DEMO_NOW

    result = evaluate(shop, split_at=DEMO_NOW - timedelta(days=30), until=DEMO_NOW, k=10, strategies=["personal"])
    personal, popular = result.metrics("personal"), result.metrics("popular")
    assert personal.customers == popular.customers > 10_000
    # measured: 0.418 against 0.393 (100,000 customers, 16,578 with a new product ordered in the 30 days)
    assert personal.hit_rate > popular.hit_rate + 0.015
    assert personal.ndcg > popular.ndcg
    assert personal.coverage > 5 * popular.coverage
