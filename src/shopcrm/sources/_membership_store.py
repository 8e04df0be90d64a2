"""Where a shop keeps the members of its tracked segments: a row per stay (``entered_at``, ``exited_at``), the
instant each customer's membership may next change with no new event (``next_change_at``), the tracking state
(the rule tracked, the watermark of the last refresh) and the last seen values of tracked attributes.

Two implementations: in memory (sources with nowhere to write: Spark without a store, tests) and SQL in the
library's tables beside the campaign store (DuckDB, SQLite, PostgreSQL, MySQL), reached through the source's
:class:`~shopcrm.sources._library.LibraryStore`.  Customer ids are kept as JSON text (``1`` and ``"1"`` stay
apart), instants as ISO text, as in the campaign store.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, NamedTuple

from shopcrm.sources._library import LibraryStore, stored_id
from shopcrm.sources._transactions import is_contention

__all__ = ["MembershipStore", "MemoryMembershipStore", "RefreshConflict", "Refreshed", "SQLMembershipStore", "Stay"]


class Stay(NamedTuple):
    """One stay of a customer in a tracked segment: entered at ``entered_at``, left at ``exited_at`` (None:
    still a member)."""

    segment: str
    customer_id: Any
    entered_at: datetime
    exited_at: datetime | None


class Refreshed(NamedTuple):
    """One segment's refresh, as :meth:`MembershipStore.apply` takes it (for :meth:`MembershipStore.apply_many`)."""

    segment: str
    entered: Sequence[Any]
    exited: Sequence[Any]
    at: datetime
    changes: Mapping[Any, datetime]
    candidates: Sequence[Any] | None
    state: Mapping[str, Any]


def _stamp(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def _moved(candidates: Sequence[str], kept: Mapping[str, str], new: Mapping[str, datetime]
           ) -> tuple[list[str], dict[str, datetime]]:
    """Of a segment's candidates (ids as stored), those whose kept next change (``kept``: as stored) must be
    deleted, and of their ``new`` next changes those to write: a kept row stays only when its customer's next
    change is the same instant.  The kept instants are read back (``fromisoformat``, a sixth of the cost of
    writing one), so only the rows written are stamped."""
    instants = {key: datetime.fromisoformat(at) for key, at in kept.items()}
    gone = [key for key in candidates if key in instants and new.get(key) != instants[key]]
    return gone, {key: at for key, at in new.items() if instants.get(key) != at}


@functools.lru_cache(maxsize=1 << 20)
def _stored(customer_id: Any, kind: str) -> str:
    return json.dumps(customer_id)


def _key(customer_id: Any) -> str:
    """A customer id as stored (JSON; the same ids recur in every segment of a refresh, so encoded once)."""
    if type(customer_id) is str:
        return stored_id(customer_id)  # plain text needs no cache
    return _stored(customer_id, type(customer_id).__name__)  # 1 and True are equal keys of a cache


class RefreshConflict(RuntimeError):
    """Another refresh recorded a tracked segment or attribute after this one read it; nothing of this refresh
    was kept: run it again (it goes on from what the other recorded)."""


class MembershipStore(ABC):
    """Tracked segments' members, their next changes and the tracking state."""

    @abstractmethod
    def tracked(self) -> dict[str, dict[str, Any]]:
        """Every tracked segment or attribute: its key (``segment:vip``, ``attribute:grade``) and state."""

    @abstractmethod
    def put_tracked(self, key: str, document: Mapping[str, Any]) -> None:
        """Start tracking, or record the state after a refresh."""

    @abstractmethod
    def forget(self, key: str) -> bool:
        """Stop tracking and drop what was kept for it (stays, next changes, values)."""

    @abstractmethod
    def members(self, segment: str, among: Sequence[Any] | None = None) -> set[Any]:
        """The customers with an open stay (all, or those of ``among``)."""

    @abstractmethod
    def due(self, segment: str, now: datetime) -> list[Any]:
        """The customers whose ``next_change_at`` is at or before ``now``."""

    def claim(self, expected: Mapping[str, Mapping[str, Any]]) -> None:
        """Inside a refresh's transaction (:meth:`batch`), before it writes: hold the tracked rows of these keys
        until it commits, and check that each still holds the state the refresh read (``expected``); else raise
        :class:`RefreshConflict` (two refreshes at once, a tick's and a manual one, would otherwise both record the
        same entries and write their events twice)."""
        _check_states(expected, self.tracked())

    def contended(self, error: Exception) -> bool:
        """Whether ``error``, raised inside a refresh's transaction, is the engine refusing one of two transactions
        that wrote the same rows (a write conflict, a deadlock, a serialisation failure, a lock wait that timed out):
        then the refresh raises :class:`RefreshConflict` instead.  A store without transactions never sees one."""
        return False

    def rewind(self, to: datetime) -> None:
        """Events stamped ``to`` (or later) arrived after a refresh that was later than ``to``: each such tracked
        segment's next refresh takes as candidates every customer with an event at or after ``to`` (its state's
        ``since``, dropped by that refresh), so those late events count without a full refresh."""
        stamp = _stamp(to)
        rewound = {key: {**state, "since": stamp} for key, state in self.tracked().items()
                   if key.startswith("segment:") and (last := state.get("since") or state.get("watermark"))
                   and datetime.fromisoformat(last) > to}
        if rewound:  # (a shop that tracks nothing gets no tables for it)
            with self.batch():
                for key, state in rewound.items():
                    self.put_tracked(key, state)

    def apply_many(self, refreshed: Sequence[Refreshed]) -> None:
        """:meth:`apply` of each, in one transaction (in a few statements where the store can)."""
        with self.batch():
            for one in refreshed:
                self.apply(one.segment, entered=one.entered, exited=one.exited, at=one.at, changes=one.changes,
                           candidates=one.candidates, state=one.state)

    def members_among(self, among: Mapping[str, Sequence[Any]]) -> dict[str, set[Any]]:
        """Per segment, the customers of its ``among`` with an open stay (one read where the store can)."""
        return {segment: self.members(segment, among=ids) for segment, ids in among.items()}

    def due_many(self, segments: Sequence[str], now: datetime) -> dict[str, list[Any]]:
        """Per segment, :meth:`due` (one read where the store can)."""
        return {segment: self.due(segment, now) for segment in segments}

    @abstractmethod
    def apply(
        self, segment: str, *, entered: Sequence[Any], exited: Sequence[Any], at: datetime,
        changes: Mapping[Any, datetime], candidates: Sequence[Any] | None, state: Mapping[str, Any],
    ) -> None:
        """One refresh, at once: open a stay for ``entered``, close the open stay of ``exited``, replace the next
        changes of ``candidates`` (None: of everyone) by ``changes``, and record ``state``."""

    def batch(self) -> AbstractContextManager[None]:
        """One transaction around many ``apply`` calls (a refresh of many segments commits once)."""
        return nullcontext()

    @abstractmethod
    def stays(self, segment: str) -> list[Stay]:
        """Every stay, by entry time then customer."""

    @abstractmethod
    def next_changes(self, segment: str) -> dict[Any, datetime]:
        """Every customer's next change that is kept."""

    @abstractmethod
    def values(self, attribute: str) -> dict[Any, Any]:
        """The last seen value of a tracked attribute, per customer."""

    @abstractmethod
    def put_values(self, attribute: str, values: Mapping[Any, Any], *, state: Mapping[str, Any], replace: bool) -> None:
        """Record values (all of them when ``replace``) and the attribute's ``state``, at once."""


def _check_states(expected: Mapping[str, Mapping[str, Any]], found: Mapping[str, Mapping[str, Any]]) -> None:
    changed = sorted(key for key, state in expected.items() if found.get(key) != dict(state))
    if changed:
        gone = [key for key in changed if key not in found]
        raise RefreshConflict(
            f"another refresh recorded {', '.join(changed)} after this one read {'it' if len(changed) == 1 else 'them'}"
            + (f" ({', '.join(gone)} no longer tracked)" if gone else "")
            + ": nothing of this refresh was kept; run it again (two refreshes at once would record the same entries "
            "and write their events twice)")


class MemoryMembershipStore(MembershipStore):
    """Everything in memory: it lasts as long as the source object."""

    def __init__(self) -> None:
        self._tracked: dict[str, str] = {}
        self._stays: dict[str, list[list[Any]]] = {}
        self._open: dict[str, dict[str, int]] = {}
        self._changes: dict[str, dict[str, datetime]] = {}
        self._values: dict[str, dict[str, Any]] = {}

    def tracked(self) -> dict[str, dict[str, Any]]:
        return {k: dict(json.loads(v)) for k, v in sorted(self._tracked.items())}

    def put_tracked(self, key: str, document: Mapping[str, Any]) -> None:
        self._tracked[key] = json.dumps(dict(document), ensure_ascii=False)

    def forget(self, key: str) -> bool:
        name = key.split(":", 1)[1]
        for kept in (self._stays, self._open, self._changes, self._values):
            kept.pop(name, None)
        return self._tracked.pop(key, None) is not None

    def members(self, segment: str, among: Sequence[Any] | None = None) -> set[Any]:
        found = self._open.get(segment, {})
        if among is None:
            return {json.loads(k) for k in found}
        return {cid for cid in among if _key(cid) in found}

    def due(self, segment: str, now: datetime) -> list[Any]:
        return [json.loads(k) for k, at in self._changes.get(segment, {}).items() if at <= now]

    def apply(
        self, segment: str, *, entered: Sequence[Any], exited: Sequence[Any], at: datetime,
        changes: Mapping[Any, datetime], candidates: Sequence[Any] | None, state: Mapping[str, Any],
    ) -> None:
        stays = self._stays.setdefault(segment, [])
        open_ = self._open.setdefault(segment, {})
        for cid in exited:
            index = open_.pop(_key(cid), None)
            if index is not None:
                stays[index][3] = at
        for cid in entered:
            open_[_key(cid)] = len(stays)
            stays.append([segment, cid, at, None])
        kept = self._changes.setdefault(segment, {})
        if candidates is None:
            kept.clear()
        else:
            for cid in candidates:
                kept.pop(_key(cid), None)
        kept.update((_key(cid), when) for cid, when in changes.items())
        self.put_tracked(f"segment:{segment}", state)

    def stays(self, segment: str) -> list[Stay]:
        return sorted((Stay(*row) for row in self._stays.get(segment, [])), key=lambda s: (s.entered_at, _key(s.customer_id)))

    def next_changes(self, segment: str) -> dict[Any, datetime]:
        return {json.loads(k): v for k, v in self._changes.get(segment, {}).items()}

    def values(self, attribute: str) -> dict[Any, Any]:
        return {json.loads(k): v for k, v in self._values.get(attribute, {}).items()}

    def put_values(self, attribute: str, values: Mapping[Any, Any], *, state: Mapping[str, Any], replace: bool) -> None:
        kept = self._values.setdefault(attribute, {})
        if replace:
            kept.clear()
        kept.update((_key(cid), value) for cid, value in values.items())
        self.put_tracked(f"attribute:{attribute}", state)


class SQLMembershipStore(MembershipStore):
    """The library's ``memberships``, ``membership_changes``, ``tracked`` and ``tracked_values`` tables, in the
    database of ``library`` (created with the other library tables)."""

    def __init__(self, library: LibraryStore, *, insert: Any = None) -> None:
        self._library = library
        tables = library.tables
        self.STAYS, self.CHANGES = tables.memberships, tables.membership_changes
        self.TRACKED, self.VALUES = tables.tracked, tables.tracked_values
        self._p = library.placeholder
        #: insert(table, columns, values column by column), the source's fast path when it has one
        self._insert_many = insert

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._library._run(sql, params)

    def batch(self) -> AbstractContextManager[None]:
        self._ready()
        return self._library._transaction()

    def _ready(self) -> None:
        self._library.writable("track segments")
        self._library.ensure()

    def _readable(self) -> bool:
        return self._library.readable() and self._library.has_table("tracked")

    def _insert(self, table: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> None:
        if not values or not values[0]:
            return
        if self._insert_many is not None:
            self._insert_many(table, columns, values)
            return
        marks = ", ".join([self._p] * len(columns))
        for row in zip(*values, strict=True):
            self._run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", row)

    @contextmanager
    def _ids(self, ids: Sequence[Any], *, keyed: bool = False) -> Iterator[list[tuple[str, list[Any]]]]:
        """Conditions on ``customer_id`` that together select ``ids`` (as stored: JSON; ``keyed``: ids already
        are)."""
        keys = list(ids) if keyed else [_key(cid) for cid in ids]
        dialect = self._library.dialect
        if dialect == "duckdb":
            yield [("customer_id IN (SELECT unnest(CAST(? AS VARCHAR[])))", [keys])]
        elif dialect == "postgres":
            yield [(f"customer_id = ANY(CAST({self._p} AS text[]))", [keys])]
        else:
            yield [(f"customer_id IN ({', '.join([self._p] * len(part))})", list(part))
                   for part in (keys[i:i + 500] for i in range(0, len(keys), 500))]

    def tracked(self) -> dict[str, dict[str, Any]]:
        if not self._readable():
            return {}
        rows = self._run(f"SELECT name, document FROM {self.TRACKED} ORDER BY name")
        return {str(name): dict(json.loads(str(document))) for name, document in rows}

    def _put_tracked(self, key: str, document: Mapping[str, Any]) -> None:
        p = self._p
        self._run(f"DELETE FROM {self.TRACKED} WHERE name = {p}", (key,))
        self._run(f"INSERT INTO {self.TRACKED} (name, document) VALUES ({p}, {p})",
                  (key, json.dumps(dict(document), ensure_ascii=False)))

    def put_tracked(self, key: str, document: Mapping[str, Any]) -> None:
        self._ready()
        with self._library._transaction():
            self._put_tracked(key, document)

    def forget(self, key: str) -> bool:
        self._ready()
        p = self._p
        kind, name = key.split(":", 1)
        with self._library._transaction():
            found = bool(self._run(f"SELECT name FROM {self.TRACKED} WHERE name = {p}", (key,)))
            self._run(f"DELETE FROM {self.TRACKED} WHERE name = {p}", (key,))
            if kind == "segment":
                self._run(f"DELETE FROM {self.STAYS} WHERE segment = {p}", (name,))
                self._run(f"DELETE FROM {self.CHANGES} WHERE segment = {p}", (name,))
            else:
                self._run(f"DELETE FROM {self.VALUES} WHERE attribute = {p}", (name,))
        return found

    def members(self, segment: str, among: Sequence[Any] | None = None) -> set[Any]:
        if not self._readable():
            return set()
        p = self._p
        sql = f"SELECT customer_id FROM {self.STAYS} WHERE segment = {p} AND exited_at IS NULL"
        if among is None:
            return {json.loads(str(r[0])) for r in self._run(sql, (segment,))}
        out: set[Any] = set()
        if not among:
            return out
        with self._ids(among) as conditions:
            for condition, params in conditions:
                out.update(json.loads(str(r[0])) for r in self._run(f"{sql} AND {condition}", [segment, *params]))
        return out

    def due(self, segment: str, now: datetime) -> list[Any]:
        if not self._readable():
            return []
        p = self._p
        rows = self._run(f"SELECT customer_id FROM {self.CHANGES} WHERE segment = {p} AND next_change_at <= {p}",
                         (segment, _stamp(now)))
        return [json.loads(str(r[0])) for r in rows]

    def members_among(self, among: Mapping[str, Sequence[Any]]) -> dict[str, set[Any]]:
        """One read of the stays of every segment's candidates (a scan of the table, not one per segment)."""
        empty: dict[str, set[Any]] = {segment: set() for segment, ids in among.items() if not ids}
        among = {segment: ids for segment, ids in among.items() if ids}
        if len(among) < 2 or not self._readable():
            return {**empty, **super().members_among(among)}
        ids = {cid: _key(cid) for cid in set().union(*among.values())}
        back = {key: cid for cid, key in ids.items()}
        found: dict[str, set[str]] = {segment: set() for segment in among}
        p = self._p
        names = ", ".join([p] * len(among))
        with self._ids(list(ids.values()), keyed=True) as conditions:
            for condition, params in conditions:
                for segment, key in self._run(f"SELECT segment, customer_id FROM {self.STAYS} WHERE segment IN ({names}) "
                                              f"AND exited_at IS NULL AND {condition}", [*among, *params]):
                    found[str(segment)].add(str(key))
        return {**empty, **{segment: {back[key] for key in (ids[cid] for cid in among[segment]) if key in found[segment]}
                            for segment in among}}

    def due_many(self, segments: Sequence[str], now: datetime) -> dict[str, list[Any]]:
        if len(segments) < 2 or not self._readable():
            return super().due_many(segments, now)
        p = self._p
        out: dict[str, list[Any]] = {segment: [] for segment in segments}
        for segment, key in self._run(f"SELECT segment, customer_id FROM {self.CHANGES} WHERE segment IN "
                                      f"({', '.join([p] * len(segments))}) AND next_change_at <= {p}",
                                      [*segments, _stamp(now)]):
            out[str(segment)].append(json.loads(str(key)))
        return out

    def apply(
        self, segment: str, *, entered: Sequence[Any], exited: Sequence[Any], at: datetime,
        changes: Mapping[Any, datetime], candidates: Sequence[Any] | None, state: Mapping[str, Any],
    ) -> None:
        self._ready()
        p = self._p
        stamp = _stamp(at)
        with self._library._transaction():
            if exited:
                with self._ids(exited) as conditions:
                    for condition, params in conditions:
                        self._run(f"UPDATE {self.STAYS} SET exited_at = {p} WHERE segment = {p} AND exited_at IS NULL "
                                  f"AND {condition}", [stamp, segment, *params])
            self._insert(self.STAYS, ["segment", "customer_id", "entered_at"],
                         [[segment] * len(entered), [_key(c) for c in entered], [stamp] * len(entered)])
            sparing = candidates is not None and self._library.dialect == "duckdb"
            # DuckDB: the fewer rows written the better (each write adds to the next checkpoint): only the
            # candidates whose kept next change went away or moved are deleted, and only the new or moved ones
            # written (the table has no key there: one row per customer is kept by deleting first)
            # every id and instant encoded once, as stored
            new = {_key(c): v for c, v in changes.items()}
            gone: list[str] | None = None if candidates is None else [_key(c) for c in candidates]
            if sparing and gone:
                kept: dict[str, str] = {}
                with self._ids(gone, keyed=True) as conditions:
                    for condition, params in conditions:
                        kept.update((str(c), str(v)) for c, v in self._run(
                            f"SELECT customer_id, next_change_at FROM {self.CHANGES} WHERE segment = {p} AND {condition}",
                            [segment, *params]))
                gone, new = _moved(gone, kept, new)
            fresh = {key: _stamp(instant) for key, instant in new.items()}
            if gone is None:
                self._run(f"DELETE FROM {self.CHANGES} WHERE segment = {p}", (segment,))
            elif gone:
                with self._ids(gone, keyed=True) as conditions:
                    for condition, params in conditions:
                        self._run(f"DELETE FROM {self.CHANGES} WHERE segment = {p} AND {condition}", [segment, *params])
            if fresh:
                self._insert(self.CHANGES, ["segment", "customer_id", "next_change_at"],
                             [[segment] * len(fresh), list(fresh), list(fresh.values())])
            self._put_tracked(f"segment:{segment}", state)

    def apply_many(self, refreshed: Sequence[Refreshed]) -> None:
        """On DuckDB, the incremental refreshes of many segments in one statement per table and kind of write
        (every statement scans its table: five segments cost one scan, not five); elsewhere, and for a segment
        refreshed in full, :meth:`apply` of each."""
        sparing = [one for one in refreshed if one.candidates is not None]
        if self._library.dialect != "duckdb" or len(sparing) < 2:
            super().apply_many(refreshed)
            return
        self._ready()
        p = self._p
        pairs = "(SELECT unnest(CAST(? AS VARCHAR[])) AS s, unnest(CAST(? AS VARCHAR[])) AS k) AS x"
        with self._library._transaction():
            for one in refreshed:
                if one.candidates is None:
                    self.apply(one.segment, entered=one.entered, exited=one.exited, at=one.at, changes=one.changes,
                               candidates=None, state=one.state)
            # every id as stored, encoded once: a sparing segment's entered, exited and next changes are among its
            # candidates, and the segments' candidates overlap
            stored = {c: _key(c) for one in sparing for c in one.candidates or ()}

            def as_stored(customer_id: Any) -> str:
                found = stored.get(customer_id)
                return _key(customer_id) if found is None else found
            # the open stays of the exited closed, then the entered opened
            closing = [(one.segment, as_stored(c), _stamp(one.at)) for one in sparing for c in one.exited]
            if closing:
                segments, keys, stamps = (list(column) for column in zip(*closing, strict=True))
                self._run(f"UPDATE {self.STAYS} SET exited_at = x.t FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS s, "
                          "unnest(CAST(? AS VARCHAR[])) AS k, unnest(CAST(? AS VARCHAR[])) AS t) AS x WHERE "
                          f"{self.STAYS}.segment = x.s AND {self.STAYS}.customer_id = x.k AND {self.STAYS}.exited_at IS NULL",
                          [segments, keys, stamps])
            opening = [(one.segment, as_stored(c), _stamp(one.at)) for one in sparing for c in one.entered]
            if opening:
                self._insert(self.STAYS, ["segment", "customer_id", "entered_at"],
                             [list(column) for column in zip(*opening, strict=True)])
            # the next changes: only the candidates' rows that went away or moved are deleted, only the new or
            # moved ones written (see apply); the kept rows of every segment's candidates read at once
            candidates = {one.segment: [as_stored(c) for c in one.candidates or ()] for one in sparing}
            everyone = list(set().union(*candidates.values()))
            kept: dict[str, dict[str, str]] = {one.segment: {} for one in sparing}
            if everyone:
                names = ", ".join([p] * len(candidates))
                with self._ids(everyone, keyed=True) as conditions:
                    for condition, params in conditions:
                        for segment, key, at in self._run(
                                f"SELECT segment, customer_id, next_change_at FROM {self.CHANGES} WHERE segment IN "
                                f"({names}) AND {condition}", [*candidates, *params]):
                            kept[str(segment)][str(key)] = str(at)
            gone: list[tuple[str, str]] = []
            fresh: list[tuple[str, str, str]] = []
            for one in sparing:
                went, moved = _moved(candidates[one.segment], kept[one.segment],
                                     {as_stored(c): v for c, v in one.changes.items()})
                gone += [(one.segment, key) for key in went]
                fresh += [(one.segment, key, _stamp(at)) for key, at in moved.items()]
            if gone:
                self._run(f"DELETE FROM {self.CHANGES} USING {pairs} WHERE {self.CHANGES}.segment = x.s AND "
                          f"{self.CHANGES}.customer_id = x.k", [list(column) for column in zip(*gone, strict=True)])
            if fresh:
                self._insert(self.CHANGES, ["segment", "customer_id", "next_change_at"],
                             [list(column) for column in zip(*fresh, strict=True)])
            for one in sparing:
                self._put_tracked(f"segment:{one.segment}", one.state)

    def claim(self, expected: Mapping[str, Mapping[str, Any]]) -> None:
        if not expected:
            return
        self._ready()
        p = self._p
        keys = sorted(expected)
        names = ", ".join([p] * len(keys))
        with self._library._transaction():
            if self._library.dialect == "duckdb":
                # DuckDB has no row locks, and skips an update that changes nothing: the rows are written again
                # (deleted and put back), so that of two refreshes at once the second to write them fails here
                # with a write conflict (see contended), before it has done any work
                rows = self._run(f"SELECT name, document FROM {self.TRACKED} WHERE name IN ({names})", keys)
                self._run(f"DELETE FROM {self.TRACKED} WHERE name IN ({names})", keys)
                if rows:
                    self._insert(self.TRACKED, ["name", "document"], [list(column) for column in zip(*rows, strict=True)])
            elif self._library.dialect in ("postgres", "mysql"):
                # a locking read: the rows stay locked until the refresh commits, taken one by one in the order of
                # their names (two refreshes claiming overlapping segments wait for each other, never deadlock), and
                # read as last committed once the wait is over
                rows = self._run(f"SELECT name, document FROM {self.TRACKED} WHERE name IN ({names}) ORDER BY name "
                                 "FOR UPDATE", keys)
            else:
                # a write first (SQLite takes its write lock), so that the read below sees the last committed states
                self._run(f"UPDATE {self.TRACKED} SET document = document WHERE name IN ({names})", keys)
                rows = self._run(f"SELECT name, document FROM {self.TRACKED} WHERE name IN ({names})", keys)
            found = {str(name): dict(json.loads(str(document))) for name, document in rows}
            _check_states(expected, found)

    def contended(self, error: Exception) -> bool:
        return is_contention(error)

    def stays(self, segment: str) -> list[Stay]:
        if not self._readable():
            return []
        rows = self._run(f"SELECT customer_id, entered_at, exited_at FROM {self.STAYS} WHERE segment = {self._p} "
                         "ORDER BY entered_at, customer_id", (segment,))
        return [Stay(segment, json.loads(str(c)), datetime.fromisoformat(str(e)),
                     None if x is None else datetime.fromisoformat(str(x))) for c, e, x in rows]

    def next_changes(self, segment: str) -> dict[Any, datetime]:
        if not self._readable():
            return {}
        rows = self._run(f"SELECT customer_id, next_change_at FROM {self.CHANGES} WHERE segment = {self._p}", (segment,))
        return {json.loads(str(c)): datetime.fromisoformat(str(v)) for c, v in rows}

    def values(self, attribute: str) -> dict[Any, Any]:
        if not self._readable():
            return {}
        rows = self._run(f"SELECT customer_id, value FROM {self.VALUES} WHERE attribute = {self._p}", (attribute,))
        return {json.loads(str(c)): json.loads(str(v)) for c, v in rows}

    def put_values(self, attribute: str, values: Mapping[Any, Any], *, state: Mapping[str, Any], replace: bool) -> None:
        self._ready()
        p = self._p
        with self._library._transaction():
            if replace:
                self._run(f"DELETE FROM {self.VALUES} WHERE attribute = {p}", (attribute,))
            elif values:
                with self._ids(list(values)) as conditions:
                    for condition, params in conditions:
                        self._run(f"DELETE FROM {self.VALUES} WHERE attribute = {p} AND {condition}", [attribute, *params])
            self._insert(self.VALUES, ["attribute", "customer_id", "value"],
                         [[attribute] * len(values), [_key(c) for c in values],
                          [json.dumps(v, default=str) for v in values.values()]])
            self._put_tracked(f"attribute:{attribute}", state)
