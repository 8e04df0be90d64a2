"""A watermark tick's preload on DuckDB (issue 15): the customers its arrivals query selects and those it lists (woken
ones) are read in one statement per table, and read exactly what reading each part alone reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from playbook_hours import add_hour, playbook_shop
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
    return EngineReader(source, NOW, lifecycle_policy=LifecyclePolicy()), _counted(source)


def _counted(source: Any) -> list[str]:
    """The statements ``source`` fetches from now on, in order."""
    statements: list[str] = []
    fetch = source.fetch

    def counted(query):  # type: ignore[no-untyped-def]
        statements.append(query.sql())
        return fetch(query)

    source.fetch = counted
    return statements


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


def test_histories_of_customers_needing_other_names_are_read_together_as_a_read_per_set_of_names() -> None:
    from shopcrm.ticking import _history_events

    reader, statements = _reader()
    needs: dict[object, frozenset[str] | None] = {
        "c0": frozenset({"cart_added"}), "c1": frozenset({"order_completed"}), "c2": frozenset({"cart_added", "order_completed"}),
        "c3": None, "c4": frozenset({"order_completed"}), "c9": frozenset({"cart_added"}),  # c9: no event at all
    }
    got = _history_events(reader, needs, NOW)
    assert len(statements) == 2  # the customers needing every event, and the others together
    for cid, names in needs.items():
        where = (exp.LTE(this=reader.ts("e"), expression=reader.at(NOW)) if names is None
                 else reader.events_named(sorted(names), None))
        alone = reader.events(where, [cid])
        assert sorted(map(repr, got.get(cid, []))) == sorted(map(repr, alone)), cid
        assert alone or cid == "c9"
    assert {e["event"] for e in got["c3"]} == {"cart_added", "order_completed"}
    assert {e["event"] for e in got["c1"]} == {"order_completed"}


def test_preloaded_events_taken_by_name_are_those_of_a_plain_filter() -> None:
    reader, _ = _reader()
    pre = reader.preload(["c0", "c1", "c2", "c5", "c9"])
    since = datetime(2026, 3, 1, 20)
    for names in ({"cart_added"}, {"order_completed"}, {"cart_added", "order_completed"}, {"nothing"}):
        for _ in range(2):  # the second from the index the first left
            for ids in (["c0", "c2"], ["c9", "c5", "c1"], []):
                for start in (None, since):
                    assert pre.take(ids, names, start) == [
                        e for cid in ids for e in pre.events.get(cid, ())
                        if e["event"] in names and (start is None or e["ts"] >= start)]


def test_a_long_list_of_text_ids_reads_on_duckdb_what_literals_read() -> None:
    from shopcrm.sources import _reads

    con = duckdb.connect()
    odd = ["a'b", "back\\slash", '"quoted"', "한글", "trailing ", "UPPER", "upper", "semi;colon", "[1]", "{}", "null", "ünï"]
    con.execute("CREATE TABLE customers (customer_id VARCHAR, name VARCHAR)")
    con.execute("INSERT INTO customers SELECT 'c' || i, 'n' || i FROM range(3000) t(i)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [[v, v] for v in [*odd, "Upper", "trailing", "tab\there"]])
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP)")
    con.execute("INSERT INTO events SELECT customer_id, 'order_completed', TIMESTAMP '2026-03-01' FROM customers")
    source = DuckDBSource(connection=con)
    reader = EngineReader(source, NOW, lifecycle_policy=LifecyclePolicy())
    ids = [*odd, *(f"c{i}" for i in range(0, 3000, 2)), "c-none"]
    assert len(ids) > _reads._LITERALS
    statements: list[str] = []
    fetch = source.fetch

    def counted(query):  # type: ignore[no-untyped-def]
        statements.append(query.sql("duckdb"))
        return fetch(query)

    source.fetch = counted  # type: ignore[method-assign]
    unnested = sorted(row["customer_id"] for row in reader.customers(["customer_id", "name"], ids))
    events = sorted(e["customer_id"] for e in reader.events(reader.events_named(["order_completed"], None), ids))
    assert "JSON(" in statements[0]
    assert "JSON(" in statements[1]
    assert len(statements[0]) < 40_000
    try:
        _reads._LITERALS = 10**9  # every id a literal, as before
        assert sorted(row["customer_id"] for row in reader.customers(["customer_id", "name"], ids)) == unnested
        assert sorted(e["customer_id"] for e in reader.events(reader.events_named(["order_completed"], None), ids)) == events
    finally:
        _reads._LITERALS = 1000
    assert "JSON(" not in statements[2]
    assert unnested == sorted({*ids} - {"c-none"}) == events
    # a control character in any id: every id a literal (JSON would carry it escaped)
    assert sorted(row["customer_id"] for row in reader.customers(["customer_id"], [*ids, "tab\there"])) == sorted([*unnested, "tab\there"])
    assert "JSON(" not in statements[-1]


def test_the_outbox_rows_of_every_marked_scenario_are_read_once_and_decide_as_a_whole_tick() -> None:
    from datetime import timedelta


    start = datetime(2026, 3, 2, 1)
    shop, con = _sms_shop(6, "product_id VARCHAR", "('c1', 'order_completed', TIMESTAMP '2026-03-01 20:00', NULL), "
                                                   "('c2', 'cart_added', TIMESTAMP '2026-03-01 23:00', 'P9')")
    for cid, on, reentry, steps in (("cart", "cart_added", "every_time", [{"wait": "1h"}, {"send": "reminder"}]),
                                    ("thanks", "order_completed", "once", [{"send": "thanks"}])):
        shop.save_campaign({"id": cid, "purpose": "informational", "audience": {"everyone": True}, "channels": ["sms"],
                            "variants": [{"name": "a", "content": {"text": f"{cid} {{{{ name }}}}"}}], "max_delay": "1d",
                            "schedule": {"kind": "triggered", "on": on, "reentry": reentry, "steps": steps,
                                         "exit_on": ["order_completed"] if cid == "cart" else []}},
                           now=start - timedelta(days=1))
    shop.tick(now=start)  # reads both whole and leaves the marks
    store = shop.source.campaign_store()
    reads: list[object] = []
    outbox = store.outbox

    def counted(**kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("customer_ids") is not None:
            reads.append(kwargs.get("campaign_ids"))
        return outbox(**kwargs)

    store.outbox = counted  # type: ignore[method-assign]
    arrivals = [("c1", "order_completed", 10), ("c3", "cart_added", 20), ("c3", "order_completed", 50),
                ("c4", "cart_added", 70), ("c1", "cart_added", 80), ("c4", "order_completed", 130)]
    for minutes in (30, 60, 90, 120, 150, 200):
        for cid, name, at in arrivals:
            if minutes - 30 < at <= minutes:
                con.execute("INSERT INTO events VALUES (?, ?, ?, NULL)", [cid, name, start + timedelta(minutes=at)])
        now = start + timedelta(minutes=minutes)
        reads.clear()
        marked = shop.tick(now=now, dry_run=True)
        assert reads in ([], [["cart", "thanks"]])  # one read for both scenarios (none when nobody is read)
        whole = shop.tick(now=now, dry_run=True, full=True)
        assert sorted(marked.messages, key=lambda m: m.key) == sorted(whole.messages, key=lambda m: m.key)
        assert sorted((s.key, s.reason) for s in marked.suppressions) == sorted((s.key, s.reason) for s in whole.suppressions)
        shop.tick(now=now)
    planned = {(row.campaign_id, row.customer_id) for row in store.outbox() if row.status == "planned"}
    assert {("thanks", "c1"), ("thanks", "c3"), ("thanks", "c4"), ("cart", "c2")} <= planned
    assert ("cart", "c3") not in planned  # ordered before the reminder was due


def test_a_tick_of_few_customers_reads_their_histories_in_its_preload_and_decides_as_a_whole_tick(tmp_path: Path) -> None:
    """Issue 15: a watermark tick of at most ``_WIDE_PRELOAD`` customers reads their histories (the order events the
    lifecycle entry rules count, the cart events a reminder shows) in the scan that reads their new events, not in a
    second scan. Hour after hour of orders and carts on a demo shop with the four playbooks, that tick decides what the
    same tick reading every scenario whole decides, and what the tick reading the histories apart decides; the second
    scan is saved."""
    from shopcrm import ticking

    shop = playbook_shop(tmp_path, seed=5)
    statements = _counted(shop.source)
    covered = 0
    kept = ticking._WIDE_PRELOAD
    for hour in range(1, 4):
        now = add_hour(shop, hour, 120)
        whole = shop.tick(now=now, dry_run=True, full=True)
        results = {}
        for wide in (True, False):
            ticking._WIDE_PRELOAD = kept if wide else 0
            statements.clear()
            try:
                results[wide] = shop.tick(now=now, dry_run=True)
            finally:
                ticking._WIDE_PRELOAD = kept
            events_read = sum(1 for s in statements if 'FROM "events"' in s or "FROM events" in s)
            if wide:
                wide_reads = events_read
            else:
                covered += events_read - wide_reads
        for got in results.values():
            assert sorted(got.messages, key=lambda m: m.key) == sorted(whole.messages, key=lambda m: m.key)
            assert sorted((s.key, s.reason) for s in got.suppressions) == sorted((s.key, s.reason) for s in whole.suppressions)
        assert results[True].messages
        shop.tick(now=now)
    assert covered >= 3  # every hour, the wide tick read the events in one scan fewer


def test_a_scenario_read_whole_beside_marked_ones_gets_its_own_history_names() -> None:
    """A scenario saved again since the last tick is read whole while the others are read from their marks; its
    customer may also be one of the few the marked scenarios preload with their histories. Its rule reads events the
    marked scenarios do not (a promotion joined): that customer's history is read for it, and the tick decides as the
    same tick reading every scenario whole."""
    from datetime import timedelta


    start = datetime(2026, 3, 2, 1)
    shop, con = _sms_shop(4, "", "('c1', 'promotion_joined', TIMESTAMP '2026-02-20 10:00'), "
                                 "('c2', 'session_started', TIMESTAMP '2026-02-20 10:00')")

    def save(cid: str, on: str, audience: dict[str, Any], at: datetime) -> None:
        shop.save_campaign({"id": cid, "purpose": "informational", "audience": audience, "channels": ["sms"],
                            "variants": [{"name": "a", "content": {"text": f"{cid} {{{{ name }}}}"}}], "max_delay": "1d",
                            "schedule": {"kind": "triggered", "on": on, "reentry": "every_time",
                                         "steps": [{"send": "hello"}]}}, now=at)

    save("carts", "cart_added", {"everyone": True}, start - timedelta(days=1))
    save("joiners", "cart_added", {"performed": "promotion_joined"}, start - timedelta(days=1))
    shop.tick(now=start)  # marks both
    save("joiners", "cart_added", {"performed": "promotion_joined", "within": {"last": "30d"}}, start)  # read whole next
    for cid, minutes in (("c1", 10), ("c2", 20)):
        con.execute("INSERT INTO events VALUES (?, 'cart_added', ?)", [cid, start + timedelta(minutes=minutes)])
    now = start + timedelta(minutes=30)
    marked = shop.tick(now=now, dry_run=True)
    whole = shop.tick(now=now, dry_run=True, full=True)
    assert sorted(m.key for m in marked.messages) == sorted(m.key for m in whole.messages)
    assert {(m.campaign_id, m.customer_id) for m in marked.messages} >= {("joiners", "c1"), ("carts", "c1"), ("carts", "c2")}
    assert ("joiners", "c2") not in {(m.campaign_id, m.customer_id) for m in marked.messages}


def _sms_shop(customers: int, extra_columns: str, events: str) -> tuple[Any, duckdb.DuckDBPyConnection]:
    """A DuckDB shop of ``customers`` customers (c0, c1, ...) with phones and SMS and night consent, and these
    ``events`` rows (customer, event, instant, then the ``extra_columns``), under a policy without caps."""
    import shopcrm
    from shopcrm.campaigns import MessagingPolicy

    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR, name VARCHAR, phone VARCHAR, sms_consent BOOLEAN, "
                "night_consent BOOLEAN)")
    con.execute("INSERT INTO customers SELECT 'c' || i, 'n' || i, '0101234' || lpad(i::VARCHAR, 4, '0'), true, true "
                f"FROM range({int(customers)}) t(i)")
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP"
                + (f", {extra_columns})" if extra_columns else ")"))
    con.execute(f"INSERT INTO events VALUES {events}")
    shop = shopcrm.Shop(DuckDBSource(connection=con))
    shop.messaging_policy = MessagingPolicy(sender_name="가게", sender_contact="1588-0000", opt_out_number="080-000-0000",
                                            caps=())
    return shop, con
