"""A loopback stand-in for Solapi's send API, written from its documentation (see docs/channels.md):
HMAC-SHA256 authentication (15-minute clock skew, single-use signatures), ``send-many/detail`` with
per-message status codes (registered sender, number format, 080 opt-outs, CP949 and byte limits,
AlimTalk templates, duplicate recipients), plus the faults a test asks for."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import attrs

from loopback import JSONHandler, serve

KEY, SECRET, SENDER, PF_ID = "NCS-TEST-KEY", "test-secret-0123456789", "0215880000", "KA01PF-TEST"


@attrs.define
class SolapiBehaviour:
    fail_first: int = 0
    retry_after: float | None = None
    slow_first: int = 0
    slow_seconds: float = 0.0
    drop_first: int = 0
    delay_all: float = 0.0  # every answer waits this long (after the messages were taken)
    opted_out: set[str] = attrs.field(factory=set)
    templates: dict[str, str] = attrs.field(factory=dict)  # templateId -> approved body with #{var}


@attrs.define
class SolapiServer:
    behaviour: SolapiBehaviour
    url: str = ""
    requests: int = 0
    accepted: list[dict[str, Any]] = attrs.field(factory=list)  # every message taken (a resend appears twice)
    auth_failures: list[str] = attrs.field(factory=list)
    signatures: set[str] = attrs.field(factory=set)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def keys(self) -> list[str]:
        return [m["customFields"]["shopcrmKey"] for m in self.accepted]


def _check_auth(server: SolapiServer, header: str) -> str | None:
    match = re.fullmatch(r"HMAC-SHA256 apiKey=(.+), date=(.+), salt=(.+), signature=([0-9a-f]+)", header or "")
    if not match:
        return "InvalidAPIKey"
    key, date, salt, signature = match.groups()
    if key != KEY:
        return "InvalidAPIKey"
    when = datetime.fromisoformat(date.replace("Z", "+00:00"))
    if abs((datetime.now(UTC) - when).total_seconds()) > 900:
        return "RequestTimeTooSkewed"
    expected = hmac.new(SECRET.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "SignatureDoesNotMatch"
    if signature in server.signatures:
        return "DuplicatedSignature"
    server.signatures.add(signature)
    return None


def _status(message: dict[str, Any], behaviour: SolapiBehaviour, seen: set[str], allow_duplicates: bool) -> tuple[str, str] | None:
    to, kind, text = message.get("to", ""), message.get("type"), message.get("text", "")
    if message.get("from") != SENDER:
        return "1062", "발신번호 미등록"
    if not re.fullmatch(r"01[0-9]{8,9}", to):
        return "1011", "수신번호 형식 오류"
    if to in behaviour.opted_out:
        return "1061", "080 수신거부"
    if not allow_duplicates and to in seen:
        return "1026", "중복 수신번호"
    seen.add(to)
    if kind in ("SMS", "LMS", "MMS"):
        try:
            size = len(text.encode("cp949"))
        except UnicodeEncodeError:
            return "1029", "EUC-KR 범위 밖의 문자"
        if kind == "SMS" and message.get("subject"):
            return "1013", "SMS는 제목을 가질 수 없습니다"
        if size > (90 if kind == "SMS" else 2000):
            return "1031", "메시지 길이 초과"
        if len((message.get("subject") or "").encode("cp949")) > 40:
            return "1014", "제목은 40byte까지"
    elif kind in ("ATA", "BMS_TEXT", "CTA"):
        options = message.get("kakaoOptions") or {}
        if options.get("pfId") != PF_ID:
            return "1041", "유효하지 않은 채널"
        if kind == "ATA":
            body = behaviour.templates.get(options.get("templateId", ""))
            if body is None:
                return "1042", "유효하지 않은 템플릿"
            for name, value in (options.get("variables") or {}).items():
                body = body.replace(name, value)
            if body != text:
                return "1043", "템플릿 내용 불일치"
    else:
        return "1011", f"unknown type {kind}"
    return None


def _handler(server: SolapiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            b = server.behaviour
            with server.lock:
                count = server.requests
                server.requests += 1
                problem = _check_auth(server, self.headers.get("Authorization", ""))
            if self.path != "/messages/v4/send-many/detail":
                return self._answer(404, {"errorCode": "NotFound", "errorMessage": self.path})
            if problem:
                server.auth_failures.append(problem)
                return self._answer(403, {"errorCode": problem, "errorMessage": problem})
            if self._fault(count, b.drop_first, b.fail_first, b.retry_after):
                return None
            request = json.loads(body)
            seen: set[str] = set()
            failed, taken = [], []
            with server.lock:
                for message in request.get("messages", []):
                    status = _status(message, b, seen, bool(request.get("allowDuplicates")))
                    if status:
                        failed.append({"to": message.get("to"), "statusCode": status[0], "statusMessage": status[1],
                                       "customFields": message.get("customFields")})
                    else:
                        server.accepted.append(message)
                        taken.append({"messageId": f"M4V{len(server.accepted):012d}", "statusCode": "2000",
                                      "statusMessage": "정상 접수", "customFields": message.get("customFields")})
            if count < b.slow_first:
                time.sleep(b.slow_seconds)
            if b.delay_all:
                time.sleep(b.delay_all)
            total = len(request.get("messages", []))
            return self._answer(200, {
                "groupInfo": {"groupId": f"G4V{count:08d}", "count": {"total": total, "registeredSuccess": len(taken),
                                                                        "registeredFailed": len(failed)}},
                "failedMessageList": failed,
                "messageList": taken if request.get("showMessageList") else [],
            })

    return Handler


@contextmanager
def solapi_server(behaviour: SolapiBehaviour | None = None) -> Iterator[SolapiServer]:
    server = SolapiServer(behaviour or SolapiBehaviour())
    with serve(_handler(server)) as url:
        server.url = url
        yield server
