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
