"""shop.lifecycle, lifecycle_summary and profile on the embedded shop."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

import shopcrm
from shopcrm.lifecycle import TWELVE_SEGMENTS, LifecyclePolicy, classify_shop

NOW = datetime(2026, 3, 10)
D = timedelta(days=1)
CUSTOMERS = [
    {"customer_id": "new", "signed_up_at": NOW - D * 2},
    {"customer_id": "once", "signed_up_at": NOW - D * 200},
    {"customer_id": "fan", "signed_up_at": NOW - D * 300},
]
EVENTS = [
    {"customer_id": "new", "event": "cart_added", "ts": NOW - D * 2, "product_id": "P1"},
    {"customer_id": "once", "event": "order_completed", "ts": NOW - D * 100, "product_id": "P2", "amount": 50000},
    *[{"customer_id": "fan", "event": "order_completed", "ts": NOW - D * d, "product_id": "P3", "amount": 10000} for d in (30, 20, 10)],
    {"customer_id": "fan", "event": "cart_added", "ts": NOW - D * 3, "product_id": "P4"},
    {"customer_id": "fan", "event": "cart_added", "ts": NOW - D * 3, "product_id": "P5"},
    {"customer_id": "fan", "event": "cart_removed", "ts": NOW - D * 2, "product_id": "P5"},
    {"customer_id": "fan", "event": "session_started", "ts": NOW - D},
]


@pytest.fixture
def shop() -> shopcrm.Shop:
    s = shopcrm.Shop.open()
    s.load_customers(CUSTOMERS)
    s.load_events(EVENTS)
    return s


def test_lifecycle_table_has_the_documented_columns_and_the_pure_answer(shop: shopcrm.Shop) -> None:
    table = shop.lifecycle(now=NOW)
    assert table.column_names == [
        "customer_id", "stage", "moments", "orders", "last_seen", "recency_days", "frequency", "monetary",
        "r_score", "f_score", "m_score", "rfm_segment", "cycle_status", "expected_gap_days",
    ]
    rows = {r["customer_id"]: r for r in table.to_pylist()}
    assert rows["new"]["stage"] == "never_purchased"
    assert rows["new"]["moments"] == ["cart_abandoned", "signup_dropoff"]
    assert rows["once"]["moments"] == ["lapsed"]
    assert (rows["fan"]["stage"], rows["fan"]["orders"], rows["fan"]["cycle_status"]) == ("loyal", 3, "active")
    assert rows["fan"]["expected_gap_days"] == 10.0
    assert rows["once"]["expected_gap_days"] == 10.0  # the shop-wide median gap
    expected = {r.customer_id: r for r in classify_shop(CUSTOMERS, EVENTS, now=NOW)}
    assert {r.customer_id: r for r in shop.lifecycle_rows(now=NOW)} == expected
    assert pl.from_arrow(table).height == 3
    assert table.to_pandas().shape == (3, 14)


def test_summary_counts_the_twelve_segments(shop: shopcrm.Shop) -> None:
    summary = shop.lifecycle_summary(now=NOW)
    assert summary.total == 3
    assert summary.by_stage == {"never_purchased": 1, "first_purchase": 1, "repeat": 0, "loyal": 1}
    assert list(summary.by_stage_moment) == list(TWELVE_SEGMENTS)
    assert len(TWELVE_SEGMENTS) == 12
    assert summary.by_stage_moment[("never_purchased", "cart_abandoned")] == 1
    assert summary.by_stage_moment[("first_purchase", "lapsed")] == 1
    assert summary.by_cycle["active"] == 1
    assert "never_purchased / signup_dropoff" in str(summary)
    assert "<table>" in summary._repr_html_()
    assert summary.to_dict()["by_stage_moment"]["loyal/cart_abandoned"] == 1  # P4 waits in the cart
    from shopcrm.lifecycle import summarize

    assert summary == summarize(shop.lifecycle_rows(now=NOW), NOW)


def test_policy_changes_the_answer(shop: shopcrm.Shop) -> None:
    shop.lifecycle_policy = LifecyclePolicy(loyal_min_orders=4)
    assert {r.customer_id: r.stage for r in shop.lifecycle_rows(now=NOW)}["fan"] == "repeat"
    assert shop.count({"lifecycle": "repeat"}, now=NOW) == 1


def test_profile_shows_the_person(shop: shopcrm.Shop) -> None:
    profile = shop.profile("fan", now=NOW)
    assert profile.lifecycle.stage == "loyal"
    assert [e["event"] for e in profile.timeline][:2] == ["session_started", "cart_removed"]
    assert [item.product_id for item in profile.cart] == ["P4"]
    text = str(profile)
    assert "stage: loyal" in text
    assert "P4" in text
    assert "<h4>Cart</h4>" in profile._repr_html_()
    with pytest.raises(KeyError, match="no customer 'ghost'"):
        shop.profile("ghost", now=NOW)


def test_lifecycle_rules(shop: shopcrm.Shop) -> None:
    assert shop.members({"lifecycle": "never_purchased", "moment": "signup_dropoff"}, now=NOW) == ["new"]
    assert shop.members({"lifecycle": "any", "moment": "cart_abandoned"}, now=NOW) == ["fan", "new"]
    assert shop.members({"cycle": "active"}, now=NOW) == ["fan"]
    with pytest.raises(shopcrm.RuleError, match="no RFM segment is named 'whales'"):
        shop.count({"rfm": "whales"}, now=NOW)


def test_the_arrow_table_equals_the_rows_on_duckdb_and_sqlite(shop: shopcrm.Shop, tmp_path: object) -> None:
    import sqlite3

    from shopcrm.lifecycle._sql import rows_to_arrow

    by_id = sorted(rows_to_arrow(shop.lifecycle_rows(now=NOW)).to_pylist(), key=lambda r: r["customer_id"])  # type: ignore[attr-defined]
    assert shop.lifecycle(now=NOW).to_pylist() == by_id
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id TEXT, signed_up_at TIMESTAMP)")
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, product_id TEXT, amount INTEGER)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(c["customer_id"], c["signed_up_at"].isoformat()) for c in CUSTOMERS])
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    [(e["customer_id"], e["event"], e["ts"].isoformat(), e.get("product_id"), e.get("amount")) for e in EVENTS])
    lite = shopcrm.Shop.from_dbapi(con, dialect="sqlite")
    assert sorted(lite.lifecycle(now=NOW).to_pylist(), key=lambda r: r["customer_id"]) == sorted(
        shop.lifecycle(now=NOW).to_pylist(), key=lambda r: r["customer_id"]
    )


def test_rfm_scores_only_customers_with_an_order_in_the_lookback(shop: shopcrm.Shop) -> None:
    table = shop.rfm(now=NOW)
    assert table.column_names == [
        "customer_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment",
    ]
    rows = {r.pop("customer_id"): r for r in table.to_pylist()}
    assert set(rows) == {"once", "fan"}  # "new" never ordered
    # fan ordered 10 days ago, three times, 30,000 in all: the better value of each measure
    assert rows["fan"] == {
        "recency_days": 10.0, "frequency": 3, "monetary": 30000,
        "r_score": 3, "f_score": 3, "m_score": 1, "rfm_segment": "need_attention",
    }
    assert (rows["once"]["r_score"], rows["once"]["f_score"], rows["once"]["m_score"]) == (1, 1, 3)
    # a shorter lookback leaves out the order 100 days ago
    short = shop.rfm(now=NOW, policy=LifecyclePolicy(rfm_lookback=timedelta(days=50)))
    assert short["customer_id"].to_pylist() == ["fan"]
    assert short["r_score"].to_pylist() == [1]  # alone: nobody is worse, 1 + floor(5 * 0 / 1)


@pytest.mark.parametrize("dialect", ["duckdb", "sqlite", "postgres", "mysql", "spark", "trino", "bigquery", "snowflake"])
def test_lifecycle_and_rfm_sql_parse_back_in_every_dialect(shop: shopcrm.Shop, dialect: str) -> None:
    import sqlglot

    from shopcrm.compiler import render
    from shopcrm.lifecycle._sql import LIFECYCLE_COLUMNS, RFM_COLUMNS, compile_lifecycle, compile_rfm

    for compile_, columns in ((compile_lifecycle, LIFECYCLE_COLUMNS), (compile_rfm, RFM_COLUMNS)):
        for policy in (LifecyclePolicy(), LifecyclePolicy(order_id_property="product_id")):
            sql = render(compile_(shop.schema, now=NOW, dialect=dialect, policy=policy), dialect)
            tree = sqlglot.parse_one(sql, read=dialect)
            assert isinstance(tree, sqlglot.exp.Select)
            assert tuple(tree.named_selects) == columns


def test_a_replaced_rfm_table_is_selected_by_snake_case_on_the_engines() -> None:
    cells = [(r, f) for r in range(1, 6) for f in range(1, 6)]
    policy = LifecyclePolicy(rfm_segments={"Big Spenders": cells[:12], "Everyone Else": cells[12:]})
    shop = shopcrm.Shop.open(lifecycle_policy=policy)
    shop.load_customers(CUSTOMERS)
    shop.load_events(EVENTS)
    for name in ("big_spenders", "everyone_else"):
        expected = shopcrm.evaluate({"rfm": name}, CUSTOMERS, EVENTS, now=NOW, lifecycle_policy=policy)
        assert set(shop.members({"rfm": name}, now=NOW)) == expected
        assert shop.count_many([{"rfm": name}, {"not": {"rfm": name}}], now=NOW) == [len(expected), 3 - len(expected)]
    assert set(shop.members({"rfm": "big_spenders"}, now=NOW)) | set(shop.members({"rfm": "everyone_else"}, now=NOW)) == {"once", "fan"}
    for dialect in shopcrm.compiler.DIALECTS:  # the segment's own name is what the SQL compares
        sql = shopcrm.compiler.render(shopcrm.compiler.compile_members(
            shopcrm.parse_rule({"rfm": "big_spenders"}), shop.schema, now=NOW, dialect=dialect, lifecycle_policy=policy), dialect)
        assert "'Big Spenders'" in sql
