"""A channel that prints messages (development): every message is accepted."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from shopcrm.channels._base import KINDS, Accepted, Channel, Message, SendResult

__all__ = ["ConsoleChannel"]


class ConsoleChannel(Channel):
    """Prints one line per message to ``write`` (standard output by default)."""

    name = "console"
    kinds = KINDS
    batch_size = 1000

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self._write = write or (lambda line: print(line, file=sys.stdout))

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        for message in batch:
            head = f"[{message.kind} -> {message.to}]"
            subject = f" {message.subject} |" if message.subject else ""
            self._write(f"{head}{subject} {message.text}".replace("\n", " / "))
        return [Accepted(provider_id=message.key) for message in batch]
