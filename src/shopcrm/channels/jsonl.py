"""A channel that appends messages to a JSON-lines file (development, audits, hand-offs to other systems)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from shopcrm.channels._base import KINDS, Accepted, Channel, Message, Rejected, SendResult, Transient

__all__ = ["JsonlChannel"]


class JsonlChannel(Channel):
    """One JSON object per line in ``path``, flushed and fsynced per batch.

    After a crash the file itself tells what was written, so :meth:`reconcile` knows every outcome:
    a key in the file was sent, a key not in it was not (and is sent again).  A line torn by a crash is
    ended before the next batch is appended, so it never swallows the line after it.  A message that
    cannot be written as JSON (a lone surrogate in its text, a NaN) is rejected alone.
    """

    name = "jsonl"
    kinds = KINDS
    batch_size = 1000

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @staticmethod
    def _line(message: Message) -> bytes:
        return (json.dumps(message.as_dict(), ensure_ascii=False, default=str, allow_nan=False) + "\n").encode("utf-8")

    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        try:
            self._line(message)
        except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
            problems.append(f"the message cannot be written as JSON: {error}")
        return problems

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        results: list[SendResult] = []
        lines = []
        for message in batch:
            try:
                lines.append(self._line(message))
                results.append(Accepted(provider_id=message.key))
            except (TypeError, ValueError) as error:
                results.append(Rejected(f"the message cannot be written as JSON: {error}", code="invalid"))
        if not lines:
            return results
        with self.path.open("ab") as file:
            if file.tell() > 0:
                with self.path.open("rb") as tail:
                    tail.seek(-1, os.SEEK_END)
                    if tail.read(1) != b"\n":
                        file.write(b"\n")  # end the line a crash tore, so it cannot swallow the next one
            file.write(b"".join(lines))
            file.flush()
            os.fsync(file.fileno())
        return results

    def written(self) -> list[dict[str, object]]:
        """Every message in the file, oldest first (a torn line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().split(b"\n"):  # not str.splitlines: U+2028 or U+0085 in a text is no line end
            try:
                item = json.loads(line.decode("utf-8", errors="replace"))
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        keys = {str(item.get("key")) for item in self.written()}
        return [Accepted(provider_id=m.key) if m.key in keys else Transient("not in the file: never written")
                for m in messages]
