"""A broadcast's hashes computed by PostgreSQL, MySQL (MariaDB) and Spark are the planner's own: idempotency keys of
integer and plain text ids, global control, holdout and variant (as on DuckDB: ``tests/test_audience_hashes.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from hash_cases import INTEGER_IDS, campaigns, check, engine_hashes, text_ids
from shopcrm.campaigns import Campaign, MessagingPolicy

EXAMPLES = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
#: per engine: the connection's parameter mark and the id column types
ENGINES = {"postgres": ("%s", {"int": "BIGINT", "str": "TEXT"}), "mysql": ("%s", {"int": "BIGINT", "str": "VARCHAR(64)"})}


def _source(dialect: str, con: Any, ids: list[Any], kind: str) -> Any:
    mark, types = ENGINES[dialect]
    with con.cursor() as cursor:
        for table in ("hash_customers", "hash_events"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TABLE hash_customers (customer_id {types[kind]}, name VARCHAR(10))")
        cursor.execute(f"CREATE TABLE hash_events (customer_id {types[kind]}, event VARCHAR(40), ts TIMESTAMP)")
        cursor.executemany(f"INSERT INTO hash_customers VALUES ({mark}, 'x')", [(i,) for i in ids])
    con.commit()
    return shopcrm.Shop.from_dbapi(con, dialect=dialect, customers="hash_customers", events="hash_events").source


def _spark_source(spark: Any, ids: list[Any], kind: str) -> Any:
    from pyspark.sql import types as T

    id_type = T.LongType() if kind == "int" else T.StringType()
    spark.createDataFrame([(i, "x") for i in ids], T.StructType([
        T.StructField("customer_id", id_type), T.StructField("name", T.StringType())])).createOrReplaceTempView("customers")
    spark.createDataFrame([], T.StructType([
        T.StructField("customer_id", id_type), T.StructField("event", T.StringType()),
        T.StructField("ts", T.TimestampType())])).createOrReplaceTempView("events")
    return shopcrm.Shop.from_spark(spark).source


@pytest.fixture(params=["postgres", "mysql", "spark"])
def engine(request: pytest.FixtureRequest) -> tuple[str, Any]:
    loader = request.getfixturevalue(f"{request.param}_loader")
    return request.param, loader.spark if request.param == "spark" else loader.con


@EXAMPLES
@given(ids=st.one_of(INTEGER_IDS.map(lambda i: ("int", i)), text_ids(True).map(lambda i: ("str", i))), case=campaigns())
def test_the_engine_hashes_an_audience_as_python_does(
    engine: tuple[str, Any], ids: tuple[str, list[Any]], case: tuple[Campaign, MessagingPolicy],
) -> None:
    dialect, con = engine
    kind, members = ids
    if dialect == "mysql" and kind == "str":  # its default collation: ids equal up to case or trailing spaces are one
        members = list({m.lower().rstrip(): m for m in members}.values())
    campaign, policy = case
    source = _spark_source(con, members, kind) if dialect == "spark" else _source(dialect, con, members, kind)
    check(engine_hashes(source, campaign, policy), members, campaign, policy, keyed=True)
