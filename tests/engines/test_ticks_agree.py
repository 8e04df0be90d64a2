"""A tick on every engine plans exactly what the pure planner plans from the reference evaluator's view of the shop.

The shell (``shop.tick``) reads audiences, trigger and exit events and histories through
each engine's SQL and records the plan in that engine's outbox; the reference builds the
planner's input in Python straight from the random shop's rows.  Both must give the same
messages (keys, customers, send times) and the same suppressions, and a second tick must
plan nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings

import shopcrm
from engines.loaders import duckdb_shop, sqlite_shop
from shopcrm.campaigns import Campaign, Recipient, ShopState, parse_campaign, plan
from shopcrm.reference import evaluate
from strategies import RandomShop, shops_and_rules

SCALE = float(os.environ.get("SHOPCRM_EXAMPLES_SCALE", "1"))
SCENARIO_SAVED = timedelta(days=60)
BROADCAST_SAVED = timedelta(days=1)


def common(n: int) -> settings:
    return settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True,
                    max_examples=max(5, int(n * SCALE)))


def campaigns(shop: RandomShop, rule: shopcrm.Rule) -> list[Campaign]:
    content = [{"name": "a", "content": {"text": "hello {{ customer_id }}"}}]
    return [
        parse_campaign({
            "id": "broadcast", "purpose": "informational", "audience": rule.to_json(), "channels": ["webhook"],
            "variants": content, "holdout_percent": 20,
            "schedule": {"kind": "one_off", "at": (shop.now - timedelta(hours=1)).replace(tzinfo=UTC).isoformat()},
        }),
        parse_campaign({
            "id": "scenario", "purpose": "informational", "audience": rule.to_json(), "channels": ["webhook"],
            "variants": content, "max_delay": "30d",  # a wide window: many entries, exits and re-entries
            "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"], "reentry": "once",
                         "steps": [{"wait": "1h"}, {"send": "reminder"}]},
        }),
    ]


def reference(shop: RandomShop, rule: shopcrm.Rule, planned: list[Campaign]) -> Any:
    saved = shop.now - SCENARIO_SAVED
    triggers: dict[Any, list[Any]] = {}
    exits: dict[Any, list[Any]] = {}
    known = {c["customer_id"] for c in shop.customers}
    for event in shop.events:
        if event["ts"] > shop.now:
            continue
        if event["event"] == "cart_added" and event["ts"] >= saved:
            triggers.setdefault(event["customer_id"], []).append(event["ts"])
        if event["event"] == "order_completed":
            exits.setdefault(event["customer_id"], []).append(event["ts"])
    histories = {
        c["customer_id"]: (c, [e for e in shop.events if e["customer_id"] == c["customer_id"]]) for c in shop.customers
    }
    for cid in triggers:
        if cid not in known:
            histories[cid] = ({"customer_id": cid}, [])
    state = ShopState(
        recipients={c["customer_id"]: Recipient(customer_id=c["customer_id"]) for c in shop.customers},
        audiences={"broadcast": sorted(evaluate(rule, shop.customers, shop.events, now=shop.now, schema=shop.schema), key=repr)},
        triggers={"scenario": triggers}, exits={"scenario": exits}, histories=histories, schema=shop.schema,
    )
    return plan(planned, state, now=shop.now)


def _check(load: Callable[[RandomShop], shopcrm.Shop], case: tuple[RandomShop, shopcrm.Rule]) -> None:
    shop, rule = case
    engine = load(shop)
    planned = campaigns(shop, rule)
    engine.save_campaign(planned[0], now=shop.now - BROADCAST_SAVED, check=False)
    engine.save_campaign(planned[1], now=shop.now - SCENARIO_SAVED, check=False)
    got = engine.tick(now=shop.now)
    expected = reference(shop, rule, planned)
    assert {(m.key, m.customer_id, m.send_at) for m in got.messages} == {(m.key, m.customer_id, m.send_at) for m in expected.messages}
    assert {(s.campaign_id, s.customer_id, s.reason) for s in got.suppressions} == {
        (s.campaign_id, s.customer_id, s.reason) for s in expected.suppressions
    }
    recorded = {(r.key, r.customer_id) for r in engine.outbox(status=None)}
    assert {(m.key, m.customer_id) for m in got.messages} <= recorded
    again = engine.tick(now=shop.now)
    assert again.messages == (), "the same tick planned again"
    assert again.recorded == 0
    later = engine.tick(now=shop.now + timedelta(hours=2))  # steps that were pending come due; nothing repeats
    assert not {m.key for m in later.messages} & {m.key for m in got.messages}


def _fresh(connection: Any) -> None:
    with connection.cursor() as cur:
        for table in ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values"):
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    connection.commit()


@common(60)
@given(shops_and_rules(max_customers=8, max_events=25, max_depth=2))
def test_duckdb_ticks_like_the_reference(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(duckdb_shop, case)


@common(60)
@given(shops_and_rules(max_customers=8, max_events=25, max_depth=2))
def test_sqlite_ticks_like_the_reference(case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _check(sqlite_shop, case)


@common(25)
@given(case=shops_and_rules(max_customers=8, max_events=25, max_depth=2))
def test_postgres_ticks_like_the_reference(postgres_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _fresh(postgres_loader.con)
    _check(postgres_loader, case)


@common(25)
@given(case=shops_and_rules(max_customers=8, max_events=25, max_depth=2))
def test_mysql_ticks_like_the_reference(mysql_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    _fresh(mysql_loader.con)
    _check(mysql_loader, case)


@common(8)
@given(case=shops_and_rules(max_customers=6, max_events=15, max_depth=2))
def test_spark_ticks_like_the_reference(spark_loader: Any, case: tuple[RandomShop, shopcrm.Rule]) -> None:
    # a Spark shop keeps its campaigns and outbox in memory (nowhere to write): one store per example
    _check(spark_loader, case)
