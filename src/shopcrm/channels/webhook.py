"""A channel that POSTs each message as JSON to a URL, signed with HMAC-SHA256.

The request carries ``Idempotency-Key: <message key>`` and
``X-Shopcrm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` so the receiver can
check who sent it and when (reject old timestamps to stop replays) and drop a key it has seen.  A
receiver that does so should be declared with ``deduplicates=True``: the dispatcher may then resend a
message whose outcome a crash left unknown.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from shopcrm.channels._base import KINDS, Accepted, Channel, Message, Rejected, SendResult, Transient

__all__ = ["WebhookChannel", "signature", "verify_signature"]


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Shopcrm-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, *, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds old (receivers use it)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, body, timestamp), header)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class WebhookChannel(Channel):
    """POSTs ``{"key", "customer_id", "campaign_id", "kind", "to", "text", ...}`` to ``url``.

    ``secret`` signs requests (or the environment variable named by ``secret_env``, by default
    ``SHOPCRM_WEBHOOK_SECRET``).  2xx is accepted (a JSON ``id`` in the answer becomes the provider id);
    408, 425, 429 and 5xx, timeouts and connection errors are transient (``Retry-After`` honoured); any
    other 4xx rejects.  ``transport`` replaces the network (``httpx.MockTransport`` in tests).
    """

    name = "webhook"
    kinds = KINDS
    batch_size = 50

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        secret_env: str = "SHOPCRM_WEBHOOK_SECRET",
        timeout: float = 10.0,
        deduplicates: bool = False,
        headers: Mapping[str, str] | None = None,
        rate_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret if secret is not None else os.environ.get(secret_env)
        if not self.secret:
            raise ValueError(f"the webhook channel needs a signing secret: pass secret=... or set {secret_env}")
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

    async def _post(self, message: Message) -> SendResult:
        body = json.dumps(self.payload(message), ensure_ascii=False, default=str).encode()
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Idempotency-Key": message.key,
            "X-Shopcrm-Signature": signature(self.secret or "", body, int(self._clock())),
        }
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            return Transient(f"timeout: {type(error).__name__}", code="timeout")
        except httpx.TransportError as error:
            return Transient(f"connection failed: {type(error).__name__}: {error}", code="connection")
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            provider_id = str(answer.get("id")) if isinstance(answer, dict) and answer.get("id") is not None else message.key
            return Accepted(provider_id=provider_id)
        reason = f"HTTP {status}: {response.text[:200]}"
        if status in (408, 425, 429) or status >= 500:
            return Transient(reason, code=str(status), retry_after=_retry_after(response))
        return Rejected(reason, code=str(status))

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._post(m) for m in batch)))

    async def aclose(self) -> None:
        await self._client.aclose()
