"""A watermark tick's preload on DuckDB (issue 15): the customers its arrivals query selects and those it lists (woken
ones) are read in one statement per table, and read exactly what reading each part alone reads."""

from __future__ import annotations

from datetime import datetime

import duckdb

from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.sources._reads import EngineReader
from shopcrm.sources.duckdb_store import DuckDBSource

NOW = datetime(2026, 3, 2, 12)


def _reader() -> tuple[EngineReader, list[str]]:
    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR, name VARCHAR, phone VARCHAR)")
    con.execute("INSERT INTO customers SELECT 'c' || i, 'n' || i, '010' || i FROM range(8) t(i)")
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, amount BIGINT)")
    con.execute("INSERT INTO events SELECT 'c' || (i % 8), CASE WHEN i % 3 = 0 THEN 'order_completed' ELSE 'cart_added' END, "
                "TIMESTAMP '2026-03-01' + to_minutes(CAST(i * 37 AS BIGINT)), i FROM range(200) t(i)")
    source = DuckDBSource(connection=con)
    statements: list[str] = []
    fetch = source.fetch

    def counted(query):  # type: ignore[no-untyped-def]
        statements.append(query.sql())
        return fetch(query)

    source.fetch = counted  # type: ignore[method-assign]
    return EngineReader(source, NOW, lifecycle_policy=LifecyclePolicy()), statements


def test_selected_and_listed_customers_are_read_together_as_each_alone() -> None:
    reader, statements = _reader()
    names, since = ["cart_added", "order_completed"], datetime(2026, 3, 1, 20)
    arrived = reader.arrived(names, datetime(2026, 3, 2, 10))  # the customers with an event in the last two hours
    listed = ["c1", "c6", "c9"]  # woken customers (c9 has no row and no event)
    together = reader.preload(listed, names=names, since=since, arrived=arrived)
    assert len(statements) == 2  # one statement per table
    alone = [reader.preload(listed, names=names, since=since), reader.preload([], names=names, since=since, arrived=arrived)]
    expected_events = {cid: got for part in alone for cid, got in part.events.items()}
    assert {cid: sorted(map(repr, got)) for cid, got in together.events.items()} == {
        cid: sorted(map(repr, got)) for cid, got in expected_events.items()}
    assert together.rows == {cid: row for part in alone for cid, row in part.rows.items()}
    assert set(together.rows) > set(listed) - {"c9"}
