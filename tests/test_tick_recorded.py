"""A tick tells its plan whose keys it holds (``ShopState.recorded``, issue 15): a scenario's customer with nothing
recorded for it is undecided without hashing their keys. The plan must be exactly the plan of the same state
without that hint (every key hashed and looked up), tick after tick of new events, and the hint must be used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

import shopcrm
from playbook_hours import POLICY, add_hour, playbook_shop
from shopcrm.campaigns import _planner as planner_module
from shopcrm.campaigns._planner import KeyCache, plan
from shopcrm.ticking import gather


def _planned(result: Any) -> tuple[list[Any], list[tuple[str, str]]]:
    return sorted(result.messages, key=lambda m: m.key), sorted((s.key, s.reason) for s in result.suppressions)


def test_plans_with_and_without_the_recorded_hint_are_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = playbook_shop(tmp_path, seed=3)
    asked: list[int] = []
    decide = planner_module.entry_decision

    def counted(*args: Any, **kwargs: Any) -> bool | None:
        asked[-1] += 1
        return decide(*args, **kwargs)

    monkeypatch.setattr(planner_module, "entry_decision", counted)
    hinted = unhinted = planned = 0
    for hour in range(1, 5):
        now = add_hour(shop, hour, 300)
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
