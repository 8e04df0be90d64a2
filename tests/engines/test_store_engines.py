"""A Spark shop with its store in PostgreSQL (issue 15): segments, a one-off broadcast and a triggered scenario,
dispatch, delivery reports and the report run end to end, read on Spark and kept in PostgreSQL, and equal the
embedded shop's; a second Shop over the same Spark tables and store sees the campaigns, outbox and ledger and plans
nothing twice."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest

import shopcrm
from shopcrm.sources._store import library_beside
from store_scenario import CUSTOMERS, EVENTS, check, embedded, live, sqlite_shop_file

SCHEMA = "crm_store"


def _url(connection: Any) -> str:
    info = connection.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}?library_schema={SCHEMA}"


def _views(spark: Any) -> None:
    from pyspark.sql import types as T

    customers = T.StructType([T.StructField(n, T.StringType()) for n in ("customer_id", "name", "phone", "grade")])
    events = T.StructType([
        T.StructField("customer_id", T.StringType()), T.StructField("event", T.StringType()),
        T.StructField("ts", T.TimestampType()), T.StructField("product_id", T.StringType()),
        T.StructField("amount", T.LongType()),
    ])
    spark.createDataFrame([tuple(c[n] for n in customers.names) for c in CUSTOMERS], customers) \
        .createOrReplaceTempView("store_customers")
    spark.createDataFrame([tuple(e[n] for n in events.names) for e in EVENTS], events) \
        .createOrReplaceTempView("store_events")


@pytest.mark.spark
@pytest.mark.postgres
def test_a_spark_shop_keeps_its_campaigns_outbox_and_ledger_in_postgres(
    spark_loader: Any, postgres_loader: Any, tmp_path: Path,
) -> None:
    spark, pg = spark_loader.spark, postgres_loader.con
    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    pg.commit()
    _views(spark)
    url = _url(pg)

    def make() -> shopcrm.Shop:
        return shopcrm.Shop.from_spark(spark, customers="store_customers", events="store_events", store=url)

    (tmp_path / "reference").mkdir()
    reference = live(embedded(tmp_path / "reference"), tmp_path / "reference")
    seen = live(make, tmp_path)
    check(seen)
    for name in reference:
        if name not in ("report", "message_events"):
            assert seen[name] == reference[name], name
    assert seen["report"] == reference["report"]  # computed in Python over the store, equal to DuckDB's SQL
    assert [e for _, e in seen["message_events"]].count("message_sent") == 4
    # it is all in PostgreSQL, in the schema the URL named
    pg.rollback()
    tables = {r[0] for r in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                       (SCHEMA,)).fetchall()}
    assert {"shopcrm_campaigns", "shopcrm_outbox", "shopcrm_sends", "shopcrm_segments", "shopcrm_settings",
            "shopcrm_opt_outs", "shopcrm_message_events", "shopcrm_occurrences"} <= tables
    [(sent,)] = pg.execute(f"SELECT count(*) FROM {SCHEMA}.shopcrm_sends").fetchall()
    pg.commit()
    assert sent == 4
    shop = make()
    assert library_beside(shop.source) is None
    assert "Store(postgres" in repr(shop.source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Spark shop with a store says nothing about durability
        shop.source.campaign_store()
    shop.close()


@pytest.mark.spark
@pytest.mark.postgres
def test_a_spark_shop_saves_its_mapping_and_policies_in_the_store(
    spark_loader: Any, postgres_loader: Any, tmp_path: Path,
) -> None:
    from shopcrm.campaigns import MessagingPolicy
    from shopcrm.mapping import CustomersMap, EventsMap, Mapping

    spark, pg = spark_loader.spark, postgres_loader.con
    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    pg.commit()
    _views(spark)
    url = _url(pg)
    mapping = Mapping(CustomersMap("store_customers"), EventsMap("store_events"))
    policy = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000")
    with shopcrm.Shop.from_spark(spark, mapping=mapping, store=url) as shop:
        shop.messaging_policy = policy
    with shopcrm.Shop.from_spark(spark, store=url) as again:  # no mapping given: the saved one
        assert again.source.customers_table == "store_customers"
        assert again.messaging_policy == policy
        assert again.count({"attribute": "grade", "eq": "VIP"}, now=EVENTS[0]["ts"]) == 3


@pytest.mark.spark
def test_a_spark_shop_without_a_store_says_once_that_nothing_is_durable(spark_loader: Any) -> None:
    import shopcrm.sources.spark as spark_module

    _views(spark_loader.spark)
    spark_module._warned = False
    shop = shopcrm.Shop.from_spark(spark_loader.spark, customers="store_customers", events="store_events")
    assert "in memory, not durable" in repr(shop.source)
    with pytest.warns(spark_module.NotDurableWarning, match="store='postgresql://"):
        shop.source.campaign_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shop.source.campaign_store()  # once per process
        shopcrm.Shop.from_spark(spark_loader.spark, customers="store_customers", events="store_events") \
            .source.campaign_store()


@pytest.mark.mysql
def test_a_sqlite_shop_keeps_its_library_tables_in_mariadb(mysql_loader: Any, tmp_path: Path) -> None:
    """The store over an open connection (``shopcrm.Store(connection, dialect="mysql")``), in a database of its own."""
    connection = mysql_loader.con
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
    connection.commit()
    store = shopcrm.Store(connection, dialect="mariadb", library_schema=SCHEMA)
    data = sqlite_shop_file(tmp_path / "shop.db")

    def make() -> shopcrm.Shop:
        return shopcrm.Shop.from_dbapi(sqlite3.connect(data), dialect="sqlite", store=store)

    (tmp_path / "reference").mkdir()
    reference = live(embedded(tmp_path / "reference"), tmp_path / "reference")
    seen = live(make, tmp_path)
    check(seen)
    for name in reference:
        if name != "message_events":
            assert seen[name] == reference[name], name
    with connection.cursor() as cursor:  # the connection was the caller's: still open, holding the ledger
        cursor.execute(f"SELECT count(*) FROM {SCHEMA}.shopcrm_sends")
        assert cursor.fetchone() == (4,)
    connection.commit()

