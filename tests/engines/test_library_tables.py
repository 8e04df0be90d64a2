"""The library's tables in their own PostgreSQL schema: what `shopcrm ddl` prints is what the store creates there,
settings saved by one connection are what another connection (and the command line, through a URL) uses; the
same in a MariaDB database of its own."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import shopcrm
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import JsonlChannel
from shopcrm.cli import main
from shopcrm.dispatching import Dispatcher
from shopcrm.sources._library import SCHEMA_VERSION

NOW = datetime(2026, 11, 24, 1)
POLICY = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000")
LIBRARY = {f"shopcrm_{n}" for n in ("campaigns", "outbox", "occurrences", "sends", "opt_outs", "message_events",
                                    "segments", "settings", "memberships", "membership_changes", "tracked",
                                    "tracked_values", "tick_marks", "wakeups", "consents")}  # issue 15; K2 consent evidence


def _url(connection: Any, query: str = "") -> str:
    info = connection.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}{query}"


def _columns(connection: Any, schema: str) -> list[tuple[str, ...]]:
    rows = connection.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (schema,)).fetchall()
    connection.commit()
    return [tuple(r) for r in rows]


@pytest.fixture
def pg(postgres_loader: Any) -> Any:
    connection = postgres_loader.con
    for schema in ("s12", "crm12", "crm12_reviewed"):
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    connection.execute("CREATE SCHEMA s12")
    connection.execute("CREATE TABLE s12.customers (customer_id TEXT, name TEXT, phone TEXT, sms_consent BOOLEAN, age BIGINT)")
    connection.execute("CREATE TABLE s12.events (customer_id TEXT, event TEXT, ts TIMESTAMP)")
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO s12.customers VALUES (%s, '김민서', %s, true, %s)",
                           [(f"c{i}", f"010-3000-{i:04d}", 20 + i) for i in range(4)])
    connection.commit()
    yield connection
    for schema in ("s12", "crm12", "crm12_reviewed"):
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    connection.commit()


def test_library_tables_land_in_their_schema_and_match_the_printed_ddl(
    pg: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    shop = shopcrm.Shop.from_dbapi(pg, dialect="postgres", customers="s12.customers", events="s12.events",
                                   library_schema="crm12")
    shop.messaging_policy = POLICY
    shop.save_segment("adults", {"attribute": "age", "gte": 22})
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일!"}}],
                        "schedule": {"kind": "one_off", "at": NOW.isoformat()}}, now=NOW - timedelta(days=1))
    created = _columns(pg, "crm12")
    assert {t for t, *_ in created} == LIBRARY
    assert {t for t, *_ in _columns(pg, "s12")} == {"customers", "events"}

    assert main(["ddl", "--dialect", "postgres", "--library-schema", "crm12_reviewed"]) == 0
    pg.execute(capsys.readouterr().out)
    pg.commit()
    assert _columns(pg, "crm12_reviewed") == created

    # another connection (another process) and the command line read the same settings from the schema
    url = _url(pg, "?customers=s12.customers&events=s12.events&library_schema=crm12")
    with shopcrm.connect(url) as other:
        assert other.messaging_policy == POLICY
        assert other.preview("sale", now=NOW).planned == 4
    assert main(["count", '{"in_segment": "adults"}', "--db", url, "--now", NOW.isoformat()]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert main(["tick", "--db", _url(pg, "?customers=s12.customers&events=s12.events"), "--library-schema", "crm12",
                 "--now", NOW.isoformat()]) == 0
    assert "sale: planned 4" in capsys.readouterr().out
    [(count,)] = pg.execute("SELECT COUNT(*) FROM crm12.shopcrm_outbox").fetchall()
    [(version,)] = pg.execute("SELECT document FROM crm12.shopcrm_settings WHERE name = 'library'").fetchall()
    pg.commit()
    assert count == 4
    assert json.loads(version) == {"schema_version": SCHEMA_VERSION}
    # the send ledger and delivery events in the schema too
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    asyncio.run(Dispatcher(shop, {"sms": sms}, clock=lambda: NOW).run())
    assert len(sms.written()) == 4
    [(sent,)] = pg.execute("SELECT COUNT(*) FROM crm12.shopcrm_sends WHERE state = 'sent'").fetchall()
    [(events,)] = pg.execute("SELECT COUNT(*) FROM crm12.shopcrm_message_events").fetchall()
    pg.commit()
    assert (sent, events) == (4, 4)


def test_library_tables_in_their_own_mariadb_database(mysql_loader: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection = mysql_loader.con
    with connection.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS crm12")
        for table in ("m12_customers", "m12_events"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute("CREATE TABLE m12_customers (customer_id VARCHAR(20), name VARCHAR(20), phone VARCHAR(20))")
        cursor.execute("CREATE TABLE m12_events (customer_id VARCHAR(20), event VARCHAR(40), ts DATETIME(6))")
        cursor.executemany("INSERT INTO m12_customers VALUES (%s, '김민서', %s)",
                           [(f"c{i}", f"010-3000-{i:04d}") for i in range(3)])
    connection.commit()
    try:
        shop = shopcrm.Shop.from_dbapi(connection, dialect="mysql", customers="m12_customers", events="m12_events",
                                       library_schema="crm12")
        shop.messaging_policy = POLICY
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'crm12'")
            tables = {str(r[0]) for r in cursor.fetchall()}
        connection.commit()
        assert tables == LIBRARY
        url = (f"mysql://{connection.user.decode() if isinstance(connection.user, bytes) else connection.user}"
               f"@{connection.host}:{connection.port}/{connection.db.decode()}"
               "?customers=m12_customers&events=m12_events&library_schema=crm12")
        with shopcrm.connect(url) as other:
            assert other.messaging_policy == POLICY
        assert main(["count", '{"everyone": true}', "--db", url, "--now", NOW.isoformat()]) == 0
        assert capsys.readouterr().out.strip() == "3"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS crm12")
            cursor.execute("DROP TABLE IF EXISTS m12_customers, m12_events")
        connection.commit()
