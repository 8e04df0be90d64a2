"""The offline evaluation: the metrics' arithmetic, and a time split on a small shop."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

import shopcrm
from shopcrm.recommend import evaluate, score_lists


def test_metrics_by_hand() -> None:
    truth = {"a": {"P1", "P2"}, "b": {"P3"}, "c": set()}
    lists = {"a": ["P9", "P2", "P1"], "b": ["P4", "P5"], "c": ["P1"]}
    m = score_lists("x", lists, truth, k=2, catalog_size=10)
    assert m.customers == 2  # c ordered nothing after the split: not scored
    assert m.hit_rate == 0.5
    assert m.recall == pytest.approx((1 / 2 + 0) / 2)
    ideal_a = 1 + 1 / math.log2(3)
    assert m.ndcg == pytest.approx((1 / math.log2(3)) / ideal_a / 2)
    assert m.coverage == pytest.approx(5 / 10)  # P9, P2, P4, P5, P1 shown within k=2 ... of every list
    assert score_lists("x", {}, {}, k=3, catalog_size=0).hit_rate == 0.0


def test_a_time_split_reads_only_the_past() -> None:
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers([{"customer_id": c} for c in ("c1", "c2", "c3")])
    d = lambda day: datetime(2026, 3, day)  # noqa: E731
    shop.load_events([
        {"customer_id": "c1", "event": "order_completed", "ts": d(1), "product_id": "A", "category": "x", "price": 1.0},
        {"customer_id": "c1", "event": "order_completed", "ts": d(2), "product_id": "B", "category": "x", "price": 1.0},
        {"customer_id": "c2", "event": "order_completed", "ts": d(3), "product_id": "A", "category": "x", "price": 1.0},
        {"customer_id": "c2", "event": "order_completed", "ts": d(4), "product_id": "B", "category": "x", "price": 1.0},
        {"customer_id": "c3", "event": "order_completed", "ts": d(5), "product_id": "A", "category": "x", "price": 1.0},
        # after the split: c3 buys B (also-bought finds it), c1 buys C (nobody could know)
        {"customer_id": "c3", "event": "order_completed", "ts": d(20), "product_id": "B", "category": "x", "price": 1.0},
        {"customer_id": "c1", "event": "order_completed", "ts": d(21), "product_id": "C", "category": "y", "price": 1.0},
    ])
    chosen = [{"kind": "also_bought", "min_support": 2}, ["viewed_not_bought"]]
    result = evaluate(shop, split_at=datetime(2026, 3, 10), k=1, strategies=chosen)
    assert [r.strategy for r in result.rows] == ["popular", "also_bought", "viewed_not_bought"]
    assert result.metrics("also_bought").hit_rate == 0.5  # c3 gets B (bought with A); c1 has bought A and B
    # what a customer has ordered is not recommended again: c3 (who has A) gets the next best seller, B
    assert result.metrics("popular").hit_rate == 0.5
    # counting repurchases and filtering nothing, the best seller A goes to everyone and finds nothing
    again = evaluate(shop, split_at=datetime(2026, 3, 10), k=1, strategies=chosen, repurchases=True)
    assert again.metrics("popular").hit_rate == 0.0
    assert again.metrics("popular").coverage == 0.5  # A of the two products known before the split
    assert "hit rate" in str(result)
    assert result.to_arrow().num_rows == 3
    with pytest.raises(KeyError, match="evaluated: popular"):
        result.metrics("personal")


def _event(customer: str, name: str, product: str, day: int) -> dict[str, object]:
    return {"customer_id": customer, "event": name, "product_id": product, "ts": datetime(2026, 1, day)}


def test_the_truth_is_new_products_ordered_after_the_split() -> None:
    from shopcrm.recommend._evaluation import _truth

    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers([{"customer_id": c} for c in ("a", "b", "c")])
    shop.load_events([
        _event("a", "order_completed", "P1", 1), _event("a", "order_completed", "P1", 10),  # a repurchase
        _event("a", "order_completed", "P2", 11), _event("b", "product_viewed", "P3", 12),
        _event("c", "order_completed", "P4", 30),  # after the end
    ])
    assert _truth(shop, datetime(2026, 1, 5), datetime(2026, 1, 20)) == {"a": {"P2"}}
    assert _truth(shop, datetime(2026, 1, 5), datetime(2026, 1, 20), repurchases=True) == {"a": {"P1", "P2"}}


def test_als_finds_what_people_like_these_bought() -> None:
    pytest.importorskip("implicit")
    from shopcrm.recommend._evaluation import _als

    rows = []
    # two tastes: customers 0-19 buy from A1..A4, customers 20-39 from B1..B4; each left out one product
    for n in range(40):
        group = "A" if n < 20 else "B"
        rows += [_event(f"c{n:02}", "order_completed", f"{group}{i}", i) for i in range(1, 5) if i != 1 + n % 4]
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers([{"customer_id": f"c{n:02}"} for n in range(40)])
    shop.load_events(rows)
    found = _als(shop, ["c00", "c25"], datetime(2026, 2, 1), k=1, factors=4, seed=1)
    assert found == {"c00": ["A1"], "c25": ["B2"]}  # the one product of their taste they have not bought
