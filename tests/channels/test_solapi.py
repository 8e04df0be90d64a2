"""The Solapi channel against a loopback server that speaks its send API: authentication, message types,
status codes, and faults, alone and through the dispatcher."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shopcrm.channels import Accepted, Message, Rejected, Transient
from shopcrm.channels.solapi import SolapiChannel, authorization
from solapi_server import KEY, PF_ID, SECRET, SENDER, SolapiBehaviour, solapi_server

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
        ]
        results = asyncio.run(channel(server.url).send(batch))
    assert [type(r).__name__ for r in results] == ["Accepted", "Accepted", "Accepted", "Accepted", "Rejected", "Rejected",
                                                   "Accepted", "Rejected"]
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
    assert sent["k4"]["kakaoOptions"]["bms"] == {"targeting": "I"}


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
