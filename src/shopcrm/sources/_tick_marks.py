"""How far each triggered scenario was ticked, and when each of its customers has a step coming due (issue 15).

A watermark tick reads, for a scenario, only the customers with a trigger or exit event since the last tick (less
an allowance for events that arrive late) and the customers whose **wake-up** has come: the earliest instant at
which a step of one of their entries comes due, as the planner left it.  Anyone else has nothing to decide: no new
event, and no step due since the last tick.

The marks are written after the tick's decisions are recorded, in a transaction of their own: a process killed
between the two leaves the older mark, so the next tick reads a longer stretch again (more customers read, the
same decisions: the outbox's keys make every decision once).  A mark never runs ahead of what was recorded.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

import attrs

from shopcrm.sources._transactions import is_contention, is_duplicate_key

__all__ = ["MemoryTickMarks", "SQLTickMarks", "TickAdvance", "TickMark", "TickMarks"]


class TickMark(NamedTuple):
    """A scenario's watermark: the campaign as saved at ``saved_at`` was ticked up to ``ticked_at``."""

    saved_at: datetime
    ticked_at: datetime


@attrs.frozen(kw_only=True)
class TickAdvance:
    """What one tick learnt of one scenario: it was read up to ``ticked_at`` (the campaign as saved at
    ``saved_at``); ``whole`` when every customer was read (every earlier wake-up is replaced), else the
    ``examined`` customers' wake-ups are replaced by ``wakeups`` (customer -> instant)."""

    campaign_id: str
    saved_at: datetime
    ticked_at: datetime
    whole: bool
    examined: Collection[Any] = ()
    wakeups: Mapping[Any, datetime] = attrs.field(factory=dict)


class TickMarks(ABC):
    """Watermarks and wake-ups of triggered scenarios."""

    @abstractmethod
    def marks(self, campaign_ids: Sequence[str]) -> dict[str, TickMark]:
        """The marks of these scenarios (a scenario never ticked has none: the next tick reads it whole)."""

    @abstractmethod
    def due(self, campaign_id: str, until: datetime) -> list[Any]:
        """The customers of this scenario whose wake-up is at or before ``until``."""

    @abstractmethod
    def advance(self, changes: Sequence[TickAdvance]) -> None:
        """Write what a tick learnt, all or nothing, in a transaction of its own.  When another tick writes the same
        marks at the same time, the other's stand and these are dropped, as if this tick had stopped before writing
        them (a later tick reads on from the marks that stand, and the outbox's keys keep it from deciding anything
        twice)."""


class MemoryTickMarks(TickMarks):
    """Marks in memory (the in-memory store, tests)."""

    def __init__(self) -> None:
        self._marks: dict[str, TickMark] = {}
        self._wakeups: dict[str, dict[Any, datetime]] = {}
        self._lock = threading.Lock()

    def marks(self, campaign_ids: Sequence[str]) -> dict[str, TickMark]:
        return {c: self._marks[c] for c in campaign_ids if c in self._marks}

    def due(self, campaign_id: str, until: datetime) -> list[Any]:
        return [c for c, at in self._wakeups.get(campaign_id, {}).items() if at <= until]

    def advance(self, changes: Sequence[TickAdvance]) -> None:
        with self._lock:
            for change in changes:
                known = self._wakeups.setdefault(change.campaign_id, {})
                if change.whole:
                    known.clear()
                for customer in change.examined:
                    known.pop(customer, None)
                known.update(change.wakeups)
                self._marks[change.campaign_id] = TickMark(change.saved_at, change.ticked_at)


def _stamp(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


class SQLTickMarks(TickMarks):
    """Marks in the library's ``tick_marks`` and ``wakeups`` tables, reached through ``run(sql, params)``."""

    def __init__(
        self, marks_table: str, wakeups_table: str, run: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]],
        insert: Callable[[str, Sequence[str], Sequence[Sequence[Any]]], None],
        transaction: Callable[[], AbstractContextManager[None]], ensure: Callable[[], None], *, placeholder: str = "?",
        present: Callable[[], bool] = lambda: True, list_parameter: bool = False,
    ) -> None:
        self._marks_table, self._wakeups_table = marks_table, wakeups_table
        #: a set of customers reaches a statement as one list parameter (DuckDB: ``IN (SELECT unnest(?))``, any number
        #: at once), else as placeholders, 500 at a time (DuckDB binds hundreds of placeholders slowly: the 16,000
        #: customers an hour's tick examined took 32 such deletes, 1.1 s of a 6 s tick)
        self._list_parameter = list_parameter
        self._run, self._insert, self._transaction, self._ensure = run, insert, transaction, ensure
        self._p = placeholder
        #: whether the tables are there (a read-only shop written by an older shopcrm has none: no marks)
        self._present = present
        self._seen = False

    def _readable(self) -> bool:
        self._ensure()
        if not self._seen:
            self._seen = self._present()
        return self._seen

    def marks(self, campaign_ids: Sequence[str]) -> dict[str, TickMark]:
        if not campaign_ids or not self._readable():
            return {}
        marks = ", ".join([self._p] * len(campaign_ids))
        rows = self._run(f"SELECT campaign_id, saved_at, ticked_at FROM {self._marks_table} WHERE campaign_id IN ({marks})",
                         list(campaign_ids))
        return {str(c): TickMark(datetime.fromisoformat(str(s)), datetime.fromisoformat(str(t))) for c, s, t in rows}

    def due(self, campaign_id: str, until: datetime) -> list[Any]:
        if not self._readable():
            return []
        p = self._p
        rows = self._run(f"SELECT customer_id FROM {self._wakeups_table} WHERE campaign_id = {p} AND due_at <= {p}",
                         (campaign_id, _stamp(until)))
        return [json.loads(str(c)) for (c,) in rows]

    def advance(self, changes: Sequence[TickAdvance]) -> None:
        if not changes:
            return
        self._ensure()
        try:
            self._advance(changes)
        except Exception as error:
            if not (is_contention(error) or is_duplicate_key(error)):
                raise
            # another tick advanced these marks at the same time (two ticks at once: DuckDB refuses the second
            # writer, PostgreSQL and MySQL find the other's new mark when this one inserts its own). This tick's
            # rows are recorded already; its marks are dropped as if it had stopped before advancing them, and the
            # other's stand: a later tick reads from them and decides nothing twice (the outbox's keys)

    def _advance(self, changes: Sequence[TickAdvance]) -> None:
        p = self._p
        with self._transaction():
            for change in changes:
                if change.whole:
                    self._run(f"DELETE FROM {self._wakeups_table} WHERE campaign_id = {p}", (change.campaign_id,))
                elif self._list_parameter:
                    if change.examined:
                        self._run(f"DELETE FROM {self._wakeups_table} WHERE campaign_id = {p} AND customer_id IN "
                                  f"(SELECT unnest(CAST({p} AS VARCHAR[])))",
                                  [change.campaign_id, [json.dumps(c) for c in change.examined]])
                else:
                    for chunk in _chunks([json.dumps(c) for c in change.examined]):
                        self._run(f"DELETE FROM {self._wakeups_table} WHERE campaign_id = {p} AND customer_id IN "
                                  f"({', '.join([p] * len(chunk))})", [change.campaign_id, *chunk])
                if change.wakeups:
                    customers = list(change.wakeups)
                    self._insert(self._wakeups_table, ["campaign_id", "customer_id", "due_at"], [
                        [change.campaign_id] * len(customers), [json.dumps(c) for c in customers],
                        [_stamp(change.wakeups[c]) for c in customers],
                    ])
                self._run(f"DELETE FROM {self._marks_table} WHERE campaign_id = {p}", (change.campaign_id,))
                self._run(f"INSERT INTO {self._marks_table} (campaign_id, saved_at, ticked_at) VALUES ({p}, {p}, {p})",
                          (change.campaign_id, _stamp(change.saved_at), _stamp(change.ticked_at)))


def _chunks(values: Iterable[Any], size: int = 500) -> list[list[Any]]:
    items = list(values)
    return [items[i:i + size] for i in range(0, len(items), size)]
