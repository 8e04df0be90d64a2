"""The global control group: a stable, salted share of customers kept out of every advertising campaign."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from shopcrm import Shop
from shopcrm.campaigns import (
    REASONS,
    Campaign,
    MessagingPolicy,
    Recipient,
    ShopState,
    bucket,
    global_control_members,
    in_global_control,
    parse_campaign,
    plan,
    preview,
)
from shopcrm.campaigns._policy import global_control_point
from shopcrm.labels import label

BASE = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567", caps=())
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567", caps=(),
                         global_control_percent=10, global_control_salt="gc-2026")
MORNING = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
DUE = datetime(2026, 11, 25, 0)  # the campaigns' 09:00 in Seoul
GIVEN = datetime(2026, 1, 1)
IDS = [f"C{i:04d}" for i in range(2000)]


def campaign(cid: str, purpose: str = "advertising", **changes: object) -> Campaign:
    doc: dict[str, object] = {
        "id": cid, "purpose": purpose, "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 소식이 있어요"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T09:00:00"},
    }
    doc.update(changes)
    return parse_campaign(doc)


def state(ids: list[str], campaigns: list[str]) -> ShopState:
    people = {c: Recipient(customer_id=c, phone="010-0000-0000", consents={"sms": GIVEN}, attributes={"name": c}) for c in ids}
    return ShopState(recipients=people, audiences=dict.fromkeys(campaigns, ids))


def reference_point(customer_id: object, salt: str) -> float:
    """The documented formula, written out again: SHA-256 of "salt:id", first 8 bytes big-endian / 2**64 * 100."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()
    return int(digest[:16], 16) / 2**64 * 100


# -- the hash ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [1.0, 5.0, 12.5])
def test_share_over_100k_ids_is_within_four_sigma_of_the_percent(percent: float) -> None:
    policy = MessagingPolicy(global_control_percent=percent)
    n = 100_000
    chosen = sum(in_global_control(i, policy) for i in range(n))
    p = percent / 100
    assert abs(chosen - n * p) <= 4 * math.sqrt(n * p * (1 - p)), chosen


def test_membership_is_the_documented_sha256_formula() -> None:
    for cid in ["C0001", 42, "김민준", "a:b"]:
        assert global_control_point(cid, "gc-2026") == reference_point(cid, "gc-2026")
        assert in_global_control(cid, POLICY) == (reference_point(cid, "gc-2026") < 10)
    # the id is hashed as text: an integer id and its text are the same customer
    assert global_control_point(42, "s") == global_control_point("42", "s")
    # pinned values: another system reproducing the formula gets these
    assert round(global_control_point("C0001", "global_control"), 6) == round(reference_point("C0001", "global_control"), 6)
    assert 0 <= global_control_point("anything", "x") < 100


def test_stable_across_runs_and_a_new_salt_draws_a_new_group() -> None:
    first = global_control_members(IDS, POLICY)
    assert first == global_control_members(list(reversed(IDS)), POLICY) == global_control_members(IDS, POLICY)
    assert first == {c for c in IDS if reference_point(c, "gc-2026") < 10}
    other = global_control_members(IDS, MessagingPolicy(global_control_percent=10, global_control_salt="gc-2027"))
    assert other != first
    # independent draws overlap by about 10% x 10% of the customers, not by 10%
    assert len(first & other) < 0.3 * len(first)
    assert global_control_members(IDS, BASE) == frozenset()  # 0%: no group
    assert not any(in_global_control(c, BASE) for c in IDS)


def test_the_policy_checks_its_fields() -> None:
    for wrong in (100, 100.0, -1, True, float("nan"), "5"):
        with pytest.raises(ValueError, match="global_control_percent is a share of customers from 0"):
            MessagingPolicy(global_control_percent=wrong)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="global_control_salt is a non-empty text"):
        MessagingPolicy(global_control_salt="")
    assert MessagingPolicy(global_control_percent=99.5).global_control_percent == 99.5


def test_the_policy_round_trips_through_to_dict_and_json() -> None:
    data = POLICY.to_dict()
    assert data["global_control_percent"] == 10.0
    assert data["global_control_salt"] == "gc-2026"
    assert MessagingPolicy.from_dict(json.loads(json.dumps(data))) == POLICY
    # a policy saved before the field existed keeps the defaults
    old = {k: v for k, v in data.items() if not k.startswith("global_control")}
    assert MessagingPolicy.from_dict(old).global_control_percent == 0


# -- the planner ---------------------------------------------------------------------------------------------


def test_advertising_campaigns_leave_out_the_same_members_and_informational_ones_reach_them() -> None:
    ads = [campaign("winter-sale"), campaign("new-arrivals", priority=3)]
    notice = campaign("shipping-notice", purpose="informational")
    result = plan([*ads, notice], state(IDS, ["winter-sale", "new-arrivals", "shipping-notice"]), now=MORNING, policy=POLICY)
    control = global_control_members(IDS, POLICY)
    assert 150 < len(control) < 250  # about 10% of 2,000
    for ad in ads:
        left_out = {s.customer_id for s in result.suppressions if s.campaign_id == ad.id and s.reason == "global_control"}
        assert left_out == control
        planned = {m.customer_id for m in result.messages if m.campaign_id == ad.id}
        assert planned == set(IDS) - control
    informational = {m.customer_id for m in result.messages if m.campaign_id == "shipping-notice"}
    assert informational == set(IDS)  # order and shipping notices are not marketing
    suppressed = [s for s in result.suppressions if s.reason == "global_control"]
    assert all(s.key and s.due_at == DUE and s.detail == f"would send at {MORNING.isoformat()}" for s in suppressed)
    assert "global_control" in REASONS
    assert label("reason", "global_control", locale="ko") == "글로벌 대조군"


def test_without_the_policy_setting_nobody_is_in_the_control() -> None:
    result = plan([campaign("winter-sale")], state(IDS, ["winter-sale"]), now=MORNING, policy=BASE)
    assert len(result.messages) == len(IDS)
    assert not result.suppressions


def test_the_campaign_holdout_is_drawn_from_the_other_members() -> None:
    sale = campaign("winter-sale", holdout_percent=20)
    result = plan([sale], state(IDS, ["winter-sale"]), now=MORNING, policy=POLICY)
    control = global_control_members(IDS, POLICY)
    reasons = {s.customer_id: s.reason for s in result.suppressions}
    held = {c for c, r in reasons.items() if r == "holdout"}
    assert held.isdisjoint(control)
    assert {c for c, r in reasons.items() if r == "global_control"} == control
    # the holdout is the campaign's own bucket, applied to the members outside the global control
    assert held == {c for c in IDS if c not in control and bucket("holdout:winter-sale", c) < 2000}
    rest = len(IDS) - len(control)
    assert abs(len(held) - 0.2 * rest) <= 4 * math.sqrt(rest * 0.2 * 0.8)
    assert {m.customer_id for m in result.messages} == set(IDS) - control - held


def test_a_scenario_step_of_an_advertising_campaign_leaves_the_control_out() -> None:
    scenario = campaign("cart-reminder", schedule={"kind": "triggered", "on": "cart_added", "steps": [{"send": "main"}]})
    ids = IDS[:300]
    people = {c: Recipient(customer_id=c, phone="010-0000-0000", consents={"sms": GIVEN}, attributes={"name": c}) for c in ids}
    at = datetime(2026, 11, 25, 0, 30)
    result = plan([scenario], ShopState(recipients=people, triggers={"cart-reminder": {c: [at] for c in ids}}),
                  now=MORNING, policy=POLICY)
    control = global_control_members(ids, POLICY)
    assert control
    assert {s.customer_id for s in result.suppressions if s.reason == "global_control"} == control
    assert {m.customer_id for m in result.messages} == set(ids) - control


def test_preview_shows_the_control_as_its_own_stage_and_count() -> None:
    sale = campaign("winter-sale", holdout_percent=20)
    shown = preview(sale, state(IDS, ["winter-sale"]), now=MORNING, policy=POLICY)
    control = global_control_members(IDS, POLICY)
    assert shown.global_control == len(control)
    assert "global_control" not in shown.suppressed
    funnel = shown.funnels[0]
    assert funnel.not_capped == len(IDS)
    assert funnel.after_global_control == len(IDS) - len(control)
    assert funnel.after_holdout == funnel.after_global_control - shown.holdout == shown.planned
    text = str(shown)
    assert "after_global_control" in text
    assert f"global control {len(control):,}" in text
    # an informational campaign has no such stage cut
    notice = preview(campaign("winter-sale", purpose="informational"), state(IDS, ["winter-sale"]), now=MORNING, policy=POLICY)
    assert notice.global_control == 0
    assert notice.funnels[0].after_global_control == len(IDS)


# -- the shop ------------------------------------------------------------------------------------------------


def customers(n: int) -> list[dict[str, object]]:
    return [{"customer_id": f"C{i:04d}", "name": f"고객{i}", "phone": "010-1234-5678", "sms_consent": True} for i in range(n)]


def test_a_tick_records_the_control_in_the_outbox_and_the_policy_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    shop = Shop.open(path)
    shop.messaging_policy = POLICY
    shop.load_customers(customers(400))
    for doc in (campaign("winter-sale", holdout_percent=20), campaign("shipping-notice", purpose="informational")):
        shop.save_campaign(doc, now=datetime(2026, 11, 24))
    before = shop.preview("winter-sale", now=MORNING)
    result = shop.tick(now=MORNING)
    control = global_control_members([f"C{i:04d}" for i in range(400)], POLICY)
    assert before.global_control == len(control) == result.rows_by_status["global_control"]
    rows = shop.outbox(campaign_id="winter-sale", status="global_control")
    assert {r.customer_id for r in rows} == control
    # the control's exposure is when the message would have been sent (measurement.md 6), like the treatment's
    sent_at = {m.send_at for m in result.messages if m.campaign_id == "winter-sale"}
    assert len(sent_at) == 1
    assert all(r.due_at == DUE and r.send_at in sent_at and r.cost == 0 and r.purpose == "advertising" for r in rows)
    held = {r.customer_id for r in shop.outbox(campaign_id="winter-sale", status="holdout")}
    assert held
    assert held.isdisjoint(control)
    notices = {r.customer_id for r in shop.outbox(campaign_id="shipping-notice")}
    assert control <= notices
    assert len(notices) == 400
    assert not shop.tick(now=datetime(2026, 11, 25, 1, 5)).plan.suppressions  # nothing decided twice
    shop.close()

    reopened = Shop.open(path)
    assert reopened.messaging_policy == POLICY
    assert reopened.messaging_policy.global_control_salt == "gc-2026"
    reopened.close()


def test_a_recurring_campaign_counts_the_control_row_as_received() -> None:
    # like a holdout, a control member's would-be exposure starts the reentry window: one row per window, so the
    # control's exposures line up with the treated members' (who get the campaign once per 30 days)
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers(customers(300))
    shop.save_campaign(campaign("weekly-picks", schedule={"kind": "recurring", "at": "09:00", "reentry": "30d"}),
                       now=datetime(2026, 11, 24))
    shop.tick(now=MORNING)
    second = shop.tick(now=datetime(2026, 11, 26, 1))  # the next day's occurrence
    control = global_control_members([f"C{i:04d}" for i in range(300)], POLICY)
    assert control
    assert second.plan.reasons()["already_received"] == 300
    assert not second.messages
    rows = shop.outbox(campaign_id="weekly-picks", status="global_control")
    assert sorted(r.customer_id for r in rows) == sorted(control)
    shop.close()
