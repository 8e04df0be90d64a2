"""A PostgreSQL and a MariaDB shop under their own table and column names (``members``/``activity_log``,
``member_no`` as bigint or text, ``event_type``, ``occurred_at``, a jsonb/json/JSON ``payload``, ``ORDER_PAID``
for the library's ``order_completed``), declared once in a mapping: every answer, the lifecycle table and a
campaign's sent messages equal the same data under the library's names in the embedded DuckDB shop; each
schema problem is reported at construction; and the lifecycle runs on PostgreSQL without an amount column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import shopcrm
from mapping_shop import EVENTS, MAPPING, MEMBERS, NOW, answers, campaign_run, fill, reference_shop
from shopcrm.mapping import EventsMap, Mapping

_LEDGER = ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values", "shopcrm_sends", "shopcrm_opt_outs",
           "shopcrm_message_events")


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return answers(reference_shop())


@pytest.fixture(scope="module")
def expected_sent(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return campaign_run(reference_shop(), tmp_path_factory.mktemp("reference"))


def _forget_campaigns(connection: Any) -> None:
    cursor = connection.cursor()
    for table in _LEDGER:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.close()
    connection.commit()


@pytest.mark.postgres
@pytest.mark.parametrize(("id_type", "json_type"), [("BIGINT", "JSONB"), ("TEXT", "JSON"), ("BIGINT", "TEXT")])
def test_postgres_under_its_own_names(postgres_loader: Any, id_type: str, json_type: str, expected: dict[str, Any],
                                      expected_sent: list[str], tmp_path: Path) -> None:
    connection = postgres_loader.con
    fill(connection, "%s", id_type=id_type, json_type=json_type, text="TEXT")
    _forget_campaigns(connection)
    shop = shopcrm.Shop.from_dbapi(connection, dialect="postgres", mapping=MAPPING)
    assert answers(shop) == expected
    assert campaign_run(shop, tmp_path) == expected_sent


@pytest.mark.mysql
@pytest.mark.parametrize(("id_type", "json_type"), [("BIGINT", "JSON"), ("VARCHAR(20)", "TEXT")])
def test_mariadb_under_its_own_names(mysql_loader: Any, id_type: str, json_type: str, expected: dict[str, Any],
                                     expected_sent: list[str], tmp_path: Path) -> None:
    connection = mysql_loader.con
    fill(connection, "%s", id_type=id_type, json_type=json_type, timestamp="DATETIME(6)")
    _forget_campaigns(connection)
    shop = shopcrm.Shop.from_dbapi(connection, dialect="mysql", mapping=MAPPING)
    assert answers(shop) == expected
    assert campaign_run(shop, tmp_path) == expected_sent


@pytest.mark.postgres
def test_postgres_customer_ids_of_different_types(postgres_loader: Any) -> None:
    connection = postgres_loader.con
    fill(connection, "%s", id_type="BIGINT", json_type="JSONB", text="TEXT")
    connection.execute("ALTER TABLE activity_log ALTER COLUMN member_no TYPE TEXT")
    connection.commit()
    with pytest.raises(shopcrm.MappingError) as caught:
        shopcrm.Shop.from_dbapi(connection, dialect="postgres", mapping=MAPPING)
    assert str(caught.value) == (
        "events.id: the customer ids differ in type: members.member_no is bigint but activity_log.member_no is text, "
        "and a text id does not compare reliably with a number (PostgreSQL refuses to, MySQL compares them as "
        "floating-point numbers); give both columns the same type (e.g. text in both, or a view over one that casts it)"
    )


@pytest.mark.postgres
def test_postgres_missing_table_column_and_properties(postgres_loader: Any) -> None:
    connection = postgres_loader.con
    fill(connection, "%s", id_type="BIGINT", json_type="JSONB", text="TEXT")
    connection.execute("ALTER TABLE activity_log ALTER COLUMN payload TYPE INTEGER USING NULL")
    connection.commit()
    with pytest.raises(shopcrm.MappingError, match=r"events\.properties: the properties column activity_log\.payload "
                                                   r"is integer, which holds no JSON"):
        shopcrm.Shop.from_dbapi(connection, dialect="postgres", mapping=MAPPING)
    with pytest.raises(shopcrm.MappingError, match=r"no table 'activity_logs' is visible through this postgres "
                                                   r"connection \(did you mean 'activity_log'\?\)"):
        shopcrm.Shop.from_dbapi(connection, dialect="postgres", mapping=Mapping(
            customers=MAPPING.customers, events=EventsMap("activity_logs", id="member_no")))
    with pytest.raises(shopcrm.MappingError, match=r"events\.name: the events table 'activity_log' has no column "
                                                   r"'event_name' \(did you mean 'event_type'\?\)"):
        shopcrm.Shop.from_dbapi(connection, dialect="postgres", mapping=Mapping(
            customers=MAPPING.customers, events=EventsMap("activity_log", id="member_no", name="event_name")))


@pytest.mark.mysql
def test_mariadb_customer_ids_of_different_types(mysql_loader: Any) -> None:
    connection = mysql_loader.con
    fill(connection, "%s", id_type="BIGINT", json_type="JSON", timestamp="DATETIME(6)")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE members MODIFY member_no VARCHAR(20)")
    connection.commit()
    with pytest.raises(shopcrm.MappingError, match=r"members\.member_no is varchar\(20\) but activity_log\.member_no "
                                                   r"is bigint\(20\)"):
        shopcrm.Shop.from_dbapi(connection, dialect="mysql", mapping=MAPPING)


@pytest.mark.postgres
def test_postgres_lifecycle_without_an_amount_column(postgres_loader: Any) -> None:
    """Without an amount column the lifecycle sums a NULL; PostgreSQL needs it typed (``sum(text)``)."""
    connection = postgres_loader.con
    fill(connection, "%s", id_type="BIGINT", json_type="JSONB", text="TEXT")
    connection.execute("ALTER TABLE activity_log DROP COLUMN amount")
    connection.commit()
    shop = shopcrm.Shop.from_dbapi(connection, dialect="postgres", mapping=MAPPING)
    rows = {r.customer_id: r for r in shop.lifecycle_rows(now=NOW)}
    assert {no: (r.stage, r.orders, r.monetary) for no, r in rows.items()} == {
        1: ("loyal", 4, 0), 2: ("loyal", 3, 0), 3: ("first_purchase", 1, 0), 4: ("repeat", 2, 0),
        5: ("never_purchased", 0, 0),
    }
    assert shop.count({"rfm": "champions"}, now=NOW) >= 0


@pytest.mark.spark
def test_spark_under_its_own_names(spark_loader: Any, expected: dict[str, Any]) -> None:
    from pyspark.sql import types as T

    spark = spark_loader.spark
    members = T.StructType([
        T.StructField("member_no", T.LongType()), T.StructField("member_grade", T.StringType()),
        T.StructField("name", T.StringType()), T.StructField("phone", T.StringType()),
        T.StructField("signed_up", T.TimestampType()),
    ])
    log = T.StructType([
        T.StructField("member_no", T.LongType()), T.StructField("event_type", T.StringType()),
        T.StructField("occurred_at", T.TimestampType()), T.StructField("payload", T.StringType()),
        T.StructField("amount", T.LongType()),
    ])
    spark.createDataFrame([list(r) for r in MEMBERS], members).createOrReplaceTempView("members")
    spark.createDataFrame([[*r[:4], None if r[4] is None else int(r[4])] for r in EVENTS], log).createOrReplaceTempView("activity_log")
    shop = shopcrm.Shop.from_spark(spark, mapping=MAPPING)
    assert answers(shop) == expected
    with pytest.raises(shopcrm.MappingError, match=r"no table 'activity_logs' is visible through this Spark session "
                                                   r"\(did you mean 'activity_log'\?\)"):
        shopcrm.Shop.from_spark(spark, mapping=Mapping(customers=MAPPING.customers,
                                                      events=EventsMap("activity_logs", id="member_no")))
