"""Named segments kept in a ``shopcrm_segments`` table next to the shop's data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from shopcrm.sources._base import SavedSegment, SegmentStore
from shopcrm.sources._library import LibraryStore

__all__ = ["SQLSegmentStore"]

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
Transaction = Callable[[], AbstractContextManager[None]]


class SQLSegmentStore(SegmentStore):
    """A segment table reached through a ``run(sql, params)`` function.

    The table is created on the first write, so read-only shops can still list
    (no) segments.  ``placeholder`` is the driver's parameter marker.
    """

    TABLE = "shopcrm_segments"

    def __init__(
        self, run: Run, placeholder: str = "?", *, sqlite: bool = False, transaction: Transaction | None = None,
        library: LibraryStore | None = None,
    ) -> None:
        #: the library's tables: the segment table's name, and the one ``ensure`` that creates them all
        self._library = library
        if library is not None:
            self.TABLE = library.tables.segments
        self._run = run
        self._transaction: Transaction = transaction or nullcontext
        self._p = placeholder
        self._sqlite = sqlite
        self._ready = False

    def _exists(self) -> bool:
        """Whether the table is there, asked without a failing statement (which would
        abort the caller's transaction on PostgreSQL)."""
        if self._ready:
            return True
        if self._library is not None:  # in the library's schema (or the connection's current one)
            self._ready = self._library.has_table("segments")
            return self._ready
        schema, _, table = self.TABLE.rpartition(".")
        if self._sqlite:
            sql = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name = {self._p}"
        else:
            sql = f"SELECT table_name FROM information_schema.tables WHERE table_name = {self._p}"
            if schema:
                sql += f" AND table_schema = {self._p}"
        self._ready = bool(self._run(sql, (table, schema) if schema else (table,)))
        return self._ready

    def _ensure(self) -> None:
        if self._library is not None:
            self._library.writable("save a segment")
            self._library.ensure()
            self._ready = True
        if not self._exists():
            self._run(
                f"CREATE TABLE IF NOT EXISTS {self.TABLE} (name VARCHAR(200) PRIMARY KEY, rule TEXT NOT NULL, "
                "description TEXT, updated_at VARCHAR(40) NOT NULL)",
                (),
            )
            self._ready = True

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not self._exists():  # no failing statement: it would abort the caller's transaction on PostgreSQL
            return []
        try:
            return self._run(sql, params)
        except Exception as exc:  # the table may not exist yet: nothing saved
            if self._ready or (self.TABLE.lower() not in str(exc).lower() and "exist" not in str(exc).lower()):
                raise
            return []

    def put(self, segment: SavedSegment) -> None:
        self._ensure()
        p = self._p
        with self._transaction():
            self._run(f"DELETE FROM {self.TABLE} WHERE name = {p}", (segment.name,))
            self._run(
                f"INSERT INTO {self.TABLE} (name, rule, description, updated_at) VALUES ({p}, {p}, {p}, {p})",
                (segment.name, segment.rule_json, segment.description, segment.updated_at.isoformat()),
            )

    def get(self, name: str) -> SavedSegment | None:
        rows = self._rows(
            f"SELECT name, rule, description, updated_at FROM {self.TABLE} WHERE name = {self._p}", (name,)
        )
        return _segment(rows[0]) if rows else None

    def all(self) -> list[SavedSegment]:
        rows = self._rows(f"SELECT name, rule, description, updated_at FROM {self.TABLE} ORDER BY name")
        return sorted((_segment(r) for r in rows), key=lambda s: s.name)

    def delete(self, name: str) -> bool:
        if self.get(name) is None:
            return False
        if self._library is not None:
            self._library.writable("delete a segment")
        self._run(f"DELETE FROM {self.TABLE} WHERE name = {self._p}", (name,))
        return True


def _segment(row: tuple[Any, ...]) -> SavedSegment:
    name, rule, description, updated_at = row
    return SavedSegment(str(name), str(rule), description, datetime.fromisoformat(str(updated_at)))
