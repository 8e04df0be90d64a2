"""The Solapi channel against a loopback server that speaks its API: authentication, message types,
status codes, the group API's phases, and faults at every step (refused before processing, or processed
and the answer lost), driven the way the dispatcher drives it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.servers import free_port
from shopcrm.channels import Accepted, Ambiguous, Message, Rejected, SendResult, Transient
from shopcrm.channels.solapi import SolapiChannel, SolapiGroupError, authorization
from solapi_server import (
    FAULTS,
    KEY,
    LOSSES,
    PF_ID,
    REFUSALS,
    SECRET,
    SENDER,
    FaultPlan,
    SolapiBehaviour,
    SolapiServer,
    solapi_server,
)

ORDER_BODY = "#{고객명}님, 주문이 완료되었습니다.\n주문번호: #{주문번호}"


def channel(url: str, **options: Any) -> SolapiChannel:
    return SolapiChannel(api_key=KEY, api_secret=SECRET, sender="02-1588-0000", pf_id=PF_ID, base_url=url, **options)


def message(key: str, to: str = "010-1234-5678", kind: str = "sms", text: str = "안녕하세요", **changes: Any) -> Message:
    fields: dict[str, Any] = {"key": key, "customer_id": key, "channel": "sms", "kind": kind, "to": to, "text": text}
    fields.update(changes)
    return Message(**fields)


def test_the_signature_is_hmac_sha256_of_date_and_salt() -> None:
    expected = hmac.new(b"S", b"2026-11-25T01:00:00Zabc", hashlib.sha256).hexdigest()
    assert authorization("K", "S", "2026-11-25T01:00:00Z", "abc") == (
        f"HMAC-SHA256 apiKey=K, date=2026-11-25T01:00:00Z, salt=abc, signature={expected}"
    )
    first, second = channel("http://x").headers(), channel("http://x").headers()
    assert first["Authorization"] != second["Authorization"]  # a fresh salt every request


def test_sms_lms_alimtalk_and_brand_messages_are_taken_and_bad_ones_refused_with_codes() -> None:
    behaviour = SolapiBehaviour(opted_out={"01099990000"}, templates={"ORDER1": ORDER_BODY})
    with solapi_server(behaviour) as server:
        batch = [
            message("k1"),
            message("k2", kind="lms", text="가" * 100, subject="공지"),
            message("k3", kind="alimtalk", channel="alimtalk", template_code="ORDER1",
                    text="김민서님, 주문이 완료되었습니다.\n주문번호: B1",
                    variables=(("#{고객명}", "김민서"), ("#{주문번호}", "B1"))),
            message("k4", kind="brand_message", channel="brand_message", text="겨울 세일", buttons=(("보기", "https://s.example"),)),
            message("k5", to="010-9999-0000"),  # 080 opt-out
            message("k6", kind="alimtalk", channel="alimtalk", template_code="ORDER1", text="다른 내용",
                    variables=(("#{고객명}", "김민서"), ("#{주문번호}", "B1"))),
            message("k7", to="010-1234-5678", text="같은 번호, 다른 메시지"),  # same number twice: both go
            message("k8", text="😀"),  # not CP949
            message("k9", text="똠얌꿍 세트"),  # CP949, but outside EUC-KR's 완성형 (KS X 1001)
        ]
        results = asyncio.run(channel(server.url).send(batch))
    assert [type(r).__name__ for r in results] == ["Accepted", "Accepted", "Accepted", "Accepted", "Rejected", "Rejected",
                                                   "Accepted", "Rejected", "Rejected"]
    assert isinstance(results[8], Rejected)
    assert results[8].code == "1029"
    assert isinstance(results[4], Rejected)
    assert results[4].code == "1061"
    assert results[4].opted_out
    assert isinstance(results[5], Rejected)
    assert results[5].code == "1043"
    assert isinstance(results[7], Rejected)
    assert results[7].code == "1029"
    assert isinstance(results[0], Accepted)
    assert results[0].provider_id.startswith("M4V")
    sent = {m["customFields"]["shopcrmKey"]: m for m in server.accepted}
    assert sent["k1"]["type"] == "SMS"
    assert sent["k1"]["to"] == "01012345678"
    assert sent["k1"]["from"] == SENDER
    assert sent["k2"]["type"] == "LMS"
    assert sent["k2"]["subject"] == "공지"
    assert sent["k3"]["kakaoOptions"]["disableSms"] is False  # Solapi substitutes an SMS when Kakao cannot deliver
    assert sent["k4"]["type"] == "BMS_TEXT"
    # a Brand Message's buttons go in bms, in its shape (as a list's do), not the AlimTalk's kakaoOptions.buttons
    # and never Solapi's own SMS substitute, which would lack the ad lines: the chain's SMS is the fallback (K11)
    assert sent["k4"]["kakaoOptions"] == {"pfId": PF_ID, "disableSms": True, "bms": {"targeting": "I", "chatBubbleType": "TEXT", "buttons": [
        {"name": "보기", "linkType": "WL", "linkMobile": "https://s.example", "linkPc": "https://s.example"}]}}


def test_a_brand_message_with_an_image_is_sent_as_bms_image_and_long_button_urls_are_refused_before_sending() -> None:
    pictured = message("k1", kind="brand_message", channel="brand_message", text="겨울 세일", image_url="https://img/x.jpg")
    long_link = message("k2", kind="brand_message", channel="brand_message", text="겨울 세일",
                        buttons=(("보기", "https://s.example/" + "a" * 90),))
    with solapi_server() as server:
        mapped = channel(server.url, image_ids={"https://img/x.jpg": "ST01FZ"})
        assert channel(server.url).validate(pictured) == [
            "the Brand Message image 'https://img/x.jpg' has no Solapi file id (storage type BMS): upload it and map it "
            "in image_ids"]
        assert "Solapi takes at most 100 (error 1048)" in " ".join(mapped.validate(long_link))
        [taken] = asyncio.run(mapped.send([pictured]))
    assert isinstance(taken, Accepted)
    [sent] = server.accepted
    assert sent["type"] == "BMS_IMAGE"
    assert sent["kakaoOptions"]["bms"] == {"targeting": "I", "chatBubbleType": "IMAGE", "imageId": "ST01FZ"}


def test_http_failures_map_to_transient_or_rejected() -> None:
    with solapi_server(SolapiBehaviour(fail_first=1, retry_after=7)) as server:
        [limited] = asyncio.run(channel(server.url).send([message("k1")]))
        [ok] = asyncio.run(channel(server.url).send([message("k1")]))
    assert isinstance(limited, Transient)
    assert limited.retry_after == 7
    assert isinstance(ok, Accepted)
    with solapi_server() as server:
        wrong = SolapiChannel(api_key=KEY, api_secret="wrong", sender="0215880000", base_url=server.url)
        [refused] = asyncio.run(wrong.send([message("k2")]))
        skewed = channel(server.url, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
        [late] = asyncio.run(skewed.send([message("k3")]))
    assert isinstance(refused, Rejected)
    assert refused.code == "SignatureDoesNotMatch"
    assert isinstance(late, Transient)
    assert late.code == "RequestTimeTooSkewed"


def test_configuration_errors_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOLAPI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="SOLAPI_API_KEY"):
        SolapiChannel(sender="0215880000", api_secret="x")
    with pytest.raises(ValueError, match="8 to 11 digits"):
        SolapiChannel(sender="12", api_key="k", api_secret="s")
    problems = SolapiChannel(sender="0215880000", api_key="k", api_secret="s").validate(
        message("k", kind="alimtalk", channel="alimtalk", to="12"))
    assert problems == ["alimtalk needs the Kakao channel's pf_id (SOLAPI_PF_ID)",
                        "AlimTalk needs the approved template's id (template_code)", "'12' is not a Korean mobile number"]


# ------------------------------------------------------------------------------------------ the group API
def sent_in(server: SolapiServer, prefix: str) -> Counter[str]:
    """How often each key starting with ``prefix`` was sent by the server."""
    sent = server.keys()
    return Counter(key for key in sent if key.startswith(prefix))


async def begin_and_send(solapi: SolapiChannel, batch: list[Message]) -> tuple[str, list[SendResult]]:
    ref = await solapi.begin(batch)
    return ref, await solapi.send([attrs.evolve(m, batch_ref=ref) for m in batch])


def test_a_batch_goes_out_in_one_group_sent_once_with_solapis_message_ids() -> None:
    with solapi_server(SolapiBehaviour(opted_out={"01099990000"})) as server:
        batch = [message("g1"), message("g2", to="010-9999-0000"), message("g3", to="010-1234-0001")]
        ref, results = asyncio.run(begin_and_send(channel(server.url), batch))
        group = server.groups[ref]
    assert ref.startswith("G4V")
    assert group.status == "SENDING"
    assert [type(r).__name__ for r in results] == ["Accepted", "Rejected", "Accepted"]
    assert isinstance(results[1], Rejected)
    assert (results[1].code, results[1].opted_out) == ("1061", True)
    assert sent_in(server, "g") == {"g1": 1, "g3": 1}  # the refused message is stored in the group, never sent
    ids = server.sent_ids()
    assert [r.provider_id for r in results if isinstance(r, Accepted)] == [ids["g1"], ids["g3"]]


def test_a_send_whose_answer_is_lost_is_settled_from_the_groups_status_not_sent_again() -> None:
    for fault in ("drop_after", "500_after"):
        behaviour = SolapiBehaviour(faults=FaultPlan(plan={"send": [fault]}))
        with solapi_server(behaviour) as server:
            _, results = asyncio.run(begin_and_send(channel(server.url), [message("k1"), message("k2", to="010-1234-0002")]))
        assert all(isinstance(r, Accepted) for r in results), (fault, results)
        assert sent_in(server, "k") == {"k1": 1, "k2": 1}, fault
        assert behaviour.faults.injected == [("send", 0, fault)]


def test_a_send_refused_before_processing_leaves_the_group_pending_and_it_is_sent_again() -> None:
    behaviour = SolapiBehaviour(faults=FaultPlan(plan={"send": ["drop_before", "drop_before"]}))
    with solapi_server(behaviour) as server:
        _, results = asyncio.run(begin_and_send(channel(server.url), [message("k1")]))
    assert isinstance(results[0], Accepted)
    assert sent_in(server, "k") == {"k1": 1}
    assert [fault for _, _, fault in behaviour.faults.injected] == ["drop_before", "drop_before"]


def test_a_send_still_unsettled_after_every_attempt_is_ambiguous_and_reconcile_deletes_the_group() -> None:
    behaviour = SolapiBehaviour(faults=FaultPlan(plan={"send": ["drop_before"] * 3}))
    with solapi_server(behaviour) as server:
        solapi = channel(server.url)
        batch = [message("k1")]

        async def go() -> tuple[list[SendResult], list[SendResult | None], Message]:
            ref = await solapi.begin(batch)
            sent = [attrs.evolve(m, batch_ref=ref) for m in batch]
            return await solapi.send(sent), await solapi.reconcile(sent), sent[0]

        results, answers, sent = asyncio.run(go())
        assert isinstance(results[0], Ambiguous)
        assert isinstance(answers[0], Transient)
        assert server.groups[sent.batch_ref].status == "DELETED"
        assert server.keys() == []


def test_a_put_whose_answer_is_lost_abandons_its_group_and_the_messages_go_once_in_a_new_one() -> None:
    behaviour = SolapiBehaviour(faults=FaultPlan(plan={"add": ["drop_after"]}))
    with solapi_server(behaviour) as server:
        solapi = channel(server.url)
        first_ref, first = asyncio.run(begin_and_send(solapi, [message("k1")]))
        assert isinstance(first[0], Transient)
        assert first[0].code == "group_abandoned"
        second_ref, second = asyncio.run(begin_and_send(channel(server.url), [message("k1", attempt=2)]))
        assert isinstance(second[0], Accepted)
        assert server.groups[first_ref].status == "PENDING"  # registered, never sent
        assert server.groups[second_ref].status == "SENDING"
    assert server.keys() == ["k1"]


def test_a_text_outside_ks_x_1001_is_refused_before_solapi_and_a_campaign_check_warns_of_it() -> None:
    from shopcrm.campaigns._korean import cp949_length, outside_ks_x_1001

    solapi = channel("http://x")
    [problem] = solapi.validate(message("k1", text="오늘의 똠얌꿍, 뷁 세일"))
    assert "'똠', '뷁', outside EUC-KR's KS X 1001" in problem
    assert "1029" in problem
    assert solapi.validate(message("k2", text="오늘의 똠얌꿍", kind="alimtalk", channel="alimtalk", template_code="T")) == []
    assert outside_ks_x_1001("가나다 ♥ ※ ￦ abc") == []
    assert cp949_length("똠") == 2  # K12 counts it as CP949 does


def test_a_503_to_a_groups_send_is_settled_from_the_groups_status_so_a_send_solapi_took_is_not_repeated() -> None:
    # a gateway's 503 after Solapi took the send (its answer was slow) looks like "busy": the group says it went
    with solapi_server(SolapiBehaviour(faults=FaultPlan(plan={"send": ["503_after"]}))) as server:
        ref, [went] = asyncio.run(begin_and_send(channel(server.url), [message("k1")]))
        assert isinstance(went, Accepted)
        assert went.provider_id == server.sent_ids()["k1"]
        assert server.groups[ref].status == "SENDING"
    assert server.keys() == ["k1"]
    # a 503 before Solapi took it: the group is still PENDING, so the messages wait and go later, once
    with solapi_server(SolapiBehaviour(faults=FaultPlan(plan={"send": ["503"]}))) as server:
        ref, [busy] = asyncio.run(begin_and_send(channel(server.url), [message("k1")]))
        assert isinstance(busy, Transient)
        assert busy.code == "ServiceUnavailable"
        assert server.groups[ref].status == "PENDING"
        _, [later] = asyncio.run(begin_and_send(channel(server.url), [message("k1", attempt=2)]))
        assert isinstance(later, Accepted)
    assert server.keys() == ["k1"]


def test_a_group_is_never_filled_twice_so_a_resend_under_an_old_reference_cannot_duplicate() -> None:
    with solapi_server(SolapiBehaviour(faults=FaultPlan(plan={"send": ["503"]}))) as server:
        solapi = channel(server.url)
        ref, first = asyncio.run(begin_and_send(solapi, [message("k1")]))
        assert isinstance(first[0], Transient)  # registered in the group, which was not sent
        [again] = asyncio.run(solapi.send([message("k1", attempt=2, batch_ref=ref)]))
        assert isinstance(again, Transient)
        assert again.code == "group_used"
        assert server.groups[ref].registered == 1
        _, third = asyncio.run(begin_and_send(solapi, [message("k1", attempt=3)]))
    assert isinstance(third[0], Accepted)
    assert server.keys() == ["k1"]


def test_requests_that_never_arrived_are_transient_and_begin_raises() -> None:
    with solapi_server(SolapiBehaviour(faults=FaultPlan(plan={"add": ["503"], "create": ["429"]}))) as server:
        solapi = channel(server.url)
        with pytest.raises(SolapiGroupError, match="nothing was sent") as raised:
            asyncio.run(solapi.begin([message("k1")]))
        assert isinstance(raised.value.result, Transient)
        _, results = asyncio.run(begin_and_send(channel(server.url), [message("k1")]))
    assert isinstance(results[0], Transient)
    assert results[0].code == "ServiceUnavailable"
    closed = f"http://127.0.0.1:{free_port()}"
    [refused] = asyncio.run(channel(closed).send([message("k1", batch_ref="G4V000000000001")]))
    assert isinstance(refused, Transient)
    assert refused.code == "connection"
    with pytest.raises(SolapiGroupError):
        asyncio.run(channel(closed).begin([message("k1")]))


def test_reconcile_settles_each_message_from_its_group() -> None:
    with solapi_server(SolapiBehaviour(opted_out={"01099990000"})) as server:
        solapi = channel(server.url, page_size=3)  # several pages per group
        sent_batch = [message(f"s{i}", to=f"010-1234-{i:04d}") for i in range(8)] + [message("s-out", to="010-9999-0000")]
        sent_ref, results = asyncio.run(begin_and_send(solapi, sent_batch))
        pending_ref = asyncio.run(solapi.begin([message("p1")]))
        questions = [attrs.evolve(m, batch_ref=sent_ref) for m in sent_batch] + [
            message("s-missing", batch_ref=sent_ref),  # never put in the sent group
            message("p1", batch_ref=pending_ref),  # its group was created, never sent
            message("n1"),  # no group was ever created for it
            message("u1", batch_ref="G4V999999999999"),  # a group Solapi does not know
        ]
        answers = asyncio.run(solapi.reconcile(questions))
        assert server.groups[pending_ref].status == "DELETED"
    ids = server.sent_ids()
    assert answers[:8] == [Accepted(provider_id=ids[f"s{i}"]) for i in range(8)]
    assert answers[:9] == results
    assert isinstance(answers[8], Rejected)
    assert answers[8].code == "1061"
    assert [type(a).__name__ for a in answers[9:]] == ["Transient", "Transient", "Transient", "NoneType"]
    assert [a.code for a in answers[9:12] if isinstance(a, Transient)] == ["not_in_group", "group_deleted", "no_group"]


def test_reconcile_is_ambiguous_while_solapi_cannot_be_asked() -> None:
    with solapi_server(SolapiBehaviour(faults=FaultPlan(plan={"group": ["drop_after"], "messages": ["drop_before"]}))) as server:
        solapi = channel(server.url, page_size=1)
        ref, _ = asyncio.run(begin_and_send(solapi, [message("k1"), message("k2", to="010-1234-0002")]))
        asked = [message("k1", batch_ref=ref), message("k2", batch_ref=ref)]
        first = asyncio.run(solapi.reconcile(asked))  # the status read is lost
        second = asyncio.run(solapi.reconcile(asked))  # the first page is lost
        third = asyncio.run(solapi.reconcile(asked))
    assert all(isinstance(a, Ambiguous) for a in first + second)
    assert all(isinstance(a, Accepted) for a in third)
    closed = channel(f"http://127.0.0.1:{free_port()}")
    assert [type(a).__name__ for a in asyncio.run(closed.reconcile(asked))] == ["Ambiguous", "Ambiguous"]


def test_the_one_call_send_many_remains_as_an_option_whose_lost_answers_stay_unknown() -> None:
    behaviour = SolapiBehaviour(faults=FaultPlan(plan={"send-many": [None, "drop_after"]}))
    with solapi_server(behaviour) as server:
        solapi = channel(server.url, group_api=False)
        assert asyncio.run(solapi.begin([message("k1")])) == ""
        [taken] = asyncio.run(solapi.send([message("k1")]))
        [lost] = asyncio.run(solapi.send([message("k2", to="010-1234-0002")]))
        assert asyncio.run(solapi.reconcile([message("k2")])) == [None]
    assert isinstance(taken, Accepted)
    assert taken.provider_id == server.sent_ids()["k1"]
    assert isinstance(lost, Ambiguous)  # it was taken (the server sent it): resending would duplicate it
    assert server.keys() == ["k1", "k2"]


# -------------------------------------------------------------- the dispatcher's protocol under faults
class Crash(BaseException):
    """The process died (raised past every ``except Exception``)."""


class CrashingTransport(httpx.AsyncBaseTransport):
    """The network, except that the process dies at chosen requests: before the request leaves, or after
    the server processed it and before its answer is read."""

    def __init__(self, crashes: dict[int, str]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.crashes = crashes
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        number, self.count = self.count, self.count + 1
        when = self.crashes.get(number)
        if when == "before":
            raise Crash(number)
        response = await self.inner.handle_async_request(request)
        if when == "after":
            await response.aread()
            raise Crash(number)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def dispatch_like_the_dispatcher(url: str, batch: list[Message], crashes: dict[int, str], batch_size: int,
                                       rounds: int = 80) -> dict[str, SendResult | None]:
    """Drive the channel the way the dispatcher does: begin, record the reference, send; Transient goes
    again in a new group, Ambiguous is reconciled until it answers something else; after a crash (a new
    channel, as a new process would have) everything in flight is reconciled from its recorded reference."""
    transport = CrashingTransport(crashes)
    solapi = channel(url, transport=transport)
    queued = list(batch)
    recorded: dict[str, Message] = {}  # the ledger: each in-flight message with its batch reference
    unsettled: set[str] = set()
    outcome: dict[str, SendResult | None] = {}

    def settle(message: Message, result: SendResult | None) -> None:
        if isinstance(result, Ambiguous):
            unsettled.add(message.key)
            return
        unsettled.discard(message.key)
        if isinstance(result, Transient):
            queued.append(attrs.evolve(message, attempt=message.attempt + 1, batch_ref=""))
        else:
            outcome[message.key] = result

    for _ in range(rounds):
        if not queued and not unsettled:
            break
        sending, queued[:] = queued[:], []
        for start in range(0, len(sending), batch_size):
            chunk = sending[start:start + batch_size]
            try:
                ref = await solapi.begin(chunk)
            except (SolapiGroupError, Crash):  # nothing recorded, nothing sent
                queued.extend(chunk)
                continue
            chunk = [attrs.evolve(m, batch_ref=ref) for m in chunk]
            recorded.update((m.key, m) for m in chunk)
            try:
                results: list[SendResult] = await solapi.send(chunk)
            except Crash:
                results = [Ambiguous("the process died mid-send")] * len(chunk)
            for m, result in zip(chunk, results, strict=True):
                settle(m, result)
        if unsettled:
            asked = [recorded[key] for key in sorted(unsettled)]
            try:
                answers = await solapi.reconcile(asked)
            except Crash:
                continue
            for m, answer in zip(asked, answers, strict=True):
                settle(m, answer)
    assert not queued, f"still queued after {rounds} rounds: {queued}"
    assert not unsettled, f"still unsettled after {rounds} rounds: {unsettled}"
    return outcome


@pytest.fixture(scope="module")
def faulty() -> Iterator[SolapiServer]:
    with solapi_server(SolapiBehaviour(opted_out={"01099990000"})) as server:
        yield server


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    rate=st.sampled_from([0.0, 0.15, 0.35, 0.6]),
    kinds=st.sampled_from([FAULTS, LOSSES, REFUSALS]),
    people=st.lists(st.sampled_from(["valid", "valid", "valid", "landline", "opted_out"]), min_size=1, max_size=25),
    crashes=st.dictionaries(st.integers(0, 40), st.sampled_from(["before", "after"]), max_size=3),
    batch_size=st.integers(1, 9),
)
def test_each_key_is_sent_at_most_once_and_every_message_the_provider_takes_exactly_once(
    faulty: SolapiServer, seed: int, rate: float, kinds: tuple[str, ...], people: list[str], crashes: dict[int, str],
    batch_size: int,
) -> None:
    run = f"{uuid.uuid4().hex[:8]}-"
    numbers = {"valid": "010-5555-{:04d}", "landline": "02-123-{:04d}", "opted_out": "010-9999-0000"}
    batch = [message(f"{run}{i}", to=numbers[kind].format(i)) for i, kind in enumerate(people)]
    faulty.behaviour.faults = FaultPlan(seed=seed, rate=rate, kinds=kinds, limit=12)
    outcome = asyncio.run(dispatch_like_the_dispatcher(faulty.url, batch, crashes, batch_size))
    sent = sent_in(faulty, run)
    ids = faulty.sent_ids()
    assert all(count == 1 for count in sent.values()), f"sent more than once: {sent}"
    for m, kind in zip(batch, people, strict=True):
        result = outcome[m.key]
        assert result is not None, f"{m.key} ended unknown"
        if kind == "valid":
            assert result == Accepted(provider_id=ids[m.key]), (m.key, result)
            assert sent[m.key] == 1
        else:
            assert isinstance(result, Rejected), (m.key, result)
            assert result.code == ("1011" if kind == "landline" else "1061")
            assert sent[m.key] == 0


@pytest.mark.parametrize("keyed", [True, False])
def test_put_results_are_matched_by_key_when_answered_out_of_order_and_in_order_without_keys(keyed: bool) -> None:
    def fake(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            items = [{"messageId": f"M-{m['customFields']['shopcrmKey']}", "statusCode": "2000" if m["to"].startswith("010") else "1011",
                      "statusMessage": "", **({"customFields": m["customFields"]} if keyed else {})}
                     for m in json.loads(request.content)["messages"]]
            return httpx.Response(200, json={"errorCount": 0, "resultList": items[::-1] if keyed else items})
        return httpx.Response(200, json={"groupId": "G1", "status": "SENDING"})

    solapi = channel("http://solapi.test", transport=httpx.MockTransport(fake))
    batch = [message("a", batch_ref="G1"), message("b", to="02-123-4567", batch_ref="G1"), message("c", batch_ref="G1")]
    results = asyncio.run(solapi.send(batch))
    assert results[0] == Accepted(provider_id="M-a")
    assert isinstance(results[1], Rejected)
    assert results[1].code == "1011"
    assert results[2] == Accepted(provider_id="M-c")
