"""A broadcast to everyone reads the customers table in one scan: the same audience, in the same order, and the same
recipients as the members query semi-joined with the table, so the same plan and outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from shopcrm import Shop, ticking
from shopcrm.campaigns import Campaign, MessagingPolicy
from shopcrm.campaigns._planner import KeyCache
from shopcrm.dsl import Everyone
from shopcrm.sources._reads import EngineReader

NOW = datetime(2026, 11, 25, 13)  # 22:00 in Seoul


def shop() -> Shop:
    opened = Shop.open()
    opened.messaging_policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
    opened.load_customers([
        {"customer_id": f"c{i:02d}", "name": ["김민서", "이서준", " 박 "][i % 3], "phone": [None, "010-1111-2222", " 010 "][i % 3],
         "sms_consent": [True, False, None][i % 2], "kakao_consent": i % 4 == 0, "night_consent": i % 5 == 0,
         "kakao_friend": i % 3 == 0} for i in range(40, 0, -1)
    ])
    opened.save_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["brand_message", "sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T21:30:00"},
    }, now=NOW - timedelta(days=1))
    return opened


def gathered(opened: Shop) -> Any:
    campaigns = [(Campaign.model_validate_json(document), saved) for _, document, saved in opened.source.campaign_store().campaigns()]
    assert isinstance(opened._resolve(campaigns[0][0].audience), Everyone)
    state, _ = ticking.gather(opened, campaigns, NOW, opened.messaging_policy, key_cache=KeyCache())
    return state.audiences, state.recipients


def test_everyone_read_in_one_scan_equals_the_members_query(monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[list[str]] = []
    read = EngineReader.customer_columns

    def spy(reader: EngineReader, columns: Sequence[str], ids: Any, computed: Any = None) -> dict[str, list[Any]]:
        if ids is None:  # the one scan of everyone
            scans.append(list(columns))
        return read(reader, columns, ids, computed)

    monkeypatch.setattr(EngineReader, "customer_columns", spy)
    with shop() as fast:
        found = gathered(fast)
        ticked = fast.tick(now=NOW)
        outbox = fast.outbox()
    assert scans
    # everyone read as the members query semi-joined with the table, as any other audience is
    monkeypatch.setattr(EngineReader, "customer_columns", lambda reader, columns, ids, computed=None: read(
        reader, columns, reader.members(Everyone()) if ids is None else ids, computed))
    with shop() as slow:
        assert gathered(slow) == found
        assert slow.tick(now=NOW).plan == ticked.plan
        assert slow.outbox() == outbox
    assert found[0]["sale"] == [f"c{i:02d}" for i in range(40, 0, -1)]  # the table's order
