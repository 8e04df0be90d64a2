"""Solapi (솔라피): SMS, LMS, MMS, Kakao AlimTalk and Brand Message over its HTTP API.

Solapi keeps no idempotency key, so a request whose answer is lost cannot simply be sent again.  The
channel therefore sends through Solapi's **group API**, in phases whose effect can always be read back:

1. :meth:`SolapiChannel.begin`: ``POST /messages/v4/groups`` creates an empty ``PENDING`` group and
   returns its id, which the dispatcher records in its ledger before anything is sent;
2. :meth:`SolapiChannel.send`: ``PUT /messages/v4/groups/{id}/messages`` registers the messages (status
   ``2000`` each, or a 4-digit refusal code; refused ones are stored but never sent), then
   ``POST /messages/v4/groups/{id}/send`` sends the group, which a group does **once**: its status moves
   from ``PENDING`` to ``SENDING``/``COMPLETE``/``FAILED``.  When the answer to the send is lost, the
   group's status (``GET /messages/v4/groups/{id}``) tells whether it went: ``PENDING`` is sent again;
3. :meth:`SolapiChannel.reconcile` settles messages whose outcome is unknown from their group: a
   ``PENDING`` group is deleted (``DELETE /messages/v4/groups/{id}``: it can then never be sent) and its
   messages may go again; a sent group's messages (``GET /messages/v4/groups/{id}/messages``, every page)
   say per key whether it was taken.

Every request is signed ``Authorization: HMAC-SHA256 apiKey=..., date=..., salt=..., signature=...``
(``hex(HMAC-SHA256(api_secret, date + salt))``) with a **fresh salt per request, retries included** (a
reused signature is refused as ``DuplicatedSignature``); every message carries
``customFields.shopcrmKey`` (its idempotency key) to correlate the answers.

A request that certainly did not reach Solapi (connection refused, ``429``/``503`` answered,
``RequestTimeTooSkewed``) is :class:`~shopcrm.channels.Transient`; one whose answer was lost is settled
as above (so is a ``503`` to a group's send: a gateway answers it too when Solapi took the send and was slow
to say so, and the group's status tells which), or answered :class:`~shopcrm.channels.Ambiguous` when Solapi cannot be asked right now.  Codes
that mean "never on this channel" reject (invalid number, 080 opt-out, template mismatch, ...); a low
balance and sending hours are transient.  AlimTalk goes with ``disableSms: false`` when
``substitute_sms`` is on: Solapi itself sends the text as SMS/LMS when Kakao cannot deliver.  Brand
Messages go as ``BMS_TEXT`` to channel friends (targeting ``I``), or, when the planner found the recipient is
not a friend (licensed channels, ``brand_message_friends_only=False``), to marketing-consent users (``M``);
``friendtalk`` as the legacy ``CTA``.  The answer to a group's send reports the account's unit prices
(``"price": {"82": {"sms": 20, ...}}``): each accepted message carries the one of its type as its charge.
``group_api=False`` keeps the one-call ``POST /messages/v4/send-many/detail`` (no reconciliation).

Facts and codes: see the provider notes in ``docs/channels.md`` (sources there).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
import httpx

from shopcrm.campaigns._korean import outside_ks_x_1001
from shopcrm.channels._base import (
    Accepted,
    Ambiguous,
    Channel,
    DeliveryReport,
    Message,
    Rejected,
    SendResult,
    Transient,
)
from shopcrm.channels.webhook import _retry_after

__all__ = ["SOLAPI_URL", "SolapiChannel", "SolapiGroupError", "authorization"]

SOLAPI_URL = "https://api.solapi.com"
_SALT = string.ascii_letters + string.digits
#: status codes that will not succeed on a retry of the same message, with whether they mean an opt-out
_PERMANENT: dict[str, bool] = {
    "1011": False, "2011": False, "3010": False, "3032": False,  # number format, no subscriber
    "1060": True, "2060": True, "1061": True, "2061": True, "1064": True, "2064": True,  # blocked, 080 opt-out, KISA
    "3054": True, "3055": True,  # spam blocks
    "1062": False, "2062": False, "3013": False, "3059": False,  # sender number
    "1029": False, "1031": False, "1013": False, "1014": False,  # content: characters, length, subject
    "1041": False, "1042": False, "1043": False, "3103": False, "3101": False, "3102": False, "3104": False,
    "3105": False, "3106": False, "3107": False,  # Kakao channel, template, friendship, not a KakaoTalk user
    "1026": False,  # duplicate recipient in one request
}
#: status codes worth retrying later (balance can be topped up; sending hours reopen)
_TRANSIENT = {"1030", "2230", "3108"}
#: the most messages a group holds (Solapi's limit), which bounds the pages of one group
_MAX_GROUP = 1_000_000


class SolapiGroupError(RuntimeError):
    """A message group could not be created; nothing was sent.  ``result`` is what the request met
    (Transient: try later; Rejected: refused, e.g. bad credentials; Ambiguous: the answer was lost)."""

    def __init__(self, message: str, result: SendResult) -> None:
        super().__init__(message)
        self.result = result


@attrs.frozen
class _Reply:
    """What a request met: ``ok`` (its JSON ``answer``), ``not_taken`` (it certainly had no effect),
    ``refused`` (answered with a 4xx: no effect) or ``lost`` (it may have had an effect); ``result`` is
    the per-message result it means when not ok."""

    kind: Literal["ok", "not_taken", "refused", "lost"]
    answer: dict[str, Any]
    result: Transient | Rejected | Ambiguous | None
    #: the HTTP status of the answer (0 when there was none)
    status: int = 0


def authorization(api_key: str, api_secret: str, date: str, salt: str) -> str:
    """The ``Authorization`` header for a request made at ``date`` (ISO 8601) with ``salt``."""
    signature = hmac.new(api_secret.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
    return f"HMAC-SHA256 apiKey={api_key}, date={date}, salt={salt}, signature={signature}"


#: the longest button URL Solapi takes (providers.md section 2.1: error 1048)
_BUTTON_URL_CHARS = 100

def _digits(number: str) -> str:
    return re.sub(r"[^0-9]", "", number)


class SolapiChannel(Channel):
    """Solapi for ``sms``/``lms``/``mms``, ``alimtalk``, ``brand_message`` (and legacy ``friendtalk``).

    ``api_key`` / ``api_secret`` come from the arguments or the environment (``SOLAPI_API_KEY``,
    ``SOLAPI_API_SECRET``); ``sender`` is the registered sender number (발신번호); ``pf_id`` the Kakao
    channel's profile id for AlimTalk and Brand Messages.  ``image_ids`` maps an MMS/Brand Message
    ``image_url`` to the file id Solapi's storage gave it.  ``transport`` replaces the network (tests).
    ``group_api=False`` sends with the one-call ``send-many/detail`` instead of a group (a lost answer
    then stays unknown); ``page_size`` is how many of a group's messages one read asks for, and
    ``send_attempts`` how often an unanswered send of a group still ``PENDING`` is repeated.
    """

    name = "solapi"
    kinds = frozenset({"sms", "lms", "mms", "alimtalk", "brand_message", "friendtalk"})
    #: messages per group: one PUT of up to 10,000 is allowed, but 1,000 already makes the three requests
    #: per group negligible next to the per-message work, keeps a request body near 200 KB, and bounds
    #: what one lost answer leaves to reconcile
    batch_size = 1000

    def __init__(
        self,
        *,
        sender: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        pf_id: str | None = None,
        base_url: str = SOLAPI_URL,
        substitute_sms: bool = True,
        image_ids: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        rate_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        group_api: bool = True,
        page_size: int = 500,
        send_attempts: int = 3,
    ) -> None:
        self.api_key = api_key or os.environ.get("SOLAPI_API_KEY", "")
        self.api_secret = api_secret or os.environ.get("SOLAPI_API_SECRET", "")
        if not self.api_key or not self.api_secret:
            raise ValueError("Solapi needs api_key and api_secret: pass them or set SOLAPI_API_KEY and SOLAPI_API_SECRET")
        self.sender = _digits(sender)
        if not 8 <= len(self.sender) <= 11:
            raise ValueError(f"sender {sender!r} is not a registered Korean number (8 to 11 digits)")
        self.pf_id = pf_id or os.environ.get("SOLAPI_PF_ID")
        self.base_url = base_url.rstrip("/")
        self.substitute_sms = substitute_sms
        self.image_ids = dict(image_ids or {})
        self.rate_per_second = rate_per_second
        self._clock = clock
        if page_size < 1 or send_attempts < 1:
            raise ValueError(f"page_size ({page_size}) and send_attempts ({send_attempts}) must be at least 1")
        self.group_api = group_api
        self._filled: set[str] = set()  # groups this channel already put messages in: never filled twice
        self.page_size = page_size
        self.send_attempts = send_attempts
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    # --------------------------------------------------------------- requests
    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        if message.kind in ("alimtalk", "brand_message", "friendtalk") and not self.pf_id:
            problems.append(f"{message.kind} needs the Kakao channel's pf_id (SOLAPI_PF_ID)")
        if message.kind == "alimtalk" and not message.template_code:
            problems.append("AlimTalk needs the approved template's id (template_code)")
        if message.kind == "mms" and message.image_url not in self.image_ids:
            problems.append(f"the MMS image {message.image_url!r} has no Solapi file id: upload it and map it in image_ids")
        if message.kind == "brand_message" and message.layout == "list" and len(message.items) < 4:
            # Solapi's SDKs refuse a WIDE_ITEM_LIST with fewer than three sub items under its main item
            problems.append(f"Solapi's Brand Message list (BMS_WIDE_ITEM_LIST) needs 4 products with images (a main item "
                            f"and at least 3 sub items); this one has {len(message.items)}: ask for recommend k=4 or more, "
                            "or use the carousel layout (2 to 6 cards)")
        if message.kind == "brand_message" and message.layout in ("list", "carousel"):
            missing = [image for _, _, image, _, _ in message.items if image not in self.image_ids]
            if missing:
                problems.append(f"the Brand Message {message.layout}'s product images {missing[:3]} have no Solapi file id "
                                "(storage type BMS): upload them and map them in image_ids")
        if message.kind == "brand_message" and message.layout in (None, "text") and message.image_url \
                and message.image_url not in self.image_ids:
            problems.append(f"the Brand Message image {message.image_url!r} has no Solapi file id (storage type BMS): "
                            "upload it and map it in image_ids")
        long = [url for _, url in message.buttons if len(url) > _BUTTON_URL_CHARS]
        if message.kind in ("alimtalk", "brand_message", "friendtalk") and long:
            problems.append(f"a button URL of {len(long[0])} characters; Solapi takes at most {_BUTTON_URL_CHARS} (error "
                            f"1048): shorten it (a tracked link counts too): {long[0][:60]}...")
        strict = outside_ks_x_1001(f"{message.text}{message.subject or ''}") if message.kind in ("sms", "lms", "mms") else []
        if strict:
            problems.append(f"the {message.kind.upper()} has {', '.join(map(repr, strict))}, outside EUC-KR's KS X 1001 "
                            "(완성형): Solapi refuses it (error 1029); write the word another way, or send it by AlimTalk")
        if not 9 <= len(_digits(message.to)) <= 11:
            problems.append(f"{message.to!r} is not a Korean mobile number")
        return problems

    def body(self, message: Message) -> dict[str, Any]:
        """One message of the ``send-many/detail`` request."""
        item: dict[str, Any] = {
            "to": _digits(message.to), "from": self.sender, "text": message.text, "autoTypeDetect": False,
            "customFields": {"shopcrmKey": message.key},
        }
        kind = message.kind
        if kind in ("sms", "lms", "mms"):
            item["type"] = kind.upper()
            if kind != "sms" and message.subject:
                item["subject"] = message.subject
            if kind == "mms":
                item["imageId"] = self.image_ids[message.image_url or ""]
            return item
        buttons = [{"buttonName": name, "buttonType": "WL", "linkMo": url, "linkPc": url} for name, url in message.buttons]
        if kind == "alimtalk":
            item["type"] = "ATA"
            item["kakaoOptions"] = {
                "pfId": self.pf_id, "templateId": message.template_code, "variables": dict(message.variables),
                "disableSms": not self.substitute_sms, **({"buttons": buttons} if buttons else {}),
            }
        elif kind == "brand_message":
            item["type"] = "BMS_TEXT"
            # channel friends are targeted I; a non-friend (licensed channels only) M: marketing-consent users
            targeting = "M" if message.friend is False else "I"
            if message.layout in ("list", "carousel"):
                item["type"], bms = self._bms_layout(message)
                item["kakaoOptions"] = {"pfId": self.pf_id, "disableSms": True, "bms": {"targeting": targeting, **bms}}
                return item
            # text, or an image over it (BMS_IMAGE); buttons in bms, in its shape (as the list's)
            bubble: dict[str, Any] = {"targeting": targeting, "chatBubbleType": "TEXT"}
            if message.image_url:
                item["type"] = "BMS_IMAGE"
                bubble.update(chatBubbleType="IMAGE", imageId=self.image_ids[message.image_url])
            if message.buttons:
                bubble["buttons"] = [{"name": n, "linkType": "WL", "linkMobile": u, "linkPc": u} for n, u in message.buttons]
            # never Solapi's own SMS substitute: it would carry the Kakao text without the (광고) and sender lines;
            # the campaign's chain falls back to a compliant advertising SMS instead (K11)
            item["kakaoOptions"] = {"pfId": self.pf_id, "disableSms": True, "bms": bubble}
        else:  # the legacy FriendTalk type, for accounts that still accept it
            item["type"] = "CTA"
            item["kakaoOptions"] = {"pfId": self.pf_id, "adFlag": message.purpose == "advertising", "disableSms": True,
                                    **({"buttons": buttons} if buttons else {})}
        return item

    def _bms_layout(self, message: Message) -> tuple[str, dict[str, Any]]:
        """The message type and ``bms`` options of a Brand Message list (``BMS_WIDE_ITEM_LIST``: a header, the first
        product as the main wide item, the others as sub items, up to 2 buttons) or carousel
        (``BMS_CAROUSEL_FEED``: one card per product with its image, title, text and one link button)."""
        def link(url: str) -> dict[str, str]:
            return {"linkMobile": url, "linkPc": url}

        if message.layout == "list":
            main, *rest = message.items
            return "BMS_WIDE_ITEM_LIST", {
                "chatBubbleType": "WIDE_ITEM_LIST", "header": message.header or "",
                "mainWideItem": {"title": main[0], "imageId": self.image_ids[main[2]], **link(main[3])},
                "subWideItemList": [{"title": t, "imageId": self.image_ids[i], **link(u)} for t, _, i, u, _ in rest],
                **({"buttons": [{"name": n, "linkType": "WL", **link(u)} for n, u in message.buttons]}
                   if message.buttons else {}),
            }
        cards = [{"header": t, "content": d, "imageId": self.image_ids[i], "imageLink": u,
                  "buttons": [{"name": b, "linkType": "WL", **link(u)}]} for t, d, i, u, b in message.items]
        return "BMS_CAROUSEL_FEED", {"chatBubbleType": "CAROUSEL_FEED", "carousel": {"list": cards}}

    def headers(self) -> dict[str, str]:
        date = self._clock().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        salt = "".join(secrets.choice(_SALT) for _ in range(32))  # fresh per request, retries included
        return {"Authorization": authorization(self.api_key, self.api_secret, date, salt), "Content-Type": "application/json"}

    # ---------------------------------------------------------------- requests
    async def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None,
                    params: Mapping[str, Any] | None = None) -> _Reply:
        """One signed request, and what its answer means for the messages it concerns."""
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() if payload is not None else None
        try:
            response = await self._client.request(method, f"{self.base_url}{path}", content=content, params=params,
                                                  headers=self.headers())
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:  # never left this process
            return _Reply("not_taken", {}, Transient(f"connection failed: {type(error).__name__}: {error}", code="connection"))
        except httpx.TransportError as error:  # written (maybe wholly), then the answer was lost
            return _Reply("lost", {}, Ambiguous(f"answer lost: {type(error).__name__}: {error}", code="connection"))
        if response.status_code == 200:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                return _Reply("lost", {}, Ambiguous(f"unreadable answer: {response.text[:200]}", code="answer"))
            return _Reply("ok", answer, None)
        try:
            body = response.json()
        except ValueError:
            body = None
        details: dict[str, Any] = body if isinstance(body, dict) else {}
        code = str(details.get("errorCode") or response.status_code)
        reason = f"HTTP {response.status_code} {code}: {details.get('errorMessage') or response.text[:200]}"
        status = response.status_code
        if status in (429, 503) or code in ("RequestTimeTooSkewed", "DuplicatedSignature"):
            return _Reply("not_taken", details, Transient(reason, code=code, retry_after=_retry_after(response)), status)
        if status >= 500:  # a proxy's or the server's error after the request went in
            return _Reply("lost", details, Ambiguous(reason, code=code), status)
        return _Reply("refused", details, Rejected(reason, code=code), status)

    # ---------------------------------------------------------------- sending
    async def begin(self, batch: Sequence[Message]) -> str:
        """Create an empty message group (``POST /messages/v4/groups``) and return its id; nothing is sent.
        Raises :class:`SolapiGroupError` when the group could not be created (a group created without its
        answer arriving stays empty and ``PENDING``: it costs nothing and is never sent)."""
        if not self.group_api:
            return ""
        reply = await self._call("POST", "/messages/v4/groups", {"allowDuplicates": True})
        group = str(reply.answer.get("groupId") or "") if reply.kind == "ok" else ""
        if not group:
            result = reply.result or Ambiguous(f"no groupId in the answer: {str(reply.answer)[:200]}", code="answer")
            raise SolapiGroupError(f"Solapi could not create a message group, nothing was sent: {result.reason}", result)
        return group

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send ``batch`` through the group each message names (``batch_ref``, from :meth:`begin`); messages
        without one go in a group created here (whose id no ledger records: use :meth:`begin`)."""
        if not batch:
            return []
        if not self.group_api:
            return await self._send_many(batch)
        parts: dict[str, list[int]] = {}
        for index, message in enumerate(batch):
            parts.setdefault(message.batch_ref, []).append(index)
        results: list[SendResult] = [Ambiguous("not sent")] * len(batch)
        for ref, indexes in parts.items():
            for index, result in zip(indexes, await self._send_group(ref, [batch[i] for i in indexes]), strict=True):
                results[index] = result
        return results

    async def _send_group(self, group: str, batch: Sequence[Message]) -> list[SendResult]:
        if not group:
            try:
                group = await self.begin(batch)
            except SolapiGroupError as error:
                refused = error.result
                return [refused if isinstance(refused, Transient | Rejected) else Transient(str(error), code="group")] * len(batch)
        if group in self._filled:  # it may hold registered copies of these messages: a new group is needed
            return [Transient(f"group {group} was already used: begin a new group for a resend", code="group_used")] * len(batch)
        self._filled.add(group)
        # 1. register the messages in the group: nothing is sent yet
        reply = await self._call("PUT", f"/messages/v4/groups/{group}/messages", {"messages": [self.body(m) for m in batch]})
        registered = _registered(batch, reply.answer) if reply.kind == "ok" else None
        if registered is None:
            if reply.kind in ("not_taken", "refused"):
                assert reply.result is not None
                return [reply.result] * len(batch)
            # the answer was lost: the group is abandoned (never sent), so none of these messages went out
            reason = reply.result.reason if reply.result else f"unexpected answer {str(reply.answer)[:200]}"
            return [Transient(f"adding to group {group} went unanswered ({reason}); that group is never sent",
                              code="group_abandoned")] * len(batch)
        if not any(isinstance(r, Accepted) for r in registered):
            return registered
        # 2. send the group, once
        outcome, prices = await self._send_once(group)
        if outcome is not None:
            return [outcome if isinstance(r, Accepted) else r for r in registered]
        return [_charged(r, m, prices) for r, m in zip(registered, batch, strict=True)]

    async def _send_once(self, group: str) -> tuple[SendResult | None, Mapping[tuple[str, str], float]]:
        """Send ``group``; (None, the unit prices the group's answer reported) when it went (now or by an earlier
        attempt whose answer was lost), else (the result of its registered messages, {})."""
        path = f"/messages/v4/groups/{group}"
        for _ in range(self.send_attempts):
            reply = await self._call("POST", f"{path}/send")
            if reply.kind == "ok":
                return None, _unit_prices(reply.answer)
            if reply.kind == "not_taken" and reply.status != 503:
                return reply.result, {}
            # lost, refused (perhaps because an earlier attempt did send it) or a 503, which a gateway also
            # answers when Solapi took the send but was slow to answer it: the group's status says
            state = await self._call("GET", path)
            if state.kind != "ok":
                return Ambiguous(f"sending group {group} went unanswered and its status could not be read "
                                 f"({state.result.reason if state.result else state.answer})", code="group_unknown"), {}
            status = str(state.answer.get("status", ""))
            if status == "PENDING":
                if reply.kind != "lost":  # refused or busy: not sent, and sent again later (after retry_after)
                    return reply.result, {}
                continue  # not sent: send it again
            if status == "DELETED" and not state.answer.get("dateSent"):
                return Transient(f"group {group} was deleted before it was sent", code="group_deleted"), {}
            return None, _unit_prices(state.answer)
        return Ambiguous(f"group {group} is still PENDING after {self.send_attempts} unanswered sends", code="group_pending"), {}

    async def _send_many(self, batch: Sequence[Message]) -> list[SendResult]:
        """The one-call ``send-many/detail`` (``group_api=False``): a lost answer is Ambiguous and cannot be
        reconciled (the group it created is named only in the lost answer)."""
        # our own ledger deduplicates by key; two messages to one number in a batch are legitimate
        payload = {"messages": [self.body(m) for m in batch], "allowDuplicates": True, "showMessageList": True}
        reply = await self._call("POST", "/messages/v4/send-many/detail", payload)
        if reply.kind != "ok":
            assert reply.result is not None
            return [reply.result] * len(batch)
        answer = reply.answer
        failed = {_key(item): item for item in answer.get("failedMessageList") or []}
        taken = {_key(item): item for item in answer.get("messageList") or []}
        info = answer.get("groupInfo") or {}
        prices = _unit_prices(info) if isinstance(info, Mapping) else {}
        results: list[SendResult] = []
        for message in batch:
            if message.key in failed:
                item = failed[message.key]
                results.append(_status(str(item.get("statusCode", "")), str(item.get("statusMessage", ""))))
            elif message.key in taken:
                results.append(_charged(Accepted(provider_id=str(taken[message.key].get("messageId", ""))), message, prices))
            else:
                group = info.get("groupId", "") if isinstance(info, Mapping) else ""
                results.append(_charged(Accepted(provider_id=f"{group}:{message.key}"), message, prices))
        return results

    # ---------------------------------------------------------- reconciling
    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        """Settle messages from their groups (``batch_ref``): a message without a group was never sent
        (Transient); a ``PENDING`` group is deleted, its deletion confirmed, and its messages answered
        Transient; a sent group's messages answer per key: Accepted (with Solapi's message id), Rejected
        (refused at registration), or Transient (not in the group, so never sent).  Ambiguous when Solapi
        cannot be asked now; None for a group Solapi does not know (older than its 6-month history)."""
        if not self.group_api:
            return [None] * len(messages)
        groups: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            groups.setdefault(message.batch_ref, []).append(index)
        answers: list[SendResult | None] = [None] * len(messages)
        for group, indexes in groups.items():
            settled = await self._settle(group, [messages[i] for i in indexes])
            for index, answer in zip(indexes, settled, strict=True):
                answers[index] = answer
        return answers

    async def _settle(self, group: str, messages: Sequence[Message]) -> list[SendResult | None]:
        if not group:
            return [Transient("no message group was created for it: never sent", code="no_group")] * len(messages)
        path = f"/messages/v4/groups/{group}"
        state = await self._call("GET", path)
        if state.kind == "ok" and state.answer.get("status") == "PENDING":
            await self._call("DELETE", path)  # whatever its answer, the status read next tells
            state = await self._call("GET", path)
        if state.kind == "refused" and state.result is not None and state.result.code in ("NotFound", "404"):
            return [None] * len(messages)
        if state.kind != "ok":
            reason = state.result.reason if state.result else "no answer"
            return [Ambiguous(f"the status of group {group} could not be read: {reason}", code="group_unknown")] * len(messages)
        status = str(state.answer.get("status", ""))
        if status == "PENDING":
            return [Ambiguous(f"group {group} could not be deleted yet", code="group_pending")] * len(messages)
        if status == "DELETED" and not state.answer.get("dateSent"):
            return [Transient(f"group {group} was deleted unsent: never sent", code="group_deleted")] * len(messages)
        found = await self._group_messages(group)
        if found is None:
            return [Ambiguous(f"the messages of group {group} could not be read", code="group_unknown")] * len(messages)
        prices = _unit_prices(state.answer)
        answers: list[SendResult | None] = []
        for message in messages:
            item = found.get(message.key)
            if item is None:
                answers.append(Transient(f"not in the sent group {group}: never sent", code="not_in_group"))
                continue
            code = str(item.get("statusCode", ""))
            answers.append(_charged(Accepted(provider_id=str(item.get("messageId", ""))), message, prices) if _taken(code)
                           else _status(code, str(item.get("statusMessage", ""))))
        return answers

    async def _group_messages(self, group: str) -> dict[str, Mapping[str, Any]] | None:
        """Every message of ``group`` by key (``startKey``/``nextKey`` pages), or None when a page fails."""
        found: dict[str, Mapping[str, Any]] = {}
        start: str | None = None
        for _ in range(_MAX_GROUP // self.page_size + 2):
            params: dict[str, Any] = {"limit": self.page_size, **({"startKey": start} if start else {})}
            reply = await self._call("GET", f"/messages/v4/groups/{group}/messages", params=params)
            if reply.kind != "ok":
                return None
            page = reply.answer.get("messageList") or {}
            for item in page.values() if isinstance(page, Mapping) else page:
                key = _key(item)
                if key and (key not in found or _taken(str(item.get("statusCode", "")))):
                    found[key] = item
            following = reply.answer.get("nextKey")
            if not following or following == start or not page:
                return found
            start = str(following)
        return None

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def delivery_reports(payload: Any) -> list[DeliveryReport]:
        """The delivery reports in a Solapi webhook body: one report (``messageId``, ``statusCode``, ...,
        ``customFields``) or a list of ``{"eventDataId", "data", "retryCount"}``.  Status ``4000`` is delivered;
        another 3xxx code is a carrier or Kakao failure (3054/3055, a carrier's spam block, is an opt-out); reports of
        messages shopcrm did not send are skipped."""
        items = payload if isinstance(payload, list) else [payload]
        reports = []
        for item in items:
            data = item.get("data", item) if isinstance(item, Mapping) else {}
            key = _key(data)
            if not key:
                continue
            code = str(data.get("statusCode", ""))
            when = data.get("dateReported") or data.get("dateProcessed")
            try:
                at = datetime.fromisoformat(str(when).replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None) if when else None
            except ValueError:
                at = None
            reports.append(DeliveryReport(
                key=key, delivered=code == "4000", code=code, reason=str(data.get("statusMessage", "")),
                provider_id=str(data.get("messageId", "")), at=at, opted_out=code != "4000" and _PERMANENT.get(code, False),
            ))
        return reports


def _key(item: Mapping[str, Any]) -> str:
    return str((item.get("customFields") or {}).get("shopcrmKey", ""))


def _taken(code: str) -> bool:
    """Whether a message with this status code was taken: registered (2000), handed to the carrier or
    Kakao (3xxx, including delivery failures, which the delivery report tells), or done (4000)."""
    return code == "2000" or code[:1] in ("3", "4")


def _registered(batch: Sequence[Message], answer: Mapping[str, Any]) -> list[SendResult] | None:
    """Per message, from a PUT's ``resultList`` (by ``customFields.shopcrmKey``, else in order): Accepted
    with its message id when registered (2000; sent with the group), else the refusal; None when the
    answer does not account for every message."""
    items = answer.get("resultList")
    if not isinstance(items, list) or len(items) != len(batch) or not all(isinstance(i, Mapping) for i in items):
        return None
    by_key: dict[str, Mapping[str, Any]] | None = None
    results: list[SendResult] = []
    for message, item in zip(batch, items, strict=True):
        if _key(item) not in (message.key, ""):  # answered out of order: look it up by key
            by_key = by_key or {_key(i): i for i in items}
            item = by_key.get(message.key, item)
        code = str(item.get("statusCode", ""))
        if code == "2000":
            results.append(Accepted(provider_id=str(item.get("messageId", ""))))
        else:
            results.append(_status(code, str(item.get("statusMessage", ""))))
    return results


#: Solapi's message type per kind, as its price tables name them (lower-cased)
_TYPES = {"sms": "sms", "lms": "lms", "mms": "mms", "alimtalk": "ata", "brand_message": "bms_text", "friendtalk": "cta"}


def _unit_prices(answer: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """The unit prices a group's answer reports (``"price": {"82": {"sms": 20, "lms": 50, "ata": 19, ...}}``,
    in KRW per message of the account's plan), by (country, type); {} when it reports none."""
    found: dict[tuple[str, str], float] = {}
    table = answer.get("price")
    if not isinstance(table, Mapping):
        return found
    for country, prices in table.items():
        if isinstance(prices, Mapping):
            for kind, value in prices.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                    found[(str(country), str(kind).lower())] = float(value)
    return found


def _charged(result: SendResult, message: Message, prices: Mapping[tuple[str, str], float]) -> SendResult:
    """An accepted message with the charge Solapi reported for its type (Korean numbers: country 82), if any."""
    if not isinstance(result, Accepted) or result.cost is not None:
        return result
    charge = prices.get(("82", _TYPES.get(message.kind, message.kind)))
    return result if charge is None else attrs.evolve(result, cost=charge)


def _status(code: str, message: str) -> SendResult:
    reason = f"Solapi {code}: {message}"
    if code in _TRANSIENT:
        return Transient(reason, code=code)
    return Rejected(reason, code=code, opted_out=_PERMANENT.get(code, False))
