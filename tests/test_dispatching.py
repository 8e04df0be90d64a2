"""The dispatcher against a real HTTP receiver on loopback: signed deliveries, retries with backoff and
Retry-After, fallbacks along the chain, consent and quiet hours re-checked at send time, and crashes
mid-batch that end with every message sent or failed with a reason, none twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fake_clock import FakeClock
from loopback import Behaviour, webhook_receiver
from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import Channel, JsonlChannel, Message, SendResult, WebhookChannel
from shopcrm.dispatching import Dispatcher, RetryPolicy

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")


def planned_shop(n: int = 6, *, purpose: str = "advertising", channels: Sequence[str] = ("brand_message", "sms"),
                 at: str = "2026-11-25T10:00:00", now: datetime = T0) -> Shop:
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([
        {"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}", "sms_consent": True, "kakao_consent": True,
         "kakao_friend": True, "night_consent": False}
        for i in range(n)
    ])
    shop.save_campaign({"id": "sale", "purpose": purpose, "channels": list(channels),
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}],
                        "schedule": {"kind": "one_off", "at": at}}, now=T0 - timedelta(days=1))
    assert len(shop.tick(now=now).messages) == n
    return shop


def dispatch(shop: Shop, channels: dict[str, Channel], clock: FakeClock, **options: Any) -> Any:
    dispatcher = Dispatcher(shop, channels, clock=clock, sleep=clock.sleep, seed=7, **options)
    return asyncio.run(dispatcher.run())


def states(shop: Shop) -> Counter[str]:
    return Counter(r.state for r in shop.source.campaign_store().sends())


def events(shop: Shop) -> Counter[str]:
    rows = shop.source.con.execute("SELECT event FROM events WHERE event LIKE 'message_%'").fetchall()  # type: ignore[attr-defined]
    return Counter(r[0] for r in rows)


def test_every_message_is_delivered_signed_once_and_recorded(tmp_path: Path) -> None:
    shop = planned_shop()
    clock = FakeClock(T0)
    with webhook_receiver() as receiver:
        hook = WebhookChannel(receiver.url, secret="s3cret")
        report = dispatch(shop, {"brand_message": hook}, clock)
        again = dispatch(shop, {"brand_message": hook}, clock)
    assert sorted(receiver.deliveries()) == sorted(r.key for r in shop.outbox())
    assert receiver.bad_signatures == 0
    assert report.outcomes == {"sent": 6}
    assert again.outcomes == {}
    assert states(shop) == {"sent": 6}
    assert events(shop) == {"message_sent": 6}
    sent = shop.source.campaign_store().sends()[0]
    assert sent.provider_id.startswith("msg-")
    assert sent.cost == POLICY.prices["brand_message"]
    body = receiver.requests[0]["payload"]
    assert body["text"].startswith("김민서님, 겨울 세일")
    assert body["kind"] == "brand_message"


def test_5xx_and_429_are_retried_with_backoff_and_retry_after() -> None:
    shop = planned_shop(3)
    clock = FakeClock(T0)
    with webhook_receiver(Behaviour(fail_first=3, retry_after=30)) as receiver:
        report = dispatch(shop, {"brand_message": WebhookChannel(receiver.url, secret="s3cret")}, clock)
    assert report.outcomes["sent"] == 3
    assert states(shop) == {"sent": 3}
    assert len(receiver.requests) == 6
    assert len(set(receiver.deliveries())) == 3
    assert clock.now - T0 >= timedelta(seconds=30)  # Retry-After was honoured
    assert max(r.attempts for r in shop.source.campaign_store().sends()) == 2


def test_a_rejection_moves_down_the_chain_and_the_last_one_fails(tmp_path: Path) -> None:
    shop = planned_shop(4)
    clock = FakeClock(T0)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    with webhook_receiver(Behaviour(reject_to={"010-0000-0001", "010-0000-0002"})) as receiver:
        report = dispatch(shop, {"brand_message": WebhookChannel(receiver.url, secret="s3cret"), "sms": sms}, clock)
    assert report.outcomes == {"sent": 4, "fallback": 2}
    texts = {row["to"]: row["text"] for row in sms.written()}
    assert set(texts) == {"010-0000-0001", "010-0000-0002"}
    assert texts["010-0000-0001"].startswith("(광고) 마음상점 1588-0000\n")  # the fallback is a compliant ad SMS (K11)
    assert events(shop) == {"message_sent": 4, "message_fallback": 2}
    shop2 = planned_shop(2, channels=("brand_message",))
    with webhook_receiver(Behaviour(reject_to={"010-0000-0001"})) as receiver:
        dispatch(shop2, {"brand_message": WebhookChannel(receiver.url, secret="s3cret")}, FakeClock(T0))
    failed = [r for r in shop2.source.campaign_store().sends() if r.state == "failed"]
    assert [(r.customer_id, r.code) for r in failed] == [("c1", "400")]
    assert "invalid number" in failed[0].reason


def test_transient_failures_give_up_after_max_attempts_then_fall_back(tmp_path: Path) -> None:
    shop = planned_shop(1)
    clock = FakeClock(T0)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    with webhook_receiver(Behaviour(fail_first=100)) as receiver:
        dispatch(shop, {"brand_message": WebhookChannel(receiver.url, secret="s3cret"), "sms": sms}, clock,
                 retry=RetryPolicy(max_attempts=3))
    assert len(receiver.requests) == 3
    assert len(sms.written()) == 1
    row = shop.source.campaign_store().sends()[0]
    assert (row.state, row.chain_index) == ("sent", 1)


def test_timeouts_are_retried_and_a_deduplicating_receiver_takes_each_key_once() -> None:
    shop = planned_shop(2)
    clock = FakeClock(T0)
    # a timeout of 1 s, not less: it covers the loopback connect too, slow on a loaded CI machine (test_webhook.py)
    with webhook_receiver(Behaviour(slow_first=2, slow_seconds=3.0)) as receiver:
        hook = WebhookChannel(receiver.url, secret="s3cret", timeout=1.0, deduplicates=True)
        report = dispatch(shop, {"brand_message": hook}, clock)
    assert report.outcomes["sent"] == 2
    assert len(receiver.requests) == 4  # both timed out once, then were retried
    assert sorted(receiver.deliveries()) == sorted(set(receiver.deliveries()))  # processed once each


def test_a_dropped_answer_is_never_resent_to_a_receiver_that_does_not_deduplicate() -> None:
    # the receiver processes each request, then drops the connection: the sender cannot know it was taken
    shop = planned_shop(2)
    with webhook_receiver(Behaviour(drop_after_first=2, deduplicate=False)) as receiver:
        report = dispatch(shop, {"brand_message": WebhookChannel(receiver.url, secret="s3cret")}, FakeClock(T0))
    assert report.outcomes == {"unknown": 2}
    assert sorted(receiver.deliveries()) == sorted(r.key for r in shop.outbox())  # each once, never twice
    rows = shop.source.campaign_store().sends()
    assert all("not resent" in r.reason for r in rows)
    assert events(shop) == {"message_unknown": 2}


def test_a_dropped_answer_is_resent_to_a_deduplicating_receiver_which_takes_it_once() -> None:
    shop = planned_shop(2)
    with webhook_receiver(Behaviour(drop_after_first=2)) as receiver:
        hook = WebhookChannel(receiver.url, secret="s3cret", deduplicates=True)
        report = dispatch(shop, {"brand_message": hook}, FakeClock(T0))
    assert report.outcomes["sent"] == 2
    assert len(receiver.requests) == 4
    assert sorted(receiver.deliveries()) == sorted(r.key for r in shop.outbox())  # processed once each


def test_a_connection_refused_before_the_request_is_retried() -> None:
    shop = planned_shop(2)
    with webhook_receiver(Behaviour(fail_first=2)) as receiver:
        report = dispatch(shop, {"brand_message": WebhookChannel(receiver.url, secret="s3cret")}, FakeClock(T0))
    assert report.outcomes == {"retry": 2, "sent": 2}
    assert len(set(receiver.deliveries())) == 2


def test_consent_withdrawn_after_planning_is_honoured_at_send_time(tmp_path: Path) -> None:
    shop = planned_shop(3, channels=("sms",))
    shop.load_customers([{"customer_id": "c1", "name": "김민서", "phone": "010-0000-0001", "sms_consent": False,
                          "kakao_consent": True, "kakao_friend": True, "night_consent": False}])
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    dispatch(shop, {"sms": sms}, FakeClock(T0))
    assert sorted(row["to"] for row in sms.written()) == ["010-0000-0000", "010-0000-0002"]
    failed = [r for r in shop.source.campaign_store().sends() if r.state == "failed"]
    assert [(r.customer_id, r.reason) for r in failed] == [("c1", "no_consent at send time")]


def test_advertising_due_in_quiet_hours_waits_until_8am(tmp_path: Path) -> None:
    # planned at 20:00 Seoul for 20:00, but the dispatcher only runs at 21:30: the quiet hours began
    shop = planned_shop(1, channels=("sms",), at="2026-11-25T20:00:00", now=datetime(2026, 11, 25, 11))
    clock = FakeClock(datetime(2026, 11, 25, 12, 30))
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    report = dispatch(shop, {"sms": sms}, clock)
    assert report.outcomes == {"deferred": 1, "sent": 1}
    assert clock.now >= datetime(2026, 11, 25, 23)  # 08:00 in Seoul
    assert shop.source.campaign_store().sends()[0].attempts == 1


class CrashingChannel(Channel):
    """Delivers through ``inner`` and then dies, like a process killed after the provider answered."""

    name = "crashing"

    def __init__(self, inner: Channel, after: int) -> None:
        self.inner = inner
        self.kinds = inner.kinds  # type: ignore[misc]
        self.deduplicates = inner.deduplicates
        self.after = after
        self.calls = 0

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        self.calls += 1
        results = await self.inner.send(batch)
        if self.calls > self.after:
            raise KeyboardInterrupt("killed mid-batch")
        return results

    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        return await self.inner.reconcile(messages)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_a_crash_mid_batch_ends_with_no_duplicate_and_no_loss(tmp_path: Path, after: int) -> None:
    shop = planned_shop(8)  # c3's Brand Message is rejected: its SMS fallback goes through the JSONL file
    clock = FakeClock(T0)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    # the receiver does not deduplicate: a resend would be a second delivery, and counted
    with webhook_receiver(Behaviour(reject_to={"010-0000-0003"}, deduplicate=False)) as receiver:
        hook = WebhookChannel(receiver.url, secret="s3cret")
        crashing = CrashingChannel(hook, after)
        with pytest.raises(KeyboardInterrupt):
            dispatch(shop, {"brand_message": crashing, "sms": sms}, clock, batch=3)
        assert states(shop)["inflight"] >= 1
        clock.now += timedelta(minutes=10)  # the dead dispatcher's lease runs out
        dispatch(shop, {"brand_message": hook, "sms": sms}, clock, batch=3)
    final = shop.source.campaign_store().sends()
    assert {r.state for r in final} <= {"sent", "failed", "unknown"}
    assert len(final) == 8
    assert all(r.reason for r in final if r.state != "sent")
    delivered = receiver.deliveries() + [str(row["key"]) for row in sms.written()]
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    unknown = [r for r in final if r.state == "unknown"]
    assert all("not resent" in r.reason for r in unknown)
    assert {r.key for r in final if r.state == "sent"} <= set(delivered)


def test_a_jsonl_channel_reconciles_a_crash_from_its_own_file(tmp_path: Path) -> None:
    shop = planned_shop(5, channels=("sms",))
    clock = FakeClock(T0)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    with pytest.raises(KeyboardInterrupt):
        dispatch(shop, {"sms": CrashingChannel(sms, 0)}, clock, batch=2)
    clock.now += timedelta(minutes=10)
    dispatch(shop, {"sms": sms}, clock, batch=2)
    assert states(shop) == {"sent": 5}  # written before the crash: sent; never written: sent now
    keys = [str(row["key"]) for row in sms.written()]
    assert len(keys) == len(set(keys)) == 5


def test_a_chain_channel_without_a_configured_provider_fails_with_a_reason() -> None:
    shop = planned_shop(1, channels=("sms",))
    dispatch(shop, {}, FakeClock(T0))
    row = shop.source.campaign_store().sends()[0]
    assert row.state == "failed"
    assert "no channel is configured for 'sms'" in row.reason


def test_solapi_through_faults_ends_with_every_message_sent_or_failed_once() -> None:
    from shopcrm.channels import SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET, SolapiBehaviour, solapi_server

    shop = Shop.open()
    shop.messaging_policy = POLICY
    people = [{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-1000-{i:04d}", "sms_consent": True,
               "kakao_consent": True, "kakao_friend": True, "night_consent": False} for i in range(40)]
    people[5]["phone"] = "02-123-4567"  # a landline: the provider refuses it (1011) on every channel
    shop.load_customers(people)
    shop.save_campaign({
        "id": "order", "purpose": "informational", "channels": ["alimtalk", "sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문이 완료되었습니다.", "alimtalk": {
            "template_code": "ORDER1", "body": "#{고객명}님, 주문이 완료되었습니다.", "variables": {"고객명": "{{ name }}"}}}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    }, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    # the approved template differs from the campaign's body: AlimTalk refuses (1043) and the chain falls to SMS
    behaviour = SolapiBehaviour(fail_first=2, retry_after=5, templates={"ORDER1": "#{고객명}님, 주문 완료!"})
    clock = FakeClock(T0)
    with solapi_server(behaviour) as server:
        solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=server.url)
        solapi.batch_size = 7  # type: ignore[misc]
        report = dispatch(shop, {"alimtalk": solapi, "sms": solapi}, clock, batch=10)
    final = Counter((r.state, r.chain_index) for r in shop.source.campaign_store().sends())
    assert final == {("sent", 1): 39, ("failed", 1): 1}
    assert report.events["message_fallback"] == 40
    keys = server.keys()
    assert len(keys) == len(set(keys)) == 39
    failed = next(r for r in shop.source.campaign_store().sends() if r.state == "failed")
    assert failed.code == "1011"


@pytest.mark.parametrize("seed", [11, 29])
def test_a_dispatcher_process_killed_at_random_points_loses_nothing_and_sends_nothing_twice(tmp_path: Path, seed: int) -> None:
    """SIGKILL at random moments while the loopback Solapi server also accepts and then drops connections (or
    answers a proxy's 500) at random steps of the group API: every message ends sent, none reaches Solapi twice."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from solapi_server import FaultPlan, SolapiBehaviour, solapi_server

    path = tmp_path / "shop.duckdb"
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # the worker runs on the real clock: plan for now
    with Shop.open(path) as shop:
        shop.messaging_policy = POLICY
        shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-2000-{i:04d}", "sms_consent": True}
                             for i in range(300)])
        shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                            "variants": [{"name": "a", "content": {"text": "{{ name }}님, 배송이 시작되었습니다."}}],
                            "schedule": {"kind": "one_off", "at": (now + timedelta(hours=9)).isoformat()}},
                           now=now - timedelta(days=1))
        shop.tick(now=now)
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tests)}
    rng = random.Random(seed)
    faults = FaultPlan(seed=seed, rate=0.15, kinds=("drop_after", "500_after", "drop_before", "503"))
    with solapi_server(SolapiBehaviour(delay_all=0.05, faults=faults)) as server:
        for _ in range(4):
            before = server.requests
            worker = subprocess.Popen([sys.executable, str(tests / "dispatch_worker.py"), str(path), server.url], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # killed somewhere mid-batch: after its first request reaches the server (start-up takes seconds on a
            # loaded machine, and a worker killed while importing proves nothing), then a random while
            deadline = time.monotonic() + 60
            while server.requests == before and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            time.sleep(1.1)  # the dead worker's leases run out
        faults.rate = 0.0  # the weather clears for the last run, which must finish the job
        done = subprocess.run([sys.executable, str(tests / "dispatch_worker.py"), str(path), server.url], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    with Shop.open(path) as shop:
        final = shop.source.campaign_store().sends()
        sent_events = shop.source.con.execute(  # type: ignore[attr-defined]
            "SELECT message_key FROM events WHERE event = 'message_sent'").fetchall()
    assert len(final) == 300
    assert {r.state for r in final} == {"sent"}, Counter(r.state for r in final)
    keys = server.keys()
    assert len(keys) == len(set(keys)), "a message reached the provider twice"
    assert set(keys) == {r.key for r in final}
    assert sorted(k for (k,) in sent_events) == sorted(r.key for r in final)  # one event per sent row
    assert {r.provider_id for r in final} == set(server.sent_ids().values())  # Solapi's own message ids
    assert faults.injected, "the server injected no fault: the test proved nothing"


def test_a_channel_rate_limit_spreads_the_sends_over_time(tmp_path: Path) -> None:
    shop = planned_shop(30, channels=("sms",))
    clock = FakeClock(T0)
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    sms.rate_per_second = 10
    sms.batch_size = 5  # type: ignore[misc]
    dispatch(shop, {"sms": sms}, clock)
    assert len(sms.written()) == 30
    # 10 messages may go at once (a second's worth), the other 20 at 10 per second
    assert timedelta(seconds=1.9) <= clock.now - T0 <= timedelta(seconds=3)


def test_a_provider_opt_out_stops_advertising_at_once_until_consent_is_given_again() -> None:
    from shopcrm.channels import SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET, SolapiBehaviour, solapi_server

    shop = planned_shop(3, channels=("sms",))
    with solapi_server(SolapiBehaviour(opted_out={"01000000001"})) as server:
        solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=server.url)
        dispatch(shop, {"sms": solapi}, FakeClock(T0))
    assert shop.source.campaign_store().opt_outs() == {"c1": {"sms": T0}}
    # written with the opt-out, in the same transaction: the event the K9 result notice sends on
    assert shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT customer_id, ts, channel FROM events WHERE event = 'opted_out'").fetchall() == [("c1", T0, "sms")]
    shop.save_campaign({"id": "next-sale", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 다음 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-26T10:00:00"}}, now=T0)
    later = shop.tick(now=T0 + timedelta(days=1))
    assert {s.customer_id: s.reason for s in later.suppressions} == {"c1": "opted_out"}
    # an 080 call opts c2 out of everything; c1 consents again, with a date, after the opt-out
    shop.record_opt_out("c2", at=T0 + timedelta(days=1, hours=1), reason="080")
    shop.load_customers([{"customer_id": "c1", "name": "김민서", "phone": "010-0000-0001", "sms_consent": True,
                          "sms_consent_at": T0 + timedelta(days=1), "kakao_consent": True, "kakao_friend": True,
                          "night_consent": False}])
    shop.save_campaign({"id": "third-sale", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 세 번째 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-28T10:00:00"}}, now=T0)
    third = shop.tick(now=T0 + timedelta(days=3))
    assert sorted(m.customer_id for m in third.messages) == ["c1"]
    assert {s.customer_id: s.reason for s in third.suppressions} == {"c0": "capped", "c2": "opted_out"}
    with pytest.raises(ValueError, match="not a consent group"):
        shop.record_opt_out("c1", "fax")


def test_delivery_reports_confirm_fall_back_and_settle_unknowns() -> None:
    from shopcrm.channels import SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET, solapi_server

    shop = planned_shop(4)  # Brand Message, then SMS
    clock = FakeClock(T0)
    with solapi_server() as server:
        solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=server.url)
        dispatch(shop, {"brand_message": solapi, "sms": solapi}, clock)
        taken = {m["customFields"]["shopcrmKey"]: m for m in server.accepted}
        by_customer = {r.customer_id: r for r in shop.source.campaign_store().sends()}

        def report(customer: str, code: str) -> dict[str, Any]:
            key = by_customer[customer].key
            return {"eventDataId": f"ev-{customer}-{code}", "retryCount": 0, "data": {
                "messageId": by_customer[customer].provider_id, "statusCode": code, "statusMessage": "결과",
                "type": taken[key]["type"], "to": taken[key]["to"], "dateReported": "2026-11-25T01:00:05Z",
                "customFields": {"shopcrmKey": key}}}

        body = [report("c0", "4000"), report("c1", "3104"), report("c2", "4000")]
        reports = SolapiChannel.delivery_reports(body)
        assert [(r.delivered, r.code) for r in reports] == [(True, "4000"), (False, "3104"), (True, "4000")]
        assert shop.record_deliveries(reports, now=T0 + timedelta(minutes=1)) == {"delivered": 2, "fallback": 1}
        assert shop.record_deliveries(reports, now=T0 + timedelta(minutes=2)) == {}  # a resent webhook changes nothing
        dispatch(shop, {"brand_message": solapi, "sms": solapi}, clock)  # c1's SMS fallback goes out
    sends = {r.customer_id: r for r in shop.source.campaign_store().sends()}
    assert {c: (r.state, r.chain_index) for c, r in sends.items()} == {
        "c0": ("delivered", 0), "c1": ("sent", 1), "c2": ("delivered", 0), "c3": ("sent", 0)}
    assert [m["type"] for m in server.accepted].count("SMS") == 1
    assert events(shop)["message_delivered"] == 2
    assert SolapiChannel.delivery_reports({"statusCode": "4000"}) == []  # not ours: no shopcrm key


def test_a_carriers_spam_block_in_a_delivery_report_is_an_opt_out() -> None:
    """3054/3055 arrive only in delivery reports (the carrier took the message, then blocked it): the opt-out is
    recorded with the outcome (K3), with its opted_out event, and advertising on SMS stops for that customer."""
    from shopcrm.channels import SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET, solapi_server

    shop = planned_shop(2, channels=("sms",))
    with solapi_server() as server:
        solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=server.url)
        dispatch(shop, {"sms": solapi}, FakeClock(T0))
    row = next(r for r in shop.source.campaign_store().sends() if r.customer_id == "c1")
    [report] = SolapiChannel.delivery_reports({"messageId": row.provider_id, "statusCode": "3054", "statusMessage": "스팸 차단",
                                               "dateReported": "2026-11-25T01:00:05Z", "customFields": {"shopcrmKey": row.key}})
    assert report.opted_out
    assert shop.record_deliveries([report], now=T0 + timedelta(minutes=1)) == {"failed": 1}
    assert shop.source.campaign_store().opt_outs() == {"c1": {"sms": T0 + timedelta(seconds=5)}}
    assert shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT customer_id, channel FROM events WHERE event = 'opted_out'").fetchall() == [("c1", "sms")]
    assert not SolapiChannel.delivery_reports({"messageId": "M", "statusCode": "3104", "customFields": {"shopcrmKey": "k"}})[0].opted_out


def test_a_delivery_report_settles_a_message_a_crash_left_unknown() -> None:
    shop = planned_shop(1, channels=("sms",))
    store = shop.source.campaign_store()
    store.enqueue_due(T0)
    [row] = store.claim([store.sends()[0].key], "dead", T0 + timedelta(minutes=1), T0)
    store.settle([row._replace(state="unknown", reason="outcome unknown")])
    from shopcrm.channels import DeliveryReport

    changed = shop.record_deliveries([DeliveryReport(key=row.key, delivered=True, code="4000")], now=T0)
    assert changed == {"delivered": 1}
    assert store.sends()[0].state == "delivered"


def test_an_alimtalk_delivery_failure_is_left_to_the_providers_sms_substitution(tmp_path: Path) -> None:
    from shopcrm.channels import DeliveryReport

    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": "c0", "name": "김민서", "phone": "010-5000-0000"}])
    shop.save_campaign({"id": "order", "purpose": "informational", "channels": ["alimtalk", "sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문 완료", "alimtalk": {
                            "template_code": "O1", "body": "#{고객명}님, 주문 완료", "variables": {"고객명": "{{ name }}"}}}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    dispatch(shop, {"alimtalk": JsonlChannel(tmp_path / "kakao.jsonl")}, FakeClock(T0))
    [row] = shop.source.campaign_store().sends()
    assert shop.record_deliveries([DeliveryReport(key=row.key, delivered=False, code="3104", reason="카카오톡 미사용자", provider_id=row.provider_id)], now=T0) == {"failed": 1}
    [after] = shop.source.campaign_store().sends()
    assert after.state == "failed"
    assert after.chain_index == 0
    assert "SMS substitution" in after.reason


def test_a_message_older_than_its_max_delay_expires_at_send_time_instead_of_going_out(tmp_path: Path) -> None:
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}"} for i in range(3)])
    shop.save_campaign({"id": "order", "purpose": "informational", "channels": ["sms"], "max_delay": "6h",
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문이 접수되었습니다."}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    assert len(shop.tick(now=T0).messages) == 3  # planned in time ...
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    late = FakeClock(T0 + timedelta(days=7))  # ... but the dispatcher only runs a week later
    report = dispatch(shop, {"sms": sms}, late)
    assert sms.written() == []
    assert report.outcomes == {"expired": 3}
    rows = shop.source.campaign_store().sends()
    assert {r.state for r in rows} == {"expired"}
    assert all("max_delay (6:00:00) passed" in r.reason for r in rows)
    assert events(shop) == {"message_expired": 3}
    fresh = Shop.open()  # within the allowance it goes
    fresh.messaging_policy = POLICY
    fresh.load_customers([{"customer_id": "c0", "name": "김민서", "phone": "010-0000-0000"}])
    fresh.save_campaign({"id": "order", "purpose": "informational", "channels": ["sms"], "max_delay": "6h",
                         "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문이 접수되었습니다."}}],
                         "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    fresh.tick(now=T0)
    assert dispatch(fresh, {"sms": JsonlChannel(tmp_path / "fresh.jsonl")}, FakeClock(T0 + timedelta(hours=5))).outcomes == {"sent": 1}


def test_a_forged_delivery_report_changes_nothing_and_triggers_no_fallback() -> None:
    from shopcrm.channels import DeliveryReport, SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET, solapi_server

    shop = planned_shop(2)  # Brand Message, then SMS
    clock = FakeClock(T0)
    with solapi_server() as server:
        solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=server.url)
        dispatch(shop, {"brand_message": solapi, "sms": solapi}, clock)
        rows = shop.source.campaign_store().sends()
        assert {r.state for r in rows} == {"sent"}
        forged = [DeliveryReport(key=rows[0].key, delivered=False, code="3104", provider_id="M4V-made-up"),
                  DeliveryReport(key=rows[1].key, delivered=False, code="3104")]  # no id at all
        assert shop.record_deliveries(forged, now=T0) == {"unmatched": 2}
        again = dispatch(shop, {"brand_message": solapi, "sms": solapi}, clock)
        assert again.outcomes == {}
    assert [r.state for r in shop.source.campaign_store().sends()] == ["sent", "sent"]
    assert [m["type"] for m in server.accepted].count("SMS") == 0
    assert events(shop) == {"message_sent": 2}


def test_an_unverifiable_failure_report_for_an_unknown_message_sends_nothing() -> None:
    from shopcrm.channels import DeliveryReport

    shop = planned_shop(1)  # Brand Message, then SMS: a fallback would be a second text
    store = shop.source.campaign_store()
    store.enqueue_due(T0)
    [row] = store.claim([store.sends()[0].key], "dead", T0 + timedelta(minutes=1), T0)
    store.settle([row._replace(state="unknown", claim="", reason="outcome unknown")])
    assert shop.record_deliveries([DeliveryReport(key=row.key, delivered=False, code="3104")], now=T0) == {"unmatched": 1}
    [after] = store.sends()
    assert (after.state, after.chain_index) == ("unknown", 0)


def test_a_deleted_campaigns_messages_keep_the_default_allowance(tmp_path: Path) -> None:
    shop = planned_shop(2, purpose="informational", channels=("sms",))
    shop.delete_campaign("sale")  # what it planned stays in the outbox; its max_delay is gone with it
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    assert dispatch(shop, {"sms": sms}, FakeClock(T0 + timedelta(days=2))).outcomes == {"expired": 2}  # default: 1 day
    fresh = planned_shop(2, purpose="informational", channels=("sms",))
    fresh.delete_campaign("sale")
    assert dispatch(fresh, {"sms": sms}, FakeClock(T0 + timedelta(hours=2))).outcomes == {"sent": 2}


def test_a_message_the_night_rule_deferred_is_sent_at_eight_not_expired_by_a_short_max_delay(tmp_path: Path) -> None:
    # K4: advertising due at 21:30 Seoul is deferred to the next 08:00, never dropped: the campaign's max_delay of
    # 30 minutes counts from the instant the plan let it go, not from 21:30
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": "c0", "name": "김민서", "phone": "010-0000-0000", "sms_consent": True}])
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"], "max_delay": "30m",
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T21:30:00"}}, now=T0 - timedelta(days=1))
    [message] = shop.tick(now=datetime(2026, 11, 25, 12, 30)).messages  # 21:30 in Seoul
    assert message.send_at == datetime(2026, 11, 25, 23)  # 08:00 in Seoul
    sms = JsonlChannel(tmp_path / "sms.jsonl")
    report = dispatch(shop, {"sms": sms}, FakeClock(datetime(2026, 11, 25, 23, 5)))
    assert report.outcomes == {"sent": 1}
    assert len(sms.written()) == 1
    late = Shop.open()  # 30 minutes after 08:00 it has expired, saying when it was due and when planned
    late.messaging_policy = POLICY
    late.load_customers([{"customer_id": "c0", "name": "김민서", "phone": "010-0000-0000", "sms_consent": True}])
    late.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"], "max_delay": "30m",
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T21:30:00"}}, now=T0 - timedelta(days=1))
    late.tick(now=datetime(2026, 11, 25, 12, 30))
    report = dispatch(late, {"sms": JsonlChannel(tmp_path / "late.jsonl")}, FakeClock(datetime(2026, 11, 25, 23, 31)))
    assert report.outcomes == {"expired": 1}
    [row] = late.source.campaign_store().sends()
    assert "came due at 2026-11-25 12:30 UTC, planned at 2026-11-25 23:00 UTC" in row.reason


def test_a_friendtalk_channel_carries_brand_messages_with_a_warning(tmp_path: Path) -> None:
    shop = planned_shop(2, channels=("brand_message",))
    kakao = JsonlChannel(tmp_path / "kakao.jsonl")
    with pytest.warns(DeprecationWarning, match="'friendtalk' in the dispatcher's channels is read as 'brand_message'"):
        report = dispatch(shop, {"friendtalk": kakao}, FakeClock(T0))
    assert report.outcomes == {"sent": 2}
    assert len(kakao.written()) == 2
    with pytest.warns(DeprecationWarning, match="FriendTalk ended"), pytest.raises(ValueError, match="name 'brand_message' twice"):
        Dispatcher(shop, {"friendtalk": kakao, "brand_message": kakao})
