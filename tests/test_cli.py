"""The shopcrm command."""

from __future__ import annotations

from pathlib import Path

import pytest

import shopcrm
import shopcrm.demo
from shopcrm.cli import main


def test_demo_count_sql_and_plugins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "demo.duckdb"
    assert main(["demo", "--scale", "3000", "--path", str(db)]) == 0
    out = capsys.readouterr().out
    assert "3,000 customers" in out
    assert "shoe_buyers_20s_30s" in out
    assert "vip_spenders" in out
    # the demo's experiment: sent through the dispatcher into a file beside the shop, measured against what it planted
    assert (tmp_path / "demo-sent.jsonl").stat().st_size > 0
    assert "Planted versus measured" in out
    for campaign_id, effect in shopcrm.demo.PLANTED_EFFECTS.items():
        assert f"{campaign_id:<16} planted {effect * 100:+.1f} pp, measured" in out
    with shopcrm.Shop.open(db) as shop:
        expected = shop.count({"in_segment": "vip_spenders"}, now=shopcrm.demo.DEMO_NOW)
    assert expected > 0
    assert main(["count", '{"in_segment": "vip_spenders"}', "--db", str(db), "--now", "2026-11-24T00:00:00"]) == 0
    assert capsys.readouterr().out.strip() == str(expected)
    rule_file = tmp_path / "rule.json"
    rule_file.write_text('{"attribute": "age", "gte": 20}')
    assert main(["sql", str(rule_file), "--dialect", "bigquery", "--now", "2026-03-01"]) == 0
    assert "`customers` AS c" in capsys.readouterr().out
    assert main(["plugins"]) == 0
    assert "shopcrm.sources    duckdb" in capsys.readouterr().out


def test_errors_are_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", '{"performed": "x", "within": {"last": "30 days"}}', "--now", "2026-03-01"]) == 2
    assert "performed.within.last: '30 days' is not a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["count", "{}", "--db", "x", "--now", "yesterday"])


def test_tick_and_send_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    import shopcrm.cli

    monkeypatch.setattr(shopcrm.cli, "_progress", lambda: True)  # as on a terminal: bars on stderr

    db = tmp_path / "shop.duckdb"
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with shopcrm.Shop.open(db) as shop:
        shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-3000-{i:04d}"} for i in range(3)])
        shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                            "variants": [{"name": "a", "content": {"text": "{{ name }}님, 공지입니다."}}],
                            "schedule": {"kind": "one_off", "at": (now - timedelta(minutes=5)).replace(tzinfo=UTC).isoformat()}},
                           now=now - timedelta(hours=1))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"sender_name": "마음상점", "opt_out_number": "080-123-4567"}))
    assert main(["tick", "--db", str(db), "--policy", str(policy)]) == 0
    ticked = capsys.readouterr()
    assert "notice: planned 3" in ticked.out
    assert "tick: 100%" in ticked.err
    assert "recorded 3 rows" in ticked.err
    channels = tmp_path / "channels.json"
    out = tmp_path / "sms.jsonl"
    channels.write_text(json.dumps({"sms": {"plugin": "jsonl", "path": str(out)}}))
    assert main(["send", "--db", str(db), "--channels", str(channels)]) == 0
    captured = capsys.readouterr()
    assert "sent 3" in captured.out
    assert "3/3" in captured.err
    assert "sent 3" in captured.err
    assert len(out.read_text().splitlines()) == 3
    channels.write_text(json.dumps({"sms": {"plugin": "nope"}}))
    assert main(["send", "--db", str(db), "--channels", str(channels)]) == 2
    assert "no plugin named 'nope'" in capsys.readouterr().err


def test_db_takes_a_sqlite_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3
    from datetime import datetime, timedelta

    from shopcrm.campaigns import MessagingPolicy

    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT, age INTEGER)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    connection.executemany("INSERT INTO customers VALUES (?, '김민서', ?, ?)",
                           [(f"c{i}", f"010-3000-{i:04d}", 20 + i) for i in range(4)])
    connection.commit()
    now = datetime(2026, 11, 24, 1)
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite")
    shop.messaging_policy = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000")
    shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 공지입니다."}}],
                        "schedule": {"kind": "one_off", "at": now.isoformat()}}, now=now - timedelta(days=1))
    connection.close()
    url = f"sqlite:///{path}"
    assert main(["count", '{"attribute": "age", "gte": 22}', "--db", url, "--now", now.isoformat()]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert main(["tick", "--db", url, "--now", now.isoformat()]) == 0
    assert "notice: planned 4" in capsys.readouterr().out
    with sqlite3.connect(path) as again:
        assert again.execute("SELECT COUNT(*) FROM shopcrm_outbox").fetchone() == (4,)
    assert main(["count", '{"everyone": true}', "--db", url, "--read-only", "--now", now.isoformat()]) == 0
    assert capsys.readouterr().out.strip() == "4"
    assert main(["count", "{}", "--db", "mysql+odbc://h/db", "--now", now.isoformat()]) == 2
    assert "unknown database URL scheme 'mysql+odbc'" in capsys.readouterr().err


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "shop.duckdb"
    with shopcrm.Shop.open(db) as shop:
        shop.load_customers([{"customer_id": "c1"}])
    assert main(["tick", "--db", str(db)]) == 0
    assert capsys.readouterr().err == ""


def test_tick_full_reads_a_scenario_whole_after_a_late_backfill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: a watermark tick reads a scenario's events from its last tick on (less the allowance); an event
    the shop's own pipeline wrote later than that is planned by ``shopcrm tick --full``."""
    import sqlite3
    from datetime import datetime, timedelta

    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    connection.execute("INSERT INTO customers VALUES ('c1', '김민서', '010-3000-0001')")
    connection.commit()
    now = datetime(2026, 11, 24, 1)
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite")
    shop.save_campaign({"id": "welcome", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 환영합니다."}}],
                        "schedule": {"kind": "triggered", "on": "signed_up", "steps": [{"send": "hello"}]}},
                       now=now - timedelta(days=1), check=False)
    assert main(["tick", "--db", f"sqlite:///{path}", "--now", now.isoformat()]) == 0
    connection.execute("INSERT INTO events VALUES ('c1', 'signed_up', ?)", [(now - timedelta(hours=1)).isoformat(sep=" ")])
    connection.commit()
    capsys.readouterr()
    later = (now + timedelta(minutes=5)).isoformat()
    assert main(["tick", "--db", f"sqlite:///{path}", "--now", later]) == 0
    assert "0 messages planned" in capsys.readouterr().out  # an hour late: before the mark less the 10-minute allowance
    assert main(["tick", "--db", f"sqlite:///{path}", "--now", later, "--full"]) == 0
    assert "welcome: planned 1" in capsys.readouterr().out
    connection.close()
