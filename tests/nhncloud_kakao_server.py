"""A loopback stand-in for NHN Cloud's KakaoTalk Bizmessage API, written from the project's provider notes (the fact
sheet's section 4.3, and the Kakao products' rules): AlimTalk v2.3's substitution send,
``POST /alimtalk/v2.3/appkeys/{appkey}/messages``, and Brand Message v1.0's free-form send,
``POST /brand-message/v1.0/appkeys/{appkey}/freestyle-messages``, with ``X-Secret-Key`` and the optional
``X-NC-API-IDEMPOTENCY-KEY``, answered ``{"header": {...}, "message": {"requestId", "senderGroupingKey",
"sendResults": [...]}}``.

What it checks, with NHN's codes:

- the app key in the path (``-1000``) and ``X-Secret-Key`` (``-1001``), answered HTTP 200 with ``isSuccessful: false``;
- the idempotency header: a key seen within 10 minutes (of the server's clock, counted from the request that used it
  first) answers ``-1005`` and sends nothing; a key is recorded by every request that passes the app and secret keys,
  whatever became of it (a request dropped before its body was read, or answered 503/429, records nothing);
- the sender key (``-2000``, field validation), 1 to 1,000 recipients (``-2000``), NHN's SMS substitution requested
  from an unregistered number (``-1003``);
- AlimTalk, per recipient: the template (``TEMPLATES``: code -> body with ``#{var}``; unknown ``3015``, stopped
  ``4133``), the ``templateParameter`` keys against the template's variables (``4132``), the substituted body against
  Kakao's 1,000 characters (``3016``: it no longer fits the template); the number (``3008``), non-KakaoTalk users
  (``3019``);
- Brand Message: the bubble type (``TEXT``) and content (1 to 1,300 characters: ``-2000``), at most 5 buttons
  (``-3217``), each ``WL`` with ``linkMo``; per recipient the targeting (``I``/``M``/``N``, else ``1030``; ``M``/``N``
  only for a licensed channel, else ``1028``; ``M``/``N`` need an ``unsubscribeNo``: ``-2000``), the number, the
  non-users, and Kakao's hours: the server's clock in Asia/Seoul outside 08:00-20:50 answers ``3022``.

``KakaoBehaviour.kakao_codes`` forces a Kakao result code for a number (those the stand-in cannot derive: ``3018``,
``3020``, ``3025``, ``3027``, ``1030``, ...).  Guesses where the notes say nothing: the recipient's success code is
``0``, the Kakao codes are answered per recipient in a successful request, and the idempotency key is recorded before
the request's own validation.

Faults, per send request in arrival order (``faults[n]``): ``drop_before`` (closed before the body is read),
``503``/``429`` (answered before processing, ``Retry-After`` when set), ``drop_after`` (processed, then the connection
is closed), ``500_after`` (processed, then a 500), ``fail:<code>`` (not processed: ``isSuccessful: false``).

``server.sent`` lists every recipient taken (a message sent twice appears twice); ``server.now`` is its clock (aware;
move it with :meth:`KakaoServer.advance`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from loopback import JSONHandler, serve

APP_KEY, SECRET_KEY = "nhn-kakao-app-0001", "nhn-kakao-secret-0001"
SENDER_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, as NHN's
SEND_NO, UNSUBSCRIBE_NO = "15881234", "0801234567"
KST = ZoneInfo("Asia/Seoul")
TEMPLATES = {
    "ORDER_SHIPPED": "#{name}님, 주문하신 상품이 발송되었습니다.\n송장번호: #{invoice}",
    "WELCOME": "#{name}님, 가입을 환영합니다.",
}
WINDOW = timedelta(minutes=10)
FAULTS = ("drop_before", "503", "429", "drop_after", "500_after")
_ALIMTALK = re.compile(r"/alimtalk/v2\.3/appkeys/([^/]+)/messages")
_BRAND = re.compile(r"/brand-message/v1\.0/appkeys/([^/]+)/freestyle-messages")
_MOBILE = re.compile(r"01[016789][0-9]{7,8}")
_VARIABLE = re.compile(r"#\{([^}]+)\}")


@attrs.define
class KakaoBehaviour:
    templates: dict[str, str] = attrs.field(factory=lambda: dict(TEMPLATES))
    stopped: set[str] = attrs.field(factory=set)  # stopped template codes (4133)
    non_users: set[str] = attrs.field(factory=set)  # numbers that are not KakaoTalk users (3019)
    kakao_codes: dict[str, int] = attrs.field(factory=dict)  # a Kakao result code forced for a number
    licensed: bool = False  # the channel may target M/N (marketing-consent users who are not friends)
    faults: list[str | None] = attrs.field(factory=list)
    retry_after: float | None = None

    def __attrs_post_init__(self) -> None:
        wrong = [f for f in self.faults if f is not None and f not in FAULTS and not re.fullmatch(r"fail:-?[0-9]+", f)]
        if wrong:
            raise ValueError(f"unknown faults {wrong}; use {FAULTS} or fail:<code>")


@attrs.define
class KakaoServer:
    behaviour: KakaoBehaviour
    url: str = ""
    now: datetime = datetime(2026, 11, 25, 10, 0, tzinfo=KST)
    requests: list[dict[str, Any]] = attrs.field(factory=list)  # path, headers, body, fault, processed, answer
    sent: list[dict[str, Any]] = attrs.field(factory=list)
    idempotency: dict[str, datetime] = attrs.field(factory=dict)  # key -> when it was first used (in its window)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    _numbered: int = 0

    def keys(self) -> list[str]:
        return [str(s["recipientGroupingKey"]) for s in self.sent]

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def next_request_id(self) -> str:
        self._numbered += 1
        return f"20261125100000KKO{self._numbered:08d}"


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _answer(code: int, message: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"header": {"resultCode": code, "resultMessage": message, "isSuccessful": code == 0}}
    if body is not None:
        answer["message"] = body
    return answer


def _recipients(request: dict[str, Any]) -> list[Any]:
    if request.get("senderKey") != SENDER_KEY:
        raise _Refused(-2000, "Invalid senderKey.")
    recipients = request.get("recipientList")
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= 1000:
        raise _Refused(-2000, "recipientList must hold 1 to 1,000 recipients.")
    for recipient in recipients:
        resend = recipient.get("resendParameter") if isinstance(recipient, dict) else None
        if isinstance(resend, dict) and resend.get("isResend") and resend.get("resendSendNo") != SEND_NO:
            raise _Refused(-1003, "Invalid Sms Sendno")
    return recipients


def _alimtalk(server: KakaoServer, request: dict[str, Any], recipient: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    """One AlimTalk recipient's Kakao code, message and what was sent."""
    b = server.behaviour
    template = b.templates.get(str(request.get("templateCode")))
    if template is None:
        return 3015, "Template not found.", {}
    if request.get("templateCode") in b.stopped:
        return 4133, "Template is stopped.", {}
    parameters = recipient.get("templateParameter") or {}
    if not isinstance(parameters, dict) or set(parameters) != set(_VARIABLE.findall(template)):
        return 4132, "Template parameters do not match the template's variables.", {}
    content = _VARIABLE.sub(lambda m: str(parameters[m.group(1)]), template)
    if len(content) > 1000:
        return 3016, "The content does not match the template.", {}
    return 0, "SUCCESS", {"templateCode": request["templateCode"], "content": content,
                          "resendParameter": recipient.get("resendParameter")}


def _brand_check(request: dict[str, Any]) -> None:
    content = request.get("content")
    if request.get("chatBubbleType") != "TEXT" or not isinstance(content, str) or not 1 <= len(content) <= 1300:
        raise _Refused(-2000, "chatBubbleType TEXT needs content of 1 to 1,300 characters.")
    buttons = request.get("buttons") or []
    if len(buttons) > 5:
        raise _Refused(-3217, "Too many buttons.")
    if any(b.get("type") != "WL" or not b.get("name") or not b.get("linkMo") for b in buttons):
        raise _Refused(-2000, "A WL button needs name and linkMo.")
    for recipient in request["recipientList"]:
        if recipient.get("targeting") in ("M", "N") and not (recipient.get("unsubscribeNo") or request.get("unsubscribeNo")):
            raise _Refused(-2000, "unsubscribeNo is required for targeting M/N.")


def _brand(server: KakaoServer, request: dict[str, Any], recipient: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    targeting = recipient.get("targeting")
    if targeting not in ("I", "M", "N"):
        return 1030, "Invalid parameter: targeting.", {}
    if targeting in ("M", "N") and not server.behaviour.licensed:
        return 1028, "Targeting option is not allowed.", {}
    local = server.now.astimezone(KST).time()
    if not time(8) <= local < time(20, 50):
        return 3022, "It is not the time to send (08:00-20:50).", {}
    return 0, "SUCCESS", {"content": request["content"], "chatBubbleType": request["chatBubbleType"],
                          "buttons": request.get("buttons"), "targeting": targeting,
                          "unsubscribeNo": recipient.get("unsubscribeNo") or request.get("unsubscribeNo")}


def _process(server: KakaoServer, product: str, request: dict[str, Any], key: str) -> dict[str, Any]:
    """Take the request (under the lock): each recipient's result, the taken ones recorded as sent."""
    recipients = _recipients(request)
    if product == "brand_message":
        _brand_check(request)
    request_id = server.next_request_id()
    results = []
    for seq, recipient in enumerate(recipients, start=1):
        number = str(recipient.get("recipientNo") or "")
        grouping = recipient.get("recipientGroupingKey")
        if not _MOBILE.fullmatch(number):
            code, text, sent = 3008, "Invalid phone number.", {}
        elif number in server.behaviour.kakao_codes:
            code, text, sent = server.behaviour.kakao_codes[number], "forced", {}
        elif number in server.behaviour.non_users:
            code, text, sent = 3019, "Not a KakaoTalk user.", {}
        elif product == "alimtalk":
            code, text, sent = _alimtalk(server, request, recipient)
        else:
            code, text, sent = _brand(server, request, recipient)
        if code == 0:
            server.sent.append({"recipientGroupingKey": grouping, "recipientNo": number, "product": product,
                                "requestId": request_id, "recipientSeq": seq, "idempotencyKey": key,
                                "senderGroupingKey": request.get("senderGroupingKey"), **sent})
        results.append({"recipientSeq": seq, "recipientNo": number, "resultCode": code, "resultMessage": text,
                        "recipientGroupingKey": grouping})
    return _answer(0, "SUCCESS", {"requestId": request_id, "senderGroupingKey": request.get("senderGroupingKey"),
                                  "sendResults": results})


def _handler(server: KakaoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def do_POST(self) -> None:
            b = server.behaviour
            alimtalk, brand = _ALIMTALK.fullmatch(self.path), _BRAND.fullmatch(self.path)
            with server.lock:
                count = len(server.requests)
                fault = b.faults[count] if count < len(b.faults) else None
                record: dict[str, Any] = {"path": self.path, "headers": dict(self.headers.items()), "fault": fault,
                                          "processed": False, "body": None, "answer": None}
                server.requests.append(record)
            if fault == "drop_before":  # closed before the body is read: nothing was processed
                self.close_connection = True
                self.connection.close()
                return None
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            match = alimtalk or brand
            if match is None:
                return self._answer(404, {"error": "Not Found", "path": self.path})
            if fault in ("503", "429"):
                headers = {"Retry-After": f"{b.retry_after:g}"} if b.retry_after is not None else {}
                return self._answer(int(fault), {"error": "busy"}, headers)
            if fault and fault.startswith("fail:"):
                return self._answer(200, _answer(int(fault.removeprefix("fail:")), "refused (fault)"))
            try:
                request = json.loads(raw)
            except ValueError:
                return self._answer(200, _answer(-2000, "Invalid request body."))
            record["body"] = request
            if match.group(1) != APP_KEY:
                return self._answer(200, _answer(-1000, "Invalid appKey."))
            if self.headers.get("X-Secret-Key") != SECRET_KEY:
                return self._answer(200, _answer(-1001, "Invalid secretKey."))
            key = self.headers.get("X-NC-API-IDEMPOTENCY-KEY", "")
            with server.lock:
                first = server.idempotency.get(key) if key else None
                if first is not None and server.now - first < WINDOW:
                    answer = _answer(-1005, "The same 'X-NC-API-IDEMPOTENCY-KEY' was used within the last 10 minute.")
                else:
                    if key:
                        server.idempotency[key] = server.now
                    try:
                        answer = _process(server, "alimtalk" if alimtalk else "brand_message", request, key)
                        record["processed"] = True
                    except _Refused as refused:
                        answer = _answer(refused.code, str(refused))
                record["answer"] = answer
            if fault == "drop_after":  # taken; the answer never leaves
                self.close_connection = True
                self.connection.close()
                return None
            if fault == "500_after":
                return self._answer(500, {"error": "Internal Server Error"})
            return self._answer(200, answer)

    return Handler


@contextmanager
def kakao_server(behaviour: KakaoBehaviour | None = None) -> Iterator[KakaoServer]:
    """The stand-in on a free loopback port for the duration of the block."""
    server = KakaoServer(behaviour or KakaoBehaviour())
    with serve(_handler(server)) as url:
        server.url = url
        yield server
