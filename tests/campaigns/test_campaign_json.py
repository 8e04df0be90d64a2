"""A saved campaign reads back as it was saved, whatever its durations (a year or more included)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from shopcrm import Shop
from shopcrm.campaigns import parse_campaign
from shopcrm.campaigns._models import stored_campaign


def scenario(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "yearly", "purpose": "informational", "channels": ["sms"], "max_delay": "400d",
        "variants": [{"name": "a", "content": {"text": "안녕하세요 {{ name }}님"}}],
        "schedule": {"kind": "triggered", "on": "signed_up", "reentry": "365d",
                     "steps": [{"wait": "P366DT1.5S"}, {"send": "hello"}]},
    }
    document.update(changes)
    return document


def test_durations_of_a_year_or_more_survive_json() -> None:
    campaign = parse_campaign(scenario())
    again = parse_campaign(campaign.to_json())
    assert again == campaign
    assert again.max_delay == timedelta(days=400)
    assert again.schedule.reentry == timedelta(days=365)  # type: ignore[union-attr]
    saved = json.loads(campaign.to_json())
    assert saved["max_delay"] == "P400D"
    assert saved["schedule"]["reentry"] == "P365D"
    assert saved["schedule"]["steps"][0]["wait"] == "P366DT1.5S"


def test_a_campaign_saved_with_years_by_an_earlier_version_still_reads() -> None:
    """Earlier versions let pydantic write durations, which counts 365 days as a year (``P1Y35D``); such a
    document is read back as it was meant (a year = 365 days), but a person writing ``P1Y`` is still refused."""
    old = json.dumps(scenario(max_delay="P1Y35D", schedule={**scenario()["schedule"], "reentry": "P1Y", "steps": [
        {"wait": "P1YT5S"}, {"send": "hello"}]}))
    campaign = stored_campaign(old)
    assert campaign.max_delay == timedelta(days=400)
    assert campaign.schedule.reentry == timedelta(days=365)  # type: ignore[union-attr]
    with pytest.raises(Exception, match="not a duration"):
        parse_campaign(old)


def test_a_shop_ticks_with_a_yearly_campaign_saved() -> None:
    shop = Shop.open()
    shop.load_customers([{"customer_id": "a", "name": "김하늘", "phone": "010-2222-3333"}])
    shop.load_events([{"customer_id": "a", "event": "signed_up", "ts": datetime(2026, 1, 1, 3)}])
    shop.save_campaign(scenario(), now=datetime(2026, 1, 1))
    assert shop.campaign("yearly").max_delay == timedelta(days=400)
    assert shop.tick(now=datetime(2026, 1, 1, 4)).messages == ()  # waiting a year and a day: nothing yet, no error
    later = shop.tick(now=datetime(2027, 1, 3, 4)).messages
    assert [(m.customer_id, m.step) for m in later] == [("a", "hello")]
