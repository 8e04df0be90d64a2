"""The spec's seed example, shared by tests."""

SEED = {
    "and": [
        {"performed": "product_viewed", "where": {"category": "shoes"}, "within": {"last": "30d"}, "times": {"gte": 3}},
        {"or": [
            {"performed": "order_completed", "where": {"product_id": "P1"}},
            {"performed": "order_completed", "where": {"product_id": "P2"}},
        ]},
        {"not": {"performed": "promotion_joined", "where": {"promotion_id": "PROMO1"}}},
        {"attribute": "age", "between": [20, 39]},
    ]
}
