"""A channel that appends messages to a JSON-lines file (development, audits, hand-offs to other systems)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from shopcrm.channels._base import KINDS, Accepted, Channel, Message, SendResult, Transient

__all__ = ["JsonlChannel"]


class JsonlChannel(Channel):
    """One JSON object per line in ``path``, flushed and fsynced per batch.

    After a crash the file itself tells what was written, so :meth:`reconcile` knows every outcome:
    a key in the file was sent, a key not in it was not (and is sent again).
    """

    name = "jsonl"
    kinds = KINDS
    batch_size = 1000

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        lines = "".join(json.dumps(m.as_dict(), ensure_ascii=False, default=str) + "\n" for m in batch)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(lines)
            file.flush()
            os.fsync(file.fileno())
        return [Accepted(provider_id=m.key) for m in batch]

    def written(self) -> list[dict[str, object]]:
        """Every message in the file, oldest first (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        keys = {str(item.get("key")) for item in self.written()}
        return [Accepted(provider_id=m.key) if m.key in keys else Transient("not in the file: never written")
                for m in messages]
