"""The embedded DuckDB shop: loading every kind of input, schema evolution, errors, persistence."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import shopcrm
from shopcrm.schema import ColumnType
from shopcrm.sources.duckdb_store import LoadError

NOW = datetime(2026, 3, 10)
CUSTOMERS = [{"customer_id": "a", "age": 25}, {"customer_id": "b", "age": 41}]
EVENTS = [
    {"customer_id": "a", "event": "order_completed", "ts": datetime(2026, 3, 9), "amount": 1000},
    {"customer_id": "b", "event": "order_completed", "ts": datetime(2026, 3, 1), "amount": 5000},
]
BOUGHT = {"performed": "order_completed", "within": {"last": "7d"}}


def frames(kind: str, rows: list[dict[str, Any]], tmp_path: Path) -> Any:
    table = pa.Table.from_pylist(rows)
    if kind == "arrow":
        return table
    if kind == "pandas":
        return pd.DataFrame(rows)
    if kind == "polars":
        return pl.DataFrame(rows)
    if kind == "parquet":
        path = tmp_path / f"{id(rows)}.parquet"
        pq.write_table(table, path)
        return path
    if kind == "csv":
        path = tmp_path / f"{id(rows)}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        return str(path)
    return iter(rows)  # any iterable of dicts


@pytest.mark.parametrize("kind", ["dicts", "arrow", "pandas", "polars", "parquet", "csv"])
def test_every_input_kind_loads_to_the_same_answer(kind: str, tmp_path: Path) -> None:
    shop = shopcrm.Shop.open()
    assert shop.load_customers(frames(kind, CUSTOMERS, tmp_path)) == 2
    assert shop.load_events(frames(kind, EVENTS, tmp_path)) == 2
    assert shop.members(BOUGHT, now=NOW) == ["a"]
    assert shop.schema.events.columns["ts"] is ColumnType.TIMESTAMP
    assert shop.schema.customers.columns["age"] is ColumnType.INTEGER


def test_timestamps_are_stored_as_utc() -> None:
    seoul = timezone(timedelta(hours=9))
    shop = shopcrm.Shop.open()
    shop.load_customers([{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}])
    shop.load_events([
        {"customer_id": 1, "event": "x", "ts": datetime(2026, 3, 10, 8, 59, tzinfo=seoul)},  # 23:59 UTC the day before
        {"customer_id": 2, "event": "x", "ts": "2026-03-10T09:00:00+09:00"},  # exactly now
        {"customer_id": 3, "event": "x", "ts": "2026-03-09T23:00:00Z"},
    ])
    assert shop.members({"performed": "x"}, now=NOW) == [1, 3]


def test_new_columns_appear_and_customers_are_replaced_by_id() -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers(CUSTOMERS)
    shop.load_customers([{"customer_id": "a", "age": 52, "grade": "VIP"}, {"customer_id": "c", "grade": "일반"}])
    assert shop.count({"everyone": True}, now=NOW) == 3
    assert shop.members({"attribute": "age", "gt": 50}, now=NOW) == ["a"]
    assert shop.members({"attribute": "grade", "eq": "VIP"}, now=NOW) == ["a"]
    shop.load_events(EVENTS)
    shop.load_events([{"customer_id": "c", "event": "view", "ts": datetime(2026, 3, 9), "properties": {"device": "ios"}}])
    assert shop.schema.events.columns["properties"] is ColumnType.JSON
    assert shop.members({"performed": "view", "where": {"properties.device": "ios"}}, now=NOW) == ["c"]


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        ("events", [{"customer_id": "a", "event": "x"}], "events data has no 'ts' column; it has customer_id, event"),
        ("customers", [{"id": "a"}], "customers data has no 'customer_id' column"),
        ("customers", [{"customer_id": "a"}, {"customer_id": "a"}], "repeated: 'a'"),
        ("customers", [], "no customers rows to load"),
        ("customers", [{"customer_id": "a", "bad name": 1}], "not a valid column name"),
        ("events", "/nonexistent/events.parquet", "no file at"),
        ("events", {"customer_id": "a"}, "pass an iterable of dicts"),
    ],
)
def test_bad_data_is_refused_with_what_was_wrong(table: str, rows: Any, message: str) -> None:
    shop = shopcrm.Shop.open()
    load = shop.load_customers if table == "customers" else shop.load_events
    with pytest.raises(ValueError, match=message):
        load(rows)


def test_id_kinds_cannot_mix_and_nothing_is_half_loaded() -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers([{"customer_id": "a"}])
    with pytest.raises(LoadError, match="ids of one kind"):
        shop.load_customers([{"customer_id": 7}])
    assert shop.members({"everyone": True}, now=NOW) == ["a"]


def test_counting_before_loading_says_what_to_do() -> None:
    with pytest.raises(LoadError, match="load data first"):
        shopcrm.Shop.open().count({"everyone": True}, now=NOW)


def test_a_file_shop_keeps_data_and_segments(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    with shopcrm.Shop.open(path) as shop:
        shop.load_customers(CUSTOMERS)
        shop.load_events(EVENTS)
        shop.save_segment("recent_buyers", BOUGHT, "bought in the last week")
    with shopcrm.Shop.open(path) as again:
        assert again.count({"in_segment": "recent_buyers"}, now=NOW) == 1
        assert [(s.name, s.description) for s in again.segments()] == [("recent_buyers", "bought in the last week")]
