"""Solapi (솔라피): SMS, LMS, MMS, Kakao AlimTalk and Brand Message over its HTTP API.

- ``POST /messages/v4/send-many/detail`` with up to 10,000 messages (batches of ``batch_size``);
- authentication ``Authorization: HMAC-SHA256 apiKey=..., date=..., salt=..., signature=...`` where
  the signature is ``hex(HMAC-SHA256(api_secret, date + salt))``, with a **fresh salt per request,
  retries included** (a reused signature is refused as ``DuplicatedSignature``);
- every message carries ``customFields.shopcrmKey`` (its idempotency key) to correlate the answer;
- the answer lists the messages it refused (``failedMessageList``: a 4-digit status code each) and,
  with ``showMessageList``, the id of each message it took.

Codes that mean "never on this channel" reject (invalid number, 080 opt-out, template mismatch, ...);
a low balance, 5xx, 429 and timeouts are transient.  AlimTalk goes with ``disableSms: false`` when
``substitute_sms`` is on: Solapi itself sends the text as SMS/LMS when Kakao cannot deliver (not a
KakaoTalk user, blocked), which happens after the request is answered.  Brand Messages go as
``BMS_TEXT`` to channel friends (targeting ``I``); ``friendtalk`` messages as the legacy ``CTA`` type.

Facts and codes: see the provider notes in ``docs/channels.md`` (sources there).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from shopcrm.channels._base import Accepted, Channel, DeliveryReport, Message, Rejected, SendResult, Transient
from shopcrm.channels.webhook import _retry_after

__all__ = ["SOLAPI_URL", "SolapiChannel", "authorization"]

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


def authorization(api_key: str, api_secret: str, date: str, salt: str) -> str:
    """The ``Authorization`` header for a request made at ``date`` (ISO 8601) with ``salt``."""
    signature = hmac.new(api_secret.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
    return f"HMAC-SHA256 apiKey={api_key}, date={date}, salt={salt}, signature={signature}"


def _digits(number: str) -> str:
    return re.sub(r"[^0-9]", "", number)


class SolapiChannel(Channel):
    """Solapi for ``sms``/``lms``/``mms``, ``alimtalk``, ``brand_message`` (and legacy ``friendtalk``).

    ``api_key`` / ``api_secret`` come from the arguments or the environment (``SOLAPI_API_KEY``,
    ``SOLAPI_API_SECRET``); ``sender`` is the registered sender number (발신번호); ``pf_id`` the Kakao
    channel's profile id for AlimTalk and Brand Messages.  ``image_ids`` maps an MMS/Brand Message
    ``image_url`` to the file id Solapi's storage gave it.  ``transport`` replaces the network (tests).
    """

    name = "solapi"
    kinds = frozenset({"sms", "lms", "mms", "alimtalk", "brand_message", "friendtalk"})
    batch_size = 500

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
            item["kakaoOptions"] = {"pfId": self.pf_id, "bms": {"targeting": "I"}, **({"buttons": buttons} if buttons else {})}
        else:  # the legacy FriendTalk type, for accounts that still accept it
            item["type"] = "CTA"
            item["kakaoOptions"] = {"pfId": self.pf_id, "adFlag": message.purpose == "advertising",
                                    **({"buttons": buttons} if buttons else {})}
        return item

    def headers(self) -> dict[str, str]:
        date = self._clock().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        salt = "".join(secrets.choice(_SALT) for _ in range(32))  # fresh per request, retries included
        return {"Authorization": authorization(self.api_key, self.api_secret, date, salt), "Content-Type": "application/json"}

    # ---------------------------------------------------------------- sending
    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        # our own ledger deduplicates by key; two messages to one number in a batch are legitimate
        payload = {"messages": [self.body(m) for m in batch], "allowDuplicates": True, "showMessageList": True}
        url = f"{self.base_url}/messages/v4/send-many/detail"
        try:
            response = await self._client.post(url, json=payload, headers=self.headers())
        except httpx.TimeoutException as error:
            return [Transient(f"timeout: {type(error).__name__}", code="timeout")] * len(batch)
        except httpx.TransportError as error:
            return [Transient(f"connection failed: {type(error).__name__}: {error}", code="connection")] * len(batch)
        if response.status_code != 200:
            return [self._request_failed(response)] * len(batch)
        try:
            answer = response.json()
        except ValueError:
            return [Transient(f"unreadable answer: {response.text[:200]}", code="answer")] * len(batch)
        failed = {_key(item): item for item in answer.get("failedMessageList") or []}
        taken = {_key(item): item for item in answer.get("messageList") or []}
        results: list[SendResult] = []
        for message in batch:
            if message.key in failed:
                item = failed[message.key]
                results.append(_status(str(item.get("statusCode", "")), str(item.get("statusMessage", ""))))
            elif message.key in taken:
                results.append(Accepted(provider_id=str(taken[message.key].get("messageId", ""))))
            else:
                group = (answer.get("groupInfo") or {}).get("groupId", "")
                results.append(Accepted(provider_id=f"{group}:{message.key}"))
        return results

    @staticmethod
    def _request_failed(response: httpx.Response) -> SendResult:
        try:
            error = response.json()
        except ValueError:
            error = {}
        code = str(error.get("errorCode") or response.status_code)
        reason = f"HTTP {response.status_code} {code}: {error.get('errorMessage') or response.text[:200]}"
        if response.status_code == 429 or response.status_code >= 500 or code in ("RequestTimeTooSkewed", "DuplicatedSignature"):
            return Transient(reason, code=code, retry_after=_retry_after(response))
        return Rejected(reason, code=code)

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def delivery_reports(payload: Any) -> list[DeliveryReport]:
        """The delivery reports in a Solapi webhook body: one report (``messageId``, ``statusCode``, ...,
        ``customFields``) or a list of ``{"eventDataId", "data", "retryCount"}``.  Status ``4000`` is delivered;
        another 3xxx code is a carrier or Kakao failure; reports of messages shopcrm did not send are skipped."""
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
                provider_id=str(data.get("messageId", "")), at=at,
            ))
        return reports


def _key(item: Mapping[str, Any]) -> str:
    return str((item.get("customFields") or {}).get("shopcrmKey", ""))


def _status(code: str, message: str) -> SendResult:
    reason = f"Solapi {code}: {message}"
    if code in _TRANSIENT:
        return Transient(reason, code=code)
    return Rejected(reason, code=code, opted_out=_PERMANENT.get(code, False))
