"""PushGate: a shop's own push gateway, as a shopcrm channel plugin.

The gateway takes ``POST /v1/notifications`` with a bearer token and a JSON list of notifications
``{"id", "token", "title", "body", "link"}``, and answers per notification ``{"id", "status", "error"}``
where ``status`` is ``queued``, ``invalid_token`` (the device is gone: never again) or ``busy`` (try later).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import httpx

from shopcrm.channels import Accepted, Channel, Message, Rejected, SendResult, Transient

__all__ = ["PushGateChannel"]


class PushGateChannel(Channel):
    """Push notifications through PushGate; ``token`` from the argument or ``PUSHGATE_TOKEN``."""

    name = "pushgate"
    kinds = frozenset({"push"})
    batch_size = 100
    deduplicates = True  # PushGate drops a notification id it has seen: resending an unknown outcome is safe

    def __init__(self, url: str, *, token: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.token = token or os.environ.get("PUSHGATE_TOKEN", "")
        if not self.token:
            raise ValueError("PushGate needs an API token: pass token=... or set PUSHGATE_TOKEN")
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=10, transport=transport)

    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        if len(message.text) > 1000:
            problems.append(f"{len(message.text)} characters; a PushGate body holds 1,000")
        return problems

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        if not batch:
            return []
        notifications = [
            {"id": m.key, "token": m.to, "title": m.subject or "", "body": m.text, "link": m.buttons[0][1] if m.buttons else None}
            for m in batch
        ]
        try:
            response = await self._client.post(f"{self.url}/v1/notifications", json=notifications,
                                               headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as error:
            return [Transient(f"{type(error).__name__}: {error}", code="connection")] * len(batch)
        if response.status_code == 429 or response.status_code >= 500:
            retry = response.headers.get("Retry-After")
            return [Transient(f"HTTP {response.status_code}", code=str(response.status_code),
                              retry_after=float(retry) if retry else None)] * len(batch)
        if response.status_code != 200:
            return [Rejected(f"HTTP {response.status_code}: {response.text[:200]}", code=str(response.status_code))] * len(batch)
        answers = {item["id"]: item for item in response.json()}
        results: list[SendResult] = []
        for message in batch:
            item = answers.get(message.key, {"status": "busy"})
            if item["status"] == "queued":
                results.append(Accepted(provider_id=message.key))
            elif item["status"] == "invalid_token":
                results.append(Rejected("the device token is no longer valid", code="invalid_token"))
            else:
                results.append(Transient(f"gateway answered {item['status']!r}", code=str(item["status"])))
        return results

    async def aclose(self) -> None:
        await self._client.aclose()
