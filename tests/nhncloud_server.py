"""A loopback stand-in for NHN Cloud's SMS API v3.0, written from the project's provider notes (the fact
sheet's section 4.2; docs/channels.md, "NHN Cloud (SMS)"):
``POST /sms/v3.0/appKeys/{appKey}/sender/{sms|mms|ad-sms|ad-mms}`` with ``X-Secret-Key``, answered
``{"header": {...}, "body": {"data": {"requestId", "statusCode", "senderGroupingKey", "sendResultList": [...]}}}``.

What it checks, with NHN's codes: the app key in the path (``-1000``, answered HTTP 200 with ``isSuccessful:
false``, as NHN may), a registered sender number (``-2312``; a blocked one ``-2313``), 1 to 1,000 recipients
(``-2018``, ``-2016``), the body's characters (EUC-KR's 완성형 only, so no emoji and no ``똠``: ``-2023``) and CP949
bytes (SMS 90, LMS/MMS 2,000, title 40: ``-2015``), an advertising body's ``(광고)`` first and 080 line last
(``-6003``), a title on LMS/MMS and a body (``-2014``, from NHN's result-code table); per recipient, the number's
format (``-2019``) and, on the advertising endpoints, the 080 opt-out list (``-6001``).  A request refused as a
whole answers ``isSuccessful: false`` and sends nothing; recipient refusals are answered per recipient in a
successful request.  Guesses where the notes say nothing: a wrong ``X-Secret-Key``
answers HTTP 401 (with no NHN code), and the opt-out list applies only to the ``ad-`` endpoints.

Faults, per send request in arrival order (``NhnBehaviour.faults[n]`` for the n-th request; None: none):
``drop_before`` (the connection is closed before the body is read: nothing processed), ``503`` and ``429`` (answered
before processing, with ``Retry-After`` when ``retry_after`` is set), ``drop_after`` (processed, then the connection
is closed: the answer is lost), ``500_after`` (processed, then a proxy's 500), ``fail:<code>`` (not processed:
HTTP 200 with ``isSuccessful: false`` and that code, no recipient list).

``server.sent`` lists every recipient NHN took (a message sent twice appears twice), with its
``recipientGroupingKey``; ``server.keys()`` those keys in order.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import attrs

from loopback import JSONHandler, serve

APP_KEY, SECRET_KEY, SEND_NO = "nhn-app-key-0001", "nhn-secret-key-0001", "15881234"
#: the faults a request can meet (and ``fail:<code>``)
FAULTS = ("drop_before", "503", "429", "drop_after", "500_after")
_PATH = re.compile(r"/sms/v3\.0/appKeys/([^/]+)/sender/(sms|mms|ad-sms|ad-mms)")
_MOBILE = re.compile(r"01[016789][0-9]{7,8}")
_OPT_OUT_LINE = re.compile(r"(무료수신거부|무료거부)080-?[0-9]{3,4}-?[0-9]{4}")


@attrs.define
class NhnBehaviour:
    opted_out: set[str] = attrs.field(factory=set)  # numbers registered with the 080 opt-out service
    blocked_send_no: set[str] = attrs.field(factory=set)
    faults: list[str | None] = attrs.field(factory=list)
    retry_after: float | None = None

    def __attrs_post_init__(self) -> None:
        wrong = [f for f in self.faults if f is not None and f not in FAULTS and not re.fullmatch(r"fail:-?[0-9]+", f)]
        if wrong:  # a misspelt fault would be no fault, and the test using it would prove nothing
            raise ValueError(f"unknown faults {wrong}; use {FAULTS} or fail:<code>")


@attrs.define
class NhnServer:
    behaviour: NhnBehaviour
    url: str = ""
    requests: list[dict[str, Any]] = attrs.field(factory=list)  # every request: path, headers, body, fault, processed
    sent: list[dict[str, Any]] = attrs.field(factory=list)  # every recipient taken, in order (a resend twice)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    _numbered: int = 0

    def keys(self) -> list[str]:
        """The recipientGroupingKey of every recipient taken, in order."""
        return [str(s["recipientGroupingKey"]) for s in self.sent]

    def next_request_id(self) -> str:
        self._numbered += 1
        return f"20261125100000NHN{self._numbered:08d}"


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _answer(code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"header": {"isSuccessful": code == 0, "resultCode": code, "resultMessage": message}}
    if data is not None:
        answer["body"] = {"data": data}
    return answer


def _euc_kr(text: str) -> bool:
    """Whether every character is in EUC-KR's KS X 1001 (CPython spells a CP949-only syllable in 8 bytes)."""
    try:
        return all(len(c.encode("euc-kr")) == 2 for c in set(text) if ord(c) >= 0x80)
    except UnicodeEncodeError:
        return False


def _check(product: str, request: dict[str, Any], behaviour: NhnBehaviour) -> None:
    """Refuse the request as a whole (raises _Refused) for what NHN checks before any recipient."""
    send_no = request.get("sendNo")
    if send_no in behaviour.blocked_send_no:
        raise _Refused(-2313, "This sendno is blocked.")
    if send_no != SEND_NO:
        raise _Refused(-2312, "Not regist sendno.")
    recipients = request.get("recipientList")
    if not isinstance(recipients, list) or not recipients:
        raise _Refused(-2018, "RecipientNo can not be empty.")
    if len(recipients) > 1000:
        raise _Refused(-2016, "The max recipient size is 1000.")
    body, title = request.get("body"), request.get("title")
    if not isinstance(body, str) or not body.strip() or (product.endswith("mms") and not (isinstance(title, str) and title)):
        raise _Refused(-2014, "Title or body is empty.")  # NHN's result-code table: -2014, title or body empty
    if not _euc_kr(body + (title or "")):
        raise _Refused(-2023, "Unacceptable characters in title and body")
    limit = 90 if product.endswith("sms") else 2000
    if len(body.encode("cp949")) > limit or len((title or "").encode("cp949")) > 40:
        raise _Refused(-2015, "Title or Body exceed maximum byte.")
    if product.startswith("ad-"):
        lines = [line for line in body.splitlines() if line.strip()]
        if not body.startswith("(광고)") or not _OPT_OUT_LINE.fullmatch(re.sub(r"[\s\[\]]", "", lines[-1])):
            raise _Refused(-6003, "The body must contain block guide ment.")


def _process(server: NhnServer, product: str, request: dict[str, Any]) -> dict[str, Any]:
    """Take the request (under the lock): each recipient's result, the taken ones recorded as sent."""
    _check(product, request, server.behaviour)
    request_id = server.next_request_id()
    results = []
    for seq, recipient in enumerate(request["recipientList"], start=1):
        number = recipient.get("recipientNo") if isinstance(recipient, dict) else None
        key = recipient.get("recipientGroupingKey") if isinstance(recipient, dict) else None
        if not number:
            code, text = -2018, "RecipientNo can not be empty."
        elif not _MOBILE.fullmatch(str(number)):
            code, text = -2019, "RecipientNo is invalid."
        elif product.startswith("ad-") and number in server.behaviour.opted_out:
            code, text = -6001, "Recipient Number is refused."
        else:
            code, text = 0, "SUCCESS"
            server.sent.append({"recipientGroupingKey": key, "recipientNo": number, "product": product,
                                "body": request["body"], "title": request.get("title"),
                                "attachFileIdList": request.get("attachFileIdList"), "sendNo": request["sendNo"],
                                "senderGroupingKey": request.get("senderGroupingKey"), "requestId": request_id,
                                "recipientSeq": seq})
        results.append({"recipientNo": number, "resultCode": code, "resultMessage": text, "recipientSeq": seq,
                        "recipientGroupingKey": key})
    taken = any(r["resultCode"] == 0 for r in results)
    return _answer(0, "SUCCESS", {"requestId": request_id, "statusCode": "2" if taken else "3",
                                  "senderGroupingKey": request.get("senderGroupingKey"), "sendResultList": results})


def _handler(server: NhnServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def do_POST(self) -> None:
            b = server.behaviour
            match = _PATH.fullmatch(self.path)
            with server.lock:
                count = len(server.requests)
                fault = b.faults[count] if count < len(b.faults) else None
                record: dict[str, Any] = {"path": self.path, "headers": dict(self.headers.items()), "fault": fault,
                                          "processed": False, "body": None}
                server.requests.append(record)
            if fault == "drop_before":  # closed before the body is read: nothing was processed
                self.close_connection = True
                self.connection.close()
                return None
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if match is None:
                return self._answer(404, {"error": "Not Found", "path": self.path})
            if self.headers.get("X-Secret-Key") != SECRET_KEY:
                return self._answer(401, {"error": "Unauthorized", "message": "X-Secret-Key does not match"})
            if fault in ("503", "429"):  # answered before processing
                headers = {"Retry-After": f"{b.retry_after:g}"} if b.retry_after is not None else {}
                return self._answer(int(fault), {"error": "busy"}, headers)
            if fault and fault.startswith("fail:"):  # refused as a whole, nothing processed
                return self._answer(200, _answer(int(fault.removeprefix("fail:")), "refused (fault)"))
            app_key, product = match.groups()
            try:
                request = json.loads(raw)
            except ValueError:
                return self._answer(200, _answer(-9997, "Invalid API parameters."))
            record["body"] = request
            if app_key != APP_KEY:
                return self._answer(200, _answer(-1000, "Invalid appKey."))
            with server.lock:
                try:
                    answer = _process(server, product, request)
                    record["processed"] = True
                except _Refused as refused:
                    answer = _answer(refused.code, str(refused))
            if fault == "drop_after":  # taken; the answer never leaves
                self.close_connection = True
                self.connection.close()
                return None
            if fault == "500_after":
                return self._answer(500, {"error": "Internal Server Error"})
            return self._answer(200, answer)

    return Handler


@contextmanager
def nhn_server(behaviour: NhnBehaviour | None = None) -> Iterator[NhnServer]:
    """The stand-in on a free loopback port for the duration of the block."""
    server = NhnServer(behaviour or NhnBehaviour())
    with serve(_handler(server)) as url:
        server.url = url
        yield server
