"""The synthetic shop: deterministic, realistic enough that every seed segment is non-empty."""

from __future__ import annotations

import pyarrow as pa

import shopcrm
from shopcrm.demo import DEMO_NOW, SEED_RULES, generate


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
