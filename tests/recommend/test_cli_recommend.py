"""``shopcrm recommend``: recommendations for a few customers from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

import shopcrm
from shopcrm.cli import main


def test_recommend_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shop.duckdb"
    with shopcrm.Shop.open(path) as shop:
        shop.load_customers([{"customer_id": c} for c in ("c1", "c2", "c3")])
        shop.load_events([
            {"customer_id": c, "event": "order_completed", "ts": datetime(2026, 3, d), "product_id": p,
             "category": "x", "price": 1000.0}
            for c, d, p in (("c1", 1, "A"), ("c1", 2, "B"), ("c2", 3, "A"), ("c2", 4, "B"), ("c3", 5, "A"))])
    args = ["recommend", "--db", str(path), "c3", "nobody", "--k", "2", "--now", "2026-03-10T00:00:00"]
    assert main([*args, "--strategy", "also_bought"]) == 0
    out = capsys.readouterr().out
    assert "c3:\n   1. B    1,000  [also_bought]\n   2. A    1,000  [popular]" in out
    assert main([*args, "--strategy", '["popular"]', "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [i["product_id"] for i in found["nobody"]] == ["A", "B"]
    assert main([*args, "--strategy", "popluar"]) == 2
    assert "did you mean 'popular'" in capsys.readouterr().err
