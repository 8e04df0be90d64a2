"""NHN Cloud KakaoTalk Bizmessage: AlimTalk (API v2.3) and Brand Message (API v1.0, free-form text).

Each message is one request with the headers ``X-Secret-Key`` and ``X-NC-API-IDEMPOTENCY-KEY``:

- ``alimtalk``: ``POST /alimtalk/v2.3/appkeys/{appkey}/messages`` (template substitution): ``senderKey``,
  ``templateCode`` and one recipient with its ``templateParameter`` (the message's variables, ``#{name}`` read as
  ``name``), ``resendParameter`` and ``recipientGroupingKey`` (the message's idempotency key).  The template's
  buttons are the template's: NHN's substitution request carries per recipient only their ``ordering`` and plugin
  extras, no name or link, so the rendered buttons are checked (at most 5, names up to 14 characters) but not sent.
  NHN's own SMS substitution is off (``isResend: false``, which overrides a console default): the campaign's chain
  falls back to SMS itself.  With ``resend_send_no`` (a number registered in NHN's SMS service) NHN substitutes the
  text itself (``isResend: true``), as Solapi's ``substitute_sms`` does.
- ``brand_message``: ``POST /brand-message/v1.0/appkeys/{appkey}/freestyle-messages``, a ``TEXT`` bubble with its
  ``content`` and web-link buttons; targeting ``I`` (channel friends), or ``M`` (marketing-consent users) when the
  planner found the recipient is not a friend (which only a licensed channel with
  ``brand_message_friends_only=False`` plans), with the 080 opt-out number (``unsubscribe_no``) NHN requires for
  non-friend sends.  Never NHN's SMS substitution: it would carry the Kakao text without the advertising lines.
  List and carousel layouts and images are not built (``validate`` says so).  ``friendtalk`` (FriendTalk ended on
  2025-12-31; NHN's FriendTalk API with it) goes as a Brand Message, as the rest of shopcrm reads it.

NHN answers ``{"header": {"isSuccessful", "resultCode", "resultMessage"}, "message": {"requestId", "sendResults":
[{"recipientSeq", "resultCode", "resultMessage", "recipientGroupingKey"}]}}``: the header decides, then the
recipient's own code.  ``0``/``1000`` is :class:`~shopcrm.channels.Accepted` (``"{requestId}:{recipientSeq}"``);
Kakao's refusals and NHN's configuration and validation errors reject; ``3022`` (outside Kakao's sending hours) is
transient.

**Exactly once, with NHN's 10-minute idempotency window.**  NHN refuses a request whose
``X-NC-API-IDEMPOTENCY-KEY`` it saw within the last 10 minutes (``-1005``), without sending anything.  So a request
whose answer was lost can be sent again, *with the same header*, as long as that happens within 10 minutes of the
first: ``-1005`` then means the first was taken (:class:`~shopcrm.channels.Accepted`, NHN's request id unknown), and
an ordinary answer means it was not, and this one is the only one.  After the window, a resend could be a second
message.  The dispatcher resends an ambiguous message by itself only for a channel that ``deduplicates``, at a time
of its own choosing (its backoff, its lease), so this channel does **not** claim to deduplicate: it answers
:class:`~shopcrm.channels.Ambiguous` and does the resend itself, in :meth:`NhnCloudKakaoChannel.reconcile`, where it
can check the time.  A :class:`~shopcrm.channels.Message` carries no time of its first attempt, but it carries
``batch_ref``, the reference :meth:`NhnCloudKakaoChannel.begin` returned and the dispatcher recorded in its ledger
before :meth:`send`: ``begin`` returns the time it was called (``nhnk:<UTC time>~<nonce>``), which is no later than
any request made with it, and the idempotency header is ``"{key}@{that time and nonce}"``.  So:

- ``reconcile`` resends a message only while ``now - begin`` is under the window less a margin (1 minute, for clock
  differences between hosts) and less the request timeout (a resend may reach NHN that much later); otherwise, or
  without a reference of this channel, it answers None (unknown: never resent);
- what the resend meets is trusted only when it says something of the first attempt: ``-1005`` (taken), or NHN
  taking this request under the same header (the key was free, so the first was not taken): an ordinary acceptance,
  or a recipient's own Kakao code (rejected, or ``3022``: not taken, sent again later).  A header-level refusal, an
  HTTP error or a lost answer says nothing of the first attempt: :class:`~shopcrm.channels.Ambiguous`, asked again
  later, until the window closes;
- every new attempt (after a :class:`~shopcrm.channels.Transient`) is begun anew by the dispatcher, so it has a new
  header: a first attempt that NHN processed and refused (``3022``) can never make a later one read ``-1005``.

A request that certainly did not reach NHN (connection refused, a connect or pool timeout) and a ``429`` or ``503``
answer are :class:`~shopcrm.channels.Transient`; a lost answer (read timeout, a connection dropped after the request
went out, an unreadable answer, another ``5xx``) is :class:`~shopcrm.channels.Ambiguous`, settled as above.

Facts and codes: the provider notes in ``docs/channels.md`` (NHN Cloud's KakaoTalk Bizmessage API guides).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import attrs
import httpx

from shopcrm.channels._base import Accepted, Ambiguous, Channel, Message, Rejected, SendResult, Transient
from shopcrm.channels.nhncloud import (
    _GROUPING_KEY_CHARS,
    _MOBILE,
    _code,
    _digits,
    _item,
    _recipient,
    post,
    read_answer,
    required_settings,
)

__all__ = ["IDEMPOTENCY_WINDOW", "NHN_KAKAO_URL", "NhnCloudKakaoChannel"]

NHN_KAKAO_URL = "https://kakaotalk-bizmessage.api.nhncloudservice.com"
#: how long NHN refuses a repeated ``X-NC-API-IDEMPOTENCY-KEY`` (``-1005``)
IDEMPOTENCY_WINDOW = timedelta(minutes=10)
#: what the channel keeps off the window: differences between the clocks of the hosts that begin and reconcile
_MARGIN = timedelta(minutes=1)
_REF = re.compile(r"nhnk:([0-9]{8}T[0-9]{6}\.[0-9]{6}Z)~([0-9a-f]{8})")
_STAMP = "%Y%m%dT%H%M%S.%fZ"
#: Kakao's limits: AlimTalk 1,000 characters (the product rule; NHN's raw field takes 1,300), Brand Message text
#: 1,300 (at most 99 line breaks), at most 5 buttons named in up to 14 characters, links up to 500, 40 variables
_ALIMTALK_CHARS, _BRAND_CHARS, _BRAND_NEWLINES = 1000, 1300, 99
_BUTTONS, _BUTTON_NAME_CHARS, _LINK_CHARS, _VARIABLES, _TEMPLATE_CODE_CHARS = 5, 14, 500, 40, 20
_UNSUBSCRIBE = re.compile(r"080[0-9]{7,8}")
_VARIABLE = re.compile(r"#\{(.+)\}")
_ACCEPTED = frozenset({"0", "1000"})
_DUPLICATE = "-1005"
#: codes that refuse the message for good on this channel (NHN's API codes, then Kakao's result codes)
_REJECTED: dict[str, str] = {
    # configuration: the same for every message, and no retry mends it (as the SMS channel): the reason names it
    "-1000": "invalid appkey (NHN_KAKAO_APP_KEY)",
    "-1001": "invalid secret key (NHN_KAKAO_SECRET_KEY)",
    "-1003": "invalid SMS sender number for NHN's substitution (resend_send_no)",
    "-1019": "invalid 080 opt-out number for NHN's substitution",
    "-1027": "the sender profile (senderKey) is blocked",
    "-2502": "NHN's SMS substitution was requested but is not configured (resend_send_no)",
    "1028": "the targeting option is not allowed for this channel (M/N need a licensed channel)",
    "1030": "invalid parameter",
    "3008": "the phone number is invalid",
    "3015": "the template was not found (template_code)",
    "3016": "the content does not match the template",
    "3018": "the message cannot be sent (SIM changed, not active in KakaoTalk for 7 days, or sanctioned)",
    "3019": "the recipient is not a KakaoTalk user",
    # not an advertising opt-out: it blocks this channel's AlimTalk (informational), so the chain falls back to SMS
    "3020": "the recipient blocks AlimTalk from this channel",
    "3025": "a variable is longer than the template allows",
    "3027": "the buttons do not match the template",
    "4132": "the template's variables do not match (templateParameter)",
    "4133": "the template is stopped",
}
_TRANSIENT: dict[str, str] = {"3022": "outside Kakao's sending hours (Brand Message: 08:00 to 20:50)"}


def _meaning(code: str) -> str:
    if code in _REJECTED:
        return _REJECTED[code]
    if re.fullmatch(r"-200[0-5]", code):
        return "a field NHN refuses (validation)"
    if re.fullmatch(r"-3[0-9]{3}", code):
        return "the Brand Message's layout NHN refuses (validation)"
    return "refused"


def _status(code: str, message: str) -> SendResult:
    """The result an NHN or Kakao code means for the message it concerns."""
    if code == _DUPLICATE:
        return _taken_before(message)
    if code in _TRANSIENT:
        return Transient(f"NHN {code}: {_TRANSIENT[code]} ({message})", code=code)
    return Rejected(f"NHN {code}: {_meaning(code)} ({message})", code=code)


def _taken_before(message: str) -> Accepted:
    """``-1005``: an earlier request with this idempotency header was taken within the last 10 minutes."""
    return Accepted(provider_id=f"unknown (NHN -1005: an earlier request with this idempotency key was taken; {message})"[:200])


class NhnCloudKakaoChannel(Channel):
    """NHN Cloud's KakaoTalk Bizmessage for ``alimtalk`` (v2.3) and ``brand_message`` (v1.0, free-form text).

    ``app_key``, ``secret_key`` and ``sender_key`` (the Kakao channel's 발신 프로필 key) come from the arguments or the
    environment (``NHN_KAKAO_APP_KEY``, ``NHN_KAKAO_SECRET_KEY``, ``NHN_KAKAO_SENDER_KEY``).  ``unsubscribe_no`` is
    the 080 opt-out number registered for the channel (required to send a Brand Message to a non-friend);
    ``resend_send_no`` turns on NHN's own SMS substitution of AlimTalk from that registered number (off by default:
    the campaign's chain falls back).  ``client`` replaces the HTTP client (the channel does not close a client it
    was given); ``clock`` (aware) is the time :meth:`begin` records and :meth:`reconcile` compares with it.
    """

    name = "nhncloud_kakao"
    kinds = frozenset({"alimtalk", "brand_message", "friendtalk"})
    batch_size = 100
    #: requests in flight at once within one :meth:`send` or :meth:`reconcile`
    concurrency = 10
    #: NHN's window holds for 10 minutes only, and the dispatcher's own resend may come later: see the module's text
    deduplicates = False

    def __init__(
        self,
        app_key: str | None = None,
        secret_key: str | None = None,
        sender_key: str | None = None,
        *,
        base_url: str = NHN_KAKAO_URL,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        unsubscribe_no: str | None = None,
        resend_send_no: str | None = None,
        rate_per_second: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        settings = required_settings("NHN Cloud KakaoTalk Bizmessage", {
            "app_key": (app_key, "NHN_KAKAO_APP_KEY"), "secret_key": (secret_key, "NHN_KAKAO_SECRET_KEY"),
            "sender_key": (sender_key, "NHN_KAKAO_SENDER_KEY"),
        })
        self.app_key, self.secret_key, self.sender_key = settings["app_key"], settings["secret_key"], settings["sender_key"]
        self.unsubscribe_no = _digits(unsubscribe_no) if unsubscribe_no else None
        if unsubscribe_no and not _UNSUBSCRIBE.fullmatch(self.unsubscribe_no or ""):
            raise ValueError(f"unsubscribe_no {unsubscribe_no!r} is not an 080 number (080 and 7 or 8 digits)")
        self.resend_send_no = _digits(resend_send_no) if resend_send_no else None
        if resend_send_no and not 8 <= len(self.resend_send_no or "") <= 11:
            raise ValueError(f"resend_send_no {resend_send_no!r} is not a registered Korean number (8 to 11 digits)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.rate_per_second = rate_per_second
        self._clock = clock
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    @property
    def resend_within(self) -> timedelta:
        """How long after :meth:`begin` a message whose answer was lost may still be sent again with the same
        idempotency header: NHN's window, less the margin, less one request's timeout."""
        read = self._client.timeout.read if self._client.timeout.read is not None else self.timeout
        return IDEMPOTENCY_WINDOW - _MARGIN - timedelta(seconds=max(read, self.timeout))

    # --------------------------------------------------------------- checks
    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        if not _MOBILE.fullmatch(_recipient(message.to)):
            problems.append(f"{message.to!r} is not a Korean mobile number (01X, 10 or 11 digits)")
        if not message.key or len(message.key) > _GROUPING_KEY_CHARS or not re.fullmatch(r"[\x21-\x7e]+", message.key):
            problems.append(f"the key {message.key[:40]!r} cannot be NHN's recipientGroupingKey and idempotency header "
                            f"(1 to {_GROUPING_KEY_CHARS} printable ASCII characters)")
        if message.kind not in self.kinds:
            return problems
        texts = [message.text, *(v for pair in message.variables for v in pair), *(x for b in message.buttons for x in b)]
        if any(not _utf8(t) for t in texts):
            problems.append("the message has characters that cannot be sent as UTF-8 (a lone surrogate)")
        problems.extend(_button_problems(message.buttons))
        if message.kind == "alimtalk":
            problems.extend(_alimtalk_problems(message))
        else:
            problems.extend(self._brand_problems(message))
        return problems

    def _brand_problems(self, message: Message) -> list[str]:
        problems = []
        if message.layout not in (None, "text"):
            problems.append(f"the Brand Message layout {message.layout!r} is not built for NHN Cloud (text only): send it "
                            "through Solapi, or as plain text")
        if message.image_url:
            problems.append("a Brand Message image is not built for NHN Cloud (the fact sheet documents no image field "
                            "for its free-form API): send it as text, or through Solapi")
        if not message.text.strip():
            problems.append("the Brand Message has no text")
        if len(message.text) > _BRAND_CHARS:
            problems.append(f"the Brand Message is {len(message.text):,} characters; Kakao takes at most {_BRAND_CHARS:,}")
        if message.text.count("\n") > _BRAND_NEWLINES:
            problems.append(f"the Brand Message has {message.text.count(chr(10))} line breaks; Kakao takes at most "
                            f"{_BRAND_NEWLINES}")
        if message.friend is False and not self.unsubscribe_no:
            problems.append("a Brand Message to a non-friend (targeting M) needs the channel's 080 opt-out number: set "
                            "unsubscribe_no")
        return problems

    # ------------------------------------------------------------- requests
    def path(self, message: Message) -> str:
        """The endpoint for ``message``: AlimTalk's substitution send, or Brand Message's free-form send."""
        appkey = quote(self.app_key, safe="")
        if message.kind == "alimtalk":
            return f"/alimtalk/v2.3/appkeys/{appkey}/messages"
        return f"/brand-message/v1.0/appkeys/{appkey}/freestyle-messages"

    def body(self, message: Message) -> dict[str, Any]:
        """The request for ``message`` alone, one recipient keyed by the message's idempotency key."""
        recipient: dict[str, Any] = {"recipientNo": _recipient(message.to), "recipientGroupingKey": message.key}
        if message.kind == "alimtalk":
            recipient["templateParameter"] = {_variable(name): value for name, value in message.variables}
            recipient["resendParameter"] = ({"isResend": True, "resendSendNo": self.resend_send_no}
                                            if self.resend_send_no else {"isResend": False})
            return {"senderKey": self.sender_key, "templateCode": message.template_code,
                    "senderGroupingKey": (message.batch_ref or message.key)[:_GROUPING_KEY_CHARS],
                    "recipientList": [recipient]}
        # brand_message (and friendtalk, read as one): channel friends I; a non-friend, as the planner saw it, M
        recipient["targeting"] = "M" if message.friend is False else "I"
        recipient["resendParameter"] = {"isResend": False}
        body: dict[str, Any] = {"senderKey": self.sender_key, "chatBubbleType": "TEXT", "content": message.text,
                                "senderGroupingKey": (message.batch_ref or message.key)[:_GROUPING_KEY_CHARS],
                                "recipientList": [recipient]}
        if self.unsubscribe_no:
            body["unsubscribeNo"] = self.unsubscribe_no
            recipient["unsubscribeNo"] = self.unsubscribe_no
        if message.buttons:
            body["buttons"] = [{"name": name, "type": "WL", "linkMo": url, "linkPc": url} for name, url in message.buttons]
        return body

    def idempotency_key(self, message: Message) -> str:
        """The ``X-NC-API-IDEMPOTENCY-KEY`` of ``message``: its key and the time (and nonce) of the :meth:`begin`
        it went out under, so that each attempt has its own and a resend of one attempt repeats it."""
        match = _REF.fullmatch(message.batch_ref)
        return f"{message.key}@{match.group(1)}~{match.group(2)}" if match else message.key

    def headers(self, message: Message) -> dict[str, str]:
        return {"X-Secret-Key": self.secret_key, "X-NC-API-IDEMPOTENCY-KEY": self.idempotency_key(message),
                "Content-Type": "application/json;charset=UTF-8"}

    async def begin(self, batch: Sequence[Message]) -> str:
        """A reference naming the time now (``nhnk:<UTC time>~<nonce>``): nothing is prepared at NHN, but the
        dispatcher records it before :meth:`send`, so :meth:`reconcile` knows no request of this attempt is older."""
        return f"nhnk:{self._clock().astimezone(UTC).strftime(_STAMP)}~{secrets.token_hex(4)}"

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send each message of ``batch`` in its own request (at most :attr:`concurrency` at once).  A message sent
        without a reference of :meth:`begin` gets one now (so that its header is its attempt's own)."""
        ref = await self.begin(batch)
        carried = [m if _REF.fullmatch(m.batch_ref) else _with_ref(m, ref) for m in batch]
        return await self._each(carried, self._send_one)

    async def _each(self, batch: Sequence[Message], call: Callable[[Message], Any]) -> list[Any]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: Message) -> Any:
            async with gate:
                return await call(message)

        return list(await asyncio.gather(*(one(m) for m in batch)))

    async def _send_one(self, message: Message) -> SendResult:
        reply = await self._post(message)
        return reply if not isinstance(reply, httpx.Response) else _result(message, reply)[0]

    async def _post(self, message: Message) -> SendResult | httpx.Response:
        return await post(self._client, f"{self.base_url}{self.path(message)}", lambda: self.body(message),
                          self.headers(message))

    # ---------------------------------------------------------- reconciling
    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        """Settle messages whose answer was lost by sending each again with the same idempotency header, while its
        attempt's :meth:`begin` is less than :attr:`resend_within` ago: ``-1005`` -> Accepted (the first was taken);
        NHN taking this request -> what it says (the first was not taken; this one is the only one); anything else
        -> Ambiguous (asked again later).  None (unknown, never resent) once the window has closed, for a message
        without this channel's reference, or one that no longer validates."""
        now = self._clock()

        async def one(message: Message) -> SendResult | None:
            begun = _begun(message.batch_ref)
            if begun is None or self.validate(message):
                return None
            elapsed = now - begun
            if elapsed < -_MARGIN or elapsed > self.resend_within:
                return None
            reply = await self._post(message)
            if isinstance(reply, Transient | Ambiguous):  # not reached, or the answer lost again: ask later
                return Ambiguous(f"asking again by resending went unanswered: {reply.reason}", code=reply.code)
            if not isinstance(reply, httpx.Response):  # never built: never sent either time
                return reply
            result, telling = _result(message, reply)
            if telling:
                return result
            reason = getattr(result, "reason", "")
            return Ambiguous(f"the resend was refused before NHN took it, which says nothing of the first attempt: "
                             f"{reason}", code=getattr(result, "code", "") or "resend")

        return await self._each(messages, one)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _result(message: Message, response: httpx.Response) -> tuple[SendResult, bool]:
    """What NHN's answer means for ``message``, and whether it tells what became of an earlier request with the same
    idempotency header: ``-1005`` (taken), or NHN taking this request (a successful header with this recipient's own
    result: the header was free, so the earlier one was not taken)."""
    read = read_answer(response, _status)
    if not isinstance(read, tuple):  # an HTTP error or an unreadable answer: only -1005 says what became of the first
        return read, isinstance(read, Accepted)
    answer, header = read
    body = answer.get("message")
    item = _item(message, body.get("sendResults") if isinstance(body, dict) else None)
    text = str(header.get("resultMessage") or "")
    if not header["isSuccessful"]:  # the request failed: the recipient's own code, else the header's
        own = _code(item.get("resultCode")) if item is not None else ""
        if own not in ("", "0") and item is not None:
            return _status(own, str(item.get("resultMessage") or text)), own == _DUPLICATE
        code = _code(header.get("resultCode")) or "failed"
        return _status(code, text), code == _DUPLICATE
    if item is None:
        return Ambiguous(f"NHN took the request but its answer does not list this message: {response.text[:200]}",
                         code="answer"), False
    code = _code(item.get("resultCode"))
    if code not in _ACCEPTED and code != "":
        return _status(code, str(item.get("resultMessage") or "")), True
    request_id = str(body.get("requestId") or "") if isinstance(body, dict) else ""
    return Accepted(provider_id=f"{request_id}:{_code(item.get('recipientSeq'))}"), True


def _begun(ref: str) -> datetime | None:
    """When the :meth:`NhnCloudKakaoChannel.begin` that made ``ref`` was called (None: not this channel's)."""
    match = _REF.fullmatch(ref)
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC) if match else None


def _with_ref(message: Message, ref: str) -> Message:
    return attrs.evolve(message, batch_ref=ref)


def _variable(name: str) -> str:
    """A template variable's name as NHN's ``templateParameter`` key: ``#{name}`` is ``name``."""
    match = _VARIABLE.fullmatch(name)
    return match.group(1) if match else name


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _button_problems(buttons: Sequence[tuple[str, str]]) -> list[str]:
    problems = []
    if len(buttons) > _BUTTONS:
        problems.append(f"{len(buttons)} buttons; Kakao takes at most {_BUTTONS}")
    long = [name for name, _ in buttons if len(name) > _BUTTON_NAME_CHARS]
    if long:
        problems.append(f"the button name {long[0]!r} is {len(long[0])} characters; Kakao takes at most {_BUTTON_NAME_CHARS}")
    links = [url for _, url in buttons if len(url) > _LINK_CHARS or not url.strip()]
    if links:
        problems.append(f"a button link of {len(links[0])} characters; NHN takes 1 to {_LINK_CHARS}")
    return problems


def _alimtalk_problems(message: Message) -> list[str]:
    problems = []
    if not message.template_code:
        problems.append("AlimTalk needs the approved template's code (template_code)")
    elif len(message.template_code) > _TEMPLATE_CODE_CHARS:
        problems.append(f"the template code {message.template_code[:40]!r} is longer than NHN's {_TEMPLATE_CODE_CHARS} "
                        "characters")
    if message.purpose != "informational":
        problems.append("AlimTalk is informational only (Kakao's rule): send advertising as a Brand Message or SMS")
    if len(message.text) > _ALIMTALK_CHARS:
        problems.append(f"the AlimTalk is {len(message.text):,} characters; Kakao takes at most {_ALIMTALK_CHARS:,}")
    if len(message.variables) > _VARIABLES:
        problems.append(f"{len(message.variables)} template variables; Kakao takes at most {_VARIABLES}")
    names = [_variable(name) for name, _ in message.variables]
    if any(not name.strip() for name in names):
        problems.append("a template variable without a name")
    return problems

