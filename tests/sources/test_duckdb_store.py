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
from shopcrm.campaigns import MessagingPolicy
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


def _contents(shop: shopcrm.Shop) -> dict[str, Any]:
    """Every table's columns, types and rows, to compare before and after a refused load."""
    con = shop.source.con  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for (table,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
        out[table] = (con.execute(f'DESCRIBE "{table}"').fetchall(), sorted(map(repr, con.execute(f'SELECT * FROM "{table}"').fetchall())))
    return out


REFUSED = [
    ("customers", [{"customer_id": "a", "age": "old", "tier": "gold"}], r"customers.age holds BIGINT values.*row 0: 'old'.*whole numbers"),
    ("customers", [{"customer_id": "b", "age": 7.5}], r"row 0: '7.5'.*whole numbers"),
    ("customers", [{"customer_id": "a", "tier": "x"}, {"customer_id": None}], r"1 customers row\(s\) have no customer_id \(row 1"),
    ("customers", [{"customer_id": "a"}, {"customer_id": "z"}, {"customer_id": "a"}], r"repeated: 'a' \(rows 0, 2"),
    ("customers", [{"customer_id": 5}], "ids of one kind"),
    ("events", [{"customer_id": "a", "event": "x", "ts": datetime(2026, 3, 1)}, {"customer_id": "a", "event": None, "ts": datetime(2026, 3, 1)}],
     r"have no event \(row 1.*an event name and a ts"),
    ("events", [{"customer_id": "a", "event": "x", "ts": None, "coupon": "new"}], r"have no ts \(row 0"),
    ("events", [{"customer_id": None, "event": "x", "ts": datetime(2026, 3, 1)}], "have no customer_id"),
    ("events", [{"customer_id": "a", "event": "x", "ts": "not a date"}], r"events row 0 .*ts 'not a date' is not a timestamp"),
    ("events", [{"customer_id": "a", "event": "x", "ts": datetime(2026, 3, 1), "amount": "lots"}], r"events.amount holds BIGINT.*'lots'"),
    ("events", [{"customer_id": "a", "event": "x", "ts": datetime(2026, 3, 1), "properties": "{not json"}], r"events.properties .*'\{not json'"),
]


@pytest.mark.parametrize(("table", "rows", "message"), REFUSED)
def test_a_refused_load_changes_nothing(table: str, rows: list[dict[str, Any]], message: str) -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers(CUSTOMERS)
    shop.load_events(EVENTS)
    shop.load_events([{"customer_id": "a", "event": "view", "ts": datetime(2026, 3, 9), "properties": {"device": "ios"}}])
    before = _contents(shop)
    load = shop.load_customers if table == "customers" else shop.load_events
    with pytest.raises(LoadError, match=message):
        load(rows)
    assert _contents(shop) == before
    assert shop.members({"everyone": True}, now=NOW) == ["a", "b"]


def test_a_load_failing_after_its_delete_leaves_the_customers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past every check, a failure while writing (here: the INSERT) rolls back the ALTER and the DELETE."""
    shop = shopcrm.Shop.open()
    shop.load_customers(CUSTOMERS)
    before = _contents(shop)
    source = shop.source
    real = source.con  # type: ignore[attr-defined]

    class FailingInsert:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("INSERT INTO"):
                raise __import__("duckdb").ConversionException("disk on fire")
            return real.execute(sql, *args)

    monkeypatch.setattr(source, "con", FailingInsert())
    with pytest.raises(LoadError, match="nothing of it was stored: disk on fire"):
        shop.load_customers([{"customer_id": "a", "age": 30, "tier": "gold"}])
    monkeypatch.undo()
    assert _contents(shop) == before


def test_transaction_blocks_nest_and_only_the_outermost_ends() -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers(CUSTOMERS)
    source: Any = shop.source

    def outer_block() -> None:
        with source._transaction():
            source._run("DELETE FROM customers WHERE customer_id = 'a'")
            with source._transaction():
                source._run("DELETE FROM customers WHERE customer_id = 'b'")
            assert source._run("SELECT COUNT(*) FROM customers") == [(0,)]
            raise RuntimeError("outer")

    with pytest.raises(RuntimeError, match="outer"):
        outer_block()
    assert shop.members({"everyone": True}, now=NOW) == ["a", "b"]


def test_dispatching_from_a_duckdb_file_needs_neither_pyarrow_nor_pandas(tmp_path: Path) -> None:
    """The dispatcher's ledger writes bind lists, not registered Arrow tables: registering one imports pyarrow
    and pandas, about 110 MiB of the dispatcher's resident memory (benchmarks/bench_dispatch.py)."""
    import subprocess
    import sys

    path = tmp_path / "shop.duckdb"
    with shopcrm.Shop.open(path) as shop:
        shop.messaging_policy = MessagingPolicy()
        shop.load_customers([{"customer_id": f"c{i}", "name": "민서", "phone": f"010-3000-{i:04d}"} for i in range(50)])
        shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                            "variants": [{"name": "a", "content": {"text": "{{ name }}님, 배송이 시작되었습니다."}}],
                            "schedule": {"kind": "one_off", "at": "2026-03-10T10:00:00"}}, now=NOW - timedelta(days=1))
        shop.tick(now=NOW + timedelta(hours=1))
    script = (
        "import sys\n"
        "from datetime import datetime\n"
        "from shopcrm import Shop\nfrom shopcrm.campaigns import MessagingPolicy\n"
        "from shopcrm.channels import JsonlChannel\n"
        f"with Shop.open({str(path)!r}) as shop:\n"
        "    shop.messaging_policy = MessagingPolicy()\n"
        f"    report = shop.dispatch({{'sms': JsonlChannel({str(tmp_path / 'out.jsonl')!r})}},\n"
        "                           clock=lambda: datetime(2026, 3, 10, 1, 30))\n"
        "print(report.outcomes.get('sent', 0), 'pyarrow' in sys.modules, 'pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["50", "False", "False"]


def _indexes(shop: shopcrm.Shop) -> list[tuple[str, str]]:
    return [(str(t), str(n)) for t, n in shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT table_name, index_name FROM duckdb_indexes() ORDER BY 1, 2").fetchall()]


def test_loaded_customers_are_indexed_by_id_through_replacements_retypes_and_failures(tmp_path: Path) -> None:
    """Issue 15: a tick reads the rows of a few listed customers; the load keeps an index on the ids so that the read
    does not scan every row. Replacing ids, a column whose first values were all NULL taking a type (DuckDB retypes no
    column of an indexed table), a refused load and a reopened file all keep the index and the rows."""
    path = tmp_path / "shop.duckdb"
    shop = shopcrm.Shop.open(path)
    shop.load_customers([{"customer_id": "a", "tier": None}, {"customer_id": "b", "tier": None}])
    assert _indexes(shop) == [("customers", "shopcrm_customers_id")]
    assert shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT data_type FROM duckdb_columns() WHERE table_name = 'customers' AND column_name = 'tier'").fetchall() == [('"NULL"',)]
    shop.load_customers([{"customer_id": "a", "tier": "gold", "age": 30}, {"customer_id": "c", "tier": "silver", "age": 41}])
    assert _indexes(shop) == [("customers", "shopcrm_customers_id")]
    assert shop.members({"attribute": "tier", "eq": "gold"}, now=NOW) == ["a"]
    assert shop.members({"everyone": True}, now=NOW) == ["a", "b", "c"]
    with pytest.raises(LoadError):
        shop.load_customers([{"customer_id": "a", "age": "not a number"}])
    assert _indexes(shop) == [("customers", "shopcrm_customers_id")]
    rows = shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT customer_id, tier, age FROM customers WHERE customer_id IN ('a', 'c') ORDER BY 1").fetchall()
    assert rows == [("a", "gold", 30), ("c", "silver", 41)]
    shop.close()
    again = shopcrm.Shop.open(path)
    assert _indexes(again) == [("customers", "shopcrm_customers_id")]
    assert again.count({"attribute": "age", "gte": 30}, now=NOW) == 2
    again.close()


@pytest.mark.parametrize("kind", ["dicts", "arrow", "parquet", "csv"])
def test_a_result_left_unfinished_on_the_connection_does_not_stop_the_shop(kind: str, tmp_path: Path) -> None:
    """A notebook reads one row of its own query on the shop's connection (``fetchone``) and goes on: DuckDB 2 refuses
    to register data or run a relation while that result is open, so the shop ends it before loading, reading Arrow
    or recording (a ResourceInUseException otherwise)."""
    shop = shopcrm.Shop.open(tmp_path / "shop.duckdb")
    con = shop.source.con  # type: ignore[attr-defined]
    shop.load_customers(frames(kind, CUSTOMERS, tmp_path))
    con.execute("SELECT * FROM range(10)").fetchone()
    shop.load_events(frames(kind, EVENTS, tmp_path))
    con.execute("SELECT * FROM range(10)").fetchone()
    shop.load_customers(frames(kind, [{"customer_id": "c", "age": 33}], tmp_path))
    con.execute("SELECT * FROM range(10)").fetchone()
    assert shop.lifecycle(now=NOW).num_rows == 3
    con.execute("SELECT * FROM range(10)").fetchone()
    assert shop.members(BOUGHT, now=NOW) == ["a"]
