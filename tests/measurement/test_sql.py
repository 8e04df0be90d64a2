"""The attribution compiler on DuckDB (the embedded default) against the pure reference, on random histories.
The other engines run the same comparison in tests/engines/test_attribution_engines.py."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from sqlglot import exp

from attribution_histories import (
    CLICK_COLUMNS,
    EVENT_COLUMNS,
    MEMBER_INPUT_COLUMNS,
    POLICY,
    SEND_COLUMNS,
    History,
    check,
    histories,
)
from shopcrm.compiler._dialects import dialect_for
from shopcrm.measurement._sql import attribution_queries, window_micros

BYS = [(), ("variant",), ("step", "channel"), ("kind", "variant")]


def _load(con: Any, history: History) -> None:
    id_type = "BIGINT" if history.id_kind == "int" else "VARCHAR"
    for sends in ("sends", "rivals"):
        con.execute(f"CREATE OR REPLACE TABLE {sends} (message_key VARCHAR, customer {id_type}, campaign_id VARCHAR, "
                    "variant VARCHAR, step VARCHAR, channel VARCHAR, kind VARCHAR, sent_us BIGINT, cost DOUBLE)")
    con.execute("CREATE OR REPLACE TABLE clicks (message_key VARCHAR, clicked_us BIGINT)")
    con.execute(f"CREATE OR REPLACE TABLE events (customer {id_type}, ts_us BIGINT, revenue DOUBLE, order_id VARCHAR)")
    con.execute(f"CREATE OR REPLACE TABLE members (campaign_id VARCHAR, variant VARCHAR, status VARCHAR, "
                f"customer {id_type}, exposure_us BIGINT)")
    for name, columns in (("sends", SEND_COLUMNS), ("rivals", SEND_COLUMNS), ("clicks", CLICK_COLUMNS),
                          ("events", EVENT_COLUMNS), ("members", MEMBER_INPUT_COLUMNS)):
        rows = history.rows(name)
        if rows:
            con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows)


def _queries(history: History, by: tuple[str, ...], dialect: str = "duckdb") -> Any:
    return attribution_queries(
        sends=exp.to_table("sends").as_("s"), clicks=exp.to_table("clicks").as_("k0"),
        events=exp.to_table("events").as_("e"), members=exp.to_table("members").as_("m0"),
        dialect=dialect_for(dialect), policy=POLICY, by=by, now_us=history.now_us,
        rivals=exp.to_table("rivals").as_("r0") if history.rivals else None, since_us=history.since_us)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_duckdb_agrees_with_the_reference(history: History) -> None:
    con = duckdb.connect()
    _load(con, history)
    for by in BYS:
        check(lambda sql: con.execute(sql).fetchall(), _queries(history, by), history, "duckdb")


def test_a_window_is_half_open_to_the_microsecond() -> None:
    day = 86_400_000_000
    sends = [{"message_key": "k", "customer": "c", "campaign_id": "x", "variant": "", "step": "s", "channel": "sms",
              "kind": "lms", "sent_us": 0, "cost": 39.0}]
    for offset, credited in ((5 * day - 1, 1), (5 * day, 0)):
        history = History("str", sends, [{"message_key": "k", "clicked_us": 0}],
                          [{"customer": "c", "ts_us": offset, "revenue": 100.0, "order_id": None}], [], None)
        con = duckdb.connect()
        _load(con, history)
        [row] = con.execute(_queries(history, ()).summary.sql("duckdb")).fetchall()
        assert row[4] == credited  # attributed conversions: LMS shares SMS's 5-day click window


def test_the_window_of_an_unknown_channel_is_the_star_entry_or_nothing() -> None:
    channel = exp.column("ch")
    assert duckdb.sql(f"SELECT {window_micros(channel, {'*': POLICY.click_window('x')}).sql('duckdb')} "
                      "FROM (SELECT 'plugin' AS ch)").fetchall() == [(5 * 86_400_000_000,)]
    assert duckdb.sql(f"SELECT {window_micros(channel, {'email': POLICY.click_window('email')}).sql('duckdb')} "
                      "FROM (SELECT 'plugin' AS ch)").fetchall() == [(None,)]


@pytest.mark.parametrize("dialect", ["duckdb", "sqlite", "postgres", "mysql", "spark", "trino", "bigquery", "snowflake"])
def test_the_queries_compile_for_every_dialect(dialect: str) -> None:
    history = History("str", [], [], [], [], 0, [{"message_key": "r"}], 0)  # with rivals and a start
    queries = _queries(history, ("variant",), dialect)
    for query in (queries.summary, queries.daily, queries.credits, queries.members):
        assert query is not None
        assert "SELECT" in query.sql(dialect)


def test_ties_go_to_the_later_send_then_the_smaller_key() -> None:
    day = 86_400_000_000
    base = {"customer": "c", "campaign_id": "x", "variant": "", "step": "s", "channel": "sms", "kind": "sms", "cost": 12.0}
    sends = [{**base, "message_key": "b", "sent_us": 0}, {**base, "message_key": "a", "sent_us": 0},
             {**base, "message_key": "c", "sent_us": -1}, {**base, "message_key": "Z", "sent_us": -1}]
    clicks = [{"message_key": k, "clicked_us": day} for k in ("a", "b", "c", "Z")]
    history = History("str", sends, clicks, [{"customer": "c", "ts_us": 2 * day, "revenue": 5.0, "order_id": "o"}],
                      [], None)
    con = duckdb.connect()
    _load(con, history)
    assert [row[-1] for row in con.execute(_queries(history, ()).credits.sql("duckdb")).fetchall()] == ["a"]
    con.execute("UPDATE sends SET sent_us = -1 WHERE message_key IN ('a', 'b')")
    assert [row[-1] for row in con.execute(_queries(history, ()).credits.sql("duckdb")).fetchall()] == ["Z"]


def test_a_rival_sends_later_click_takes_the_conversion_from_the_sends() -> None:
    """Contract section 3: the last click is chosen among every click (``rivals``: the sends of campaigns or times
    the report leaves out); a reported send gets the conversion only when its click is the winner."""
    day = 86_400_000_000
    base = {"customer": "c", "variant": "", "step": "s", "channel": "sms", "kind": "lms", "cost": 39.0}
    spring = {**base, "message_key": "spring-1", "campaign_id": "spring", "sent_us": 0}
    autumn = {**base, "message_key": "autumn-1", "campaign_id": "autumn", "sent_us": day}
    clicks = [{"message_key": "spring-1", "clicked_us": 1}, {"message_key": "autumn-1", "clicked_us": day + 1}]
    events = [{"customer": "c", "ts_us": day + 2, "revenue": 100.0, "order_id": "o"}]
    con = duckdb.connect()
    for mine, rivals, credited in (([spring], [autumn], []), ([autumn], [spring], ["autumn-1"])):
        history = History("str", mine, clicks, events, [], None, rivals)
        _load(con, history)
        queries = _queries(history, ())
        assert [row[-1] for row in con.execute(queries.credits.sql("duckdb")).fetchall()] == credited
        [row] = con.execute(queries.summary.sql("duckdb")).fetchall()
        assert row[3:5] == (1, len(credited))  # clicked, attributed conversions
        check(lambda sql: con.execute(sql).fetchall(), queries, history, "duckdb")


def test_an_order_first_recorded_before_the_start_is_no_conversion() -> None:
    """Contract section 1: one customer's events of one order are one conversion, the earliest; an order first
    recorded before ``since_us`` and retried after it is therefore no conversion of the range."""
    day = 86_400_000_000
    sends = [{"message_key": "k", "customer": "c", "campaign_id": "x", "variant": "", "step": "s", "channel": "sms",
              "kind": "lms", "sent_us": 0, "cost": 39.0}]
    events = [{"customer": "c", "ts_us": -day, "revenue": 100.0, "order_id": "o"},
              {"customer": "c", "ts_us": 1, "revenue": 100.0, "order_id": "o"},     # the same order, retried
              {"customer": "c", "ts_us": -day, "revenue": 7.0, "order_id": None},   # before the start: dropped
              {"customer": "c", "ts_us": 2, "revenue": 5.0, "order_id": "p"}]
    members = [{"campaign_id": "x", "variant": "", "status": "planned", "customer": "c", "exposure_us": 0}]
    history = History("str", sends, [{"message_key": "k", "clicked_us": 0}], events, members, None, [], -1)
    con = duckdb.connect()
    _load(con, history)
    queries = _queries(history, ())
    [row] = con.execute(queries.summary.sql("duckdb")).fetchall()
    assert (row[4], row[5], row[7], row[8]) == (1, 5.0, 1, 5.0)  # order p only, attributed and influenced
    [member] = con.execute(queries.members.sql("duckdb")).fetchall()
    assert member[3:6] == (1, 1, 5.0)
    check(lambda sql: con.execute(sql).fetchall(), queries, history, "duckdb")
