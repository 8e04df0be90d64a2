"""Rule values cannot escape their place in the SQL, whatever the server's string settings.

PostgreSQL with ``standard_conforming_strings = off`` reads a backslash in a string
literal as an escape, MariaDB without ``NO_BACKSLASH_ESCAPES`` does too, and with it
does not: a value inlined as a literal would mean something else (or end the string)
on one of them.  Values with backslashes, quotes, ``%``, placeholder look-alikes and
non-ASCII text must select exactly what the reference evaluator selects, on every
engine and setting, and a canary table must survive them.  The connection the shop
uses ends every call usable and outside a transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import MySQLLoader, PostgresLoader, duckdb_shop, sqlite_shop
from strategies import RandomShop, _schema

NOW = datetime(2026, 3, 1, 12)
INJECTION = "\\'; DROP TABLE canary; --"
HOSTILE = (
    INJECTION, "'; DROP TABLE canary; --", "\\", "\\\\", "\\'", "'", "''", '"', "%", "%s", "%(p0)s", "%%", "?", ":p0",
    "$1", "a\\nb", "a\nb", "\\x41", "_", "a%b_c", "한글\\", "é'\\", "\t", "--", "/*", "\\0",
)
values = st.one_of(st.sampled_from(HOSTILE), st.text(alphabet="\\'\"%_?:$a한\n", min_size=1, max_size=5))


@st.composite
def hostile_shops(draw: st.DrawFn) -> RandomShop:
    ids = draw(st.lists(values, min_size=1, max_size=6, unique=True))
    customers = [
        {"customer_id": cid, "age": None, "grade": draw(st.one_of(st.none(), values)), "score": None, "vip": None,
         "signed_up_at": None}
        for cid in ids
    ]
    events = [
        {"customer_id": draw(st.sampled_from(ids)), "event": draw(st.sampled_from(["order_completed", *HOSTILE[:3]])),
         "ts": NOW - timedelta(hours=draw(st.integers(1, 100))), "category": draw(st.one_of(st.none(), values)),
         "product_id": None, "amount": None, "price": None, "promotion_id": None}
        for _ in range(draw(st.integers(0, 12)))
    ]
    return RandomShop(customers, events, NOW, "str", _schema("str"))


@st.composite
def hostile_rules(draw: st.DrawFn, shop: RandomShop) -> shopcrm.Rule:
    """Mostly values the shop holds, so that a value read differently changes the answer."""
    held = [c["customer_id"] for c in shop.customers] + [c["grade"] for c in shop.customers if c["grade"]]
    held += [e["category"] for e in shop.events if e["category"]] + [e["event"] for e in shop.events]
    some = st.one_of(st.sampled_from(held), values)
    value = draw(some)
    op = draw(st.sampled_from(["eq", "eq", "ne", "lt", "gte", "in", "contains", "starts_with"]))
    cond: dict[str, Any] = {op: [value, draw(some)] if op == "in" else value}
    kind = draw(st.sampled_from(["attribute", "where", "event", "sample", "id"]))
    if kind == "attribute":
        rule: dict[str, Any] = {"attribute": "grade", **cond}
    elif kind == "id":
        rule = {"attribute": "customer_id", **cond}
    elif kind == "where":
        rule = {"performed": "order_completed", "where": {"category": cond}}
    elif kind == "event":
        rule = {"performed": value if value.strip() else f"x{value}", "within": {"last": "7d"}}
    else:
        rule = {"sample": {"percent": 50, "salt": value}}
    return shopcrm.parse_rule(rule)


hostile_cases = hostile_shops().flatmap(lambda shop: st.tuples(st.just(shop), hostile_rules(shop)))


def check(load: Callable[[RandomShop], shopcrm.Shop], shop: RandomShop, rule: shopcrm.Rule) -> None:
    expected = shopcrm.evaluate(rule, shop.customers, shop.events, now=shop.now, schema=shop.schema)
    got = load(shop).members(rule, now=shop.now)
    assert set(got) == expected, f"rule {rule.to_json()}: engine {sorted(got)} != reference {sorted(expected)}"


cases = settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=60)


@cases
@given(hostile_cases)
def test_duckdb_and_sqlite_read_hostile_values_as_data(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    check(duckdb_shop, *case)
    check(sqlite_shop, *case)


# ---------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="module")
def backslash_postgres(postgres_loader: PostgresLoader) -> Iterator[PostgresLoader]:
    """A database whose server setting reads backslashes in literals as escapes."""
    import psycopg

    params = postgres_loader.con.info.get_parameters()
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS shopcrm_backslash")
        admin.execute("CREATE DATABASE shopcrm_backslash")
        admin.execute("ALTER DATABASE shopcrm_backslash SET standard_conforming_strings = off")
    con = psycopg.connect(**{**params, "dbname": "shopcrm_backslash"})
    row = con.execute("SHOW standard_conforming_strings").fetchone()
    assert row == ("off",)
    con.execute("CREATE TABLE canary (x INT)")
    con.commit()
    try:
        yield PostgresLoader(con)
    finally:
        con.close()


def _canary_survives(con: Any) -> None:
    with con.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM canary")
        assert cur.fetchone()[0] == 0
    con.commit()


@pytest.mark.postgres
@cases
@given(case=hostile_cases)
def test_postgres_without_standard_strings_reads_values_as_data(
    backslash_postgres: PostgresLoader, case: tuple[RandomShop, shopcrm.Rule]
) -> None:
    check(backslash_postgres, *case)
    _canary_survives(backslash_postgres.con)


@pytest.mark.postgres
def test_postgres_injection_value_drops_nothing(backslash_postgres: PostgresLoader) -> None:
    shop = RandomShop(
        [{"customer_id": "a", "age": None, "grade": INJECTION, "score": None, "vip": None, "signed_up_at": None},
         {"customer_id": "b", "age": None, "grade": "x", "score": None, "vip": None, "signed_up_at": None}],
        [], NOW, "str", _schema("str"),
    )
    engine = backslash_postgres(shop)
    assert engine.members({"attribute": "grade", "eq": INJECTION}, now=NOW) == ["a"]
    assert engine.members({"attribute": "grade", "contains": "\\'"}, now=NOW) == ["a"]
    _canary_survives(backslash_postgres.con)


@pytest.mark.postgres
def test_postgres_connection_is_usable_and_idle_after_failed_and_good_calls(backslash_postgres: PostgresLoader) -> None:
    import psycopg
    from psycopg.pq import TransactionStatus

    con = backslash_postgres.con
    shop = RandomShop(
        [{"customer_id": "a", "age": None, "grade": "x", "score": None, "vip": None, "signed_up_at": None}],
        [], NOW, "str", _schema("str"),
    )
    engine = backslash_postgres(shop)
    assert engine.count({"attribute": "grade", "eq": "x"}, now=NOW) == 1
    assert con.info.transaction_status is TransactionStatus.IDLE  # a read leaves no transaction open
    with psycopg.connect(**con.info.get_parameters(), autocommit=True) as other:
        state = other.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (con.info.backend_pid,)).fetchone()
        assert state == ("idle",)
        other.execute("ALTER TABLE customers_str RENAME COLUMN grade TO grade_gone")  # the cached schema is now stale
    try:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            engine.count({"attribute": "grade", "eq": "x"}, now=NOW)
        assert con.info.transaction_status is TransactionStatus.IDLE  # rolled back, not INERROR
        assert engine.count({"everyone": True}, now=NOW) == 1  # and the next call works
        assert con.info.transaction_status is TransactionStatus.IDLE
        engine.save_segment("everyone", {"everyone": True}, now=NOW)
        assert con.info.transaction_status is TransactionStatus.IDLE
    finally:
        con.execute("ALTER TABLE customers_str RENAME COLUMN grade_gone TO grade")
        con.commit()


@pytest.mark.postgres
def test_postgres_transaction_blocks_nest_and_reads_inside_do_not_end_them(backslash_postgres: PostgresLoader) -> None:
    from psycopg.pq import TransactionStatus

    con = backslash_postgres.con
    con.execute("CREATE TABLE IF NOT EXISTS nested (x INT)")
    con.execute("DELETE FROM nested")
    con.commit()
    source: Any = shopcrm.Shop.from_dbapi(con, dialect="postgres", customers="customers_str", events="events_str").source

    def outer_block() -> None:
        with source._transaction():
            source._insert("nested", ["x"], [[1]])
            with source._transaction():
                source._run("INSERT INTO nested VALUES (2)", ())
                assert source._run("SELECT COUNT(*) FROM nested", ()) == [(2,)]  # a read inside ends nothing
            assert con.info.transaction_status is TransactionStatus.INTRANS  # the inner block did not commit
            raise RuntimeError("after the inner block")

    with pytest.raises(RuntimeError, match="after the inner block"):
        outer_block()
    assert con.info.transaction_status is TransactionStatus.IDLE
    assert source._run("SELECT COUNT(*) FROM nested", ()) == [(0,)]


# ------------------------------------------------------------------- MariaDB
def _mysql_loader(mysql_loader: MySQLLoader, database: str, mode: str) -> Iterator[MySQLLoader]:
    import pymysql

    base = mysql_loader.con
    with base.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {database}")
        cur.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    base.commit()
    con = pymysql.connect(host=base.host, port=base.port, user=base.user, password="", database=database,
                          charset="utf8mb4", autocommit=False)
    with con.cursor() as cur:
        cur.execute(f"SET SESSION sql_mode = {mode}")
        cur.execute("CREATE TABLE canary (x INT)")
    con.commit()
    loader = MySQLLoader(con)
    with con.cursor() as cur:  # room for the longest hostile value
        cur.execute("ALTER TABLE customers_str MODIFY grade VARCHAR(100)")
        cur.execute("ALTER TABLE events_str MODIFY event VARCHAR(100), MODIFY category VARCHAR(100)")
    con.commit()
    try:
        yield loader
    finally:
        con.close()


@pytest.fixture(scope="module")
def mysql_no_backslash_escapes(mysql_loader: MySQLLoader) -> Iterator[MySQLLoader]:
    yield from _mysql_loader(mysql_loader, "shopcrm_nbe", "CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")


@pytest.fixture(scope="module")
def mysql_backslash_escapes(mysql_loader: MySQLLoader) -> Iterator[MySQLLoader]:
    yield from _mysql_loader(mysql_loader, "shopcrm_be", "REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')")


def _mode(con: Any) -> str:
    with con.cursor() as cur:
        cur.execute("SELECT @@SESSION.sql_mode")
        mode = str(cur.fetchone()[0])
    con.commit()
    return mode


@pytest.mark.mysql
@cases
@given(case=hostile_cases)
def test_mariadb_reads_values_as_data_in_either_backslash_mode(
    mysql_no_backslash_escapes: MySQLLoader, mysql_backslash_escapes: MySQLLoader, case: tuple[RandomShop, shopcrm.Rule]
) -> None:
    assert "NO_BACKSLASH_ESCAPES" in _mode(mysql_no_backslash_escapes.con)
    assert "NO_BACKSLASH_ESCAPES" not in _mode(mysql_backslash_escapes.con)
    for loader in (mysql_no_backslash_escapes, mysql_backslash_escapes):
        check(loader, *case)
        _canary_survives(loader.con)


@pytest.mark.mysql
def test_mariadb_connection_is_usable_and_outside_a_transaction_after_failed_and_good_calls(
    mysql_backslash_escapes: MySQLLoader,
) -> None:
    import pymysql

    con = mysql_backslash_escapes.con
    shop = RandomShop(
        [{"customer_id": "a", "age": None, "grade": "x", "score": None, "vip": None, "signed_up_at": None}],
        [], NOW, "str", _schema("str"),
    )
    engine = mysql_backslash_escapes(shop)
    assert engine.count({"attribute": "grade", "eq": "x"}, now=NOW) == 1

    def open_transactions() -> int:
        other = pymysql.connect(host=con.host, port=con.port, user=con.user, password="")
        try:
            with other.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s",
                            (con.thread_id(),))
                return int(cur.fetchone()[0])
        finally:
            other.close()

    assert open_transactions() == 0
    with con.cursor() as cur:
        cur.execute("ALTER TABLE customers_str RENAME COLUMN grade TO grade_gone")
    con.commit()
    try:
        with pytest.raises(pymysql.err.OperationalError):
            engine.count({"attribute": "grade", "eq": "x"}, now=NOW)
        assert engine.count({"everyone": True}, now=NOW) == 1
        assert open_transactions() == 0
    finally:
        with con.cursor() as cur:
            cur.execute("ALTER TABLE customers_str RENAME COLUMN grade_gone TO grade")
        con.commit()
