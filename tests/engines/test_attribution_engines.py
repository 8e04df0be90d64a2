"""The attribution compiler on SQLite, PostgreSQL, MySQL (MariaDB) and Spark against the pure reference, on random
message histories (DuckDB's run is tests/measurement/test_sql.py): one meaning on every engine."""

from __future__ import annotations

import sqlite3
from typing import Any

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
from shopcrm.measurement._sql import attribution_queries

BYS = [(), ("variant",), ("step", "channel")]
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _ddl(history: History, text: str, big: str, double: str) -> dict[str, str]:
    id_type = big if history.id_kind == "int" else text
    return {
        "sends": f"(message_key {text}, customer {id_type}, campaign_id {text}, variant {text}, step {text}, "
                 f"channel {text}, kind {text}, sent_us {big}, cost {double})",
        "rivals": f"(message_key {text}, customer {id_type}, campaign_id {text}, variant {text}, step {text}, "
                  f"channel {text}, kind {text}, sent_us {big}, cost {double})",
        "clicks": f"(message_key {text}, clicked_us {big})",
        "events": f"(customer {id_type}, ts_us {big}, revenue {double}, order_id {text})",
        "members": f"(campaign_id {text}, variant {text}, status {text}, customer {id_type}, exposure_us {big})",
    }


COLUMNS = {"sends": SEND_COLUMNS, "rivals": SEND_COLUMNS, "clicks": CLICK_COLUMNS, "events": EVENT_COLUMNS, "members": MEMBER_INPUT_COLUMNS}


def _queries(history: History, by: tuple[str, ...], dialect: str, prefix: str = "") -> Any:
    return attribution_queries(
        sends=exp.to_table(f"{prefix}sends").as_("s"), clicks=exp.to_table(f"{prefix}clicks").as_("k0"),
        events=exp.to_table(f"{prefix}events").as_("e"), members=exp.to_table(f"{prefix}members").as_("m0"),
        dialect=dialect_for(dialect), policy=POLICY, by=by, now_us=history.now_us,
        rivals=exp.to_table(f"{prefix}rivals").as_("r0") if history.rivals else None, since_us=history.since_us)


def _load_dbapi(con: Any, history: History, ddl: dict[str, str], mark: str, prefix: str) -> None:
    cur = con.cursor()
    for name, columns in ddl.items():
        cur.execute(f"DROP TABLE IF EXISTS {prefix}{name}")
        cur.execute(f"CREATE TABLE {prefix}{name} {columns}")
        rows = history.rows(name)
        if rows:
            cur.executemany(f"INSERT INTO {prefix}{name} VALUES ({', '.join([mark] * len(COLUMNS[name]))})", rows)
    cur.close()
    con.commit()


def _fetch(con: Any) -> Any:
    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = con.cursor()
        try:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
        except Exception:
            con.rollback()
            raise
        finally:
            cur.close()
    return run


@SLOW
@given(history=histories())
def test_sqlite_agrees(history: History) -> None:
    con = sqlite3.connect(":memory:")
    _load_dbapi(con, history, _ddl(history, "TEXT", "INTEGER", "REAL"), "?", "")
    for by in BYS:
        check(_fetch(con), _queries(history, by, "sqlite"), history, "sqlite")


@SLOW
@given(history=histories())
def test_postgres_agrees(postgres_loader: Any, history: History) -> None:
    con = postgres_loader.con
    _load_dbapi(con, history, _ddl(history, "TEXT", "BIGINT", "DOUBLE PRECISION"), "%s", f"attr_{history.id_kind}_")
    for by in BYS:
        check(_fetch(con), _queries(history, by, "postgres", f"attr_{history.id_kind}_"), history, "postgres")
    con.commit()


@SLOW
@given(history=histories())
def test_mysql_agrees(mysql_loader: Any, history: History) -> None:
    con = mysql_loader.con
    _load_dbapi(con, history, _ddl(history, "VARCHAR(40)", "BIGINT", "DOUBLE"), "%s", f"attr_{history.id_kind}_")
    for by in BYS:
        check(_fetch(con), _queries(history, by, "mysql", f"attr_{history.id_kind}_"), history, "mysql")
    con.commit()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_spark_agrees(spark_loader: Any, history: History) -> None:
    from pyspark.sql import types as T

    spark = spark_loader.spark
    id_type = T.LongType() if history.id_kind == "int" else T.StringType()
    types = {"message_key": T.StringType(), "customer": id_type, "sent_us": T.LongType(), "cost": T.DoubleType(),
             "clicked_us": T.LongType(), "ts_us": T.LongType(), "revenue": T.DoubleType(),
             "exposure_us": T.LongType()}
    for name, columns in COLUMNS.items():
        schema = T.StructType([T.StructField(c, types.get(c, T.StringType())) for c in columns])
        spark.createDataFrame(history.rows(name), schema).createOrReplaceTempView(f"attr_{name}")
    for by in BYS[:2]:
        check(lambda sql: [tuple(r) for r in spark.sql(sql).collect()], _queries(history, by, "spark", "attr_"),
              history, "spark")
