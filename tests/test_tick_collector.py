"""A tick pauses the cyclic garbage collector while it builds its plan and, before resuming it, moves what survives
(the plan it returns) to the oldest generation, so that resuming does not walk a million fresh objects that form no
cycles.  The caller's own collector settings are left as they were."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy

NOW = datetime(2026, 11, 25, 1)  # 10:00 in Seoul


@pytest.fixture
def shop() -> Iterator[Shop]:
    with Shop.open() as opened:
        opened.messaging_policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000",
                                                  opt_out_number="080-123-4567")
        opened.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": "010-1111-2222", "sms_consent": True}
                               for i in range(30)])
        opened.save_campaign({
            "id": "sale", "purpose": "advertising", "channels": ["sms"],
            "variants": [{"name": "a", "content": {"text": "{{ name }}님, 세일"}}],
            "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
        }, now=NOW - timedelta(days=1))
        yield opened


def _in_oldest_generation(value: object) -> bool:
    return any(found is value for found in gc.get_objects(generation=2))


def test_the_plan_a_tick_returns_is_in_the_oldest_generation(shop: Shop) -> None:
    assert gc.isenabled()
    ticked = shop.tick(now=NOW)
    assert len(ticked.messages) == 30
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert _in_oldest_generation(ticked.messages[0])
    assert _in_oldest_generation(ticked.plan)


def test_a_caller_s_frozen_objects_stay_frozen(shop: Shop) -> None:
    marker: list[object] = [object()]
    gc.freeze()
    try:
        assert len(shop.tick(now=NOW).messages) == 30
        assert not any(found is marker for found in gc.get_objects())  # still frozen: not thawed to move the tick's objects
    finally:
        gc.unfreeze()


def test_a_collector_the_caller_paused_stays_paused(shop: Shop) -> None:
    gc.disable()
    try:
        shop.tick(now=NOW)
        assert not gc.isenabled()
    finally:
        gc.enable()
