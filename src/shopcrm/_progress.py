"""Progress bars for the shell's long calls (ticks, previews, loads, dispatches), drawn by tqdm on stderr.

Library calls draw none unless asked (``progress=True``); the ``shopcrm`` command draws them when stderr is a
terminal (``--no-progress`` turns them off).  The functional core (dsl, compiler, lifecycle, campaigns) never
imports this module or tqdm: the shell reports the core's steps around its calls.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any

__all__ = ["Bar", "bar", "outcomes_bar"]


class Bar:
    """A progress bar, or nothing when disabled: ``update``, ``step`` and ``close`` cost nothing then."""

    def __init__(self, enabled: bool, *, total: int | None, desc: str, unit: str = "step") -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True)

    def step(self, what: str, n: int = 1) -> None:
        """Advance by ``n`` and say what is being done now."""
        if self._bar is not None:
            self._bar.set_postfix_str(what, refresh=False)
            self._bar.update(n)

    def note(self, what: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(what)

    def total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def bar(enabled: bool, *, total: int | None, desc: str, unit: str = "step") -> Bar:
    return Bar(enabled, total=total, desc=desc, unit=unit)


def outcomes_bar(total: int | None = None, desc: str = "dispatch") -> Any:
    """A dispatcher ``progress`` callback drawing a bar of settled messages (sent, failed, unknown)."""
    shown = Bar(True, total=total, desc=desc, unit="msg")
    done = [0]

    def progress(outcomes: Mapping[str, int]) -> None:
        now = sum(outcomes.get(k, 0) for k in ("sent", "failed", "unknown", "expired"))
        shown.note(", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())))
        shown.update(now - done[0])
        done[0] = now

    progress.close = shown.close  # type: ignore[attr-defined]
    return progress
