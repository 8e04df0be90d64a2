"""The NHN Cloud KakaoTalk Bizmessage channel (AlimTalk v2.3, Brand Message v1.0) against a loopback stand-in
(tests/nhncloud_kakao_server.py): endpoints, fields and headers, each result code, NHN's 10-minute idempotency window
(a lost answer settled by resending with the same header, and never after the window), validation, and the
dispatcher driving it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import httpx
import pytest

from engines.servers import free_port
from fake_clock import FakeClock
from nhncloud_kakao_server import (
    APP_KEY,
    KST,
    SECRET_KEY,
    SEND_NO,
    SENDER_KEY,
    UNSUBSCRIBE_NO,
    KakaoBehaviour,
    KakaoServer,
    kakao_server,
)
from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import Accepted, Ambiguous, Channel, Message, Rejected, SendResult, Transient
from shopcrm.channels.nhncloud_kakao import NHN_KAKAO_URL, NhnCloudKakaoChannel
from shopcrm.dispatching import Dispatcher
from shopcrm.testing import ChannelContract

SHIPPED = "김민서님, 주문하신 상품이 발송되었습니다.\n송장번호: 1234-5678"
VARIABLES = (("#{name}", "김민서"), ("#{invoice}", "1234-5678"))


class Clock:
    """The channel's clock (aware), moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def channel(url: str, clock: Callable[[], datetime] | None = None, **options: Any) -> NhnCloudKakaoChannel:
    if clock is not None:
        options["clock"] = clock
    return NhnCloudKakaoChannel(APP_KEY, SECRET_KEY, SENDER_KEY, base_url=url, **options)


def alimtalk(key: str, to: str = "010-1234-5678", **changes: Any) -> Message:
    fields: dict[str, Any] = {"key": key, "customer_id": key, "channel": "alimtalk", "kind": "alimtalk", "to": to,
                              "text": SHIPPED, "template_code": "ORDER_SHIPPED", "variables": VARIABLES}
    fields.update(changes)
    return Message(**fields)


def brand(key: str, to: str = "010-1234-5678", **changes: Any) -> Message:
    fields: dict[str, Any] = {"key": key, "customer_id": key, "channel": "brand_message", "kind": "brand_message",
                              "to": to, "text": "(광고) 겨울 세일 30%", "purpose": "advertising", "friend": True,
                              "buttons": (("세일 보기", "https://shop.example/sale"),)}
    fields.update(changes)
    return Message(**fields)


async def begun(nhn: NhnCloudKakaoChannel, batch: Sequence[Message]) -> list[Message]:
    """The batch as the dispatcher hands it over: begun, each message carrying the reference."""
    ref = await nhn.begin(batch)
    return [attrs.evolve(m, batch_ref=ref) for m in batch]


def send(url: str, batch: Sequence[Message], **options: Any) -> list[SendResult]:
    async def go() -> list[SendResult]:
        nhn = channel(url, **options)
        try:
            return await nhn.send(await begun(nhn, batch))
        finally:
            await nhn.aclose()

    return asyncio.run(go())


def request_of(server: KakaoServer, key: str) -> dict[str, Any]:
    [found] = [r for r in server.requests if r["body"] and r["body"]["recipientList"][0]["recipientGroupingKey"] == key]
    return found


def code_of(result: SendResult | None) -> tuple[str, str]:
    return type(result).__name__, getattr(result, "code", "")


# ------------------------------------------------------------------------------------- requests and answers
def test_an_alimtalk_lands_on_its_endpoint_with_its_template_parameters_keys_and_headers() -> None:
    batch = [alimtalk("k-1"), alimtalk("k-2", to="010-1234-0002")]
    with kakao_server() as server:
        results = send(server.url, batch)
    taken = {s["recipientGroupingKey"]: s for s in server.sent}
    assert results == [Accepted(provider_id=f"{taken[m.key]['requestId']}:{taken[m.key]['recipientSeq']}") for m in batch]
    assert sorted(server.keys()) == ["k-1", "k-2"]
    for m in batch:
        sent = request_of(server, m.key)
        assert sent["path"] == f"/alimtalk/v2.3/appkeys/{APP_KEY}/messages"
        assert sent["headers"]["X-Secret-Key"] == SECRET_KEY
        assert sent["headers"]["Content-Type"] == "application/json;charset=UTF-8"
        idempotency = sent["headers"]["X-NC-API-IDEMPOTENCY-KEY"]
        assert idempotency.startswith(f"{m.key}@")  # the key, and its attempt's begin
        body = sent["body"]
        assert (body["senderKey"], body["templateCode"]) == (SENDER_KEY, "ORDER_SHIPPED")
        assert body["recipientList"] == [{
            "recipientNo": m.to.replace("-", ""), "recipientGroupingKey": m.key,
            "templateParameter": {"name": "김민서", "invoice": "1234-5678"},  # without #{}
            "resendParameter": {"isResend": False},  # the chain falls back, not NHN (overrides a console default)
        }]
        assert taken[m.key]["content"] == m.text  # what NHN substituted is what shopcrm rendered
    headers = [request_of(server, m.key)["headers"]["X-NC-API-IDEMPOTENCY-KEY"] for m in batch]
    assert headers[0].split("@")[1] == headers[1].split("@")[1]  # one begin for the batch
    assert len(set(headers)) == 2


def test_nhns_own_sms_substitution_only_when_a_sender_number_is_configured() -> None:
    with kakao_server() as server:
        [result] = send(server.url, [alimtalk("k-1")], resend_send_no="1588-1234")
        [unregistered] = send(server.url, [alimtalk("k-2")], resend_send_no="02-999-9999")
    assert isinstance(result, Accepted)
    assert server.sent[0]["resendParameter"] == {"isResend": True, "resendSendNo": SEND_NO}
    assert code_of(unregistered) == ("Rejected", "-1003")
    assert "resend_send_no" in getattr(unregistered, "reason", "")
    assert server.keys() == ["k-1"]


def test_a_brand_message_goes_free_form_targeting_friends_i_and_non_friends_m_with_the_080_number() -> None:
    batch = [brand("k-friend"), brand("k-unknown", to="010-1234-0002", friend=None),
             brand("k-non-friend", to="010-1234-0003", friend=False),
             brand("k-legacy", to="010-1234-0004", kind="friendtalk", channel="friendtalk")]
    with kakao_server(KakaoBehaviour(licensed=True)) as server:
        results = send(server.url, batch, unsubscribe_no="080-123-4567")
    assert [type(r) for r in results] == [Accepted] * 4
    targeting = {s["recipientGroupingKey"]: s["targeting"] for s in server.sent}
    assert targeting == {"k-friend": "I", "k-unknown": "I", "k-non-friend": "M", "k-legacy": "I"}
    for m in batch:
        sent = request_of(server, m.key)
        assert sent["path"] == f"/brand-message/v1.0/appkeys/{APP_KEY}/freestyle-messages"
        assert sent["headers"]["X-NC-API-IDEMPOTENCY-KEY"].startswith(f"{m.key}@")
        body = sent["body"]
        assert (body["senderKey"], body["chatBubbleType"], body["content"]) == (SENDER_KEY, "TEXT", m.text)
        assert body["buttons"] == [{"name": "세일 보기", "type": "WL", "linkMo": "https://shop.example/sale",
                                    "linkPc": "https://shop.example/sale"}]
        assert body["unsubscribeNo"] == UNSUBSCRIBE_NO
        [recipient] = body["recipientList"]
        assert recipient["recipientGroupingKey"] == m.key
        assert recipient["unsubscribeNo"] == UNSUBSCRIBE_NO
        assert recipient["resendParameter"] == {"isResend": False}  # never an SMS without the advertising lines


def test_without_a_licence_a_non_friend_brand_message_is_refused_1028() -> None:
    with kakao_server() as server:
        [result] = send(server.url, [brand("k-1", friend=False)], unsubscribe_no="0801234567")
    assert code_of(result) == ("Rejected", "1028")
    assert server.keys() == []


@pytest.mark.parametrize(("forced", "expected"), [
    (3019, ("Rejected", "3019")), (3020, ("Rejected", "3020")), (3018, ("Rejected", "3018")),
    (3025, ("Rejected", "3025")), (3027, ("Rejected", "3027")), (1030, ("Rejected", "1030")),
    (3022, ("Transient", "3022")), (1000, ("Accepted", "")),
])
def test_each_forced_kakao_result_code_maps_to_its_result(forced: int, expected: tuple[str, str]) -> None:
    behaviour = KakaoBehaviour(kakao_codes={"01012345678": forced})
    with kakao_server(behaviour) as server:
        [result] = send(server.url, [alimtalk("k-1")])
        assert server.keys() == []  # the stand-in sends nothing for a forced code
    assert code_of(result) == expected
    if isinstance(result, Rejected):
        assert result.opted_out is False  # 3020 blocks AlimTalk (informational), not an advertising opt-out


def test_each_refusal_the_stand_in_derives_maps_to_its_code_and_nothing_refused_is_sent() -> None:
    behaviour = KakaoBehaviour(non_users={"01000000019"}, stopped={"WELCOME"})
    batch = [
        alimtalk("k-landline", to="02-123-4567"),  # 3008
        alimtalk("k-non-user", to="010-0000-0019"),  # 3019
        alimtalk("k-no-template", template_code="NOPE"),  # 3015
        alimtalk("k-stopped", template_code="WELCOME", variables=(("#{name}", "김민서"),)),  # 4133
        alimtalk("k-missing-var", variables=VARIABLES[:1]),  # 4132
        alimtalk("k-too-long", variables=(("#{name}", "가" * 1000), VARIABLES[1])),  # 3016
        alimtalk("k-ok", to="010-1234-0001"),
    ]
    with kakao_server(behaviour) as server:
        results = send(server.url, batch)
    codes = {m.key: code_of(r) for m, r in zip(batch, results, strict=True)}
    assert codes == {
        "k-landline": ("Rejected", "3008"), "k-non-user": ("Rejected", "3019"), "k-no-template": ("Rejected", "3015"),
        "k-stopped": ("Rejected", "4133"), "k-missing-var": ("Rejected", "4132"), "k-too-long": ("Rejected", "3016"),
        "k-ok": ("Accepted", ""),
    }
    assert "not a KakaoTalk user" in getattr(results[1], "reason", "")
    assert server.keys() == ["k-ok"]


def test_outside_kakaos_hours_a_brand_message_is_transient_3022() -> None:
    with kakao_server() as server:
        server.now = datetime(2026, 11, 25, 20, 50, tzinfo=KST)
        [night] = send(server.url, [brand("k-1")])
        server.now = datetime(2026, 11, 26, 7, 59, tzinfo=KST)
        [dawn] = send(server.url, [brand("k-1")])
        assert server.keys() == []
        server.now = datetime(2026, 11, 26, 8, 0, tzinfo=KST)
        [morning] = send(server.url, [brand("k-1")])  # a new attempt, a new header: not refused as a repeat
        assert server.keys() == ["k-1"]
    assert code_of(night) == code_of(dawn) == ("Transient", "3022")
    assert isinstance(morning, Accepted)


@pytest.mark.parametrize(("fault", "expected"), [
    ("fail:-1000", ("Rejected", "-1000")), ("fail:-1001", ("Rejected", "-1001")), ("fail:-1027", ("Rejected", "-1027")),
    ("fail:-2502", ("Rejected", "-2502")), ("fail:-2003", ("Rejected", "-2003")), ("fail:-3217", ("Rejected", "-3217")),
    ("fail:-1005", ("Accepted", "")), ("503", ("Transient", "503")), ("429", ("Transient", "429")),
    ("drop_before", ("Ambiguous", "connection")), ("drop_after", ("Ambiguous", "connection")),
    ("500_after", ("Ambiguous", "500")),
])
def test_header_refusals_and_transport_faults_map_to_their_results(fault: str, expected: tuple[str, str]) -> None:
    with kakao_server(KakaoBehaviour(faults=[fault], retry_after=7)) as server:
        [result] = send(server.url, [alimtalk("k-1")])
    assert code_of(result) == expected
    if isinstance(result, Transient):
        assert result.retry_after == 7.0
    if isinstance(result, Accepted):  # -1005: taken by an earlier request; NHN's request id is not known
        assert result.provider_id.startswith("unknown (NHN -1005")


def test_a_wrong_app_or_secret_key_rejects_and_names_the_setting() -> None:
    with kakao_server() as server:
        [bad_app] = asyncio.run(_send_with(NhnCloudKakaoChannel("other", SECRET_KEY, SENDER_KEY, base_url=server.url),
                                           [alimtalk("k-1")]))
        [bad_secret] = asyncio.run(_send_with(NhnCloudKakaoChannel(APP_KEY, "wrong", SENDER_KEY, base_url=server.url),
                                              [alimtalk("k-2")]))
        [bad_sender] = asyncio.run(_send_with(NhnCloudKakaoChannel(APP_KEY, SECRET_KEY, "x" * 40, base_url=server.url),
                                              [alimtalk("k-3")]))
        assert server.keys() == []
    assert code_of(bad_app) == ("Rejected", "-1000")
    assert "NHN_KAKAO_APP_KEY" in getattr(bad_app, "reason", "")
    assert code_of(bad_secret) == ("Rejected", "-1001")
    assert "NHN_KAKAO_SECRET_KEY" in getattr(bad_secret, "reason", "")
    assert code_of(bad_sender) == ("Rejected", "-2000")


async def _send_with(nhn: NhnCloudKakaoChannel, batch: Sequence[Message]) -> list[SendResult]:
    try:
        return await nhn.send(batch)
    finally:
        await nhn.aclose()


def test_a_refused_connection_is_transient() -> None:
    [refused] = send(f"http://127.0.0.1:{free_port()}", [alimtalk("k1")])
    assert code_of(refused) == ("Transient", "connection")


# ------------------------------------------------------------------------------- the idempotency window
T_SEOUL = datetime(2026, 11, 25, 10, 0, tzinfo=KST)


def _lost_then_reconciled(
    faults: list[str | None], after: timedelta, *, server_after: timedelta | None = None,
) -> tuple[KakaoServer, SendResult, SendResult | None]:
    """Send one AlimTalk whose first request meets ``faults[0]``, then reconcile it ``after`` later."""
    clock = Clock(T_SEOUL)
    with kakao_server(KakaoBehaviour(faults=faults)) as server:
        nhn = channel(server.url, clock)

        async def go() -> tuple[SendResult, SendResult | None]:
            [m] = await begun(nhn, [alimtalk("k-1")])
            [first] = await nhn.send([m])
            clock.now += after
            server.advance(seconds=(server_after if server_after is not None else after).total_seconds())
            [answer] = await nhn.reconcile([m])
            await nhn.aclose()
            return first, answer

        first, answer = asyncio.run(go())
    return server, first, answer


@pytest.mark.parametrize("fault", ["drop_after", "500_after"])
def test_a_lost_answer_resent_within_the_window_is_accepted_from_1005_and_delivered_once(fault: str) -> None:
    server, first, answer = _lost_then_reconciled([fault], timedelta(minutes=3))
    assert isinstance(first, Ambiguous)
    assert isinstance(answer, Accepted)
    assert answer.provider_id.startswith("unknown (NHN -1005")
    assert server.keys() == ["k-1"]  # exactly one message at NHN
    assert [r["processed"] for r in server.requests] == [True, False]
    assert server.requests[1]["answer"]["header"]["resultCode"] == -1005
    same = {r["headers"]["X-NC-API-IDEMPOTENCY-KEY"] for r in server.requests}
    assert len(same) == 1  # the resend repeats the first request's header
    assert server.requests[0]["body"] == server.requests[1]["body"]


def test_a_request_dropped_before_nhn_read_it_is_sent_by_the_resend_once_with_nhns_id() -> None:
    server, first, answer = _lost_then_reconciled(["drop_before"], timedelta(seconds=5))
    assert isinstance(first, Ambiguous)  # the channel cannot tell it from a drop after processing
    [taken] = server.sent
    assert answer == Accepted(provider_id=f"{taken['requestId']}:{taken['recipientSeq']}")
    assert server.keys() == ["k-1"]


def test_after_the_window_the_channel_does_not_resend_and_answers_unknown() -> None:
    server, first, answer = _lost_then_reconciled(["drop_after"], timedelta(minutes=10))
    assert isinstance(first, Ambiguous)
    assert answer is None  # unknown: the dispatcher never resends it
    assert len(server.requests) == 1
    assert server.keys() == ["k-1"]


def test_the_margin_keeps_a_resend_well_inside_nhns_window() -> None:
    # 8 minutes 50 seconds (10 minutes, less the 1-minute margin, less the 10-second timeout): still resent
    server, _, inside = _lost_then_reconciled(["drop_after"], timedelta(minutes=8, seconds=50))
    assert isinstance(inside, Accepted)
    assert len(server.requests) == 2
    # a second later (even though NHN, by its own clock, would still refuse the repeat): not resent
    server, _, outside = _lost_then_reconciled(["drop_after"], timedelta(minutes=8, seconds=51),
                                               server_after=timedelta(minutes=5))
    assert outside is None
    assert len(server.requests) == 1


def test_why_the_window_matters_the_same_header_after_ten_minutes_sends_a_second_message() -> None:
    # the stand-in's window is real: had the channel resent after it, NHN would have taken the message again
    clock = Clock(T_SEOUL)
    with kakao_server(KakaoBehaviour(faults=["drop_after"])) as server:
        nhn = channel(server.url, clock)

        async def go() -> None:
            [m] = await begun(nhn, [alimtalk("k-1")])
            await nhn.send([m])
            server.advance(minutes=10)
            await nhn.send([m])  # the same header, sent blindly
            await nhn.aclose()

        asyncio.run(go())
        assert server.keys() == ["k-1", "k-1"]


def test_a_resend_that_meets_a_busy_nhn_or_a_header_refusal_asks_again_later() -> None:
    clock = Clock(T_SEOUL)
    with kakao_server(KakaoBehaviour(faults=["drop_after", "503", "fail:-1027", "drop_before"])) as server:
        nhn = channel(server.url, clock)

        async def go() -> list[SendResult | None]:
            [m] = await begun(nhn, [alimtalk("k-1")])
            await nhn.send([m])
            answers = [*await nhn.reconcile([m]), *await nhn.reconcile([m]), *await nhn.reconcile([m])]
            clock.now += timedelta(minutes=2)
            answers += await nhn.reconcile([m])
            await nhn.aclose()
            return answers

        answers = asyncio.run(go())
        assert server.keys() == ["k-1"]
    # 503, -1027 and a dropped resend say nothing of the first request: never "not taken" (Transient) nor Rejected
    assert [code_of(a) for a in answers[:3]] == [("Ambiguous", "503"), ("Ambiguous", "-1027"), ("Ambiguous", "connection")]
    assert isinstance(answers[3], Accepted)


def test_a_resend_nhn_takes_and_kakao_refuses_tells_the_first_was_not_taken() -> None:
    # the first request never reached NHN; the resend is taken and Kakao refuses it: that answer is the truth
    clock = Clock(T_SEOUL)
    with kakao_server(KakaoBehaviour(faults=["drop_before"], non_users={"01012345678"})) as server:
        nhn = channel(server.url, clock)

        async def go() -> SendResult | None:
            [m] = await begun(nhn, [alimtalk("k-1")])
            await nhn.send([m])
            [answer] = await nhn.reconcile([m])
            await nhn.aclose()
            return answer

        assert code_of(asyncio.run(go())) == ("Rejected", "3019")
        assert server.keys() == []


def test_reconcile_without_this_channels_reference_is_unknown_and_asks_nothing() -> None:
    with kakao_server() as server:
        nhn = channel(server.url)
        answers = asyncio.run(nhn.reconcile([alimtalk("k-1"), alimtalk("k-2", batch_ref="solapi-group-1")]))
        asyncio.run(nhn.aclose())
        assert server.requests == []
    assert answers == [None, None]
    assert not NhnCloudKakaoChannel.deduplicates


def test_a_message_sent_without_begin_gets_its_own_header_each_time() -> None:
    with kakao_server() as server:
        send_plain = [alimtalk("k-1")]
        for _ in range(2):
            asyncio.run(_send_with(channel(server.url), send_plain))
        headers = [r["headers"]["X-NC-API-IDEMPOTENCY-KEY"] for r in server.requests]
    assert len(set(headers)) == 2
    assert server.keys() == ["k-1", "k-1"]  # two separate sends of a message are two attempts: the dispatcher never does it


def test_the_window_the_channel_allows_follows_its_timeout() -> None:
    assert channel("http://nhn.test").resend_within == timedelta(minutes=8, seconds=50)
    assert channel("http://nhn.test", timeout=60).resend_within == timedelta(minutes=8)
    client = httpx.AsyncClient(timeout=120)
    assert channel("http://nhn.test", client=client).resend_within == timedelta(minutes=7)
    asyncio.run(client.aclose())


# ----------------------------------------------------------------------------------------------- validation
def test_validate_catches_what_kakao_or_nhn_would_refuse_before_sending() -> None:
    nhn = channel("http://nhn.test")
    assert nhn.validate(alimtalk("k")) == []
    assert nhn.validate(brand("k")) == []
    assert nhn.validate(brand("k", kind="friendtalk", channel="friendtalk")) == []

    def problems(message: Message, on: NhnCloudKakaoChannel = nhn) -> str:
        found = on.validate(message)
        assert found, message
        return " | ".join(found)

    assert "template_code" in problems(alimtalk("k", template_code=None))
    assert "longer than NHN's 20" in problems(alimtalk("k", template_code="T" * 21))
    assert "informational only" in problems(alimtalk("k", purpose="advertising"))
    assert "1,001 characters; Kakao takes at most 1,000" in problems(alimtalk("k", text="가" * 1001))
    assert "1,301 characters; Kakao takes at most 1,300" in problems(brand("k", text="가" * 1301))
    assert nhn.validate(brand("k", text="가" * 1300)) == []
    assert "6 buttons; Kakao takes at most 5" in problems(alimtalk("k", buttons=(("보기", "https://a.example"),) * 6))
    assert "15 characters; Kakao takes at most 14" in problems(brand("k", buttons=(("가" * 15, "https://a.example"),)))
    assert "not a Korean mobile number" in problems(alimtalk("k", to="02-123-4567"))
    assert "not a Korean mobile number" in problems(alimtalk("k", to="010-1234-5678\r\nX-Injected: 1"))
    assert "recipientGroupingKey" in problems(alimtalk("k" * 101))
    assert "printable ASCII" in problems(alimtalk("키"))
    assert "layout 'list' is not built" in problems(brand("k", layout="list"))
    assert "layout 'carousel' is not built" in problems(brand("k", layout="carousel"))
    assert "image is not built" in problems(brand("k", image_url="https://img.example/a.jpg"))
    assert "unsubscribe_no" in problems(brand("k", friend=False))
    assert channel("http://nhn.test", unsubscribe_no="080-123-4567").validate(brand("k", friend=False)) == []
    assert "UTF-8" in problems(alimtalk("k", variables=(("#{name}", "\ud800"),)))
    assert "carries ['alimtalk', 'brand_message', 'friendtalk'], not 'sms'" in problems(alimtalk("k", kind="sms"))


def test_configuration_comes_from_arguments_or_the_environment_and_a_missing_setting_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("NHN_KAKAO_APP_KEY", "NHN_KAKAO_SECRET_KEY", "NHN_KAKAO_SENDER_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValueError, match="needs secret_key and sender_key: pass them or set NHN_KAKAO_SECRET_KEY and "
                                         "NHN_KAKAO_SENDER_KEY"):
        NhnCloudKakaoChannel(app_key="a")
    with pytest.raises(ValueError, match="needs app_key: pass it or set NHN_KAKAO_APP_KEY"):
        NhnCloudKakaoChannel(secret_key="s", sender_key="k")
    with pytest.raises(ValueError, match="not an 080 number"):
        NhnCloudKakaoChannel("a", "s", "k", unsubscribe_no="1588-1234")
    with pytest.raises(ValueError, match="8 to 11 digits"):
        NhnCloudKakaoChannel("a", "s", "k", resend_send_no="12")
    monkeypatch.setenv("NHN_KAKAO_APP_KEY", "env-app")
    monkeypatch.setenv("NHN_KAKAO_SECRET_KEY", "env-secret")
    monkeypatch.setenv("NHN_KAKAO_SENDER_KEY", "env-sender")
    configured = NhnCloudKakaoChannel.from_config({"unsubscribe_no": "080-123-4567"})
    assert isinstance(configured, NhnCloudKakaoChannel)
    assert (configured.app_key, configured.secret_key, configured.sender_key) == ("env-app", "env-secret", "env-sender")
    assert configured.base_url == NHN_KAKAO_URL
    assert configured.unsubscribe_no == UNSUBSCRIBE_NO
    assert configured.path(alimtalk("k")) == "/alimtalk/v2.3/appkeys/env-app/messages"
    asyncio.run(configured.aclose())


class TestNhnCloudKakaoContract(ChannelContract):
    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with kakao_server() as server:
            self.url = server.url
            yield

    def make_channel(self) -> Channel:
        return channel(self.url)

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(kind="alimtalk", channel="alimtalk", to="010-1234-5678", text=SHIPPED,
                             template_code="ORDER_SHIPPED", variables=VARIABLES),
                self.message(kind="brand_message", to="010-1234-5679", text="(광고) 겨울 세일", purpose="advertising",
                             friend=True)]


# ----------------------------------------------------------------------------------------- the dispatcher
T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
ORDER = {"ORDER1": "#{고객명}님, 주문이 완료되었습니다."}


def planned_shop(n: int) -> Shop:
    """A shop with an informational AlimTalk (then SMS) planned for ``n`` customers at T0."""
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}", "sms_consent": True,
                          "kakao_consent": True, "kakao_friend": True} for i in range(n)])
    shop.save_campaign({
        "id": "order", "purpose": "informational", "channels": ["alimtalk", "sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문이 완료되었습니다.", "alimtalk": {
            "template_code": "ORDER1", "body": "#{고객명}님, 주문이 완료되었습니다.", "variables": {"고객명": "{{ name }}"}}}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    }, now=T0 - timedelta(days=1))
    assert len(shop.tick(now=T0).messages) == n
    return shop


def dispatch(shop: Shop, nhn: NhnCloudKakaoChannel, clock: FakeClock) -> Counter[str]:
    report = asyncio.run(Dispatcher(shop, {"alimtalk": nhn}, clock=clock, sleep=clock.sleep, seed=7).run())
    return Counter(report.outcomes)


def test_through_the_dispatcher_an_alimtalk_goes_out_once_with_nhns_ids() -> None:
    shop = planned_shop(3)
    clock = FakeClock(T0)
    with kakao_server(KakaoBehaviour(templates=ORDER)) as server:
        nhn = channel(server.url, clock.aware)
        assert dispatch(shop, nhn, clock) == {"sent": 3}
        assert dispatch(shop, nhn, clock) == {}
    rows = shop.source.campaign_store().sends()
    assert sorted(server.keys()) == sorted(r.key for r in rows)  # each key once
    taken = {s["recipientGroupingKey"]: s for s in server.sent}
    assert {r.key: r.provider_id for r in rows} == {k: f"{s['requestId']}:{s['recipientSeq']}" for k, s in taken.items()}
    assert {s["content"] for s in server.sent} == {"김민서님, 주문이 완료되었습니다."}
    assert all(r.batch_ref.startswith("nhnk:") for r in rows)  # begin's reference, recorded by the ledger


def test_through_the_dispatcher_a_lost_answer_is_settled_by_the_resend_and_nothing_goes_twice() -> None:
    shop = planned_shop(3)
    clock = FakeClock(T0)
    with kakao_server(KakaoBehaviour(templates=ORDER, faults=["drop_after", "500_after"])) as server:
        nhn = channel(server.url, clock.aware)
        assert dispatch(shop, nhn, clock) == {"sent": 3}
        clock.now += timedelta(hours=1)
        assert dispatch(shop, nhn, clock) == {}
    rows = shop.source.campaign_store().sends()
    assert Counter(r.state for r in rows) == {"sent": 3}
    assert sorted(server.keys()) == sorted(r.key for r in rows)  # each exactly once at NHN
    assert len(server.requests) == 5  # three sends and two resends, answered -1005
    assert sum(1 for r in rows if r.provider_id.startswith("unknown (NHN -1005")) == 2


@pytest.mark.parametrize(("lease", "expected", "requests"), [
    (timedelta(minutes=5), "sent", 2),  # the default lease: recovery resends inside the window, NHN answers -1005
    (timedelta(minutes=15), "unknown", 1),  # recovery after the window: not resent, never sent twice
])
def test_through_the_dispatcher_a_crash_mid_send_is_resent_by_recovery_inside_the_window_only(
    lease: timedelta, expected: str, requests: int,
) -> None:
    # a dispatcher died after handing the batch over (the row inflight, its lease running): recovery asks the channel
    shop = planned_shop(1)
    clock = FakeClock(T0)
    with kakao_server(KakaoBehaviour(templates=ORDER, faults=["drop_after"])) as server:
        nhn = channel(server.url, clock.aware)
        store = shop.source.campaign_store()
        store.enqueue_due(T0)
        [row] = store.due_sends(T0, 10)
        message, _, _ = Dispatcher(shop, {"alimtalk": nhn}, clock=clock).message(row, store.outbox_by_keys([row.key])[row.key])
        assert message is not None

        async def crashed() -> None:  # what the dead dispatcher did: begin, claim with the reference, send (answer lost)
            ref = await nhn.begin([message])
            store.claim([row.key], "dead", T0 + lease, T0, batch_ref=ref)
            await nhn.send([attrs.evolve(message, batch_ref=ref)])

        asyncio.run(crashed())
        clock.now = T0 + lease + timedelta(seconds=1)
        dispatch(shop, nhn, clock)
        [after] = store.sends()
        assert after.state == expected
        assert server.keys() == [row.key]  # exactly one message, either way
        assert len(server.requests) == requests
