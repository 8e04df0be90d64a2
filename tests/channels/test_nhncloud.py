"""The NHN Cloud SMS channel against a loopback stand-in for NHN's SMS API v3.0 (tests/nhncloud_server.py):
endpoints, fields and headers, each result code, lost answers, answers before processing, validation, and the
dispatcher driving it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from engines.servers import free_port
from fake_clock import FakeClock
from nhncloud_server import APP_KEY, SECRET_KEY, SEND_NO, NhnBehaviour, NhnServer, nhn_server
from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import Accepted, Ambiguous, Channel, Message, Rejected, SendResult, Transient
from shopcrm.channels.nhncloud import NHN_SMS_URL, NhnCloudSmsChannel
from shopcrm.dispatching import Dispatcher
from shopcrm.testing import ChannelContract

AD = "(광고) 마음상점 1588-0000\n겨울 세일 30%\n무료수신거부 080-123-4567"
IMAGE = "https://img.example/winter.jpg"


def channel(url: str, **options: Any) -> NhnCloudSmsChannel:
    return NhnCloudSmsChannel(APP_KEY, SECRET_KEY, "1588-1234", base_url=url, **options)


def message(key: str, to: str = "010-1234-5678", kind: str = "sms", text: str = "안녕하세요", **changes: Any) -> Message:
    fields: dict[str, Any] = {"key": key, "customer_id": key, "channel": "sms", "kind": kind, "to": to, "text": text}
    fields.update(changes)
    return Message(**fields)


def send(url: str, batch: Sequence[Message], **options: Any) -> list[SendResult]:
    async def go() -> list[SendResult]:
        nhn = channel(url, **options)
        try:
            return await nhn.send(batch)
        finally:
            await nhn.aclose()

    return asyncio.run(go())


def request_of(server: NhnServer, key: str) -> dict[str, Any]:
    """The request that carried ``key`` (its path, headers and JSON body)."""
    [found] = [r for r in server.requests if r["body"] and r["body"]["recipientList"][0]["recipientGroupingKey"] == key]
    return found


# ------------------------------------------------------------------------------------- requests and answers
def test_each_kind_and_purpose_lands_on_its_endpoint_with_its_fields_and_headers() -> None:
    long_ad = AD.replace("겨울 세일 30%", "겨울 세일 " + "가" * 60)
    batch = [
        message("k-sms"),
        message("k-lms", kind="lms", text="가" * 100, subject="공지"),
        message("k-lms-untitled", kind="lms", text="주문하신 상품이 발송되었습니다.\n" + "나" * 100),
        message("k-ad-sms", text=AD, purpose="advertising"),
        message("k-ad-lms", kind="lms", text=long_ad, purpose="advertising"),
        message("k-mms", kind="mms", text="새 상품", subject="신상품", image_url=IMAGE),
    ]
    with nhn_server() as server:
        results = send(server.url, batch, image_ids={IMAGE: "4321"})
    taken = {s["recipientGroupingKey"]: s for s in server.sent}
    assert results == [Accepted(provider_id=f"{taken[m.key]['requestId']}:{taken[m.key]['recipientSeq']}") for m in batch]
    assert sorted(server.keys()) == sorted(m.key for m in batch)  # each once
    products = {m.key: request_of(server, m.key)["path"].rsplit("/", 1)[1] for m in batch}
    assert products == {"k-sms": "sms", "k-lms": "mms", "k-lms-untitled": "mms", "k-ad-sms": "ad-sms",
                        "k-ad-lms": "ad-mms", "k-mms": "mms"}
    for m in batch:
        sent = request_of(server, m.key)
        assert sent["path"].startswith(f"/sms/v3.0/appKeys/{APP_KEY}/sender/")
        assert sent["headers"]["X-Secret-Key"] == SECRET_KEY
        assert sent["headers"]["Content-Type"] == "application/json;charset=UTF-8"
        body = sent["body"]
        assert body["sendNo"] == SEND_NO  # hyphens removed
        assert body["body"] == m.text
        assert body["recipientList"] == [{"recipientNo": "01012345678", "recipientGroupingKey": m.key}]
        assert body["senderGroupingKey"] == m.key
    assert "title" not in request_of(server, "k-sms")["body"]
    assert request_of(server, "k-lms")["body"]["title"] == "공지"
    assert request_of(server, "k-lms-untitled")["body"]["title"] == "주문하신 상품이 발송되었습니다."  # NHN needs a title
    assert request_of(server, "k-ad-lms")["body"]["title"] == "(광고) 마음상점 1588-0000"
    assert request_of(server, "k-mms")["body"]["attachFileIdList"] == [4321]


def test_each_refusal_code_maps_to_its_result_and_nothing_refused_is_sent() -> None:
    behaviour = NhnBehaviour(opted_out={"01099990000"})
    batch = [
        message("k-landline", to="02-123-4567"),  # -2019
        message("k-opted-out", to="010-9999-0000", text=AD, purpose="advertising"),  # -6001
        message("k-no-080", text="(광고) 마음상점\n겨울 세일", purpose="advertising"),  # -6003
        message("k-no-prefix", text="겨울 세일\n무료수신거부 080-123-4567", purpose="advertising"),  # -6003
        message("k-emoji", text="세일 😀"),  # -2023
        message("k-ttoem", text="오늘의 똠얌꿍"),  # -2023: CP949, but not EUC-KR's 완성형
        message("k-long", text="가" * 46),  # -2015: 92 bytes
        message("k-long-title", kind="lms", text="본문", subject="가" * 21),  # -2015: a 42-byte title
        message("k-ok", to="010-1234-0001"),
    ]
    with nhn_server(behaviour) as server:
        results = send(server.url, batch)
    codes = {m.key: (type(r).__name__, getattr(r, "code", "")) for m, r in zip(batch, results, strict=True)}
    assert codes == {
        "k-landline": ("Rejected", "-2019"), "k-opted-out": ("Rejected", "-6001"), "k-no-080": ("Rejected", "-6003"),
        "k-no-prefix": ("Rejected", "-6003"), "k-emoji": ("Rejected", "-2023"), "k-ttoem": ("Rejected", "-2023"),
        "k-long": ("Rejected", "-2015"), "k-long-title": ("Rejected", "-2015"), "k-ok": ("Accepted", ""),
    }
    opted = [m.key for m, r in zip(batch, results, strict=True) if isinstance(r, Rejected) and r.opted_out]
    assert opted == ["k-opted-out"]  # the opt-out alone suppresses advertising
    assert isinstance(results[1], Rejected)
    assert "opted out (080)" in results[1].reason
    assert server.keys() == ["k-ok"]


def test_sender_number_app_key_and_secret_key_refusals_reject_every_message() -> None:
    behaviour = NhnBehaviour(blocked_send_no={"0215880000"})
    with nhn_server(behaviour) as server:
        [unregistered] = asyncio.run(_send_with(NhnCloudSmsChannel(APP_KEY, SECRET_KEY, "02-1588-9999", base_url=server.url),
                                                [message("k1")]))
        [blocked] = asyncio.run(_send_with(NhnCloudSmsChannel(APP_KEY, SECRET_KEY, "0215880000", base_url=server.url),
                                           [message("k2")]))
        [bad_app] = asyncio.run(_send_with(NhnCloudSmsChannel("other-app", SECRET_KEY, SEND_NO, base_url=server.url),
                                           [message("k3")]))
        [bad_secret] = asyncio.run(_send_with(NhnCloudSmsChannel(APP_KEY, "wrong", SEND_NO, base_url=server.url),
                                              [message("k4")]))
        assert server.keys() == []
    assert isinstance(unregistered, Rejected)
    assert unregistered.code == "-2312"
    assert "not registered" in unregistered.reason
    assert isinstance(blocked, Rejected)
    assert blocked.code == "-2313"
    assert isinstance(bad_app, Rejected)  # an HTTP 200 with isSuccessful: false
    assert bad_app.code == "-1000"
    assert isinstance(bad_secret, Rejected)
    assert bad_secret.code == "401"


async def _send_with(nhn: NhnCloudSmsChannel, batch: Sequence[Message]) -> list[SendResult]:
    try:
        return await nhn.send(batch)
    finally:
        await nhn.aclose()


@pytest.mark.parametrize(("code", "expected", "kind"), [
    (-2052, Transient, "quota: retried later"),
    (-9999, Ambiguous, "NHN's system error: it may have stored the request"),
    (-2312, Rejected, "a header-level refusal without a recipient list"),
    (-7777, Rejected, "a code the channel does not know"),
])
def test_an_http_200_with_is_successful_false_is_classified_by_its_header_code(
    code: int, expected: type[SendResult], kind: str,
) -> None:
    with nhn_server(NhnBehaviour(faults=[f"fail:{code}"])) as server:
        [result] = send(server.url, [message("k1")])
        assert server.keys() == [], kind
    assert isinstance(result, expected), (kind, result)
    assert result.code == str(code)


def test_a_lost_answer_is_ambiguous_and_nhn_did_send_it_so_a_resend_would_duplicate_it() -> None:
    behaviour = NhnBehaviour(faults=["drop_after", "500_after"])
    with nhn_server(behaviour) as server:
        nhn = channel(server.url)

        async def go() -> tuple[list[SendResult], list[SendResult | None]]:
            batch = [message("k1")]
            first = await nhn.send(batch)
            second = await nhn.send([message("k2", to="010-1234-0002")])
            answers = await nhn.reconcile([message("k1"), message("k2")])
            await nhn.aclose()
            return first + second, answers

        results, answers = asyncio.run(go())
        assert [r["processed"] for r in server.requests] == [True, True]
        assert server.keys() == ["k1", "k2"]  # both went out: the answers were lost, not the messages
    assert [type(r) for r in results] == [Ambiguous, Ambiguous]
    assert [r.code for r in results if isinstance(r, Ambiguous)] == ["connection", "500"]
    assert answers == [None, None]  # NHN cannot be asked: the dispatcher ends them unknown, never resent
    assert not NhnCloudSmsChannel.deduplicates


def test_a_connection_dropped_before_the_body_was_read_is_ambiguous_too_and_nothing_went_out() -> None:
    # the channel cannot tell this from a drop after processing: it must not resend either
    with nhn_server(NhnBehaviour(faults=["drop_before"])) as server:
        [result] = send(server.url, [message("k1")])
        assert server.keys() == []
        assert server.requests[0]["processed"] is False
    assert isinstance(result, Ambiguous)


def test_503_and_429_answered_before_processing_are_transient_with_retry_after_and_nothing_is_sent() -> None:
    with nhn_server(NhnBehaviour(faults=["503", "429"], retry_after=7)) as server:
        [busy] = send(server.url, [message("k1")])
        [limited] = send(server.url, [message("k1", attempt=2)])
        assert server.keys() == []
        [later] = send(server.url, [message("k1", attempt=3)])
        assert server.keys() == ["k1"]
    assert busy == Transient(busy.reason, code="503", retry_after=7.0)
    assert limited == Transient(limited.reason, code="429", retry_after=7.0)
    assert isinstance(later, Accepted)


def test_a_refused_connection_is_transient() -> None:
    [refused] = send(f"http://127.0.0.1:{free_port()}", [message("k1")])
    assert isinstance(refused, Transient)
    assert refused.code == "connection"


def _mocked(answer: Callable[[httpx.Request], httpx.Response]) -> NhnCloudSmsChannel:
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return NhnCloudSmsChannel(APP_KEY, SECRET_KEY, SEND_NO, base_url="http://nhn.test", client=client)


def _answer_for(request: httpx.Request, code: int = 0, header_ok: bool = True, keyed: bool = True) -> httpx.Response:
    key = json.loads(request.content)["recipientList"][0]["recipientGroupingKey"]
    item = {"recipientNo": "01012345678", "resultCode": code, "resultMessage": "r", "recipientSeq": 3,
            **({"recipientGroupingKey": key} if keyed else {})}
    return httpx.Response(200, json={"header": {"isSuccessful": header_ok, "resultCode": 0 if header_ok else code,
                                                "resultMessage": "m"},
                                     "body": {"data": {"requestId": "R1", "statusCode": "2", "sendResultList": [item]}}})


def test_answers_the_stand_in_cannot_give_read_timeouts_unreadable_or_incomplete_answers_and_recipient_codes() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    def garbled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>gateway</html>")

    def someone_else(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"header": {"isSuccessful": True, "resultCode": 0, "resultMessage": "SUCCESS"},
                                         "body": {"data": {"requestId": "R1", "sendResultList": [
                                             {"recipientNo": "01000000000", "resultCode": 0, "recipientSeq": 1,
                                              "recipientGroupingKey": "another-key"}]}}})

    cases: list[tuple[Callable[[httpx.Request], httpx.Response], SendResult | type[SendResult]]] = [
        (timeout, Ambiguous), (garbled, Ambiguous), (someone_else, Ambiguous),
        (lambda r: httpx.Response(502, text="bad gateway"), Ambiguous),
        (lambda r: _answer_for(r), Accepted(provider_id="R1:3")),
        (lambda r: _answer_for(r, keyed=False), Accepted(provider_id="R1:3")),  # the only entry, without its key
        (lambda r: _answer_for(r, code=-6001), Rejected),  # refused per recipient in a successful request
        (lambda r: _answer_for(r, code=-6001, header_ok=False), Rejected),  # or the request failed with its code
        (lambda r: _answer_for(r, code=-2052), Transient),
    ]
    for answer, expected in cases:
        [result] = asyncio.run(_send_with(_mocked(answer), [message("k1", text=AD, purpose="advertising")]))
        if isinstance(expected, type):
            assert isinstance(result, expected), (answer, result)
        else:
            assert result == expected
        if isinstance(result, Rejected):
            assert (result.code, result.opted_out) == ("-6001", True)


def test_the_channel_closes_only_the_client_it_made() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: _answer_for(r)))
    given = NhnCloudSmsChannel(APP_KEY, SECRET_KEY, SEND_NO, client=client)
    asyncio.run(given.aclose())
    assert not client.is_closed
    asyncio.run(client.aclose())
    own = NhnCloudSmsChannel(APP_KEY, SECRET_KEY, SEND_NO)
    asyncio.run(own.aclose())
    assert own._client.is_closed
    assert own.base_url == NHN_SMS_URL


# ----------------------------------------------------------------------------------------------- validation
def test_validate_catches_what_nhn_would_refuse_before_sending() -> None:
    nhn = channel("http://nhn.test", image_ids={IMAGE: "4321"})
    assert nhn.validate(message("k", text=AD, purpose="advertising")) == []
    assert nhn.validate(message("k", text="(광고) 세일\n무료거부 0801234567", purpose="advertising")) == []
    assert nhn.validate(message("k", text="(광고) 세일\n[무료 수신거부]080-1234-5678", purpose="advertising")) == []
    assert nhn.validate(message("k", kind="mms", text="새 상품", image_url=IMAGE)) == []

    def problems(**fields: Any) -> str:
        found = nhn.validate(message("k", **fields))
        assert found, fields
        return " | ".join(found)

    assert "must start with (광고)" in problems(text="세일\n무료수신거부 080-123-4567", purpose="advertising")
    assert "-6003" in problems(text="(광고) 세일\n전화 1588-0000", purpose="advertising")
    assert "-6003" in problems(text="(광고) 세일\n무료수신거부 1588-0000", purpose="advertising")  # not an 080 number
    assert "-2023" in problems(text="세일 😀")
    assert "'똠', outside EUC-KR's KS X 1001" in problems(text="오늘의 똠얌꿍")
    assert "not a Korean mobile number" in problems(to="02-123-4567")
    assert "not a Korean mobile number" in problems(to="010-1234-5678\r\nX-Injected: 1")
    assert "has no NHN attach-file id" in problems(kind="mms", image_url="https://img.example/other.jpg")
    assert "92 bytes (CP949); NHN takes at most 90" in problems(text="가" * 46)
    assert "subject is 42 bytes" in problems(kind="lms", text="본문", subject="가" * 21)
    assert "recipientGroupingKey" in " ".join(nhn.validate(message("k" * 101)))
    assert "carries ['lms', 'mms', 'sms'], not 'alimtalk'" in problems(kind="alimtalk")
    assert nhn.validate(message("k", text=AD)) == []  # informational: no ad lines required


def test_configuration_comes_from_arguments_or_the_environment_and_a_missing_setting_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("NHN_SMS_APP_KEY", "NHN_SMS_SECRET_KEY", "NHN_SMS_SEND_NO"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValueError, match="needs secret_key and send_no: pass them or set NHN_SMS_SECRET_KEY and NHN_SMS_SEND_NO"):
        NhnCloudSmsChannel(app_key="a")
    with pytest.raises(ValueError, match="needs app_key: pass it or set NHN_SMS_APP_KEY"):
        NhnCloudSmsChannel(secret_key="s", send_no="15881234")
    with pytest.raises(ValueError, match="8 to 11 digits"):
        NhnCloudSmsChannel("a", "s", "12")
    monkeypatch.setenv("NHN_SMS_APP_KEY", "env-app")
    monkeypatch.setenv("NHN_SMS_SECRET_KEY", "env-secret")
    monkeypatch.setenv("NHN_SMS_SEND_NO", "02-1588-1234")
    configured = NhnCloudSmsChannel.from_config({"base_url": "http://nhn.test/"})
    assert isinstance(configured, NhnCloudSmsChannel)
    assert (configured.app_key, configured.secret_key, configured.send_no) == ("env-app", "env-secret", "0215881234")
    assert configured.path(message("k")) == "/sms/v3.0/appKeys/env-app/sender/sms"
    asyncio.run(configured.aclose())


class TestNhnCloudContract(ChannelContract):
    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with nhn_server() as server:
            self.url = server.url
            yield

    def make_channel(self) -> Channel:
        return channel(self.url)

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(to="010-1234-5678"), self.message(kind="lms", to="010-1234-5679", text="가" * 100),
                self.message(to="010-1234-5670", text=AD, purpose="advertising")]


# ----------------------------------------------------------------------------------------- the dispatcher
T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")


def planned_shop(n: int) -> Shop:
    """A shop with an advertising SMS planned for ``n`` customers at T0."""
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}", "sms_consent": True,
                          "night_consent": False} for i in range(n)])
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    assert len(shop.tick(now=T0).messages) == n
    return shop


def dispatch(shop: Shop, nhn: NhnCloudSmsChannel, clock: FakeClock) -> Counter[str]:
    report = asyncio.run(Dispatcher(shop, {"sms": nhn}, clock=clock, sleep=clock.sleep, seed=7).run())
    return Counter(report.outcomes)


def test_through_the_dispatcher_a_planned_advertising_sms_goes_out_once_with_nhns_ids() -> None:
    shop = planned_shop(3)
    clock = FakeClock(T0)
    with nhn_server() as server:
        nhn = channel(server.url)
        assert dispatch(shop, nhn, clock) == {"sent": 3}
        assert dispatch(shop, nhn, clock) == {}  # nothing left: nothing sent again
    rows = shop.source.campaign_store().sends()
    assert sorted(server.keys()) == sorted(r.key for r in rows)  # each key once
    taken = {s["recipientGroupingKey"]: s for s in server.sent}
    assert {r.key: r.provider_id for r in rows} == {k: f"{s['requestId']}:{s['recipientSeq']}" for k, s in taken.items()}
    assert {s["product"] for s in server.sent} == {"ad-sms"}
    assert all(s["body"].startswith("(광고) 마음상점 1588-0000\n") and s["body"].endswith("\n무료수신거부 080-123-4567")
               for s in server.sent)


def test_through_the_dispatcher_a_lost_answer_ends_unknown_and_is_never_resent() -> None:
    shop = planned_shop(3)
    clock = FakeClock(T0)
    with nhn_server(NhnBehaviour(faults=["drop_after", "500_after"])) as server:
        nhn = channel(server.url)
        assert dispatch(shop, nhn, clock) == {"unknown": 2, "sent": 1}
        clock.now += timedelta(hours=1)
        assert dispatch(shop, nhn, clock) == {}
    rows = shop.source.campaign_store().sends()
    assert Counter(r.state for r in rows) == {"unknown": 2, "sent": 1}
    assert all("not resent" in r.reason for r in rows if r.state == "unknown")
    assert sorted(server.keys()) == sorted(r.key for r in rows)  # all three went out, each exactly once
    assert len(server.requests) == 3


def test_through_the_dispatcher_a_503_is_retried_after_retry_after_and_sent_once() -> None:
    shop = planned_shop(2)
    clock = FakeClock(T0)
    with nhn_server(NhnBehaviour(faults=["503"], retry_after=30)) as server:
        assert dispatch(shop, channel(server.url), clock) == {"retry": 1, "sent": 2}
    assert sorted(server.keys()) == sorted(r.key for r in shop.source.campaign_store().sends())
    assert clock.now - T0 >= timedelta(seconds=30)
    assert len(server.requests) == 3


def test_through_the_dispatcher_an_080_opt_out_is_recorded_and_stops_advertising() -> None:
    shop = planned_shop(3)
    with nhn_server(NhnBehaviour(opted_out={"01000000001"})) as server:
        assert dispatch(shop, channel(server.url), FakeClock(T0)) == {"sent": 2, "failed": 1}
    assert shop.source.campaign_store().opt_outs() == {"c1": {"sms": T0}}
    failed = [r for r in shop.source.campaign_store().sends() if r.state == "failed"]
    assert [(r.customer_id, r.code) for r in failed] == [("c1", "-6001")]
    assert len(server.keys()) == 2
