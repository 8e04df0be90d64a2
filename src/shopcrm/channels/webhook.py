"""A channel that POSTs each message as JSON to a URL, signed with HMAC-SHA256.

The request carries ``Idempotency-Key: <message key>`` and
``X-Shopcrm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` so the receiver can
check who sent it and when (reject old timestamps to stop replays) and drop a key it has seen.  While a
secret is being rotated the channel signs with each of its secrets (``t=...,v1=...,v1=...``) and a receiver
accepts a request that any of its own secrets signed.

What an answer means: 2xx took the message; a connection that could not be made, 408, 425, 429 and 503
did not (:class:`~shopcrm.channels.Transient`, safe to resend); a request that was written and whose answer
was lost (a read timeout, a connection closed or reset after the request went out) or a 500, 502, 504 or
other 5xx, which a proxy may send after the receiver processed it, *may* have been taken
(:class:`~shopcrm.channels.Ambiguous`).  The channel cannot ask the receiver afterwards, so for a receiver
that does not drop repeated keys an ambiguous message ends ``unknown`` and is never resent.  A receiver that
does drop them should be declared with ``deduplicates=True``: the dispatcher may then resend.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from shopcrm.channels._base import (
    KINDS,
    Accepted,
    Ambiguous,
    Channel,
    Message,
    Rejected,
    SendResult,
    Transient,
)

__all__ = ["WebhookChannel", "signature", "verify_signature"]

#: statuses that say the receiver did not process the request (safe to send again)
_NOT_TAKEN = frozenset({408, 425, 429, 503})
_TIMESTAMP = re.compile(r"[0-9]{1,15}")  # ASCII digits only, up to year 31 million (int() takes any Unicode digit)
_DIGEST = re.compile(r"[0-9a-f]{64}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def _secrets(secret: str | Iterable[str]) -> list[str]:
    return [secret] if isinstance(secret, str) else list(secret)


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature(secret: str | Iterable[str], body: bytes, timestamp: int) -> str:
    """The ``X-Shopcrm-Signature`` header value for ``body`` sent at ``timestamp`` (whole unix seconds), with
    one ``v1`` per secret when several are given (secret rotation)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not _TIMESTAMP.fullmatch(str(timestamp)):
        raise ValueError(f"a signature timestamp is whole unix seconds from 0 to 15 digits, not {timestamp!r}")
    secrets = _secrets(secret)
    if not secrets or not all(secrets):
        raise ValueError("signing needs at least one secret, and no secret may be empty")
    return ",".join([f"t={timestamp}", *(f"v1={_digest(s, body, timestamp)}" for s in secrets)])


def verify_signature(secret: str | Iterable[str], body: bytes, header: str, *, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` (or any of several secrets) and is at most ``tolerance``
    seconds old or ahead (receivers use it).  Never raises: a malformed or non-ASCII header, a clock or
    tolerance that is not a finite number, or an empty secret all answer False."""
    try:
        secrets = [s.encode() for s in _secrets(secret) if isinstance(s, str) and s]
        now, tolerance = float(now), float(tolerance)
    except (TypeError, ValueError, OverflowError, UnicodeError):
        return False
    if not secrets or not isinstance(body, bytes | bytearray) or not isinstance(header, str) or not header.isascii():
        return False
    if not (math.isfinite(now) and math.isfinite(tolerance) and tolerance >= 0):
        return False
    timestamps, digests = [], []
    for item in header.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals:
            return False
        if name == "t":
            timestamps.append(value)
        elif name == "v1" and _DIGEST.fullmatch(value):
            digests.append(value.encode())
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not digests:
        return False
    timestamp = int(timestamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + bytes(body)
    expected = [hmac.new(s, signed, hashlib.sha256).hexdigest().encode() for s in secrets]
    matched = False
    for e in expected:  # every comparison is made (no early exit): the time taken does not tell which one matched
        for d in digests:
            matched |= hmac.compare_digest(e, d)
    return matched


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class WebhookChannel(Channel):
    """POSTs ``{"key", "customer_id", "campaign_id", "kind", "to", "text", ...}`` to ``url``.

    ``secret`` signs requests (a list of secrets signs with each, while a receiver's secret is rotated), or
    the environment variable named by ``secret_env``, by default ``SHOPCRM_WEBHOOK_SECRET``.  2xx is
    accepted (a JSON ``id`` in the answer becomes the provider id); a refused connection, 408, 425, 429 and
    503 are transient (``Retry-After`` honoured); a lost answer (read timeout, connection closed after the
    request was written) and other 5xx are ambiguous; any other 4xx rejects.  ``deduplicates=True`` declares
    that the receiver drops an ``Idempotency-Key`` it has seen.  ``transport`` replaces the network
    (``httpx.MockTransport`` in tests).
    """

    name = "webhook"
    kinds = KINDS
    batch_size = 50

    def __init__(
        self,
        url: str,
        *,
        secret: str | Sequence[str] | None = None,
        secret_env: str = "SHOPCRM_WEBHOOK_SECRET",
        timeout: float = 10.0,
        deduplicates: bool = False,
        headers: Mapping[str, str] | None = None,
        rate_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        secrets = _secrets(secret) if secret is not None else _secrets(os.environ.get(secret_env) or [])
        if not secrets or not all(isinstance(s, str) and s for s in secrets):
            raise ValueError(f"the webhook channel needs a signing secret (none empty): pass secret=... or set {secret_env}")
        self.secrets = secrets
        self.secret = secrets[0]
        for name, value in (headers or {}).items():
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name) or not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"the header {name!r}: {value!r} is not a valid HTTP header (ASCII, no line breaks)")
        self.deduplicates = deduplicates
        self.rate_per_second = rate_per_second
        self._headers = dict(headers or {})
        self._clock = clock
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def payload(self, message: Message) -> dict[str, Any]:
        return {
            "key": message.key, "customer_id": message.customer_id, "campaign_id": message.campaign_id,
            "purpose": message.purpose, "channel": message.channel, "kind": message.kind, "to": message.to,
            "text": message.text, "subject": message.subject, "html": message.html,
            "template_code": message.template_code, "variables": dict(message.variables),
            "buttons": [{"name": n, "url": u} for n, u in message.buttons], "image_url": message.image_url,
            "attempt": message.attempt,
        }

    def _body(self, message: Message) -> bytes:
        return json.dumps(self.payload(message), ensure_ascii=False, default=str, allow_nan=False).encode()

    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        if not message.key or not _HEADER_VALUE.fullmatch(message.key):
            problems.append(f"the key {message.key!r} cannot be an Idempotency-Key header (printable ASCII)")
        try:
            self._body(message)
        except (TypeError, ValueError) as error:  # NaN in a variable, a lone surrogate in the text, ...
            problems.append(f"the message cannot be encoded as JSON: {error}")
        return problems

    async def _post(self, message: Message) -> SendResult:
        try:
            body = self._body(message)
        except (TypeError, ValueError) as error:
            return Rejected(f"the message cannot be encoded as JSON: {error}", code="invalid")
        if not message.key or not _HEADER_VALUE.fullmatch(message.key):
            return Rejected(f"the key {message.key!r} cannot be an Idempotency-Key header (printable ASCII)", code="invalid")
        try:
            signed = signature(self.secrets, body, int(self._clock()))
        except (ValueError, OverflowError, TypeError) as error:
            return Transient(f"cannot sign: the clock gave no usable time ({error})", code="clock")
        headers = {**self._headers, "Content-Type": "application/json", "Idempotency-Key": message.key,
                   "X-Shopcrm-Signature": signed}
        try:
            async with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                status = response.status_code
                try:
                    await response.aread()
                    text = response.text
                except (httpx.HTTPError, UnicodeError, LookupError):
                    text = ""
                return self._result(message, status, text, response)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError,
                httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
            return Transient(f"not sent: {type(error).__name__}: {error}", code="connection")
        except httpx.TimeoutException as error:
            return Ambiguous(f"no answer after the request was sent: {type(error).__name__}", code="timeout")
        except httpx.TransportError as error:
            return Ambiguous(f"connection failed after the request was sent: {type(error).__name__}: {error}",
                             code="connection")

    @staticmethod
    def _result(message: Message, status: int, text: str, response: httpx.Response) -> SendResult:
        if 200 <= status < 300:
            try:
                answer = json.loads(text) if text else None
            except ValueError:
                answer = None
            provider_id = str(answer.get("id")) if isinstance(answer, dict) and answer.get("id") is not None else message.key
            return Accepted(provider_id=provider_id)
        reason = f"HTTP {status}: {text[:200]}"
        if status in _NOT_TAKEN:
            return Transient(reason, code=str(status), retry_after=_retry_after(response))
        if status >= 500:
            return Ambiguous(f"{reason} (the receiver may have processed it)", code=str(status))
        return Rejected(reason, code=str(status))

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._post(m) for m in batch)))

    async def aclose(self) -> None:
        await self._client.aclose()
