"""JSON ``properties`` fields: every engine reads them as the reference evaluator does.

A property compares by its JSON type (``docs/dsl.md``, "JSON properties"): a number with numbers, a string with
strings, true/false with booleans. One key may hold different types in different events (``{"size": 42}`` and
``{"size": "XL"}``); a value of another type, an array, an object or JSON null satisfies no comparison (as NULL),
and no engine may fail on it. Aggregates read the JSON numbers (``count_distinct``: numbers, strings and booleans,
each kind apart). Hand-computed cases first, then random shops whose properties mix every JSON type, on DuckDB and
SQLite, PostgreSQL (jsonb and json), MariaDB and Spark.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import _empty_duckdb
from shopcrm.compiler import to_sql
from shopcrm.sources.duckdb_store import DuckDBSource

pytestmark = pytest.mark.filterwarnings("ignore::shopcrm.UnseenEventWarning")  # random rules name events a shop lacks
NOW = datetime(2026, 3, 1)
RULE = {"performed": "view", "where": {"properties.device": "ios", "properties.size": {"gte": 250}}}
ROWS = [
    ("a", "view", datetime(2026, 2, 1), json.dumps({"device": "ios", "size": 260})),
    ("b", "view", datetime(2026, 2, 1), json.dumps({"device": "ios", "size": 240})),
    ("c", "view", datetime(2026, 2, 1), json.dumps({"device": "Ios", "size": 300})),
    ("d", "view", datetime(2026, 2, 1), None),
]


def expected() -> set[Any]:
    customers = [{"customer_id": c} for c in "abcd"]
    events = [dict(zip(("customer_id", "event", "ts", "properties"), r, strict=True)) for r in ROWS]
    return shopcrm.evaluate(RULE, customers, events, now=NOW)


@pytest.mark.postgres
def test_postgres_json(postgres_loader: Any) -> None:
    con = postgres_loader.con
    with con.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS jc (customer_id TEXT)")
        cur.execute("CREATE TABLE IF NOT EXISTS je (customer_id TEXT, event TEXT, ts TIMESTAMP, properties JSONB)")
        cur.execute("TRUNCATE jc, je")
        cur.executemany("INSERT INTO jc VALUES (%s)", [(c,) for c in "abcd"])
        cur.executemany("INSERT INTO je VALUES (%s, %s, %s, %s)", ROWS)
    con.commit()
    shop = shopcrm.Shop.from_dbapi(con, dialect="postgres", customers="jc", events="je")
    assert set(shop.members(RULE, now=NOW)) == expected() == {"a"}


@pytest.mark.mysql
def test_mysql_json(mysql_loader: Any) -> None:
    con = mysql_loader.con
    with con.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS jc (customer_id VARCHAR(10))")
        cur.execute("CREATE TABLE IF NOT EXISTS je (customer_id VARCHAR(10), event VARCHAR(10), ts DATETIME(6), properties JSON)")
        cur.execute("DELETE FROM jc")
        cur.execute("DELETE FROM je")
        cur.executemany("INSERT INTO jc VALUES (%s)", [(c,) for c in "abcd"])
        cur.executemany("INSERT INTO je VALUES (%s, %s, %s, %s)", ROWS)
    con.commit()
    shop = shopcrm.Shop.from_dbapi(con, dialect="mysql", customers="jc", events="je")
    assert set(shop.members(RULE, now=NOW)) == expected() == {"a"}


# ------------------------------------------------------------------ a shop of mixed JSON types, by hand
T = NOW - timedelta(days=2)
MIXED_CUSTOMERS = [{"customer_id": c} for c in "abcde"]
MIXED_PROPERTIES: dict[str, Any] = {
    "a": {"size": 42, "color": "red", "flag": True, "tags": ["a", "b"], "x": 1e20, "n": 3},
    "b": {"size": "XL", "color": "Red", "flag": "true", "o": {"k": 1}, "n": "7"},
    "c": {"size": "42", "color": None, "flag": 1, "n": True},
    "d": json.dumps({"size": 40.5, "color": "red", "n": 3.5}),  # JSON text reads as the dict would
    "e": None,
}
MIXED_EVENTS = [{"customer_id": c, "event": "v", "ts": T, "properties": p} for c, p in MIXED_PROPERTIES.items()]


def _v(where: dict[str, Any]) -> dict[str, Any]:
    return {"performed": "v", "where": where}


def _agg(fn: str, of: str, **ops: Any) -> dict[str, Any]:
    return {"aggregate": fn, "of": of, "performed": "v", **ops}


MIXED_CASES: list[tuple[dict[str, Any], set[str]]] = [
    # numbers compare with numbers only: "XL" and "42" (strings) satisfy no numeric comparison, not even ne
    (_v({"properties.size": {"gte": 40}}), {"a", "d"}),
    (_v({"properties.size": 42}), {"a"}),
    (_v({"properties.size": {"ne": 42}}), {"d"}),
    (_v({"properties.size": {"not_in": [42]}}), {"d"}),
    (_v({"properties.size": {"between": [40, 41]}}), {"d"}),
    (_v({"properties.size": {"in": [42, 40.5]}}), {"a", "d"}),
    # strings compare with strings only
    (_v({"properties.size": "42"}), {"c"}),
    (_v({"properties.size": {"ne": "XL"}}), {"c"}),
    (_v({"properties.size": {"lt": "Z"}}), {"b", "c"}),
    (_v({"properties.color": {"lt": "s"}}), {"a", "b", "d"}),
    (_v({"properties.color": {"gt": 5}}), set()),
    (_v({"properties.color": {"contains": "e"}}), {"a", "b", "d"}),
    (_v({"properties.size": {"starts_with": "4"}}), {"c"}),
    # two kinds in one operator object: each operator reads its own kind, so no value satisfies both
    (_v({"properties.size": {"gte": 40, "ne": "XL"}}), set()),
    (_v({"properties.size": {"gte": 40, "is_null": False}}), {"a", "d"}),
    # booleans with true/false only (a bare value means equality); 1 and "true" are not true
    (_v({"properties.flag": True}), {"a"}),
    (_v({"properties.flag": {"ne": False}}), {"a"}),
    (_v({"properties.flag": {"in": [True, False]}}), {"a"}),
    (_v({"properties.flag": "true"}), {"b"}),
    (_v({"properties.flag": 1}), {"c"}),
    # arrays and objects satisfy no comparison, whatever their text
    (_v({"properties.tags": '["a","b"]'}), set()),
    (_v({"properties.tags": '["a", "b"]'}), set()),
    (_v({"properties.tags": {"ne": "x"}}), set()),
    (_v({"properties.o": '{"k":1}'}), set()),
    (_v({"properties.o": {"starts_with": "{"}}), set()),
    # a large float is a number, not text
    (_v({"properties.x": "1e+20"}), set()),
    (_v({"properties.x": "100000000000000000000.0"}), set()),
    (_v({"properties.x": {"gte": 1e19}}), {"a"}),
    # NULL: a missing key, JSON null, no properties at all
    (_v({"properties.color": {"is_null": True}}), {"c", "e"}),
    (_v({"properties.tags": {"is_null": False}}), {"a"}),
    (_v({"properties.nope": {"is_null": True}}), {"a", "b", "c", "d", "e"}),
    # aggregates read the JSON numbers; text, booleans, arrays and objects are skipped like NULL
    (_agg("max", "properties.size", gte=40), {"a", "d"}),
    (_agg("min", "properties.size", lt=41), {"d"}),
    (_agg("sum", "properties.size", eq=0), {"b", "c", "e"}),
    (_agg("sum", "properties.n", eq=3.5), {"d"}),
    (_agg("avg", "properties.n", eq=3), {"a"}),
    (_agg("max", "properties.color", gt=0), set()),
    # count_distinct counts numbers, strings and booleans, each kind apart ("red" and "Red" differ)
    (_agg("count_distinct", "properties.color", eq=1), {"a", "b", "d"}),
    (_agg("count_distinct", "properties.size", eq=1), {"a", "b", "c", "d"}),
    (_agg("count_distinct", "properties.flag", eq=1), {"a", "b", "c"}),
    (_agg("count_distinct", "properties.tags", eq=0), {"a", "b", "c", "d", "e"}),
    # and as the complement: two-valued logic, nothing leaks
    ({"not": _v({"properties.size": {"gte": 40}})}, {"b", "c", "e"}),
]


def _mixed_rows(properties_as_text: bool) -> list[dict[str, Any]]:
    return [
        {**e, "properties": json.dumps(e["properties"]) if properties_as_text and isinstance(e["properties"], dict)
         else e["properties"]}
        for e in MIXED_EVENTS
    ]


@pytest.mark.parametrize(("rule", "members"), MIXED_CASES, ids=[json.dumps(c[0]) for c in MIXED_CASES])
def test_mixed_types_in_the_reference(rule: dict[str, Any], members: set[str]) -> None:
    for as_text in (False, True):  # properties as dicts or as JSON text: read alike by filters and aggregates
        assert shopcrm.evaluate(rule, MIXED_CUSTOMERS, _mixed_rows(as_text), now=NOW) == members


def _duckdb_json_shop(customers: list[dict[str, Any]], events: list[dict[str, Any]]) -> shopcrm.Shop:
    con = _empty_duckdb()
    con.execute("CREATE TABLE customers (customer_id VARCHAR)")
    con.execute("CREATE TABLE events (customer_id VARCHAR, event VARCHAR, ts TIMESTAMP, properties JSON)")
    shop = shopcrm.Shop(DuckDBSource(connection=con))
    shop.load_customers(customers)
    if events:
        shop.load_events(events)
    return shop


def _text(properties: Any) -> str | None:
    return properties if properties is None or isinstance(properties, str) else json.dumps(properties)


def _sqlite_json_shop(customers: list[dict[str, Any]], events: list[dict[str, Any]]) -> shopcrm.Shop:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id TEXT)")
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, properties TEXT)")
    con.executemany("INSERT INTO customers VALUES (?)", [(c["customer_id"],) for c in customers])
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                    [(e["customer_id"], e["event"], e["ts"].isoformat(sep=" "), _text(e["properties"])) for e in events])
    return shopcrm.Shop.from_dbapi(con, dialect="sqlite")


Loader = Callable[[list[dict[str, Any]], list[dict[str, Any]]], shopcrm.Shop]


def _agrees(load: Loader, customers: list[dict[str, Any]], events: list[dict[str, Any]], rules: list[Any],
            expected: list[set[Any]] | None = None) -> None:
    engine = load(customers, events)
    wanted = expected or [shopcrm.evaluate(r, customers, events, now=NOW) for r in rules]
    for rule, members in zip(rules, wanted, strict=True):
        got = engine.members(rule, now=NOW)
        assert len(got) == len(set(got)), f"duplicate ids: {got}"
        assert set(got) == members, f"rule {json.dumps(rule)}: engine {sorted(got)} != reference {sorted(members)}"
        assert engine.count(rule, now=NOW) == len(members), json.dumps(rule)
    assert engine.count_many(rules, now=NOW) == [len(m) for m in wanted]


@pytest.mark.parametrize("load", [_duckdb_json_shop, _sqlite_json_shop], ids=["duckdb", "sqlite"])
def test_mixed_types_on_embedded_engines(load: Loader) -> None:
    _agrees(load, MIXED_CUSTOMERS, MIXED_EVENTS, [c[0] for c in MIXED_CASES], [c[1] for c in MIXED_CASES])


def test_ago_on_a_json_property_is_refused_alike() -> None:
    rule = _v({"properties.seen": {"ago": {"lt": "7d"}}})
    with pytest.raises(shopcrm.RuleError) as compiled:
        to_sql(rule, now=NOW)
    with pytest.raises(shopcrm.RuleError) as evaluated:
        shopcrm.evaluate(rule, MIXED_CUSTOMERS, [], now=NOW)  # before reading any data
    assert str(compiled.value) == str(evaluated.value)
    assert compiled.value.path == "performed.where.properties.seen.ago"
    assert "ago works on timestamps" in str(compiled.value)


# ------------------------------------------------------------------------------------- random shops
KEYS = ("v", "w")
TEXTS = ("a", "A", "b", "ab", "", "한", "42", "1.5", "true", "null", "[1]", "a'b", "%", "XL", "a ", "\\")
_ints = st.one_of(st.integers(-3, 50), st.sampled_from([10**9, 2**53 + 1]))
_quarters = st.integers(-160, 160).map(lambda n: n / 4)
_numbers = st.one_of(_ints, _quarters, st.just(1e20))
_texts = st.sampled_from(TEXTS)
_scalars = st.one_of(_numbers, _texts, st.booleans())
_json_values = st.one_of(_scalars, st.none(), st.lists(st.one_of(_ints, _texts), max_size=2),
                         st.dictionaries(st.just("k"), st.one_of(_ints, _texts), max_size=1))


@st.composite
def json_shops(draw: st.DrawFn, max_customers: int = 6, max_events: int = 14) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Customers and events whose properties mix every JSON type under the same keys (or have none)."""
    ids = draw(st.lists(st.sampled_from("pqrstuvw"), min_size=1, max_size=max_customers, unique=True))
    customers = [{"customer_id": c} for c in ids]
    events = []
    for _ in range(draw(st.integers(0, max_events))):
        properties = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(KEYS), _json_values, max_size=2)))
        events.append({"customer_id": draw(st.sampled_from(ids)), "event": draw(st.sampled_from(["view", "order"])),
                       "ts": NOW - timedelta(hours=draw(st.integers(1, 48))), "properties": properties})
    return customers, events


@st.composite
def _json_condition(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["number", "string", "boolean", "is_null", "two"]))
    if kind == "is_null":
        return {"is_null": draw(st.booleans())}
    if kind == "two":  # two operators, of one kind or of two (then nothing satisfies both)
        return draw(st.sampled_from([{"gte": draw(_numbers), "ne": draw(_numbers)}, {"ne": draw(_texts), "contains": draw(_texts)},
                                     {"gte": draw(_numbers), "ne": draw(_texts)}, {"lt": draw(_numbers), "is_null": False}]))
    value = {"number": _numbers, "string": _texts, "boolean": st.booleans()}[kind]
    ops = {"number": ["bare", "eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in"],
           "string": ["bare", "eq", "ne", "lt", "gte", "between", "in", "not_in", "contains", "starts_with"],
           "boolean": ["bare", "eq", "ne", "in", "not_in"]}[kind]
    op = draw(st.sampled_from(ops))
    if op == "bare":
        return draw(value)
    if op == "between":
        return {"between": sorted(draw(st.lists(value, min_size=2, max_size=2)))}
    if op in ("in", "not_in"):
        return {op: draw(st.lists(value, min_size=1, max_size=3))}
    return {op: draw(value)}


@st.composite
def _json_leaf(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(["view", "order"]))
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True))
        node: dict[str, Any] = {"performed": event, "where": {f"properties.{k}": draw(_json_condition()) for k in keys}}
        if draw(st.booleans()):
            node["times"] = {draw(st.sampled_from(["eq", "gte", "lt"])): draw(st.integers(0, 2))}
        return node
    fn = draw(st.sampled_from(["sum", "avg", "min", "max", "count_distinct"]))
    node = {"aggregate": fn, "of": f"properties.{draw(st.sampled_from(KEYS))}", "performed": event}
    if draw(st.booleans()):
        node["where"] = {f"properties.{draw(st.sampled_from(KEYS))}": draw(_json_condition())}
    numbers = st.integers(0, 3) if fn == "count_distinct" else _numbers
    op = draw(st.sampled_from(["eq", "ne", "lt", "gte", "between", "in"]))
    if op == "between":
        node["between"] = sorted(draw(st.lists(numbers, min_size=2, max_size=2)))
    elif op == "in":
        node["in"] = draw(st.lists(numbers, min_size=1, max_size=2))
    else:
        node[op] = draw(numbers)
    return node


json_rules = st.recursive(
    _json_leaf(),
    lambda children: st.one_of(children.map(lambda r: {"not": r}),
                               st.lists(children, min_size=1, max_size=2).map(lambda rs: {"and": rs}),
                               st.lists(children, min_size=1, max_size=2).map(lambda rs: {"or": rs})),
    max_leaves=3,
)
cases = st.tuples(json_shops(), st.lists(json_rules, min_size=1, max_size=3), st.randoms(use_true_random=False))


def _some_as_text(events: list[dict[str, Any]], rnd: Any) -> list[dict[str, Any]]:
    """The reference's input: some properties as JSON text (the reference reads both alike)."""
    return [{**e, "properties": _text(e["properties"]) if rnd.random() < 0.5 else e["properties"]} for e in events]


def _check(load: Loader, case: tuple[Any, list[Any], Any]) -> None:
    (customers, events), rules, rnd = case
    expected = [shopcrm.evaluate(r, customers, _some_as_text(events, rnd), now=NOW) for r in rules]
    assert expected == [shopcrm.evaluate(r, customers, events, now=NOW) for r in rules]
    _agrees(load, customers, events, rules, expected)


def examples(n: int) -> settings:
    return settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=n, print_blob=True)


@examples(150)
@given(case=cases)
def test_mixed_json_types_agree_on_duckdb_and_sqlite(case: tuple[Any, list[Any], Any]) -> None:
    _check(_duckdb_json_shop, case)
    _check(_sqlite_json_shop, case)


def _postgres_json_shop(con: Any, column_type: str) -> Loader:
    def load(customers: list[dict[str, Any]], events: list[dict[str, Any]]) -> shopcrm.Shop:
        with con.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS jpc (customer_id TEXT)")
            for kind in ("jsonb", "json"):
                cur.execute(f"CREATE TABLE IF NOT EXISTS jpe_{kind} (customer_id TEXT, event TEXT, ts TIMESTAMP, properties {kind.upper()})")
            cur.execute("TRUNCATE jpc, jpe_jsonb, jpe_json")
            cur.executemany("INSERT INTO jpc VALUES (%s)", [(c["customer_id"],) for c in customers])
            cur.executemany(f"INSERT INTO jpe_{column_type} VALUES (%s, %s, %s, %s)",
                            [(e["customer_id"], e["event"], e["ts"], _text(e["properties"])) for e in events])
        con.commit()
        return shopcrm.Shop.from_dbapi(con, dialect="postgres", customers="jpc", events=f"jpe_{column_type}")
    return load


@pytest.mark.postgres
def test_mixed_types_on_postgres(postgres_loader: Any) -> None:
    for kind in ("jsonb", "json"):
        _agrees(_postgres_json_shop(postgres_loader.con, kind), MIXED_CUSTOMERS, MIXED_EVENTS,
                [c[0] for c in MIXED_CASES], [c[1] for c in MIXED_CASES])


@pytest.mark.postgres
@examples(120)
@given(case=cases)
def test_mixed_json_types_agree_on_postgres(postgres_loader: Any, case: tuple[Any, list[Any], Any]) -> None:
    _check(_postgres_json_shop(postgres_loader.con, "jsonb"), case)


def _mysql_json_shop(con: Any) -> Loader:
    def load(customers: list[dict[str, Any]], events: list[dict[str, Any]]) -> shopcrm.Shop:
        with con.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS jmc (customer_id VARCHAR(10))")
            cur.execute("CREATE TABLE IF NOT EXISTS jme (customer_id VARCHAR(10), event VARCHAR(10), ts DATETIME(6), properties JSON)")
            cur.execute("DELETE FROM jmc")
            cur.execute("DELETE FROM jme")
            cur.executemany("INSERT INTO jmc VALUES (%s)", [(c["customer_id"],) for c in customers])
            if events:
                cur.executemany("INSERT INTO jme VALUES (%s, %s, %s, %s)",
                                [(e["customer_id"], e["event"], e["ts"], _text(e["properties"])) for e in events])
        con.commit()
        return shopcrm.Shop.from_dbapi(con, dialect="mysql", customers="jmc", events="jme")
    return load


@pytest.mark.mysql
def test_mixed_types_on_mysql(mysql_loader: Any) -> None:
    _agrees(_mysql_json_shop(mysql_loader.con), MIXED_CUSTOMERS, MIXED_EVENTS, [c[0] for c in MIXED_CASES],
            [c[1] for c in MIXED_CASES])


@pytest.mark.mysql
@examples(120)
@given(case=cases)
def test_mixed_json_types_agree_on_mysql(mysql_loader: Any, case: tuple[Any, list[Any], Any]) -> None:
    _check(_mysql_json_shop(mysql_loader.con), case)


def _spark_json_shop(spark: Any) -> Loader:
    def load(customers: list[dict[str, Any]], events: list[dict[str, Any]]) -> shopcrm.Shop:
        from pyspark.sql import types as T

        spark.createDataFrame([(c["customer_id"],) for c in customers],
                              T.StructType([T.StructField("customer_id", T.StringType())])).createOrReplaceTempView("customers")
        schema = T.StructType([T.StructField("customer_id", T.StringType()), T.StructField("event", T.StringType()),
                               T.StructField("ts", T.TimestampType()), T.StructField("properties", T.StringType())])
        rows = [(e["customer_id"], e["event"], e["ts"], _text(e["properties"])) for e in events]
        spark.createDataFrame(rows, schema).createOrReplaceTempView("events")
        return shopcrm.Shop.from_spark(spark)
    return load


@pytest.mark.spark
def test_mixed_types_on_spark(spark_loader: Any) -> None:
    _agrees(_spark_json_shop(spark_loader.spark), MIXED_CUSTOMERS, MIXED_EVENTS, [c[0] for c in MIXED_CASES],
            [c[1] for c in MIXED_CASES])


@pytest.mark.spark
@examples(25)
@given(case=cases)
def test_mixed_json_types_agree_on_spark(spark_loader: Any, case: tuple[Any, list[Any], Any]) -> None:
    _check(_spark_json_shop(spark_loader.spark), case)
