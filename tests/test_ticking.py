"""shop.tick, shop.save_campaign and the outbox on the embedded store: what a shop owner runs every few minutes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import hypothesis
import pytest

from races import at_once
from shopcrm import CampaignError, Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.sources._campaign_store import TickConflict

# 2026-11-25 01:00 UTC is 10:00 in Seoul; 12:30 UTC is 21:30 in Seoul
T0 = datetime(2026, 11, 25, 1)
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                         unsubscribe_url="https://shop.example/u/{customer_id}")


def customer(cid: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_id": cid, "name": "김민서", "grade": "VIP", "phone": "010-1111-2222", "email": f"{cid}@example.com",
        "sms_consent": True, "kakao_consent": True, "email_consent": False, "night_consent": False, "kakao_friend": False,
    }
    row.update(changes)
    return row


@pytest.fixture
def shop() -> Shop:
    result = Shop.open()
    result.messaging_policy = POLICY
    result.load_customers([
        customer("c1"),
        customer("c2", sms_consent=False),
        customer("c3", phone=None),
        customer("c4", grade="일반"),
        customer("c5", night_consent=True),
    ])
    result.load_events([
        {"customer_id": "c1", "event": "product_viewed", "ts": T0 - timedelta(days=30), "product_id": "P1", "amount": None},
    ])
    return result


def sale(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "vip-sale", "purpose": "advertising", "audience": {"attribute": "grade", "eq": "VIP"}, "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name|은는 }} VIP 세일 대상입니다"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    }
    doc.update(changes)
    return doc


def cart(reentry: str = "every_time", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "cart", "purpose": "informational", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 장바구니에 {{ event.product_id }} 상품이 있어요"}}],
        "schedule": {"kind": "triggered", "on": "cart_added", "exit_on": ["order_completed"],
                     "steps": [{"wait": "1h"}, {"send": "reminder"}], "reentry": reentry},
    }
    doc.update(changes)
    return doc


def test_a_one_off_is_planned_once_when_due_and_recorded(shop: Shop) -> None:
    shop.save_campaign(sale(), now=T0 - timedelta(days=1))
    assert shop.tick(now=T0 - timedelta(minutes=1)).messages == ()
    first = shop.tick(now=T0)
    assert sorted(m.customer_id for m in first.messages) == ["c1", "c5"]
    reasons = {s.customer_id: s.reason for s in first.suppressions}
    assert reasons == {"c2": "no_consent", "c3": "no_contact"}
    assert first.occurrences == (("vip-sale", "once"),)
    text = first.messages[0].chain[0].text
    assert text.startswith("(광고) 마음상점 1588-0000\n김민서는 VIP 세일 대상입니다")
    assert text.endswith("무료수신거부 080-123-4567")
    again = shop.tick(now=T0 + timedelta(minutes=5))
    assert again.messages == ()
    assert again.suppressions == ()
    assert again.recorded == 0
    rows = shop.outbox()
    assert [(r.customer_id, r.status, r.kind, r.send_at) for r in rows] == [("c1", "planned", "sms", T0), ("c5", "planned", "sms", T0)]
    assert rows[0].chain[0]["contact"] == "010-1111-2222"
    assert rows[0].chain[0]["text"] == text
    assert {r.key for r in rows} == {m.key for m in first.messages}


def test_a_dry_run_records_nothing(shop: Shop) -> None:
    shop.save_campaign(sale(), now=T0 - timedelta(days=1))
    dry = shop.tick(now=T0, dry_run=True)
    assert len(dry.messages) == 2
    assert dry.recorded == 0
    assert shop.outbox() == []
    assert [m.key for m in shop.tick(now=T0).messages] == [m.key for m in dry.messages]


def test_advertising_at_night_is_deferred_to_8am_unless_night_consent(shop: Shop) -> None:
    night = datetime(2026, 11, 25, 12, 30)  # 21:30 in Seoul
    shop.save_campaign(sale(schedule={"kind": "one_off", "at": "2026-11-25T21:30:00"}), now=T0)
    result = shop.tick(now=night)
    when = {m.customer_id: (m.send_at, m.deferred) for m in result.messages}
    assert when == {"c1": (datetime(2026, 11, 25, 23), True), "c5": (night, False)}  # 08:00 Seoul = 23:00 UTC


def test_an_occurrence_due_before_the_campaign_was_saved_is_not_sent(shop: Shop) -> None:
    shop.save_campaign(sale(), now=T0 + timedelta(hours=1))
    assert shop.tick(now=T0 + timedelta(hours=2)).messages == ()


def test_a_late_tick_suppresses_an_occurrence_past_max_delay(shop: Shop) -> None:
    shop.save_campaign(sale(max_delay="1h"), now=T0 - timedelta(days=1))
    result = shop.tick(now=T0 + timedelta(hours=2))
    assert result.messages == ()
    assert {s.reason for s in result.suppressions} >= {"expired"}


def test_recurring_reentry_limits_how_often_one_customer_hears(shop: Shop) -> None:
    # informational, so the advertising caps (2 per 7 days) do not bind
    daily = sale(id="daily", purpose="informational", schedule={"kind": "recurring", "at": "10:00", "reentry": "2d"})
    shop.save_campaign(daily, now=T0 - timedelta(hours=1))
    planned = []
    for day in range(5):
        result = shop.tick(now=T0 + timedelta(days=day, minutes=1))
        planned.append(sorted(m.customer_id for m in result.messages))
        if day % 2:
            assert {s.reason for s in result.suppressions if s.customer_id == "c1"} == {"already_received"}
    assert planned == [["c1", "c2", "c5"], [], ["c1", "c2", "c5"], [], ["c1", "c2", "c5"]]


def test_a_cart_scenario_waits_exits_and_never_plans_twice(shop: Shop) -> None:
    shop.save_campaign(cart(), now=T0 - timedelta(days=1))
    shop.load_events([
        {"customer_id": "c1", "event": "cart_added", "ts": T0, "product_id": "P7", "amount": None},
        {"customer_id": "c4", "event": "cart_added", "ts": T0, "product_id": "P8", "amount": None},
        {"customer_id": "c4", "event": "order_completed", "ts": T0 + timedelta(minutes=30), "product_id": "P8", "amount": 10_000},
        # before the campaign existed: ignored
        {"customer_id": "c5", "event": "cart_added", "ts": T0 - timedelta(days=2), "product_id": "P9", "amount": None},
    ])
    assert shop.tick(now=T0 + timedelta(minutes=59)).messages == ()
    due = shop.tick(now=T0 + timedelta(hours=1))
    assert [(m.customer_id, m.send_at, m.chain[0].text) for m in due.messages] == [
        ("c1", T0 + timedelta(hours=1), "김민서님, 장바구니에 P7 상품이 있어요"),
    ]
    assert [(s.customer_id, s.reason) for s in due.suppressions] == [("c4", "exited")]
    for later in (1, 2, 30):
        again = shop.tick(now=T0 + timedelta(hours=1, minutes=later))
        assert again.messages == ()
        assert again.suppressions == ()
    statuses = sorted((r.customer_id, r.status) for r in shop.outbox(status=None))
    assert statuses == [("c1", "planned"), ("c4", "exited")]


def test_reentry_once_counts_the_first_entry_even_after_it_left_the_window(shop: Shop) -> None:
    shop.save_campaign(cart(reentry="once"), now=T0 - timedelta(days=30))
    shop.load_events([{"customer_id": "c1", "event": "cart_added", "ts": T0 - timedelta(days=20), "product_id": "P1", "amount": None}])
    assert [m.customer_id for m in shop.tick(now=T0 - timedelta(days=19)).messages] == ["c1"]
    shop.load_events([{"customer_id": "c1", "event": "cart_added", "ts": T0, "product_id": "P2", "amount": None}])
    result = shop.tick(now=T0 + timedelta(hours=2))
    assert result.messages == ()
    assert result.suppressions == ()


def test_the_outbox_rejects_a_key_recorded_twice_atomically(shop: Shop) -> None:
    shop.save_campaign(sale(), now=T0 - timedelta(days=1))
    first = shop.tick(now=T0, dry_run=True)
    from shopcrm.ticking import outbox_rows

    rows = outbox_rows(first.plan, shop.campaigns(), T0)
    store = shop.source.campaign_store()
    store.record(rows[:1], [], T0)
    with pytest.raises(TickConflict, match="run the tick again"):
        store.record(rows, [("vip-sale", "once")], T0)
    assert [r.key for r in shop.outbox()] == [rows[0].key]
    assert store.occurrences(["vip-sale"]) == set()
    # the retried tick plans only what is missing
    retried = shop.tick(now=T0)
    assert [m.customer_id for m in retried.messages] == [r.customer_id for r in rows[1:]]
    assert [s.reason for s in retried.suppressions if s.customer_id == rows[0].customer_id] == ["already_planned"]


def test_saving_a_campaign_renders_it_for_sample_customers(shop: Shop) -> None:
    with pytest.raises(CampaignError) as missing:
        shop.save_campaign(sale(variants=[{"name": "a", "content": {"text": "{{ nickname }}님 세일"}}]), now=T0)
    assert missing.value.path == "main.a.sms.text"
    assert "'nickname' is undefined" in str(missing.value)
    long_name = "가" * 1000  # 2,000 bytes in CP949: with the ad lines over the LMS limit
    shop.load_customers([customer("c9", name=long_name, grade="일반")])
    with pytest.raises(CampaignError, match=r"bytes \(CP949\) with the required ad lines"):
        shop.save_campaign(sale(audience={"attribute": "grade", "eq": "VIP"}), now=T0)
    with pytest.raises(CampaignError, match=r"audience.*nope"):
        shop.save_campaign(sale(audience={"attribute": "nope", "eq": 1}), now=T0)
    shop.messaging_policy = MessagingPolicy()
    with pytest.raises(CampaignError, match="opt-out number"):
        shop.save_campaign(sale(), now=T0)
    assert shop.campaigns() == []


def test_a_scenario_template_is_checked_against_the_latest_trigger_event(shop: Shop) -> None:
    bad = cart(variants=[{"name": "a", "content": {"text": "{{ event.coupon_code }} 쿠폰"}}])
    shop.save_campaign(bad, now=T0)  # no cart_added event yet: only the syntax can be checked
    shop.load_events([{"customer_id": "c1", "event": "cart_added", "ts": T0, "product_id": "P1", "amount": None}])
    with pytest.raises(CampaignError, match="coupon_code"):
        shop.save_campaign(bad, now=T0)


def test_campaigns_are_kept_listed_and_deleted(shop: Shop, tmp_path: Any) -> None:
    path = tmp_path / "shop.duckdb"
    with Shop.open(path) as stored:
        stored.messaging_policy = POLICY
        stored.load_customers([customer("c1")])
        stored.save_campaign(sale(), now=T0 - timedelta(days=1))
        stored.tick(now=T0)
    with Shop.open(path) as reopened:
        reopened.messaging_policy = POLICY
        assert [c.id for c in reopened.campaigns()] == ["vip-sale"]
        assert reopened.campaign("vip-sale").purpose == "advertising"
        assert len(reopened.outbox()) == 1
        assert reopened.tick(now=T0 + timedelta(minutes=1)).messages == ()
        reopened.delete_campaign("vip-sale")
        with pytest.raises(KeyError, match="saved campaigns: none"):
            reopened.campaign("vip-sale")


def test_preview_counts_the_funnel_and_matches_the_tick(shop: Shop) -> None:
    shop.save_campaign(sale(channels=["brand_message", "sms"]), now=T0 - timedelta(days=1))
    shop.load_customers([customer("c6", kakao_friend=True, grade="VIP")])
    preview = shop.preview("vip-sale", now=T0)
    funnel = {f.channel: f for f in preview.funnels}
    assert (preview.audience, funnel["brand_message"].with_contact, funnel["brand_message"].allowed) == (5, 4, 1)
    assert (funnel["sms"].with_contact, funnel["sms"].allowed, funnel["sms"].sendable_now) == (4, 3, 3)
    assert preview.planned_by_channel == {"brand_message": 1, "sms": 2}
    assert preview.estimated_cost == POLICY.prices["brand_message"] + 2 * POLICY.prices["sms"]
    # c2 consented to Kakao but is no channel friend and has no SMS consent: the furthest stage is reported
    assert preview.suppressed == {"not_friend": 1, "no_contact": 1}
    result = shop.tick(now=T0)
    assert sorted((m.customer_id, m.channel) for m in result.messages) == [("c1", "sms"), ("c5", "sms"), ("c6", "brand_message")]
    assert "brand_message" in str(preview)
    assert "<table>" in preview._repr_html_()


def test_playbooks_can_be_enabled_and_adapted(shop: Shop) -> None:
    campaign = shop.enable_playbook("cart_reminder", now=T0, holdout_percent=20, channels=["sms"])
    assert campaign.holdout_percent == 20
    assert campaign.channels == ("sms",)
    assert shop.campaign("cart_reminder") == campaign
    with pytest.raises(KeyError, match="playbooks: welcome_coupon"):
        shop.enable_playbook("nope")


@hypothesis.given(hypothesis.strategies.text())
def test_contacts_are_encoded_exactly_as_json_would(text: str) -> None:
    import json

    from shopcrm.ticking import _json_text

    assert _json_text(text) == json.dumps(text, ensure_ascii=False)


def test_a_template_failing_for_one_customer_is_recorded_as_render_failed_and_the_tick_goes_on() -> None:
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([customer("c1", age=0), customer("c2", age=20)])
    # saved unchecked: a division by an age of 0 passes with other samples, and old saved campaigns were never checked
    shop.save_campaign(sale(id="per-age", purpose="informational", audience={"everyone": True},
                            variants=[{"name": "a", "content": {"text": "{{ 100 // age }}% 할인"}}]), now=T0, check=False)
    shop.save_campaign(sale(id="greeting", audience={"everyone": True}), now=T0)
    result = shop.tick(now=T0 + timedelta(minutes=1))
    assert sorted((m.campaign_id, m.customer_id) for m in result.messages) == [("greeting", "c1"), ("greeting", "c2"), ("per-age", "c2")]
    failed = shop.outbox(campaign_id="per-age", status="render_failed")
    assert [(r.customer_id, r.message) for r in failed] == [
        ("c1", '{"detail": "sms.text: ZeroDivisionError: integer division or modulo by zero"}'),
    ]
    assert shop.tick(now=T0 + timedelta(minutes=2)).recorded == 0  # the occurrence is done: nothing planned twice


# -- two ticks at once on the embedded store: two shops over one DuckDB file in one process (a scheduler thread and
# a request handler); DuckDB has no row locks and refuses the second writer of a row
def _two_ticking_shops(path: Any) -> tuple[Shop, Shop]:
    first = Shop.open(path)
    first.load_customers([customer(f"c{i}") for i in range(1, 6)])
    first.load_events([{"customer_id": "c5", "event": name, "ts": T0 - timedelta(days=30), "product_id": "P1", "amount": None}
                       for name in ("cart_added", "order_completed")])  # before the scenario began: no trigger
    first.messaging_policy = POLICY
    first.save_settings()
    first.save_campaign(cart(), now=T0 - timedelta(days=1))
    first.tick(now=T0)
    return first, Shop.open(path)


def test_a_tick_whose_marks_another_tick_advanced_at_once_keeps_its_result(tmp_path: Any) -> None:
    """Two idle ticks at once: the second to write the scenario's marks is refused by DuckDB. It returns its result
    like the other (its marks dropped, the other's standing) instead of failing with the driver's error, and the next
    tick plans each reminder once."""
    first, second = _two_ticking_shops(tmp_path / "shop.duckdb")
    first.load_events([{"customer_id": "c2", "event": "cart_added", "ts": T0 + timedelta(minutes=1), "product_id": "P2",
                        "amount": None}])
    marks = first.source.campaign_store().tick_marks()
    advance = marks.advance
    seen: list[Any] = []

    def the_other_ticks_while_these_marks_are_written(changes: Any) -> None:
        marks.advance = advance  # type: ignore[method-assign]
        with first.source._transaction():  # type: ignore[attr-defined]
            advance(changes)  # written, not committed: the other tick's marks are refused
            seen.append(second.tick(now=T0 + timedelta(minutes=5)))

    marks.advance = the_other_ticks_while_these_marks_are_written  # type: ignore[method-assign]
    mine = first.tick(now=T0 + timedelta(minutes=5))
    assert mine.messages == ()
    assert seen[0].messages == ()
    due = first.tick(now=T0 + timedelta(hours=2))
    assert [m.customer_id for m in due.messages] == ["c2"]
    assert second.tick(now=T0 + timedelta(hours=2, minutes=5)).messages == ()
    assert [r.customer_id for r in first.outbox() if r.campaign_id == "cart"] == ["c2"]
    first.close()
    second.close()


def test_ticks_racing_in_threads_on_duckdb_record_each_decision_once(tmp_path: Any) -> None:
    """Two ticks of the same instant in two threads over one DuckDB file, four times: each returns its plan or raises
    TickConflict (never a driver error), and every reminder is recorded once."""
    first, second = _two_ticking_shops(tmp_path / "shop.duckdb")
    for step in range(1, 5):
        first.load_events([{"customer_id": f"c{step}", "event": "cart_added", "ts": T0 + timedelta(hours=step - 1),
                            "product_id": f"P{step}", "amount": None}])
        now = T0 + timedelta(hours=step, minutes=30)
        outcomes = at_once(*[lambda shop=shop, now=now: [m.customer_id for m in shop.tick(now=now).messages]
                             for shop in (first, second)], refused=TickConflict)
        assert [f"c{step}"] in outcomes, outcomes
    reminders = sorted(r.customer_id for r in first.outbox() if r.campaign_id == "cart")
    assert reminders == ["c1", "c2", "c3", "c4"]
    first.close()
    second.close()


def test_a_tick_forgets_the_wake_ups_of_the_customers_it_examined(tmp_path: Any) -> None:
    """A reminder's wake-up is kept until the tick that sends it examines its customer; that tick forgets it (one
    delete for all the examined customers on DuckDB), so the next tick does not read that customer again."""
    shop = Shop.open(tmp_path / "shop.duckdb")
    shop.load_customers([customer(f"c{i}") for i in range(1, 4)])
    shop.load_events([{"customer_id": "c3", "event": name, "ts": T0 - timedelta(days=30), "product_id": "P1", "amount": None}
                      for name in ("cart_added", "order_completed")])
    shop.messaging_policy = POLICY
    shop.save_campaign(cart(), now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    shop.load_events([{"customer_id": c, "event": "cart_added", "ts": T0 + timedelta(minutes=m), "product_id": "P2",
                       "amount": None} for c, m in (("c1", 1), ("c2", 2))])
    marks = shop.source.campaign_store().tick_marks()
    assert shop.tick(now=T0 + timedelta(minutes=5)).messages == ()
    assert sorted(marks.due("cart", T0 + timedelta(days=1))) == ["c1", "c2"]  # each waits an hour
    sent = shop.tick(now=T0 + timedelta(hours=2))
    assert sorted(m.customer_id for m in sent.messages) == ["c1", "c2"]
    assert marks.due("cart", T0 + timedelta(days=365)) == []
    shop.close()


def test_a_holdouts_outbox_row_keeps_when_it_would_have_been_sent() -> None:
    # measurement.md 6: a holdout's exposure is the time it would have been planned; due at 21:30 Seoul, the night
    # rule moves the treatment to 08:00, and the holdout rows say 08:00 too (the report reads send_at, then due_at)
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([customer(f"c{i}") for i in range(60)])
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"], "holdout_percent": 30,
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T21:30:00"}}, now=T0)
    result = shop.tick(now=datetime(2026, 11, 25, 12, 30))
    rows = shop.source.campaign_store().outbox(campaign_ids=["sale"])
    held = [r for r in rows if r.status == "holdout"]
    assert held
    assert len(held) + len(result.messages) == 60
    assert {r.send_at for r in rows} == {datetime(2026, 11, 25, 23)}  # 08:00 in Seoul, treatment and holdout alike
    assert {r.due_at for r in held} == {datetime(2026, 11, 25, 12, 30)}
