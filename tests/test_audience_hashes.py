"""A broadcast's hashes computed by DuckDB (idempotency keys, global control, holdout, variant) are the planner's own,
and a tick that uses them plans exactly what it plans hashing in Python (PostgreSQL and MySQL:
``tests/engines/test_audience_hashes_engines.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from hash_cases import INTEGER_IDS, NOW, campaigns, check, engine_hashes, text_ids
from shopcrm import ticking
from shopcrm.campaigns import Campaign, MessagingPolicy, parse_campaign
from shopcrm.sources._audience_hashes import audience_hashes
from shopcrm.sources.duckdb_store import DuckDBSource

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _source(ids: list[Any], id_type: str) -> DuckDBSource:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE customers (customer_id {id_type}, name VARCHAR)")
    con.execute(f"CREATE TABLE events (customer_id {id_type}, event VARCHAR, ts TIMESTAMP)")
    con.executemany("INSERT INTO customers VALUES (?, 'x')", [(i,) for i in ids])
    return DuckDBSource(connection=con)


@EXAMPLES
@given(INTEGER_IDS, campaigns())
def test_integer_ids_are_hashed_by_duckdb_as_in_python(ids: list[int], case: tuple[Campaign, MessagingPolicy]) -> None:
    campaign, policy = case
    check(engine_hashes(_source(ids, "BIGINT"), campaign, policy), ids, campaign, policy, keyed=True)


@EXAMPLES
@given(st.booleans().flatmap(lambda plain: st.tuples(st.just(plain), text_ids(plain))), campaigns())
def test_text_ids_are_hashed_by_duckdb_as_in_python(
    ids: tuple[bool, list[str]], case: tuple[Campaign, MessagingPolicy],
) -> None:
    """A text id's key is the engine's when every id of the audience prints as itself in quotes; one id with a quote,
    a backslash or a character repr escapes (a tab, a control character) leaves every key to Python (the buckets
    stay the engine's)."""
    plain, members = ids
    campaign, policy = case
    keyed = all(repr(i) == f"'{i}'" for i in members)
    assert keyed or not plain
    check(engine_hashes(_source(members, "VARCHAR"), campaign, policy), members, campaign, policy, keyed=keyed)


def test_ids_of_another_type_are_left_to_python() -> None:
    """A DECIMAL id reads as Python's Decimal, whose text the engine's may not be: no hashes at all."""
    campaign, policy = parse_campaign({"id": "c", "channels": ["sms"], "purpose": "informational", "holdout_percent": 10,
                                       "variants": [{"name": "a", "content": {"text": "hi"}}],
                                       "schedule": {"kind": "one_off", "at": "2026-11-24T21:30:00"}}), MessagingPolicy()
    assert engine_hashes(_source([1, 2], "DECIMAL(10, 2)"), campaign, policy) is None
    columns: dict[str, list[Any]] = {"customer_id": [1, "2"], "__shopcrm_key": ["k1", "k2"]}
    from shopcrm.schema import ColumnType

    assert audience_hashes(campaign, "once", ColumnType.INTEGER, columns) is None  # mixed types: nothing trusted
    assert "__shopcrm_key" not in columns


BROADCAST = {
    "id": "sale", "purpose": "advertising", "channels": ["brand_message", "sms"], "holdout_percent": 20,
    "variants": [{"name": "a", "weight": 2, "content": {"text": "{{ name }}님 20% 할인"}},
                 {"name": "b", "content": {"text": "오늘만 할인"}}],
    "schedule": {"kind": "one_off", "at": "2026-11-24T21:30:00"},
}


@pytest.mark.parametrize("ids", [list(range(-5, 60)), [f"c{i}" for i in range(60)] + ["it's", "back\\slash", "한글", "tab\t"]])
def test_a_tick_with_engine_hashes_plans_what_it_plans_hashing_in_python(
    ids: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def tick(hashed: bool) -> Any:
        shop = shopcrm.Shop.open(":memory:")
        shop.load_customers([{"customer_id": cid, "name": f"고객{n}", "phone": f"010-0000-{n:04d}", "sms_consent": n % 3 != 0,
                              "kakao_consent": n % 2 == 0, "kakao_friend": n % 4 != 1, "night_consent": n % 5 == 0}
                             for n, cid in enumerate(ids)])
        shop.messaging_policy = MessagingPolicy(sender_name="상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                                                global_control_percent=10)
        shop.save_campaign(parse_campaign(BROADCAST), now=NOW - timedelta(days=1))
        asked: list[Any] = []
        real = ticking.audience_hashes

        def spy(*args: Any) -> Any:
            found = real(*args)
            asked.append(found)
            return found if hashed else None

        monkeypatch.setattr(ticking, "audience_hashes", spy)
        result = shop.tick(now=NOW)
        assert len(asked) == 1  # the engine was asked once, and answered
        assert asked[0] is not None
        return result

    engine, python = tick(True), tick(False)
    assert engine.messages == python.messages
    assert engine.suppressions == python.suppressions
    reasons = engine.plan.reasons()
    assert engine.messages  # every hash decided someone
    assert reasons["holdout"]
    assert reasons["global_control"]
    assert len({m.variant for m in engine.messages}) == 2
