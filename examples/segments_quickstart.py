"""Build audiences on the synthetic demo shop: counts, explain, SQL for another engine.

    python examples/segments_quickstart.py      (SHOPCRM_EXAMPLE_SCALE=20000 for a smaller shop)
"""

from __future__ import annotations

import os

import shopcrm
from shopcrm.demo import DEMO_NOW, generate
from shopcrm.dsl import aggregate, attr, did, last_did, sample

scale = int(os.environ.get("SHOPCRM_EXAMPLE_SCALE", "50000"))
demo = generate(scale, seed=7)
shop = shopcrm.Shop.open(":memory:")
shop.load_customers(demo.customers)
shop.load_events(demo.events)
now = DEMO_NOW
print(f"{demo.customers.num_rows:,} customers, {demo.events.num_rows:,} events, as of {now:%Y-%m-%d}")

shoe_fans = did("product_viewed", category="shoes").within("30d").times(gte=3)
big_spenders = aggregate("sum", "amount", "order_completed").within("90d") >= 300_000
quiet = last_did("session_started").ago(gte="30d", lt="60d")
twenties = attr("age").between(20, 29)

audiences = {
    "shoe fans": shoe_fans,
    "big spenders": big_spenders,
    "gone quiet 30-60 days": quiet,
    "shoe fans in their 20s who went quiet": shoe_fans & twenties & quiet,
    "big spenders outside the 10% holdout": big_spenders & ~sample(10, "winter-2026"),
}
for (name, _), count in zip(audiences.items(), shop.count_many(list(audiences.values()), now=now), strict=True):
    print(f"  {name:<42} {count:>8,}")

shop.save_segment("big_spenders", big_spenders, "90일 30만원 이상")
print()
print(shop.explain({"and": [{"in_segment": "big_spenders"}, {"attribute": "region", "eq": "서울"}]}, now=now))
print()
print("The same audience for a PostgreSQL copy of the shop:")
print(shop.to_sql(shoe_fans & twenties, now=now, dialect="postgres"))
