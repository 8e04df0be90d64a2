"""A tick tells its plan whose keys it holds (``ShopState.recorded``, issue 15): a scenario's customer with nothing
recorded for it is undecided without hashing their keys. The plan must be exactly the plan of the same state
without that hint (every key hashed and looked up), tick after tick of new events, and the hint must be used."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

import shopcrm
from shopcrm.campaigns import MessagingPolicy
from shopcrm.campaigns import _planner as planner_module
from shopcrm.campaigns._planner import KeyCache, plan
from shopcrm.demo import generate, write_parquet
from shopcrm.ticking import gather

START = datetime(2026, 11, 24, 1)  # 10:00 in Seoul, an hour after the demo shop's last event
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
PLAYBOOKS = ("cart_reminder", "order_completed", "first_purchase_cross_sell", "vip_upgrade")


def _planned(result: Any) -> tuple[list[Any], list[tuple[str, str]]]:
    return sorted(result.messages, key=lambda m: m.key), sorted((s.key, s.reason) for s in result.suppressions)


def test_plans_with_and_without_the_recorded_hint_are_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    customers, events = write_parquet(generate(1_500, seed=3, now=START - timedelta(hours=1)), tmp_path)
    shop = shopcrm.Shop.open(tmp_path / "shop.duckdb")
    shop.load_customers(customers)
    shop.load_events(events)
    shop.messaging_policy = POLICY
    for name in PLAYBOOKS:
        shop.enable_playbook(name, now=START - timedelta(days=2))
    shop.tick(now=START)  # reads every scenario whole and leaves the marks
    asked: list[int] = []
    decide = planner_module.entry_decision

    def counted(*args: Any, **kwargs: Any) -> bool | None:
        asked[-1] += 1
        return decide(*args, **kwargs)

    monkeypatch.setattr(planner_module, "entry_decision", counted)
    con = shop.source.con  # type: ignore[attr-defined]
    hinted = unhinted = planned = 0
    for hour in range(1, 5):
        # an hour of orders and carts: repeat buyers (the stage rules decide), first buyers and cart reminders
        con.execute(
            "INSERT INTO events SELECT * REPLACE (CAST(? AS TIMESTAMP) + to_seconds(CAST(hash(customer_id, ts) % 3600 AS BIGINT)) "
            "AS ts) FROM events WHERE event IN ('order_completed', 'cart_added') USING SAMPLE 300 ROWS",
            [START + timedelta(hours=hour - 1)])
        now = START + timedelta(hours=hour)
        campaigns = [(shopcrm.campaigns.Campaign.model_validate_json(d), saved)
                     for _, d, saved in shop.source.campaign_store().campaigns()]
        state, _ = gather(shop, campaigns, now, POLICY, key_cache=KeyCache())
        assert state.recorded is not None
        asked.append(0)
        with_hint = plan([c for c, _ in campaigns], state, now=now, policy=POLICY)
        hinted += asked[-1]
        asked.append(0)
        without = plan([c for c, _ in campaigns], attrs.evolve(state, recorded=None), now=now, policy=POLICY)
        unhinted += asked[-1]
        assert _planned(with_hint) == _planned(without)
        planned += len(with_hint.messages)
        shop.tick(now=now)  # recorded: the next hour's customers have keys to find
    assert planned > 0
    assert hinted < unhinted  # the hint spared the look-ups of customers with nothing recorded
