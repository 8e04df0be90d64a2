"""The compiler: golden SQL per dialect, SQL that parses back, and compile-time errors."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

import shopcrm
from shopcrm.compiler import DIALECTS, compile_counts, compile_members, infer_schema, render, to_sql
from shopcrm.dsl import parse_rule
from shopcrm.schema import ColumnType, Schema, Table
from tests_dsl_seed import SEED

NOW = datetime(2026, 3, 1, 12)
GOLDEN = Path(__file__).parent / "golden"
RULES: dict[str, dict[str, Any]] = {
    "seed": SEED,
    "vip_spend": {"aggregate": "sum", "of": "amount", "performed": "order_completed", "within": {"last": "90d"}, "gte": 300000},
    "signup_dropoff": {"and": [{"attribute": "signed_up_at", "ago": {"gte": "1d", "lt": "7d"}},
                               {"performed": "order_completed", "times": {"eq": 0}}]},
    "holdout": {"and": [{"attribute": "grade", "in": ["VIP", "골드"]}, {"not": {"sample": {"percent": 10, "salt": "h1"}}}]},
    "abandoned_cart": {"performed": "cart_added", "within": {"ago": {"gte": "1d", "lt": "7d"}},
                       "not_followed_by": {"performed": "order_completed", "within": "3d"}},
    "avg_basket": {"and": [{"aggregate": "avg", "of": "amount", "performed": "order_completed", "between": [30000, 80000.5]},
                           {"last_performed": "session_started", "where": {"properties.device": "ios"}, "ago": {"lt": "30d"}},
                           {"attribute": "name", "starts_with": "김"}]},
}
SCHEMA = Schema(
    Table("customers", {"customer_id": ColumnType.STRING, "age": ColumnType.INTEGER, "grade": ColumnType.STRING,
                        "name": ColumnType.STRING, "signed_up_at": ColumnType.TIMESTAMP}),
    Table("events", {"customer_id": ColumnType.STRING, "event": ColumnType.STRING, "ts": ColumnType.TIMESTAMP,
                     "category": ColumnType.STRING, "product_id": ColumnType.STRING, "promotion_id": ColumnType.STRING,
                     "amount": ColumnType.INTEGER, "properties": ColumnType.JSON}),
)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(RULES))
def test_golden_sql(name: str, dialect: str) -> None:
    sql = to_sql(RULES[name], dialect, now=NOW, schema=SCHEMA, pretty=True) + "\n"
    path = GOLDEN / f"{name}.{dialect}.sql"
    if os.environ.get("SHOPCRM_UPDATE_GOLDEN") or not path.exists():
        path.write_text(sql, encoding="utf-8")
    assert sql == path.read_text(encoding="utf-8"), f"{path.name} changed; SHOPCRM_UPDATE_GOLDEN=1 rewrites it"
    parsed = sqlglot.parse_one(sql, read=dialect)
    assert parsed.find(sqlglot.exp.Select) is not None


def test_golden_files_are_all_used() -> None:
    expected = {f"{n}.{d}.sql" for n in RULES for d in DIALECTS}
    assert {p.name for p in GOLDEN.glob("*.sql")} <= expected


def test_values_are_literals_never_sql() -> None:
    evil = "x'; DROP TABLE events; --"
    for dialect in DIALECTS:
        sql = to_sql({"attribute": "grade", "eq": evil}, dialect, now=NOW)
        tree = sqlglot.parse_one(sql, read=dialect)
        literals = [lit.this for lit in tree.find_all(sqlglot.exp.Literal) if lit.is_string]
        assert evil in literals, (dialect, sql)
        assert not list(tree.find_all(sqlglot.exp.Drop))
    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR, grade VARCHAR)")
    con.execute("INSERT INTO customers VALUES ('1', ?)", [evil])
    assert con.execute(to_sql({"attribute": "grade", "eq": evil}, now=NOW)).fetchall() == [("1",)]


def test_unknown_field_names_the_field_and_the_columns() -> None:
    with pytest.raises(shopcrm.SchemaError) as info:
        compile_members(parse_rule({"and": [{"performed": "x", "where": {"categroy": "shoes"}}]}), SCHEMA, now=NOW, dialect="duckdb")
    assert info.value.path == "and[0].performed.where.categroy"
    assert "no column 'categroy' (did you mean 'category'?)" in str(info.value)
    assert "amount, category, customer_id, event" in str(info.value)


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"attribute": "age", "gte": "20"}, "use a number"),
        ({"attribute": "grade", "eq": 1}, "use a string"),
        ({"attribute": "signed_up_at", "gte": "yesterday"}, "not an ISO 8601 datetime"),
        ({"attribute": "age", "contains": "1"}, "contains works on strings"),
        ({"attribute": "grade", "ago": {"lt": "1d"}}, "ago works on timestamps"),
        ({"aggregate": "sum", "of": "category", "performed": "x", "gte": 1}, "needs a numeric field"),
        ({"in_segment": "vip"}, "not resolved"),
    ],
)
def test_misfits_fail_at_compile_time(rule: dict[str, Any], fragment: str) -> None:
    with pytest.raises(shopcrm.RuleError, match=fragment):
        compile_members(parse_rule(rule), SCHEMA, now=NOW, dialect="postgres")


def test_to_sql_resolves_segments_and_unknown_dialects_are_named() -> None:
    sql = to_sql({"in_segment": "adults"}, "duckdb", now=NOW, segments={"adults": {"attribute": "age", "gte": 19}})
    assert '"age" >= 19' in sql
    with pytest.raises(shopcrm.RuleError, match="pass segments="):
        to_sql({"in_segment": "adults"}, "duckdb", now=NOW)
    with pytest.raises(ValueError, match="unknown dialect 'oracle'; use one of duckdb, sqlite"):
        to_sql({"everyone": True}, "oracle", now=NOW)


def test_identical_conditions_are_computed_once_and_shared_by_count_many() -> None:
    viewed = {"performed": "product_viewed", "within": {"last": "30d"}}
    rules = [parse_rule(viewed), parse_rule({"not": viewed}), parse_rule({"and": [viewed, {"attribute": "age", "gt": 1}]})]
    sql = render(compile_counts(rules, SCHEMA, now=NOW, dialect="postgres"), "postgres")
    assert sql.count("COUNT(1) AS f0") == 1  # one feature column shared by the three rules (its window in WHERE)
    assert sql.count("AS f") == 1
    assert sql.count('FROM "events"') == 1
    # DuckDB: the pass computes the shared test once, as bit 1 of its mask
    sql = render(compile_counts(rules, SCHEMA, now=NOW, dialect="duckdb"), "duckdb")
    assert sql.count("CASE WHEN COUNT(1) >= 1 THEN 1 ELSE 0 END AS m0") == 1
    assert sql.count('FROM "events"') == 1
    assert sql.count("(COALESCE(shopcrm_masks.m0, 0) & 1) <> 0") == 3


def test_infer_schema_guesses_types_from_values() -> None:
    schema = infer_schema(parse_rule({"and": [{"attribute": "signed_up_at", "ago": {"lt": "1d"}}, {"attribute": "vip", "eq": True},
                                              {"performed": "x", "where": {"amount": {"gte": 5}, "properties.k": "v"}}]}))
    assert schema.customers.columns["signed_up_at"] is ColumnType.TIMESTAMP
    assert schema.customers.columns["vip"] is ColumnType.BOOLEAN
    assert schema.events.columns["amount"] is ColumnType.FLOAT
    assert schema.events.columns["properties"] is ColumnType.JSON


def test_json_properties_on_duckdb_and_sqlite() -> None:
    import json
    import sqlite3

    rule = parse_rule({"performed": "view", "where": {"properties.device": "ios", "properties.size": {"gte": 250}}})
    schema = Schema(Table("customers", {"customer_id": ColumnType.STRING}),
                    Table("events", {"customer_id": ColumnType.STRING, "event": ColumnType.STRING,
                                     "ts": ColumnType.TIMESTAMP, "properties": ColumnType.JSON}))
    rows = [("a", "view", "2026-02-01 00:00:00", json.dumps({"device": "ios", "size": 260})),
            ("b", "view", "2026-02-01 00:00:00", json.dumps({"device": "ios", "size": 240})),
            ("c", "view", "2026-02-01 00:00:00", json.dumps({"device": "android", "size": 300}))]
    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR); CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, properties JSON)")
    con.executemany("INSERT INTO customers VALUES (?)", [("a",), ("b",), ("c",)])
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
    assert con.execute(render(compile_members(rule, schema, now=NOW, dialect="duckdb"), "duckdb")).fetchall() == [("a",)]
    lite = sqlite3.connect(":memory:")
    lite.execute("CREATE TABLE customers (customer_id TEXT)")
    lite.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT, properties TEXT)")
    lite.executemany("INSERT INTO customers VALUES (?)", [("a",), ("b",), ("c",)])
    lite.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
    assert lite.execute(render(compile_members(rule, schema, now=NOW, dialect="sqlite"), "sqlite")).fetchall() == [("a",)]
    assert shopcrm.evaluate(rule, [{"customer_id": c} for c in "abc"],
                            [dict(zip(("customer_id", "event", "ts", "properties"), r, strict=True)) for r in rows], now=NOW) == {"a"}


def test_windows_reaching_before_the_year_1000_agree_with_the_reference_on_sqlite() -> None:
    """Timestamp literals keep four-digit years (strftime drops the zeros), so SQLite's text order holds."""
    import sqlite3
    from datetime import datetime

    from shopcrm.compiler import to_sql
    from shopcrm.reference import evaluate

    now = datetime(2026, 3, 1)
    rule = {"performed": "order_completed", "within": {"last": "560000d"}}  # back to the year 492
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id INTEGER)")
    con.execute("CREATE TABLE events (customer_id INTEGER, event TEXT, ts TEXT)")
    con.execute("INSERT INTO customers VALUES (1)")
    con.execute("INSERT INTO events VALUES (1, 'order_completed', '2026-02-01 00:00:00.000')")
    got = {row[0] for row in con.execute(to_sql(rule, "sqlite", now=now))}
    expected = evaluate(rule, [{"customer_id": 1}], [{"customer_id": 1, "event": "order_completed", "ts": datetime(2026, 2, 1)}], now=now)
    assert got == expected == {1}


def test_count_many_leaves_no_coalesce_where_zero_fails_and_guards_not() -> None:
    """A customer without rows has NULL counts: left NULL where 0 fails the comparison as well (``>= 1``),
    turned into FALSE under ``not`` and kept as 0 where 0 passes (``= 0``), so the counts stay exact."""
    viewed = {"performed": "product_viewed", "within": {"last": "30d"}}
    never = {"performed": "product_viewed", "within": {"last": "30d"}, "times": {"eq": 0}}
    sql = render(compile_counts([parse_rule(viewed), parse_rule({"not": viewed}), parse_rule(never)], SCHEMA, now=NOW,
                                dialect="postgres"), "postgres")
    assert "COUNT(CASE WHEN shopcrm_f0.f0 >= 1 THEN 1 END) AS c0" in sql
    assert "COUNT(CASE WHEN NOT COALESCE(shopcrm_f0.f0 >= 1, FALSE) THEN 1 END) AS c1" in sql
    assert "COUNT(CASE WHEN COALESCE(shopcrm_f0.f0, 0) = 0 THEN 1 END) AS c2" in sql
    con = duckdb.connect()
    con.execute("CREATE TABLE customers (customer_id VARCHAR, age INTEGER)")
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, category VARCHAR)")
    con.execute("INSERT INTO customers VALUES ('a', 30), ('b', 40)")
    con.execute("INSERT INTO events VALUES ('a', 'product_viewed', TIMESTAMP '2026-02-20 00:00:00', 'shoes')")
    query = compile_counts([parse_rule(viewed), parse_rule({"not": viewed}), parse_rule(never)], SCHEMA, now=NOW, dialect="duckdb")
    assert con.execute(render(query, "duckdb")).fetchone() == (1, 1, 1)
