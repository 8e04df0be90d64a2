"""NHN Cloud SMS (API v3.0): SMS, LMS and MMS, informational and advertising.

Each message is one request, ``POST /sms/v3.0/appKeys/{appKey}/sender/{sms|mms|ad-sms|ad-mms}`` with the
header ``X-Secret-Key``: ``sms`` for an SMS, ``mms`` for an LMS or MMS (``title``, and ``attachFileIdList`` for an
MMS's image), the ``ad-`` endpoints for advertising, whose body NHN checks starts with ``(광고)`` and ends with
``무료수신거부 080...`` or ``무료거부 080...``.  The message's idempotency key goes as the recipient's
``recipientGroupingKey``, which NHN echoes per recipient in its answer (and in its result searches and webhooks).

NHN answers ``{"header": {"isSuccessful", "resultCode", "resultMessage"}, "body": {"data": {"requestId",
"sendResultList": [{"recipientNo", "resultCode", "recipientSeq", "recipientGroupingKey"}]}}}``, HTTP 200 even
when the request failed (``isSuccessful: false``): the header decides, then the recipient's own ``resultCode``.
A taken message is :class:`~shopcrm.channels.Accepted` with ``"{requestId}:{recipientSeq}"`` as its provider id;
a refusal code rejects (an invalid number, a 080 opt-out, which is marked ``opted_out``, content NHN refuses, an
unregistered or blocked sender number, a bad app key); the organisation's monthly quota (``-2052``) is transient.

A request that certainly did not reach NHN (connection refused, a connect or pool timeout) and a ``429`` or ``503``
answer are :class:`~shopcrm.channels.Transient` (``Retry-After`` honoured).  A request whose answer was lost (a
read timeout, a connection closed or reset after the request went out, an unreadable answer, another ``5xx``) is
:class:`~shopcrm.channels.Ambiguous`: NHN keeps no idempotency key for SMS, so sending it again could send a second
text, and this channel has no way to look a message up afterwards, so :meth:`~shopcrm.channels.Channel.reconcile`
answers None (unknown) for every message: the dispatcher ends it ``unknown`` and never resends it.

Facts and codes: the provider notes in ``docs/channels.md`` (NHN Cloud's SMS API guide, v3.0).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from shopcrm.campaigns._korean import cp949_length, outside_ks_x_1001
from shopcrm.campaigns._templates import LIMITS
from shopcrm.channels._base import Accepted, Ambiguous, Channel, Message, Rejected, SendResult, Transient
from shopcrm.channels.webhook import _retry_after

__all__ = ["NHN_SMS_URL", "NhnCloudSmsChannel"]

NHN_SMS_URL = "https://sms.api.nhncloudservice.com"
#: the longest ``recipientGroupingKey`` and ``senderGroupingKey`` NHN takes (its API guide: 100 characters)
_GROUPING_KEY_CHARS = 100
#: a Korean mobile number, digits only (010, and the older 011/016/017/018/019 ranges)
_MOBILE = re.compile(r"01[016789][0-9]{7,8}")
#: the last line of an advertising text NHN accepts, once spaces and brackets are removed: 무료수신거부 or 무료거부,
#: then the 080 number (NHN: "해당 문구에는 공백이 포함될 수 있습니다"; its example writes ``[무료 수신거부]080XXXXXXX``)
_OPT_OUT_LINE = re.compile(r"(무료수신거부|무료거부)080-?[0-9]{3,4}-?[0-9]{4}")
_AD_PREFIX = "(광고)"
#: API result codes that refuse the message for good on this channel: (what it means, whether it is an opt-out)
_REJECTED: dict[str, tuple[str, bool]] = {
    # an authentication or configuration error is the same for every message, and no retry mends it: like Solapi's
    # refused signatures (a 4xx), it rejects, so the chain moves on and the reason names the setting to fix
    "-1000": ("invalid appKey", False),
    "-2018": ("the recipient number is empty", False),
    "-2019": ("the recipient number is invalid", False),
    "-2015": ("the title or body exceeds its bytes", False),
    "-2023": ("the title or body has characters NHN does not accept (emoji, outside EUC-KR)", False),
    "-2016": ("more than 1,000 recipients", False),
    "-2312": ("the sender number (sendNo) is not registered", False),
    "-2313": ("the sender number (sendNo) is blocked", False),
    "-6001": ("the recipient opted out (080)", True),
    "-6003": ("the advertising body lacks the opt-out line (무료수신거부 080...)", False),
    "-8000": ("an authentication SMS without the authentication wording", False),
}
#: result codes worth retrying later: the organisation's monthly quota (raised by NHN's support, or next month)
_TRANSIENT: dict[str, str] = {"-2052": "the organisation's monthly sending quota is used up"}
#: "시스템 오류(예기치 못한 오류)" (NHN's result-code table): NHN may have stored the request before it failed
_UNSURE: dict[str, str] = {"-9999": "NHN's system error (unexpected)"}


def required_settings(product: str, given: Mapping[str, tuple[str | None, str]]) -> dict[str, str]:
    """Each setting (name -> (the argument, its environment variable)) from its argument, else the environment;
    a ValueError naming what is missing, or a secret key that cannot go in a header."""
    found = {name: value or os.environ.get(env, "") for name, (value, env) in given.items()}
    missing = [(name, env) for name, (_, env) in given.items() if not found[name]]
    if missing:
        raise ValueError(f"{product} needs {' and '.join(n for n, _ in missing)}: pass "
                         f"{'it' if len(missing) == 1 else 'them'} or set {' and '.join(e for _, e in missing)}")
    if "secret_key" in found and not re.fullmatch(r"[\x21-\x7e]+", found["secret_key"]):
        raise ValueError("the NHN secret key must be printable ASCII without spaces (it is sent as a header)")
    return found


async def post(client: httpx.AsyncClient, url: str, build: Callable[[], Mapping[str, Any]],
               headers: Mapping[str, str]) -> SendResult | httpx.Response:
    """One request to NHN (its body made by ``build``), or the result that says why there is no answer to read:
    not built (Rejected), never left (Transient), or written and its answer lost (Ambiguous)."""
    try:
        content = json.dumps(build(), ensure_ascii=False).encode("utf-8")
    except (KeyError, TypeError, ValueError) as error:  # an unmapped image, a lone surrogate: validate says so
        return Rejected(f"the request cannot be built: {type(error).__name__}: {error}", code="invalid")
    try:
        return await client.post(url, content=content, headers=dict(headers))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as error:
        return Transient(f"not sent: {type(error).__name__}: {error}", code="connection")
    except httpx.TimeoutException as error:  # written, then no answer in time
        return Ambiguous(f"no answer after the request was sent: {type(error).__name__}", code="timeout")
    except httpx.TransportError as error:  # written (maybe wholly), then the connection failed
        return Ambiguous(f"connection failed after the request was sent: {type(error).__name__}: {error}",
                         code="connection")


def read_answer(
    response: httpx.Response, status_of: Callable[[str, str], SendResult],
) -> tuple[dict[str, Any], dict[str, Any]] | SendResult:
    """NHN's JSON answer and its ``header`` (whose ``isSuccessful`` is a boolean), or the result the HTTP answer
    means: 429 or 503 answered before processing (Transient), another 5xx (Ambiguous), a refusal (``status_of``
    the code NHN gave, else the HTTP status), or an unreadable answer (Ambiguous)."""
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = None
    header = answer.get("header") if isinstance(answer, dict) else None
    if status in (429, 503):  # answered before processing: NHN did not take it
        return Transient(f"HTTP {status}: {response.text[:200]}", code=str(status), retry_after=_retry_after(response))
    if status >= 500:  # a proxy's or NHN's error after the request went in
        return Ambiguous(f"HTTP {status} (NHN may have taken the message): {response.text[:200]}", code=str(status))
    if not 200 <= status < 300:  # refused (a bad secret key, a malformed request): NHN's code when it gave one
        code = _code(header.get("resultCode")) if isinstance(header, dict) else ""
        reason = str(header.get("resultMessage") or "") if isinstance(header, dict) else response.text[:200]
        return status_of(code or str(status), f"HTTP {status}: {reason}")
    if not isinstance(answer, dict) or not isinstance(header, dict) or not isinstance(header.get("isSuccessful"), bool):
        return Ambiguous(f"unreadable answer (NHN may have taken the message): {response.text[:200]}", code="answer")
    return answer, header


def _digits(number: str) -> str:
    return re.sub(r"[^0-9]", "", number)


def _recipient(contact: str) -> str:
    """The contact as NHN's ``recipientNo``: digits, once spaces and hyphens are removed (anything else stays, so
    that :data:`_MOBILE` refuses it)."""
    return re.sub(r"[\s-]", "", contact)


def _file_id(value: str) -> int | str:
    """An attach-file id as NHN lists them (integers), or the configured value as it is."""
    return int(value) if value.isascii() and value.isdigit() else value


def _cut(text: str, limit: int) -> str:
    """The start of ``text`` within ``limit`` CP949 bytes (characters CP949 cannot encode are left out)."""
    out: list[str] = []
    used = 0
    for char in text:
        try:
            size = len(char.encode("cp949"))
        except UnicodeEncodeError:
            continue
        if used + size > limit:
            break
        out.append(char)
        used += size
    return "".join(out)


def _status(code: str, message: str) -> SendResult:
    """The result an NHN result code means for the message it concerns."""
    if code in _TRANSIENT:
        return Transient(f"NHN {code}: {_TRANSIENT[code]} ({message})", code=code)
    if code in _UNSURE:
        return Ambiguous(f"NHN {code}: {_UNSURE[code]} ({message}); it may have taken the message", code=code)
    meaning, opted_out = _REJECTED.get(code, ("refused", False))
    return Rejected(f"NHN {code}: {meaning} ({message})", code=code, opted_out=opted_out)


def _code(value: Any) -> str:
    """A result code as text (NHN answers integers; None and booleans are no code)."""
    return "" if value is None or isinstance(value, bool) else str(value)


class NhnCloudSmsChannel(Channel):
    """NHN Cloud's SMS API v3.0 for ``sms``, ``lms`` and ``mms``.

    ``app_key`` and ``secret_key`` come from the arguments or the environment (``NHN_SMS_APP_KEY``,
    ``NHN_SMS_SECRET_KEY``); ``send_no`` is the registered sender number (발신번호, ``NHN_SMS_SEND_NO``).
    ``image_ids`` maps an MMS ``image_url`` to the attach-file id NHN gave the uploaded image.  ``client``
    replaces the HTTP client (its timeout then applies; the channel does not close a client it was given).
    One request per message, at most :attr:`concurrency` at once within a batch.
    """

    name = "nhncloud"
    kinds = frozenset({"sms", "lms", "mms"})
    #: 100 messages per batch: at most 10 requests in flight, so a batch takes at most 10 rounds of ``timeout``,
    #: well within the dispatcher's lease
    batch_size = 100
    #: requests in flight at once within one :meth:`send`
    concurrency = 10

    def __init__(
        self,
        app_key: str | None = None,
        secret_key: str | None = None,
        send_no: str | None = None,
        *,
        base_url: str = NHN_SMS_URL,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        image_ids: Mapping[str, str] | None = None,
        rate_per_second: float | None = None,
    ) -> None:
        settings = required_settings("NHN Cloud SMS", {
            "app_key": (app_key, "NHN_SMS_APP_KEY"), "secret_key": (secret_key, "NHN_SMS_SECRET_KEY"),
            "send_no": (send_no, "NHN_SMS_SEND_NO"),
        })
        self.app_key, self.secret_key = settings["app_key"], settings["secret_key"]
        self.send_no = _digits(settings["send_no"])
        if not 8 <= len(self.send_no) <= 11:
            raise ValueError(f"send_no {settings['send_no']!r} is not a registered Korean number (8 to 11 digits)")
        self.base_url = base_url.rstrip("/")
        self.image_ids = dict(image_ids or {})
        self.rate_per_second = rate_per_second
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    # --------------------------------------------------------------- checks
    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        if not _MOBILE.fullmatch(_recipient(message.to)):
            problems.append(f"{message.to!r} is not a Korean mobile number (01X, 10 or 11 digits)")
        if not message.key or len(message.key) > _GROUPING_KEY_CHARS:
            problems.append(f"the key {message.key[:40]!r} cannot be NHN's recipientGroupingKey "
                            f"(1 to {_GROUPING_KEY_CHARS} characters)")
        if message.kind not in self.kinds:
            return problems
        if message.kind == "mms" and message.image_url not in self.image_ids:
            problems.append(f"the MMS image {message.image_url!r} has no NHN attach-file id: upload it and map it in "
                            "image_ids")
        if message.kind == "sms" and message.subject:
            problems.append("NHN's SMS has no title: a message with a subject goes as an LMS")
        if not message.text.strip():
            problems.append("the message has no text: NHN refuses an empty body")
        problems.extend(self._text_problems(message))
        if message.purpose == "advertising":
            problems.extend(_ad_problems(message.text))
        return problems

    @staticmethod
    def _text_problems(message: Message) -> list[str]:
        """What NHN would refuse in the text and subject: characters outside EUC-KR (-2023), bytes over the
        carriers' limits (-2015)."""
        kind = message.kind.upper()
        problems: list[str] = []
        limit = LIMITS["sms_bytes"] if message.kind == "sms" else LIMITS["lms_bytes"]
        parts = [("text", message.text, limit)]
        if message.subject:
            parts.append(("subject", message.subject, LIMITS["subject_bytes"]))
        for part, text, most in parts:
            try:
                size = cp949_length(text)
            except ValueError as error:  # an emoji, ₩, ... (a lone surrogate too)
                problems.append(f"the {kind}'s {part} cannot go through NHN (error -2023): {error}")
                continue
            if size > most:
                problems.append(f"the {kind}'s {part} is {size:,} bytes (CP949); NHN takes at most {most:,} "
                                "(error -2015)")
        strict = outside_ks_x_1001(f"{message.text}{message.subject or ''}")
        if strict:
            problems.append(f"the {kind} has {', '.join(map(repr, strict))}, outside EUC-KR's KS X 1001 (완성형): NHN "
                            "sends EUC-KR and refuses it (error -2023); write the word another way, or send it by AlimTalk")
        return problems

    # ------------------------------------------------------------- requests
    def path(self, message: Message) -> str:
        """The endpoint for ``message``: ``sms`` or ``mms`` (LMS and MMS), ``ad-`` for advertising."""
        product = "sms" if message.kind == "sms" else "mms"
        prefix = "ad-" if message.purpose == "advertising" else ""
        return f"/sms/v3.0/appKeys/{quote(self.app_key, safe='')}/sender/{prefix}{product}"

    def body(self, message: Message) -> dict[str, Any]:
        """The request for ``message`` alone: its text, the sender number, and one recipient keyed by the
        message's idempotency key; an LMS/MMS's title is its subject, else its first line (cut to 40 bytes),
        as NHN requires one."""
        body: dict[str, Any] = {
            "body": message.text, "sendNo": self.send_no,
            "senderGroupingKey": (message.batch_ref or message.key)[:_GROUPING_KEY_CHARS],
            "recipientList": [{"recipientNo": _recipient(message.to), "recipientGroupingKey": message.key}],
        }
        if message.kind != "sms":
            body["title"] = _title(message)
        if message.kind == "mms":
            body["attachFileIdList"] = [_file_id(self.image_ids[message.image_url or ""])]
        return body

    def headers(self) -> dict[str, str]:
        return {"X-Secret-Key": self.secret_key, "Content-Type": "application/json;charset=UTF-8"}

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send each message of ``batch`` in its own request (at most :attr:`concurrency` at once)."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: Message) -> SendResult:
            async with gate:
                return await self._send_one(message)

        return list(await asyncio.gather(*(one(m) for m in batch)))

    async def _send_one(self, message: Message) -> SendResult:
        reply = await post(self._client, f"{self.base_url}{self.path(message)}", lambda: self.body(message), self.headers())
        return reply if not isinstance(reply, httpx.Response) else self._result(message, reply)

    @staticmethod
    def _result(message: Message, response: httpx.Response) -> SendResult:
        """What NHN's answer means for ``message``."""
        read = read_answer(response, _status)
        if not isinstance(read, tuple):
            return read
        answer, header = read
        body = answer.get("body")
        data = body.get("data") if isinstance(body, dict) else None
        items = data.get("sendResultList") if isinstance(data, dict) else None
        item = _item(message, items)
        text = str(header.get("resultMessage") or "")
        if not header["isSuccessful"]:  # the request failed: the recipient's own code, else the header's
            own = _code(item.get("resultCode")) if item is not None else ""
            if own not in ("", "0") and item is not None:
                return _status(own, str(item.get("resultMessage") or text))
            return _status(_code(header.get("resultCode")) or "failed", text)
        if item is None:
            return Ambiguous(f"NHN took the request but its answer does not list this message: {response.text[:200]}",
                             code="answer")
        code = _code(item.get("resultCode"))
        if code not in ("", "0"):
            return _status(code, str(item.get("resultMessage") or ""))
        request_id = str(data.get("requestId") or "") if isinstance(data, dict) else ""
        return Accepted(provider_id=f"{request_id}:{_code(item.get('recipientSeq'))}")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _title(message: Message) -> str:
    """The title of an LMS/MMS on NHN (which requires one): its subject, else its first line, cut to 40 bytes."""
    if message.subject and message.subject.strip():
        return message.subject
    first = next((line.strip() for line in message.text.splitlines() if line.strip()), "")
    return _cut(first, LIMITS["subject_bytes"])


def _ad_problems(text: str) -> list[str]:
    """What NHN's advertising endpoints refuse (-6003): the text must start with (광고) and end with the 080 line."""
    problems = []
    if not text.startswith(_AD_PREFIX):
        problems.append(f"an advertising text must start with {_AD_PREFIX} (NHN's ad-sms/ad-mms refuse it)")
    lines = [line for line in text.splitlines() if line.strip()]
    last = re.sub(r"[\s\[\]]", "", lines[-1]) if lines else ""
    if not _OPT_OUT_LINE.fullmatch(last):
        problems.append("an advertising text must end with the free opt-out line (무료수신거부 080-XXX-XXXX or 무료거부 "
                        "080...): NHN refuses it (error -6003); set MessagingPolicy.opt_out_number")
    return problems


def _item(message: Message, items: Any) -> Mapping[str, Any] | None:
    """The answer's entry for ``message``: the one with its key, else the only entry (the request had one)."""
    if not isinstance(items, list):
        return None
    entries = [i for i in items if isinstance(i, Mapping)]
    keyed = [i for i in entries if i.get("recipientGroupingKey") == message.key]
    if keyed:
        return keyed[0]
    unkeyed = [i for i in entries if not i.get("recipientGroupingKey")]
    return unkeyed[0] if len(entries) == 1 and unkeyed else None
