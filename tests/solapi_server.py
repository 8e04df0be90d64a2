"""A loopback stand-in for Solapi's message API, written from its documentation (see docs/channels.md):
HMAC-SHA256 authentication (15-minute clock skew, single-use signatures), the group API (create a group,
PUT messages into it, send it once, read it and its messages page by page, delete it) and the one-call
``send-many/detail``, with per-message status codes (registered sender, number format, 080 opt-outs,
CP949 and byte limits, AlimTalk templates, duplicate recipients), plus the faults a test asks for.

Faults come from a :class:`FaultPlan`, per step of the protocol (``create``, ``add``, ``send``,
``group``, ``messages``, ``delete``, ``send-many``): refused before processing (``drop_before``: the
connection is closed before the body is read; ``503``; ``429``) or processed and then the answer lost
(``drop_after``: the connection is closed instead of answering; ``500_after``: a proxy's 500; ``503_after``:
a gateway's 503 after Solapi took the request).  The old
``SolapiBehaviour`` counters (``fail_first``, ``drop_first``, ``slow_first``, ``delay_all``) still apply
to every request, counted across all endpoints.

Run ``python tests/solapi_server.py [PORT]`` for a server in its own process (it prints its URL;
``GET /_loopback/sent`` answers how many messages it sent, and how many distinct keys).

``server.accepted`` lists every message actually *sent* (the registered messages of a group when it is
sent, and the messages ``send-many/detail`` took): a message sent twice appears twice, so
``server.keys()`` tells whether each key went out exactly once.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

from loopback import JSONHandler, serve

KEY, SECRET, SENDER, PF_ID = "NCS-TEST-KEY", "test-secret-0123456789", "0215880000", "KA01PF-TEST"

#: the protocol steps a fault can hit
STEPS = ("create", "add", "send", "group", "messages", "delete", "send-many")
#: faults refused before anything is processed (the request certainly had no effect)
REFUSALS = ("drop_before", "503", "429")
#: faults after the request was processed (its answer is lost; a gateway's 503 after a slow answer)
LOSSES = ("drop_after", "500_after", "503_after")
FAULTS = REFUSALS + LOSSES
#: the most messages one PUT (or send-many request) may carry, and the largest page of a group's messages
MAX_PER_REQUEST, MAX_PAGE = 10_000, 500


@attrs.define
class FaultPlan:
    """Which requests misbehave.

    ``plan`` is explicit: the n-th request of a step gets ``plan[step][n]`` (None: none).  Otherwise, with a
    ``seed``, each request of one of ``steps`` gets one of ``kinds`` with probability ``rate``, at most
    ``limit`` faults in all.  ``injected`` records (step, n-th request of that step, fault)."""

    plan: dict[str, list[str | None]] = attrs.field(factory=dict)
    seed: int | None = None
    rate: float = 0.0
    kinds: tuple[str, ...] = FAULTS
    steps: tuple[str, ...] = STEPS
    limit: int | None = None
    injected: list[tuple[str, int, str]] = attrs.field(factory=list)
    _counts: dict[str, int] = attrs.field(factory=dict)
    _rng: random.Random | None = None

    def __attrs_post_init__(self) -> None:
        for step, faults in self.plan.items():
            if step not in STEPS or any(f is not None and f not in FAULTS for f in faults):
                raise ValueError(f"fault plan {step!r}: {faults}; steps are {STEPS}, faults {FAULTS}")
        self._rng = random.Random(self.seed) if self.seed is not None else None

    def next(self, step: str) -> str | None:
        """The fault for the next request of ``step`` (call under the server's lock)."""
        n = self._counts.get(step, 0)
        self._counts[step] = n + 1
        fault: str | None = None
        if step in self.plan:
            faults = self.plan[step]
            fault = faults[n] if n < len(faults) else None
        elif (self._rng is not None and step in self.steps and (self.limit is None or len(self.injected) < self.limit)
              and self._rng.random() < self.rate):
            fault = self._rng.choice(self.kinds)
        if fault:
            self.injected.append((step, n, fault))
        return fault


@attrs.define
class SolapiBehaviour:
    fail_first: int = 0
    retry_after: float | None = None
    slow_first: int = 0
    slow_seconds: float = 0.0
    drop_first: int = 0
    delay_all: float = 0.0  # every answer waits this long (after the request was processed)
    opted_out: set[str] = attrs.field(factory=set)
    templates: dict[str, str] = attrs.field(factory=dict)  # templateId -> approved body with #{var}
    faults: FaultPlan = attrs.field(factory=FaultPlan)


#: one stored message: (its number, which makes its messageId; status code; key; which request body; position in it)
Record = tuple[int, str, str, int, int]


@attrs.define
class Group:
    """One message group.  Its messages are kept compactly (the raw request bodies and one small record
    per message, about 0.5 KB a message instead of 1.1 KB as dicts) and turned back into Solapi's
    message objects when asked for (:meth:`message`), so 100,000s of messages fit in a benchmark."""

    group_id: str
    allow_duplicates: bool
    created: str
    status: str = "PENDING"
    sent_at: str | None = None
    bodies: list[bytes] = attrs.field(factory=list)
    records: list[Record] = attrs.field(factory=list)
    recipients: set[str] = attrs.field(factory=set)
    registered: int = 0
    failed: int = 0

    def message(self, index: int, parsed: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[str, Any]:
        """Message ``index`` as Solapi shows it; ``parsed`` caches request bodies already decoded."""
        number, code, _, body, position = self.records[index]
        if (self.group_id, body) not in parsed:
            parsed[self.group_id, body] = json.loads(self.bodies[body])["messages"]
        message = dict(parsed[self.group_id, body][position])
        message.update(messageId=_message_id(number), groupId=self.group_id, statusCode=code,
                       statusMessage=_STATUS_TEXT.get(code, "접수 실패"), country="82", accountId="12925149")
        return message

    def info(self) -> dict[str, Any]:
        sent = self.registered if self.sent_at else 0
        return {
            "_id": self.group_id, "groupId": self.group_id, "accountId": "12925149", "apiVersion": "4",
            "status": self.status, "allowDuplicates": self.allow_duplicates,
            "count": {"total": self.registered + self.failed, "registeredSuccess": self.registered,
                      "registeredFailed": self.failed, "sentTotal": sent, "sentSuccess": 0, "sentFailed": 0,
                      "sentPending": sent, "sentReplacement": 0, "refund": 0},
            "dateCreated": self.created, "dateUpdated": self.sent_at or self.created, "dateSent": self.sent_at,
            "dateCompleted": None, "customFields": {},
        }


@attrs.define
class SolapiServer:
    behaviour: SolapiBehaviour
    url: str = ""
    requests: int = 0
    sent: list[tuple[Group, int]] = attrs.field(factory=list)  # every message SENT (a resend appears twice)
    groups: dict[str, Group] = attrs.field(factory=dict)
    auth_failures: list[str] = attrs.field(factory=list)
    signatures: set[str] = attrs.field(factory=set)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    numbered: int = 0  # messages registered so far (each one's number makes its messageId)

    def keys(self) -> list[str]:
        """The idempotency key of every message sent, in order (a message sent twice appears twice)."""
        return [group.records[index][2] for group, index in self.sent]

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Every message sent, as Solapi stores it (the request's fields, ``messageId``, ``statusCode``...)."""
        parsed: dict[tuple[str, int], list[dict[str, Any]]] = {}
        return [group.message(index, parsed) for group, index in self.sent]

    def sent_ids(self) -> dict[str, str]:
        """key -> the message id of its (last) sending."""
        return {group.records[index][2]: _message_id(group.records[index][0]) for group, index in self.sent}


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


_MOBILE = re.compile(r"01[0-9]{8,9}")


def _status(message: dict[str, Any], behaviour: SolapiBehaviour, seen: set[str], allow_duplicates: bool) -> tuple[str, str] | None:
    to, kind, text = message.get("to", ""), message.get("type"), message.get("text", "")
    if message.get("from") != SENDER:
        return "1062", "발신번호 미등록"
    if not isinstance(to, str) or not _MOBILE.fullmatch(to):
        return "1011", "수신번호 형식 오류"
    if to in behaviour.opted_out:
        return "1061", "080 수신거부"
    if not allow_duplicates and to in seen:
        return "1026", "중복 수신번호"
    seen.add(to)
    if kind in ("SMS", "LMS", "MMS"):
        try:
            size = len(text.encode("cp949"))
            # "EUC-KR(완성형 한글) 범위 안에 있는 문자만": a syllable outside KS X 1001 (똠) is refused too
            wansung = all(len(c.encode("euc-kr")) == 2 for c in set(text) if ord(c) >= 0x80)
        except UnicodeEncodeError:
            wansung = False
        if not wansung:
            return "1029", "EUC-KR 범위 밖의 문자"
        if kind == "SMS" and message.get("subject"):
            return "1013", "SMS는 제목을 가질 수 없습니다"
        if size > (90 if kind == "SMS" else 2000):
            return "1031", "메시지 길이 초과"
        if len((message.get("subject") or "").encode("cp949")) > 40:
            return "1014", "제목은 40byte까지"
    elif kind in ("ATA", "BMS_TEXT", "BMS_IMAGE", "CTA"):
        options = message.get("kakaoOptions") or {}
        if options.get("pfId") != PF_ID:
            return "1041", "유효하지 않은 채널"
        if any(len(str(b.get("linkMo") or b.get("linkMobile") or "")) > 100
               for b in [*(options.get("buttons") or []), *((options.get("bms") or {}).get("buttons") or [])]):
            return "1048", "버튼 URL은 최대 100자"
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


_STATUS_TEXT = {"2000": "정상 접수(이통사로 접수 예정)", "3000": "이통사 접수", "1062": "발신번호 미등록",
                "1011": "수신번호 형식 오류", "1061": "080 수신거부", "1026": "중복 수신번호", "1029": "EUC-KR 범위 밖의 문자",
                "1013": "SMS는 제목을 가질 수 없습니다", "1031": "메시지 길이 초과", "1014": "제목은 40byte까지",
                "1041": "유효하지 않은 채널", "1042": "유효하지 않은 템플릿", "1043": "템플릿 내용 불일치",
                "1048": "버튼 URL은 최대 100자"}


def _message_id(number: int) -> str:
    return f"M4V{number:012d}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


_GROUP = re.compile(r"/messages/v4/groups/([A-Za-z0-9]+)(/messages|/send)?/?")


def _step(method: str, path: str) -> tuple[str, str] | None:
    """(step, group id) of a request, or None when no endpoint answers it."""
    if path.rstrip("/") == "/messages/v4/groups" and method == "POST":
        return "create", ""
    if path == "/messages/v4/send-many/detail" and method == "POST":
        return "send-many", ""
    match = _GROUP.fullmatch(path)
    if not match:
        return None
    group, tail = match.groups()
    step = {("PUT", "/messages"): "add", ("POST", "/send"): "send", ("GET", None): "group",
            ("GET", "/messages"): "messages", ("DELETE", None): "delete"}.get((method, tail))
    return (step, group) if step else None


def _messages(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _Refused(400, "ValidationError", "messages must be a list of message objects")
    if len(messages) > MAX_PER_REQUEST:
        raise _Refused(400, "ValidationError", f"at most {MAX_PER_REQUEST} messages per request, not {len(messages)}")
    return messages


def _register(server: SolapiServer, group: Group, body: bytes, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check ``messages`` (decoded from ``body``) and store them in ``group`` (under the lock); the result
    of each, as a PUT answers it."""
    group.bodies.append(body)
    number, results = len(group.bodies) - 1, []
    for position, message in enumerate(messages):
        status = _status(message, server.behaviour, group.recipients, group.allow_duplicates)
        code, text = status or ("2000", _STATUS_TEXT["2000"])
        server.numbered += 1
        fields = message.get("customFields")
        group.records.append((server.numbered, code, str(fields.get("shopcrmKey", "")) if isinstance(fields, dict) else "",
                              number, position))
        if status:
            group.failed += 1
        else:
            group.registered += 1
        results.append({"to": message.get("to"), "from": message.get("from"), "type": message.get("type"), "country": "82",
                        "messageId": _message_id(server.numbered), "statusCode": code, "statusMessage": text,
                        "accountId": "12925149", "customFields": fields})
    return results


def _process(server: SolapiServer, step: str, group_id: str, body: bytes, query: str) -> dict[str, Any]:
    """Do what the request asks and return the answer; raises _Refused for an error answer."""
    request = json.loads(body) if body else {}
    if not isinstance(request, dict):
        raise _Refused(400, "ValidationError", "the body must be a JSON object")
    with server.lock:
        if step == "create":
            group = Group(group_id=f"G4V{len(server.groups) + 1:012d}", created=_now(),
                          allow_duplicates=bool(request.get("allowDuplicates")))
            server.groups[group.group_id] = group
            return group.info()
        if step == "send-many":
            group = Group(group_id=f"G4V{len(server.groups) + 1:012d}", created=_now(),
                          allow_duplicates=bool(request.get("allowDuplicates")))
            server.groups[group.group_id] = group
            results = _register(server, group, body, _messages(request))
            taken = [r for r in results if r["statusCode"] == "2000"]
            failed = [r for r in results if r["statusCode"] != "2000"]
            _send(server, group)
            return {"groupInfo": group.info(), "failedMessageList": failed,
                    "messageList": taken if request.get("showMessageList") else []}
        group = server.groups.get(group_id)
        if group is None:
            raise _Refused(404, "NotFound", f"no message group {group_id}")
        if step == "add":
            if group.status != "PENDING":
                raise _Refused(400, "InvalidGroupStatus", f"messages can only be added to a PENDING group, not {group.status}")
            results = _register(server, group, body, _messages(request))
            return {"errorCount": sum(r["statusCode"] != "2000" for r in results), "resultList": results}
        if step == "send":
            if group.status != "PENDING":
                raise _Refused(400, "InvalidGroupStatus", f"a {group.status} group cannot be sent")
            _send(server, group)
            return group.info()
        if step == "group":
            return group.info()
        if step == "delete":
            group.status = "DELETED"
            return group.info()
        # messages: a page from startKey
        params = parse_qs(query)
        try:
            limit = min(max(int(params.get("limit", ["20"])[0]), 1), MAX_PAGE)
        except ValueError:
            raise _Refused(400, "ValidationError", "limit must be a number") from None
        start, size = 0, len(group.records)
        if params.get("startKey"):  # a message id: the numbers grow along the group
            try:
                number = int(params["startKey"][0].removeprefix("M4V"))
            except ValueError:
                raise _Refused(400, "ValidationError", "startKey is not a message id") from None
            start = bisect.bisect_left(group.records, number, key=lambda record: record[0])
        parsed: dict[tuple[str, int], list[dict[str, Any]]] = {}
        page = [group.message(i, parsed) for i in range(start, min(start + limit, size))]
        after = start + limit
        return {"startKey": params.get("startKey", [None])[0], "limit": limit,
                "nextKey": _message_id(group.records[after][0]) if after < size else None,
                "messageList": {m["messageId"]: m for m in page}}


def _send(server: SolapiServer, group: Group) -> None:
    """Send ``group``'s registered messages (under the lock): each one is recorded as sent."""
    group.status, group.sent_at = "SENDING", _now()
    for index, (number, code, key, body, position) in enumerate(group.records):
        if code == "2000":
            group.records[index] = (number, "3000", key, body, position)
            server.sent.append((group, index))


def _handler(server: SolapiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            b = server.behaviour
            url = urlsplit(self.path)
            if url.path == "/_loopback/sent":  # for a server in another process: what it sent (not Solapi's API)
                with server.lock:
                    keys = server.keys()
                return self._answer(200, {"sent": len(keys), "unique": len(set(keys))})
            found = _step(method, url.path)
            with server.lock:
                count = server.requests
                server.requests += 1
                fault = b.faults.next(found[0]) if found else None
            if fault == "drop_before":  # closed before the body is read: nothing was processed
                self.close_connection = True
                self.connection.close()
                return None
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with server.lock:
                problem = _check_auth(server, self.headers.get("Authorization", ""))
            if found is None:
                return self._answer(404, {"errorCode": "NotFound", "errorMessage": f"{method} {url.path}"})
            if problem:
                with server.lock:
                    server.auth_failures.append(problem)
                return self._answer(403, {"errorCode": problem, "errorMessage": problem})
            if fault in ("503", "429"):  # answered before processing
                self._fault(0, 0, 1, (b.retry_after or 1.0) if fault == "429" else None)
                return None
            if self._fault(count, b.drop_first, b.fail_first, b.retry_after):
                return None
            try:
                status, answer = 200, _process(server, found[0], found[1], body, url.query)
            except _Refused as refused:
                status, answer = refused.status, {"errorCode": refused.code, "errorMessage": str(refused)}
            except ValueError as error:
                status, answer = 400, {"errorCode": "ValidationError", "errorMessage": str(error)}
            if count < b.slow_first:
                time.sleep(b.slow_seconds)
            if b.delay_all:
                time.sleep(b.delay_all)
            if fault == "drop_after":  # processed, then the connection drops before the answer
                self.close_connection = True
                self.connection.close()
                return None
            if fault == "500_after":
                return self._answer(500, {"errorCode": "InternalError", "errorMessage": "bad gateway after processing"})
            if fault == "503_after":  # a load balancer gave up waiting for the answer of a request Solapi took
                return self._answer(503, {"errorCode": "ServiceUnavailable", "errorMessage": "upstream timed out"})
            return self._answer(status, answer)

    return Handler


@contextmanager
def solapi_server(behaviour: SolapiBehaviour | None = None) -> Iterator[SolapiServer]:
    server = SolapiServer(behaviour or SolapiBehaviour())
    with serve(_handler(server)) as url:
        server.url = url
        yield server


if __name__ == "__main__":  # a server in its own process (benchmarks): python tests/solapi_server.py [PORT]
    import sys
    from http.server import ThreadingHTTPServer

    http = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0),
                               _handler(SolapiServer(SolapiBehaviour())))
    http.daemon_threads = True
    print(f"http://127.0.0.1:{http.server_address[1]}", flush=True)
    http.serve_forever()
