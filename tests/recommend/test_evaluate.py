"""The evaluation's arithmetic, its time split and the ALS comparison (shopcrm.recommend._evaluate)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from shopcrm import Shop
from shopcrm.recommend._evaluate import _als, _truth, score

T0 = datetime(2026, 1, 1)


def test_score_by_hand() -> None:
    truth = {"a": {"P1", "P2"}, "b": {"P3"}, "c": set()}
    recommended = {"a": ["P2", "X", "P1", "P9"], "b": ["Y"]}
    got = score("s", recommended, truth, k=3, catalog=10)
    ndcg_a = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert got.customers == 2  # c has nothing to find
    assert got.hit_rate == 0.5
    assert got.recall == 0.5
    assert got.ndcg == pytest.approx(ndcg_a / 2)
    assert got.coverage == pytest.approx(4 / 10)  # P9 is past k
    assert got.short == 1  # b got one item of three


def test_score_counts_only_the_first_k() -> None:
    truth = {"a": {"P5"}}
    assert score("s", {"a": ["P1", "P2", "P5"]}, truth, k=2, catalog=5).hit_rate == 0.0
    assert score("s", {"a": ["P1", "P2", "P5"]}, truth, k=3, catalog=5).ndcg == pytest.approx(1 / math.log2(4))


def test_score_refuses_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        score("s", {}, {}, k=0, catalog=1)


def _shop(rows: list[dict[str, object]]) -> Shop:
    shop = Shop.open()
    shop.load_customers([{"customer_id": c} for c in sorted({str(r["customer_id"]) for r in rows})])
    shop.load_events(rows)
    return shop


def _event(customer: str, name: str, product: str, day: float) -> dict[str, object]:
    return {"customer_id": customer, "event": name, "product_id": product, "ts": T0 + timedelta(days=day)}


def test_truth_is_new_products_ordered_after_the_split() -> None:
    shop = _shop([
        _event("a", "order_completed", "P1", 1), _event("a", "order_completed", "P1", 10),  # a repurchase
        _event("a", "order_completed", "P2", 11), _event("b", "product_viewed", "P3", 12),
        _event("c", "order_completed", "P4", 30),  # after the end
    ])
    assert _truth(shop, T0 + timedelta(days=5), T0 + timedelta(days=20)) == {"a": {"P2"}}


def test_als_finds_what_people_like_these_bought() -> None:
    pytest.importorskip("implicit")
    rows = []
    # two tastes: customers 0-19 buy from A1..A4, customers 20-39 from B1..B4; each left out one product
    for n in range(40):
        group = "A" if n < 20 else "B"
        for i in range(1, 5):
            if i != 1 + n % 4:
                rows.append(_event(f"c{n:02}", "order_completed", f"{group}{i}", i))
    shop = _shop(rows)
    found = _als(shop, ["c00", "c25"], T0 + timedelta(days=30), k=1, factors=4, iterations=30, seed=1)
    assert found["c00"] == ["A1"]
    assert found["c25"] == ["B2"]
