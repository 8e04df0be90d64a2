"""Settings live with the shop (messaging policy, recipient columns, lifecycle policy), the library's tables in a
schema or under a prefix with a recorded version, the DDL ``shopcrm ddl`` prints, URLs, and read-only opens."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

import shopcrm
from shopcrm import ReadOnlyShopError, RecipientColumns, Shop, ShopLockedError, StoreVersionError
from shopcrm.campaigns import MessagingPolicy
from shopcrm.cli import main
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.sources._library import SCHEMA_VERSION, LibraryTables

NOW = datetime(2026, 11, 24, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _sale(at: datetime) -> dict[str, object]:
    return {"id": "sale", "purpose": "advertising", "channels": ["sms"],
            "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일!"}}],
            "schedule": {"kind": "one_off", "at": at.isoformat()}}


def _demo_like(path: Path) -> None:
    """What `shopcrm demo` leaves: customers, an advertising campaign, and the policy assigned once."""
    with Shop.open(path) as shop:
        shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-3000-{i:04d}",
                              "sms_consent": True} for i in range(4)])
        shop.messaging_policy = POLICY
        shop.save_campaign(_sale(NOW), now=NOW - timedelta(days=1))


def test_policies_survive_reopening_and_constructor_arguments_win_without_being_saved(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    columns = RecipientColumns(phone="mobile", consents={"sms": "sms_agree"}, opted_out={"sms": "sms_refused"})
    lifecycle = LifecyclePolicy(lapsed_after=timedelta(days=120), activity_events=("order_completed",),
                                cart_abandoned_ages=(timedelta(hours=2), timedelta(days=3)))
    with Shop.open(path) as shop:
        assert shop.messaging_policy == MessagingPolicy()  # nothing saved yet: the defaults
        shop.messaging_policy = MessagingPolicy.united_states(sender_name="Moa Shop")
        shop.recipient_columns = columns
        shop.lifecycle_policy = lifecycle
    with Shop.open(path) as shop:
        assert shop.messaging_policy == MessagingPolicy.united_states(sender_name="Moa Shop")
        assert shop.recipient_columns == columns
        assert shop.lifecycle_policy == lifecycle
    with Shop.open(path, messaging_policy=POLICY) as shop:  # given: used, not saved
        assert shop.messaging_policy == POLICY
    with Shop.open(path, messaging_policy=POLICY) as shop:
        assert Shop(shop.source).messaging_policy.jurisdiction == "US"
        shop.save_settings()  # now it is
    with Shop.open(path) as shop:
        assert shop.messaging_policy == POLICY
        assert shop.settings.get("messaging_policy") == POLICY.to_dict()
        shop.settings.put("mapping", {"customers": {"table": "members"}})  # any document, for the mapping helper
        with pytest.raises(ValueError, match="library's own settings row"):
            shop.settings.put("library", {"schema_version": 1})
    with Shop.open(path) as shop:
        assert shop.settings.get("mapping") == {"customers": {"table": "members"}}
        assert shop.settings.get("nothing") is None


def test_after_a_demo_like_build_a_fresh_open_previews_and_ticks_without_setting_a_policy(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    _demo_like(path)
    with Shop.open(path) as shop:
        assert shop.preview("sale", now=NOW).planned == 4
        assert len(shop.tick(now=NOW, dry_run=True).messages) == 4
    # the command line too: no --policy flag
    assert main(["tick", "--db", str(path), "--now", NOW.isoformat()]) == 0
    with Shop.open(path) as shop:
        [message] = {m.chain[0]["text"] for m in shop.outbox()}
    assert message.startswith("(광고)")
    assert "무료수신거부 080-000-0000" in message


def test_a_second_process_sees_the_settings_the_first_saved(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    connection.commit()
    shop = Shop.from_dbapi(connection, dialect="sqlite")
    shop.messaging_policy = POLICY
    shop.recipient_columns = RecipientColumns(phone="mobile")
    script = textwrap.dedent(f"""
        import shopcrm
        shop = shopcrm.connect("sqlite:///{path}")
        print(shop.messaging_policy.opt_out_number, shop.recipient_columns.phone)
    """)
    seen = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={"PYTHONPATH": SRC},
                          check=True)
    assert seen.stdout.split() == ["080-000-0000", "mobile"]
    connection.close()


def _columns(con: duckdb.DuckDBPyConnection, schema: str) -> list[tuple[str, str, str, str]]:
    return con.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = ? ORDER BY table_name, ordinal_position", [schema]).fetchall()


def test_the_printed_ddl_is_what_a_store_creates_in_its_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ddl", "--dialect", "duckdb", "--library-schema", "crm"]) == 0
    printed = capsys.readouterr().out
    reviewed = duckdb.connect()
    reviewed.execute(printed)
    with Shop.open(tmp_path / "shop.duckdb", library_schema="crm") as shop:
        shop.load_customers([{"customer_id": "c1"}])
        shop.messaging_policy = POLICY
        shop.save_segment("all", {"everyone": True})
        created = _columns(shop.source.con, "crm")
        main_tables = shop.source.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()
    assert created == _columns(reviewed, "crm")
    assert {t for t, *_ in created} == {f"shopcrm_{n}" for n in (
        "campaigns", "outbox", "occurrences", "sends", "opt_outs", "message_events", "segments", "settings",
        "tick_marks", "wakeups", "memberships", "membership_changes", "tracked", "tracked_values", "consents")}  # issue 15; K2
    assert main_tables == [("customers",), ("events",)]  # nothing of the library's outside its schema
    assert main(["ddl", "--dialect", "postgresql", "--library-prefix", "crm_"]) == 0
    statements = capsys.readouterr().out.strip().split(";\n")
    assert all(s.startswith("CREATE TABLE IF NOT EXISTS crm_") for s in statements)
    assert len(statements) == 15  # issue 15: tick marks, wake-ups and four tables of tracked segments; K2: consents
    assert main(["ddl", "--dialect", "mysql", "--library-schema", "crm"]) == 0
    assert capsys.readouterr().out.startswith("CREATE SCHEMA IF NOT EXISTS crm CHARACTER SET utf8mb4;\n")
    assert main(["ddl", "--dialect", "oracle"]) == 2
    assert "no DDL for dialect 'oracle'; use one of duckdb, mysql, postgres, sqlite" in capsys.readouterr().err


def test_a_prefix_names_every_table_and_bad_names_are_refused(tmp_path: Path) -> None:
    with Shop.open(tmp_path / "shop.duckdb", library_prefix="crm_") as shop:
        shop.load_customers([{"customer_id": "c1", "name": "김민서", "phone": "010-1234-5678"}])
        shop.messaging_policy = POLICY
        shop.save_campaign(_sale(NOW), now=NOW - timedelta(days=1))
        shop.tick(now=NOW)
        tables = {t for (t,) in shop.source.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"crm_settings", "crm_outbox", "crm_campaigns", "crm_sends"} <= tables
    assert not any(t.startswith("shopcrm_") for t in tables)
    with pytest.raises(ValueError, match="'crm-x' is not a table prefix"):
        LibraryTables(prefix="crm-x")
    with pytest.raises(ValueError, match="'1crm' is not a schema name"):
        LibraryTables(schema="1crm")
    with pytest.raises(ValueError, match="SQLite has no schemas"):
        Shop.from_dbapi(sqlite3.connect(":memory:"), dialect="sqlite", library_schema="crm")


def _old_sends(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    connection.execute(
        "CREATE TABLE shopcrm_sends (key_ VARCHAR(64) PRIMARY KEY, customer_id VARCHAR(200) NOT NULL, campaign_id "
        "VARCHAR(100) NOT NULL, chain_index INTEGER NOT NULL, state VARCHAR(20) NOT NULL, attempts INTEGER NOT NULL, "
        "next_at VARCHAR(32) NOT NULL, lease_until VARCHAR(32), claim VARCHAR(64), provider_id VARCHAR(200), "
        "code VARCHAR(64), reason TEXT, cost DOUBLE PRECISION NOT NULL, updated_at VARCHAR(32) NOT NULL)")
    connection.commit()


def test_an_older_store_is_upgraded_and_its_version_recorded(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "old.db")
    _old_sends(connection)
    shop = Shop.from_dbapi(connection, dialect="sqlite")
    assert shop.source.campaign_store().sends() == []
    columns = [r[1] for r in connection.execute("PRAGMA table_info(shopcrm_sends)")]
    assert columns[-7:] == ["batch_ref", "checks", "channel", "kind", "priced_as", "price_source", "sent_at"]
    [(document,)] = connection.execute("SELECT document FROM shopcrm_settings WHERE name = 'library'").fetchall()
    assert json.loads(document) == {"schema_version": SCHEMA_VERSION}


def test_a_store_newer_than_the_library_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    with Shop.open(path) as shop:
        shop.messaging_policy = POLICY
        shop.source.con.execute("UPDATE shopcrm_settings SET document = '{\"schema_version\": 99}' WHERE name = 'library'")
    with pytest.raises(StoreVersionError, match=r"schema version 99, written by a newer shopcrm; this shopcrm "
                                                rf"\S+ understands version {SCHEMA_VERSION} at most: upgrade shopcrm"):
        Shop.open(path)
    with pytest.raises(StoreVersionError, match="schema version 99"):
        Shop.open(path, read_only=True)


_WRITER = """
import sys, time
import shopcrm
shop = shopcrm.Shop.open(sys.argv[1])
print("holding", flush=True)
for i in range(600):  # a dispatcher writing away
    shop.settings.put("heartbeat", {"i": i})
    time.sleep(0.05)
"""


def test_read_only_opens_beside_a_writing_process_and_a_second_writer_is_told_why_not(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    _demo_like(path)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": SRC})
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "holding"
        with pytest.raises(ShopLockedError, match=rf"another process \(PID {writer.pid}\) holds .* for writing .*"
                                                  r"Shop.open\(path, read_only=True\)"):
            Shop.open(path)
        started = time.perf_counter()
        with Shop.open(path, read_only=True) as shop:  # a snapshot of the file as it is now
            assert shop.count({"attribute": "sms_consent", "eq": True}, now=NOW) == 4
            assert shop.preview("sale", now=NOW).planned == 4  # the saved policy, read back
            with pytest.raises(ReadOnlyShopError, match="opened with read_only=True"):
                shop.tick(now=NOW)
            with pytest.raises(ReadOnlyShopError, match="opened with read_only=True"):
                shop.load_customers([{"customer_id": "c9"}])
            with pytest.raises(ReadOnlyShopError, match=r"pass it to Shop.open\(\.\.\., read_only=True, messaging_policy"):
                shop.messaging_policy = MessagingPolicy()
        assert time.perf_counter() - started < 5
        assert writer.poll() is None  # the writer never noticed
    finally:
        writer.kill()
        writer.wait()
    with Shop.open(path, read_only=True) as shop:  # no other process: DuckDB's own read-only open
        assert shop.source._snapshot is None
        assert shop.settings.get("heartbeat") is not None
    with pytest.raises(FileNotFoundError, match="no shop file"):
        Shop.open(tmp_path / "missing.duckdb", read_only=True)
    with Shop.open(tmp_path / "plain.duckdb") as shop:
        shop.load_customers([{"customer_id": "c1"}])
    with Shop.open(tmp_path / "plain.duckdb", read_only=True) as shop:  # the library never wrote here
        assert shop.segments() == []
        assert shop.messaging_policy == MessagingPolicy()
        with pytest.raises(ReadOnlyShopError, match=r"no campaign tables .* and cannot create them"):
            shop.campaigns()


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "shop.duckdb"
    _demo_like(path)
    with shopcrm.connect(f"duckdb:///{path}", read_only=True) as shop:
        assert shop.messaging_policy == POLICY
    with shopcrm.connect(str(path)) as shop, Shop.connect(path) as same:
        assert type(shop.source) is type(same.source)
    with pytest.raises(ValueError, match=r"unknown database URL scheme 'oracle' in 'oracle://u:\*\*\*@h/db'"):
        shopcrm.connect("oracle://u:secret@h/db")
    with pytest.raises(ValueError, match="unknown URL parameter 'colour'"):
        shopcrm.connect("postgresql://h/db?colour=red")
    with pytest.raises(FileNotFoundError, match="no SQLite file"):
        shopcrm.connect(f"sqlite:///{tmp_path}/none.db")
    monkeypatch.setitem(sys.modules, "pymysql", None)  # not installed
    with pytest.raises(ImportError, match=r"needs the pymysql driver, which is not installed; install it with: "
                                          r"pip install 'shopcrm\[mysql\]'"):
        shopcrm.connect("mysql://root@127.0.0.1/shop")


def test_the_readme_flow_after_the_demo_needs_no_policy(tmp_path: Path) -> None:
    """The bug that started it: after `shopcrm demo`, a fresh Shop.open could not preview, enable or tick."""
    import shopcrm.demo

    path = tmp_path / "shopcrm-demo.duckdb"
    shopcrm.demo.run(str(path), scale=1500, seed=0, out=lambda _: None)
    now = shopcrm.demo.DEMO_NOW
    with Shop.open(path) as shop:
        assert shop.messaging_policy.opt_out_number == "080-000-0000"
        shop.enable_playbook("cart_reminder", now=now)
        assert shop.preview("vip_winter_sale", now=now).audience > 0
        shop.tick(now=now + timedelta(days=1))
