"""The dispatcher's clock and sleep for tests: time moves only when the dispatcher sleeps, at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


class FakeClock:
    """``clock()`` is the time now (naive UTC); ``await sleep(s)`` moves it ``s`` seconds forward at once and keeps
    what was slept in ``slept``; ``aware()`` is the same instant with its zone (for a channel's own clock)."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def aware(self) -> datetime:
        return self.now.replace(tzinfo=UTC)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)
