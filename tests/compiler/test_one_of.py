"""``Dialect.one_of``: the event-name filter of the tick's reads, ``= ANY [...]`` on DuckDB and ``IN (...)`` elsewhere,
keeps exactly the rows whose value is one of the names (quotes, backslashes, Korean, one name or many)."""

from __future__ import annotations

import sqlite3

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from shopcrm.compiler import render
from shopcrm.compiler._dialects import dialect_for

_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)


def _query(dialect: str, names: list[str]) -> str:
    column = exp.column("event", table="e", quoted=True)
    query = exp.select(column.copy()).from_("t AS e").where(dialect_for(dialect).one_of(column, names))
    return render(query, dialect)


@settings(deadline=None, max_examples=60)
@given(rows=st.lists(_names, max_size=12), names=st.lists(_names, min_size=1, max_size=4), pick=st.booleans())
def test_one_of_keeps_the_rows_named_on_duckdb_and_sqlite(rows: list[str], names: list[str], pick: bool) -> None:
    if pick and rows:
        names = [*names, rows[0]]  # a name that is there
    expected = sorted(r for r in rows if r in names)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (event TEXT)")
    if rows:
        con.executemany("INSERT INTO t VALUES (?)", [(r,) for r in rows])
    assert sorted(r for (r,) in con.execute(_query("duckdb", names)).fetchall()) == expected
    lite = sqlite3.connect(":memory:")
    lite.execute("CREATE TABLE t (event TEXT)")
    lite.executemany("INSERT INTO t VALUES (?)", [(r,) for r in rows])
    assert sorted(r for (r,) in lite.execute(_query("sqlite", names)).fetchall()) == expected


def test_duckdb_tests_the_names_in_the_scan_where_others_use_in() -> None:
    column = exp.column("event")
    assert render(dialect_for("duckdb").one_of(column, ["a"]), "duckdb") == "event = 'a'"
    assert render(dialect_for("duckdb").one_of(column, ["a", "b"]), "duckdb") == "event = ANY ['a', 'b']"
    assert render(dialect_for("postgres").one_of(column, ["a", "b"]), "postgres") == "event IN ('a', 'b')"
