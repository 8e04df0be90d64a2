"""A channel that prints messages (development): every message it prints is accepted."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from shopcrm.channels._base import KINDS, Accepted, Ambiguous, Channel, Message, SendResult, Transient

__all__ = ["ConsoleChannel"]


class ConsoleChannel(Channel):
    """Prints one line per message to ``write`` (standard output by default).

    Line breaks are shown as `` / `` and characters the output cannot encode (a lone surrogate) as
    escapes, so every message prints.  If ``write`` fails, the message being written is ambiguous (part
    of it may be out) and the rest of the batch transient; the console keeps no record to reconcile with.
    """

    name = "console"
    kinds = KINDS
    batch_size = 1000

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self._write = write or (lambda line: print(line, file=sys.stdout))

    @staticmethod
    def line(message: Message) -> str:
        head = f"[{message.kind} -> {message.to}]"
        subject = f" {message.subject} |" if message.subject else ""
        text = f"{head}{subject} {message.text}".replace("\r\n", "\n").replace("\r", "\n").replace("\n", " / ")
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        results: list[SendResult] = []
        for message in batch:
            try:
                self._write(self.line(message))
            except (OSError, ValueError) as error:  # a closed or broken output
                results.append(Ambiguous(f"printing failed: {error}", code="output"))
                results += [Transient("not printed: the output failed", code="output")] * (len(batch) - len(results))
                break
            results.append(Accepted(provider_id=message.key))
        return results
