"""The programme's lift (``shop.program_lift``) on a shop's own database: SQLite, PostgreSQL, MariaDB and Spark compute the
global control group's hash (SHA-256 of ``salt:id``) and the per-group sums in SQL, and must give exactly the
embedded DuckDB shop's figures and the pure reference's (:func:`shopcrm.program_lift.reference_outcomes`), for text
and for integer customer ids, with revenue in its own column, in a JSON ``properties`` column (numbers, numeric text,
text that is no number) and orders recorded twice; the ids hashed in Python (``method="python"``) agree as well."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

import shopcrm
from shopcrm.campaigns import MessagingPolicy, in_global_control
from shopcrm.channels import KINDS, Accepted, Channel, Message, SendResult
from shopcrm.dispatching import Dispatcher
from shopcrm.measurement import AttributionPolicy
from shopcrm.program_lift import ProgramLift, advertising_cost, reference_outcomes

T0 = datetime(2026, 10, 1)
UNTIL = T0 + timedelta(days=30)
NOW = T0 + timedelta(days=35)
POLICY = MessagingPolicy(global_control_percent=20, global_control_salt="engines-gc")
COLUMNS = ("customer_id", "event", "ts", "amount", "order_id", "properties")


def _data(integer_ids: bool) -> tuple[list[Any], list[dict[str, Any]]]:
    rng = random.Random(13 if integer_ids else 17)
    ids: list[Any] = list(range(1, 401)) if integer_ids else [f"m{i}" for i in range(400)]
    events: list[dict[str, Any]] = []

    def order(cid: Any, at: datetime, amount: Any, order_id: Any, in_json: bool) -> None:
        if in_json:
            events.append({"customer_id": cid, "event": "order_completed", "ts": at, "amount": None, "order_id": None,
                           "properties": json.dumps({"amount": amount, "order_id": order_id})})
        else:
            events.append({"customer_id": cid, "event": "order_completed", "ts": at, "amount": amount,
                           "order_id": order_id, "properties": None})

    for n, cid in enumerate(ids):
        rate = 0.1 if in_global_control(cid, POLICY) else 0.3
        events.append({"customer_id": cid, "event": "page_viewed", "ts": T0 + timedelta(hours=n), "amount": None,
                       "order_id": None, "properties": None})
        if rng.random() < rate:
            at = T0 + timedelta(seconds=rng.randrange(29 * 86_400), microseconds=rng.randrange(1000) * 1000)
            amount = float(rng.randrange(1, 500) * 100)
            kind = n % 5
            if kind == 0:  # revenue as numeric text inside JSON
                order(cid, at, f"{amount:.1f}", f"o{n}", True)
            elif kind == 1:  # text that is no number: a conversion with revenue 0
                order(cid, at, "free", f"o{n}", True)
            elif kind == 2:  # recorded twice: the first event's revenue counts
                order(cid, at, amount, f"o{n}", False)
                order(cid, at + timedelta(minutes=2), 1.0, f"o{n}", False)
            else:
                order(cid, at, amount, f"o{n}" if kind == 3 else None, kind == 4)
        if n % 9 == 0:  # outside the period, and after now
            order(cid, T0 - timedelta(seconds=1), 7.0, f"p{n}", False)
            order(cid, UNTIL, 7.0, f"q{n}", False)
    return ids, events


def _fill(connection: Any, dialect: str, integer_ids: bool, ids: list[Any], events: list[dict[str, Any]]) -> None:
    id_type = "INTEGER" if integer_ids else "VARCHAR(20)"
    number = {"postgres": "DOUBLE PRECISION", "mysql": "DOUBLE", "sqlite": "REAL"}[dialect]
    ts = "DATETIME(6)" if dialect == "mysql" else "TIMESTAMP"
    mark = "?" if dialect == "sqlite" else "%s"
    cursor = connection.cursor()
    for table in ("pl_customers", "pl_events", "shopcrm_settings", "shopcrm_campaigns", "shopcrm_outbox",
                  "shopcrm_occurrences", "shopcrm_sends", "shopcrm_opt_outs", "shopcrm_message_events",
                  "shopcrm_segments", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships",
                  "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(f"CREATE TABLE pl_customers (customer_id {id_type}, name VARCHAR(40), phone VARCHAR(20), "
                   "sms_consent BOOLEAN)")
    cursor.execute(f"CREATE TABLE pl_events (customer_id {id_type}, event VARCHAR(40), ts {ts}, amount {number}, "
                   "order_id VARCHAR(40), properties TEXT)")
    cursor.executemany(f"INSERT INTO pl_customers VALUES ({mark}, {mark}, {mark}, {mark})",
                       [(c, "김민서", f"010-0000-{i:04d}", True) for i, c in enumerate(ids)])

    def value(column: str, event: dict[str, Any]) -> Any:
        v = event[column]
        return v.isoformat(sep=" ") if dialect == "sqlite" and isinstance(v, datetime) else v

    cursor.executemany(f"INSERT INTO pl_events VALUES ({', '.join([mark] * len(COLUMNS))})",
                       [tuple(value(c, e) for c in COLUMNS) for e in events])
    cursor.close()
    connection.commit()


def _expected(integer_ids: bool) -> tuple[list[Any], list[dict[str, Any]], ProgramLift]:
    ids, events = _data(integer_ids)
    embedded = shopcrm.Shop.open()
    embedded.load_customers([{"customer_id": c, "name": "김민서"} for c in ids])
    embedded.load_events(events)
    embedded.messaging_policy = POLICY
    return ids, events, embedded.program_lift(since=T0, until=UNTIL, now=NOW)


def _check(shop: shopcrm.Shop, integer_ids: bool) -> None:
    ids, events, embedded = _expected(integer_ids)
    shop.messaging_policy = POLICY
    control, rest = reference_outcomes(ids, events, POLICY, AttributionPolicy(), T0, UNTIL)
    assert control.n > 40
    assert control.converted > 3
    assert rest.converted > 30
    for method in ("sql", "python"):
        found = shop.program_lift(since=T0, until=UNTIL, now=NOW, method=method)
        for got in (found, embedded):
            assert (got.control.n, got.control.converted, got.rest.n, got.rest.converted) == (
                control.n, control.converted, rest.n, rest.converted), method
            for mine, theirs in ((got.control.revenue, control.revenue), (got.rest.revenue, rest.revenue)):
                assert math.isclose(mine.total, theirs.total, rel_tol=1e-12), method
                assert math.isclose(mine.sum_squares, theirs.sum_squares, rel_tol=1e-12), method
        assert found.lift is not None
        assert embedded.lift is not None
        assert found.lift.absolute_interval == embedded.lift.absolute_interval
    if shop.source.dialect != "spark":
        _check_cost(shop)
    shop.messaging_policy = MessagingPolicy()  # the server is shared: leave the defaults for the next test


class _Accepting(Channel):
    name = "accepting"
    kinds = KINDS

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return [Accepted(provider_id="p") for _ in batch]


def _check_cost(shop: shopcrm.Shop) -> None:
    """An advertising campaign ticked and dispatched on the engine: the SQL sum over the library's ledger and
    message events equals the ledger read into Python, inside and outside the period."""
    sent_at = T0 + timedelta(days=2, hours=1)
    shop.messaging_policy = attrs.evolve(POLICY, sender_name="마음상점", sender_contact="1588-0000",
                                         opt_out_number="080-123-4567")
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 가을 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-10-03T10:00:00"}}, now=T0)
    shop.tick(now=sent_at)
    asyncio.run(Dispatcher(shop, {"sms": _Accepting()}, clock=lambda: sent_at, seed=1).run())
    ledger = math.fsum(r.cost for r in shop.source.campaign_store().sends() if r.state == "sent")
    assert ledger > 0
    for since, until, want in ((T0, UNTIL, ledger), (sent_at, sent_at + timedelta(seconds=1), ledger),
                               (sent_at + timedelta(seconds=1), UNTIL, 0.0)):
        assert advertising_cost(shop, since, until) == pytest.approx(want)
        assert advertising_cost(shop, since, until, method="python") == pytest.approx(want)
    found = shop.program_lift(since=T0, until=UNTIL, now=NOW)
    assert found.cost == pytest.approx(ledger)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_sqlite(integer_ids: bool) -> None:
    ids, events = _data(integer_ids)
    connection = sqlite3.connect(":memory:")
    _fill(connection, "sqlite", integer_ids, ids, events)
    _check(shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="pl_customers", events="pl_events"),
           integer_ids)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_postgres(postgres_loader: Any, integer_ids: bool) -> None:
    ids, events = _data(integer_ids)
    _fill(postgres_loader.con, "postgres", integer_ids, ids, events)
    _check(shopcrm.Shop.from_dbapi(postgres_loader.con, dialect="postgres", customers="pl_customers",
                                   events="pl_events"), integer_ids)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_mysql(mysql_loader: Any, integer_ids: bool) -> None:
    ids, events = _data(integer_ids)
    _fill(mysql_loader.con, "mysql", integer_ids, ids, events)
    _check(shopcrm.Shop.from_dbapi(mysql_loader.con, dialect="mysql", customers="pl_customers", events="pl_events"),
           integer_ids)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_spark(spark_loader: Any, integer_ids: bool) -> None:
    from pyspark.sql import types as T

    ids, events = _data(integer_ids)
    spark = spark_loader.spark
    id_type = T.LongType() if integer_ids else T.StringType()
    customers = T.StructType([T.StructField("customer_id", id_type), T.StructField("name", T.StringType())])
    schema = T.StructType([
        T.StructField("customer_id", id_type), T.StructField("event", T.StringType()),
        T.StructField("ts", T.TimestampType()), T.StructField("amount", T.DoubleType()),
        T.StructField("order_id", T.StringType()), T.StructField("properties", T.StringType()),
    ])
    spark.createDataFrame([(c, "김민서") for c in ids], customers).createOrReplaceTempView("pl_customers")
    spark.createDataFrame([tuple(e[c] for c in COLUMNS) for e in events], schema).createOrReplaceTempView("pl_events")
    _check(shopcrm.Shop.from_spark(spark, customers="pl_customers", events="pl_events"), integer_ids)
