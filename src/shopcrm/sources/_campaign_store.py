"""Where a shop keeps its campaigns, its outbox of planned messages and the occurrences it has planned.

The outbox is the planner's ledger: one row per decision with an idempotency key
(a planned message, or a holdout / suppression decided at the message's due time).
Its key is the table's primary key, so no decision is ever recorded twice; a
tick records its rows and the occurrences it planned in one transaction, so a
crash mid-tick leaves nothing half-recorded and the next tick plans the same
keys again.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, NamedTuple, overload

from shopcrm.campaigns._planner import LedgerEntry
from shopcrm.consents import ConsentRecord, opt_outs_after, withdrawal_reason
from shopcrm.sources._library import LibraryStore, LibraryTables, stored_id
from shopcrm.sources._tick_marks import MemoryTickMarks, SQLTickMarks, TickMarks
from shopcrm.sources._transactions import is_contention, is_duplicate_key

__all__ = ["OUTBOX_COLUMNS", "CampaignStore", "MemoryCampaignStore", "OutboxBatch", "OutboxRow", "PiecedTexts", "SQLCampaignStore", "TickConflict"]

#: the outbox's columns, in order
OUTBOX_COLUMNS = (
    "key", "customer_id", "campaign_id", "step", "occurrence", "variant", "purpose", "channel", "kind",
    "status", "due_at", "send_at", "cost", "message", "planned_at",
)


class TickConflict(RuntimeError):
    """Another tick recorded some of the same decisions first; run the tick again (it plans only the rest)."""


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ", timespec="microseconds")


@functools.lru_cache(maxsize=4096)
def _parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _instant(value: Any) -> Any:
    """An instant as stored (ISO text; the same few instants recur across a batch's rows, so parsed once each)."""
    if value is None or isinstance(value, datetime):
        return value
    return _parse_instant(str(value))


class OutboxRow(NamedTuple):
    """One decision of a tick: ``status`` is ``planned`` for a message to send, ``entered`` for a scenario
    entry an audience rule admitted, else the suppression reason (``holdout``, ``capped``, ...).
    ``message`` holds the rendered channel chain and contacts (JSON).

    A named tuple, not an attrs class: a broadcast records one per customer, and tuples are built and
    transposed into columns at C speed.
    """

    key: str
    customer_id: Any
    campaign_id: str
    step: str
    occurrence: str
    variant: str
    purpose: str
    channel: str
    kind: str
    status: str
    due_at: datetime
    send_at: datetime | None
    cost: float
    message: str
    planned_at: datetime

    @classmethod
    def from_tuple(cls, row: Sequence[Any]) -> OutboxRow:
        """A row as an engine returns it (customer id as JSON, instants as ISO text), field by field in order
        (a dispatcher reads one per message)."""
        key, customer, campaign, step, occurrence, variant, purpose, channel, kind, status, due, send, cost, message, planned = row
        return cls(key, _customer_id(customer), campaign, step, occurrence, variant, purpose, channel, kind, status,
                   _instant(due), _instant(send), float(cost or 0), message, _instant(planned))

    @property
    def chain(self) -> list[dict[str, Any]]:
        """The rendered messages of the channel chain (first preferred), each with its contact."""
        return list(json.loads(self.message).get("chain", [])) if self.message else []


#: the send ledger's columns, in order
SEND_COLUMNS = (
    "key", "customer_id", "campaign_id", "chain_index", "state", "attempts", "next_at", "lease_until", "claim",
    "provider_id", "code", "reason", "cost", "updated_at", "batch_ref", "checks",
    "channel", "kind", "priced_as", "price_source", "sent_at",
)
#: states of a send: waiting to go (``queued``, ``retry``), taken by a dispatcher but not yet handed to a channel
#: (``claimed``: a crash here loses nothing, the row goes back to the queue), handed to a channel (``inflight``: a
#: crash here is settled by asking the channel), taken by the provider (``sent``), and the final ones
#: (``delivered`` once a delivery report confirms it, ``failed``, ``expired``, ``unknown``)
SEND_STATES = ("queued", "claimed", "inflight", "retry", "sent", "delivered", "failed", "expired", "unknown")
#: the states a dispatcher holds under its claim and lease
HELD_STATES = ("claimed", "inflight")


class SendRow(NamedTuple):
    """Where one planned message stands in delivery: which channel of its chain (``chain_index``), its
    ``state``, how many attempts were made, when it may next be tried, who holds it (``claim``) and until
    when (``lease_until``), and the outcome (the provider's id, the code and reason of the last failure,
    the cost)."""

    key: str
    customer_id: Any
    campaign_id: str
    chain_index: int
    state: str
    attempts: int
    next_at: datetime
    lease_until: datetime | None
    claim: str
    provider_id: str
    code: str
    reason: str
    cost: float
    updated_at: datetime
    #: the channel's reference for the batch the message was handed over in (Solapi: the group id), recorded
    #: before the channel was asked to send it
    batch_ref: str = ""
    #: how many times the provider was asked what became of the message (its outcome was ambiguous)
    checks: int = 0
    #: the channel and kind that carried the message (a fallback's step; "" until one did, or a failed attempt's)
    channel: str = ""
    kind: str = ""
    #: what the cost was priced as (``sms:lms``, ``brand_message:non_friend``) and where the price came from:
    #: ``reported`` (the provider's charge) or ``table`` (the messaging policy's prices); "" while unpriced
    priced_as: str = ""
    price_source: str = ""
    #: when the channel took the message: the instant of its ``message_sent`` event (None until sent, and in rows
    #: written before the ledger kept it); the report reads send times here rather than from the events
    sent_at: datetime | None = None

    @classmethod
    def from_tuple(cls, row: Sequence[Any]) -> SendRow:
        """A row as an engine returns it, field by field in order (a dispatcher reads two per message)."""
        (key, customer, campaign, chain_index, state, attempts, next_at, lease_until, claim, provider_id, code, reason,
         cost, updated_at, batch_ref, checks, channel, kind, priced_as, price_source, *rest) = row
        return cls(key, _customer_id(customer), campaign, int(chain_index), state, int(attempts), _instant(next_at),
                   _instant(lease_until), claim or "", provider_id or "", code or "", reason or "", float(cost or 0),
                   _instant(updated_at), batch_ref or "", int(checks or 0), channel or "", kind or "", priced_as or "",
                   price_source or "", _instant(rest[0]) if rest and rest[0] else None)

    def stored(self) -> tuple[Any, ...]:
        return (self.key, json.dumps(self.customer_id), self.campaign_id, self.chain_index, self.state, self.attempts,
                _stamp(self.next_at), _stamp(self.lease_until), self.claim, self.provider_id, self.code,
                self.reason, float(self.cost), _stamp(self.updated_at), self.batch_ref, self.checks, self.channel,
                self.kind, self.priced_as, self.price_source, _stamp(self.sent_at))


def _customer_id(stored: str) -> Any:
    """A customer id as stored (JSON): a plain string without escapes is read without the JSON parser."""
    if len(stored) > 1 and stored[0] == '"' and stored[-1] == '"' and "\\" not in stored:
        return stored[1:-1]
    return json.loads(stored)


def stored_columns(rows: Sequence[OutboxRow]) -> list[list[Any]]:
    """The rows column by column, as the tables store them: customer ids as JSON, instants as ISO text."""
    if isinstance(rows, OutboxBatch):
        return rows.stored()
    if not rows:
        return [[] for _ in OUTBOX_COLUMNS]
    return _stored([list(column) for column in zip(*rows, strict=True)])


_INDEX = {name: i for i, name in enumerate(OUTBOX_COLUMNS)}


def _stored(columns: list[Any], *, ids: bool = True) -> list[Any]:
    """Outbox columns (row values) in place as the tables store them: customer ids as JSON (unless not ``ids``: the
    caller quotes them), instants as ISO text, costs as floats (each distinct instant is written once)."""
    if ids:
        columns[_INDEX["customer_id"]] = [stored_id(c) for c in columns[_INDEX["customer_id"]]]
    for name in ("due_at", "send_at", "planned_at"):
        column = columns[_INDEX[name]]
        stamps = {value: _stamp(value) for value in set(column)}
        columns[_INDEX[name]] = list(map(stamps.__getitem__, column))
    columns[_INDEX["cost"]] = list(map(float, columns[_INDEX["cost"]]))
    return columns


class PiecedTexts:
    """A batch's message texts as pieces around contacts, for an engine to join: the text of row ``i`` is
    ``pieces[0][index[i]] + contacts[0][i] + pieces[1][index[i]] + ... + pieces[w][index[i]]``.

    A broadcast's customers share their renderings, so its hundreds of megabytes of message JSON are a few
    thousand distinct pieces around each customer's contacts.  DuckDB joins them itself while it inserts the rows
    (:meth:`~shopcrm.sources.duckdb_store.DuckDBSource`'s Arrow insert); any other engine, and anyone reading the
    batch, gets the joined texts (:meth:`arrow`, :meth:`to_pylist`).  ``pieces`` and ``contacts`` are Arrow string
    arrays (``w + 1`` and ``w`` of them), ``index`` Arrow 32-bit integers, one per row; ``chunk`` bounds each joined
    chunk."""

    __slots__ = ("chunk", "contacts", "index", "pieces")

    def __init__(self, pieces: Sequence[Any], index: Any, contacts: Sequence[Any], *, chunk: int = 100_000) -> None:
        if len(pieces) != len(contacts) + 1 or any(len(column) != len(index) for column in contacts):
            raise ValueError(f"pieced texts need one more column of pieces than of contacts ({len(pieces)} and "
                             f"{len(contacts)}), and each column of contacts as long as the index ({len(index)} rows)")
        if len(index) and (index.null_count or not 0 <= _min_max(index)[0] <= _min_max(index)[1] < len(pieces[0])):
            raise ValueError(f"each row of pieced texts takes pieces that exist: indexes from 0 to {len(pieces[0]) - 1}, "
                             f"not {_min_max(index)}")
        self.pieces, self.index, self.contacts, self.chunk = list(pieces), index, list(contacts), chunk

    def __len__(self) -> int:
        return len(self.index)

    def arrow(self) -> Any:
        """The texts, in row order, as an Arrow chunked string array."""
        import pyarrow as pa
        import pyarrow.compute as pc

        chunks = []
        for start in range(0, len(self.index), self.chunk):
            taken = self.index[start:start + self.chunk]
            parts = [self.pieces[0].take(taken)]
            for contact, piece in zip(self.contacts, self.pieces[1:], strict=True):
                parts += (contact[start:start + self.chunk], piece.take(taken))
            chunks.append(pc.binary_join_element_wise(*parts, ""))
        return pa.chunked_array(chunks, pa.string())

    def to_pylist(self) -> list[str]:
        """The texts, in row order."""
        texts: list[str] = self.arrow().to_pylist()
        return texts


def _min_max(values: Any) -> tuple[int, int]:
    import pyarrow.compute as pc

    found = pc.min_max(values)
    return found["min"].as_py(), found["max"].as_py()


class OutboxBatch(Sequence[OutboxRow]):
    """Outbox rows held column by column, in :data:`OUTBOX_COLUMNS`' order, as a tick builds them: a million rows
    of a broadcast are never a million tuples.  Indexing builds a row on demand; a store inserts the columns
    (:meth:`stored`).  The ``message`` column may be an Arrow string array, or :class:`PiecedTexts` (a tick's
    broadcast messages: the engine joins them); then :meth:`stored` can hand the engine Arrow arrays."""

    def __init__(self, columns: Sequence[Sequence[Any]]) -> None:
        if len(columns) != len(OUTBOX_COLUMNS):
            raise ValueError(f"an outbox batch has {len(OUTBOX_COLUMNS)} columns ({', '.join(OUTBOX_COLUMNS)}); "
                             f"{len(columns)} were given")
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise ValueError(f"the columns of an outbox batch have one length; these have {sorted(lengths)}")
        self._columns = list(columns)
        self._length = lengths.pop()
        self._texts: Sequence[str] | None = None

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> OutboxRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[OutboxRow]: ...

    def __getitem__(self, index: int | slice) -> OutboxRow | list[OutboxRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        texts = self.column("message")
        return OutboxRow._make([*[column[index] for column in self._columns[:13]], texts[index], self._columns[14][index]])

    def __iter__(self) -> Iterator[OutboxRow]:
        columns = [*self._columns[:13], self.column("message"), self._columns[14]]
        return map(OutboxRow._make, zip(*columns, strict=True))

    def column(self, name: str) -> Sequence[Any]:
        """One column's values (the messages as Python text)."""
        if name != "message":
            return self._columns[_INDEX[name]]
        if self._texts is None:
            found: Any = self._columns[_INDEX["message"]]
            self._texts = found if isinstance(found, list | tuple) else found.to_pylist()
        return self._texts

    def stored(self, *, arrow: bool = False) -> list[Any]:
        """The columns as the tables store them (see :func:`stored_columns`); with ``arrow``, as Arrow arrays when
        the messages already are one or :class:`PiecedTexts` (a large batch; then they stay pieces for the engine
        to join), so that the engine takes them without Python objects."""
        messages = self._columns[_INDEX["message"]]
        quoted = None if not arrow or isinstance(messages, list | tuple) else _quoted_ids(self._columns[_INDEX["customer_id"]])
        columns = _stored([[] if i == _INDEX["message"] else list(column) for i, column in enumerate(self._columns)],
                          ids=quoted is None)
        if not arrow or isinstance(messages, list | tuple):
            columns[_INDEX["message"]] = list(self.column("message"))
            return columns
        import pyarrow as pa

        if quoted is not None:
            columns[_INDEX["customer_id"]] = quoted
        # a column of one value (a broadcast's campaign, step, status, ...) is that value repeated: no conversion per row
        same = [isinstance(column, list) and len(column) > 0 and column.count(column[0]) == len(column) for column in columns]
        arrays = [column if isinstance(column, pa.Array | pa.ChunkedArray) else pa.repeat(pa.scalar(
            column[0], pa.float64() if i == _INDEX["cost"] else pa.string()), len(column)) if same[i] else pa.array(
            column, pa.float64() if i == _INDEX["cost"] else pa.string()) for i, column in enumerate(columns)]
        arrays[_INDEX["message"]] = messages
        return arrays


def _quoted_ids(ids: Sequence[Any]) -> Any:
    """The customer ids as their JSON, in Arrow, when every one is text that JSON writes as it is (printable ASCII
    without quotes or backslashes: ``"`` + id + ``"``, what :func:`_stored` writes for them); None otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        found = pa.array(ids if isinstance(ids, list) else list(ids))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if found.type != pa.string() or found.null_count or not pc.all(pc.match_substring_regex(
            found, r"^[ !#-\[\]-~]*$")).as_py():
        return None
    return pc.binary_join_element_wise(pa.scalar('"'), found, pa.scalar('"'), "")


#: the event each recorded opt-out writes (K9: its result is told to the customer within 14 days; the
#: ``opt_out_result`` playbook sends on it)
OPTED_OUT = "opted_out"


def _withdrawals(records: Sequence[ConsentRecord]) -> list[tuple[Any, str, datetime, str]]:
    """The opt-outs the withdrawals among ``records`` are (customer, group, when, why)."""
    return [(r.customer_id, r.group, r.at, withdrawal_reason(r)) for r in records if not r.granted]


def _by_customer(records: Sequence[ConsentRecord]) -> dict[str, list[ConsentRecord]]:
    """The records per stored customer id."""
    out: dict[str, list[ConsentRecord]] = {}
    for record in records:
        out.setdefault(json.dumps(record.customer_id), []).append(record)
    return out


def opt_out_events(rows: Sequence[tuple[Any, str, datetime, str]]) -> list[dict[str, Any]]:
    """An ``opted_out`` event per opt-out (customer id, consent group or ``all``, when, why): ``channel`` is the
    consent group, ``reason`` why (an 080 call, an unsubscribe link, a provider's code)."""
    return [{"customer_id": customer_id, "event": OPTED_OUT, "ts": at, "channel": group, "reason": reason,
             "message_key": "", "cost": 0.0} for customer_id, group, at, reason in rows]


class CampaignStore(ABC):
    """Campaign documents, the outbox and planned occurrences."""

    # campaigns
    @abstractmethod
    def put_campaign(self, campaign_id: str, document: str, saved_at: datetime) -> None: ...

    @abstractmethod
    def campaigns(self) -> list[tuple[str, str, datetime]]:
        """Every campaign as (id, JSON document, saved at), sorted by id."""

    @abstractmethod
    def delete_campaign(self, campaign_id: str) -> bool: ...

    # outbox
    @abstractmethod
    def outbox(
        self, *, campaign_ids: Sequence[str] | None = None, since: datetime | None = None, status: str | None = None,
        customer_ids: Sequence[Any] | None = None,
    ) -> list[OutboxRow]:
        """Rows of these campaigns and customers (all when None) due at or after ``since``, of one status, by due
        time, campaign, customer and step."""

    @abstractmethod
    def planned_since(self, since: datetime) -> list[OutboxRow]:
        """Planned messages sending at or after ``since`` (what frequency caps count)."""

    @abstractmethod
    def occurrences(self, campaign_ids: Sequence[str]) -> set[tuple[str, str]]:
        """The (campaign id, occurrence) pairs already planned."""

    @abstractmethod
    def record(self, rows: Sequence[OutboxRow], occurrences: Iterable[tuple[str, str]], at: datetime) -> None:
        """Add ``rows`` and mark ``occurrences`` planned, all or nothing; TickConflict when a key exists."""

    # the send ledger
    @abstractmethod
    def enqueue_due(self, now: datetime) -> int:
        """Queue every planned message whose send time has come and that has no send row yet; how many.  Two
        dispatchers queueing at once is not an error: what the other queued is simply not counted here."""

    @abstractmethod
    def sends(self, *, keys: Sequence[str] | None = None, states: Sequence[str] | None = None) -> list[SendRow]:
        """Send rows (of these keys, in these states), by key."""

    @abstractmethod
    def due_sends(self, now: datetime, limit: int) -> list[SendRow]:
        """Up to ``limit`` queued or retrying rows whose time has come, oldest first (read only: nothing is taken)."""

    @abstractmethod
    def expired_leases(self, now: datetime) -> list[SendRow]:
        """Rows held (``claimed`` or ``inflight``) whose lease ran out: their holder died, or left them to be
        reconciled later."""

    @abstractmethod
    def claim(
        self, keys: Sequence[str], claim: str, lease_until: datetime, now: datetime, *, expired: bool = False,
        batch_ref: str | None = None,
    ) -> list[SendRow]:
        """Atomically take these rows: queued or retrying ones become ``claimed`` under ``claim`` until
        ``lease_until`` (one more attempt), or, with the ``batch_ref`` a channel already prepared, ``inflight`` at
        once (claimed and handed over in one commit); with ``expired``, held rows whose lease ran out are taken
        over as they are.  Returns the rows this call took; a row another dispatcher took first is not among them."""

    @abstractmethod
    def hand_over(self, keys: Sequence[str], claim: str, batch_ref: str, lease_until: datetime, now: datetime) -> list[str]:
        """Just before a channel is asked to send them: rows still held under ``claim`` become ``inflight`` with
        the channel's ``batch_ref`` and a renewed lease; returns the keys still held (only those may be sent)."""

    @abstractmethod
    def settle(
        self, rows: Sequence[SendRow], events: Sequence[Mapping[str, Any]] = (),
        opt_outs: Sequence[tuple[Any, str, datetime, str]] = (), *, held_by: str | None = None,
        states: Sequence[str] | None = None,
    ) -> set[str]:
        """Write the new states of ``rows`` with their outcome ``events`` (``message_key`` names the row) and the
        opt-outs they revealed, in ONE transaction.  Only rows still held under ``held_by`` (when given), or
        still in one of ``states`` (when given), are written, with their events; returns the keys written."""

    @abstractmethod
    def outbox_by_keys(self, keys: Sequence[str]) -> dict[str, OutboxRow]:
        """The outbox rows of these keys."""

    # opt-outs learnt from providers and 080 services (K3)
    @abstractmethod
    def add_opt_outs(self, rows: Sequence[tuple[Any, str, datetime, str]]) -> None:
        """Record (customer id, consent group or ``all``, when, why); a later record replaces an earlier one."""

    @abstractmethod
    def opt_outs(self) -> dict[Any, dict[str, datetime]]:
        """Every recorded opt-out: customer id -> consent group -> when."""

    @abstractmethod
    def message_events(self) -> list[dict[str, Any]]:
        """The delivery outcome events kept beside the shop's own tables, oldest first (the embedded store writes
        them into its events table instead)."""

    # click tracking (issue 13): events that change no send row, written where outcome events go
    @abstractmethod
    def add_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Write message events (``message_clicked``) where :meth:`settle` writes outcome events, in one transaction."""

    def prepare_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Before a transaction that will write events like these (a refresh's ``segment_entered``): make what the
        write needs, in a transaction of its own, so that the later one changes no table's columns (DuckDB refuses
        another transaction's insert into a table whose columns an open transaction changed).  A store whose events
        table never changes its columns has nothing to make."""
        return

    @property
    def prepares_events(self) -> bool:
        """Whether :meth:`prepare_events` makes anything (where events go into a table whose columns grow)."""
        return False

    # consent evidence (K2): append-only
    def add_consents(self, records: Sequence[ConsentRecord]) -> None:
        """Append the records, and in the same transaction apply them to the opt-outs: a withdrawal opts its group
        out (with its ``opted_out`` event), a consent given lifts an earlier opt-out of its group
        (:func:`shopcrm.consents.opt_outs_after`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no consent evidence")

    def consents(self, customer_ids: Collection[Any] | None = None) -> list[ConsentRecord]:
        """The consent records (of these customers when given), by the instant each was given or withdrawn, then
        by when it was recorded."""
        raise NotImplementedError(f"{type(self).__name__} keeps no consent evidence")

    # watermark ticks (issue 15): what a tick that reads few customers reads of them only
    def opt_outs_of(self, customer_ids: Collection[Any]) -> dict[Any, dict[str, datetime]]:
        """:meth:`opt_outs` of these customers."""
        wanted = set(customer_ids)
        return {c: groups for c, groups in self.opt_outs().items() if c in wanted}

    def planned_since_of(self, since: datetime, customer_ids: Collection[Any]) -> list[OutboxRow]:
        """:meth:`planned_since` of these customers."""
        wanted = set(customer_ids)
        return [r for r in self.planned_since(since) if r.customer_id in wanted]

    def ledger_since(self, since: datetime, customer_ids: Collection[Any] | None = None) -> list[LedgerEntry]:
        """What frequency caps count of :meth:`planned_since` (of these customers when given): each planned message's
        key, customer, campaign, purpose, first channel and send time, without the message (a store reads only these
        columns: a shop that sent a broadcast today does not read its hundreds of megabytes of message JSON at every
        tick)."""
        rows = self.planned_since(since) if customer_ids is None else self.planned_since_of(since, customer_ids)
        return [LedgerEntry(r.key, r.customer_id, r.campaign_id, r.purpose, r.channel, r.send_at or r.due_at) for r in rows]

    def tick_marks(self) -> TickMarks:
        """How far each scenario was ticked and when its customers' next steps come due; kept in memory unless the
        store keeps them (a store without them simply makes every tick read its scenarios whole)."""
        marks: TickMarks | None = getattr(self, "_memory_marks", None)
        if marks is None:
            marks = self._memory_marks = MemoryTickMarks()
        return marks


class MemoryCampaignStore(CampaignStore):
    """Everything in memory (sources with nowhere to write, tests)."""

    def __init__(self) -> None:
        self._campaigns: dict[str, tuple[str, datetime]] = {}
        self._rows: dict[str, OutboxRow] = {}
        self._sends: dict[str, SendRow] = {}
        self._opt_outs: dict[tuple[Any, str], tuple[datetime, str]] = {}
        self._consents: list[ConsentRecord] = []
        self._events: list[dict[str, Any]] = []
        self._occurrences: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def put_campaign(self, campaign_id: str, document: str, saved_at: datetime) -> None:
        self._campaigns[campaign_id] = (document, saved_at)

    def campaigns(self) -> list[tuple[str, str, datetime]]:
        return [(k, d, t) for k, (d, t) in sorted(self._campaigns.items())]

    def delete_campaign(self, campaign_id: str) -> bool:
        return self._campaigns.pop(campaign_id, None) is not None

    def outbox(
        self, *, campaign_ids: Sequence[str] | None = None, since: datetime | None = None, status: str | None = None,
        customer_ids: Sequence[Any] | None = None,
    ) -> list[OutboxRow]:
        wanted = None if customer_ids is None else set(customer_ids)
        rows = [
            r for r in self._rows.values()
            if (campaign_ids is None or r.campaign_id in campaign_ids)
            and (wanted is None or r.customer_id in wanted)
            and (since is None or r.due_at >= since)
            and (status is None or r.status == status)
        ]
        return sorted(rows, key=lambda r: (r.due_at, r.campaign_id, json.dumps(r.customer_id), r.step, r.key))

    def planned_since(self, since: datetime) -> list[OutboxRow]:
        return [r for r in self._rows.values() if r.status == "planned" and r.send_at is not None and r.send_at >= since]

    def occurrences(self, campaign_ids: Sequence[str]) -> set[tuple[str, str]]:
        return {o for o in self._occurrences if o[0] in campaign_ids}

    def record(self, rows: Sequence[OutboxRow], occurrences: Iterable[tuple[str, str]], at: datetime) -> None:
        with self._lock:
            clash = [r.key for r in rows if r.key in self._rows]
            if clash or len({r.key for r in rows}) != len(rows):
                raise TickConflict(f"{len(clash)} decisions were already recorded by another tick (e.g. key {clash[:1]}); "
                                   "run the tick again")
            self._rows.update((r.key, r) for r in rows)
            self._occurrences.update(occurrences)

    def enqueue_due(self, now: datetime) -> int:
        with self._lock:
            due = [r for r in self._rows.values() if r.status == "planned" and r.send_at is not None
                   and r.send_at <= now and r.key not in self._sends]
            for r in due:
                self._sends[r.key] = SendRow(r.key, r.customer_id, r.campaign_id, 0, "queued", 0, r.send_at or now, None,
                                             "", "", "", "", 0.0, now)
            return len(due)

    def sends(self, *, keys: Sequence[str] | None = None, states: Sequence[str] | None = None) -> list[SendRow]:
        rows = self._sends.values() if keys is None else [self._sends[k] for k in keys if k in self._sends]
        return sorted((r for r in rows if states is None or r.state in states), key=lambda r: r.key)

    def due_sends(self, now: datetime, limit: int) -> list[SendRow]:
        due = [r for r in self._sends.values() if r.state in ("queued", "retry") and r.next_at <= now]
        return sorted(due, key=lambda r: (r.next_at, r.key))[:limit]

    def expired_leases(self, now: datetime) -> list[SendRow]:
        return sorted((r for r in self._sends.values() if r.state in HELD_STATES and r.lease_until is not None
                       and r.lease_until < now), key=lambda r: r.key)

    def claim(
        self, keys: Sequence[str], claim: str, lease_until: datetime, now: datetime, *, expired: bool = False,
        batch_ref: str | None = None,
    ) -> list[SendRow]:
        taken = []
        with self._lock:
            for key in keys:
                row = self._sends.get(key)
                if row is None:
                    continue
                if expired:
                    ok = row.state in HELD_STATES and row.lease_until is not None and row.lease_until < now
                else:
                    ok = row.state in ("queued", "retry")
                if ok and expired:
                    row = row._replace(claim=claim, lease_until=lease_until, updated_at=now)
                elif ok:
                    row = row._replace(state="claimed" if batch_ref is None else "inflight", claim=claim,
                                       lease_until=lease_until, updated_at=now, attempts=row.attempts + 1,
                                       batch_ref=row.batch_ref if batch_ref is None else batch_ref)
                if ok:
                    self._sends[key] = row
                    taken.append(row)
        return taken

    def hand_over(self, keys: Sequence[str], claim: str, batch_ref: str, lease_until: datetime, now: datetime) -> list[str]:
        held = []
        with self._lock:
            for key in keys:
                row = self._sends.get(key)
                if row is not None and row.claim == claim and row.state in HELD_STATES:
                    self._sends[key] = row._replace(state="inflight", batch_ref=batch_ref, lease_until=lease_until,
                                                    updated_at=now)
                    held.append(key)
        return held

    def settle(
        self, rows: Sequence[SendRow], events: Sequence[Mapping[str, Any]] = (),
        opt_outs: Sequence[tuple[Any, str, datetime, str]] = (), *, held_by: str | None = None,
        states: Sequence[str] | None = None,
    ) -> set[str]:
        with self._lock:
            written = {r.key for r in rows if _may_settle(self._sends.get(r.key), held_by, states)}
            self._sends.update((r.key, r) for r in rows if r.key in written)
            self._events += [dict(e) for e in events if e["message_key"] in written]
            self._put_opt_outs(opt_outs)
        return written

    def outbox_by_keys(self, keys: Sequence[str]) -> dict[str, OutboxRow]:
        return {k: self._rows[k] for k in keys if k in self._rows}

    def add_opt_outs(self, rows: Sequence[tuple[Any, str, datetime, str]]) -> None:
        with self._lock:
            self._put_opt_outs(rows)

    def _put_opt_outs(self, rows: Sequence[tuple[Any, str, datetime, str]]) -> None:
        for customer_id, group, at, reason in rows:
            self._opt_outs[(json.dumps(customer_id), group)] = (at, reason)
        self._events += opt_out_events(rows)

    def message_events(self) -> list[dict[str, Any]]:
        return sorted((dict(e) for e in self._events), key=lambda e: e["ts"])

    def add_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self._events += [dict(e) for e in events]

    def opt_outs(self) -> dict[Any, dict[str, datetime]]:
        out: dict[Any, dict[str, datetime]] = {}
        for (customer, group), (at, _) in self._opt_outs.items():
            out.setdefault(json.loads(customer), {})[group] = at
        return out

    def add_consents(self, records: Sequence[ConsentRecord]) -> None:
        with self._lock:
            self._consents += records
            for customer, mine in _by_customer(records).items():
                current = {g: v for (c, g), v in self._opt_outs.items() if c == customer}
                after = opt_outs_after(current, mine)
                for group in current.keys() - after.keys():
                    del self._opt_outs[(customer, group)]
                self._opt_outs.update(((customer, g), v) for g, v in after.items())
            self._events += opt_out_events(_withdrawals(records))

    def consents(self, customer_ids: Collection[Any] | None = None) -> list[ConsentRecord]:
        wanted = None if customer_ids is None else {json.dumps(c) for c in customer_ids}
        return sorted((r for r in self._consents if wanted is None or json.dumps(r.customer_id) in wanted),
                      key=lambda r: (r.at, r.recorded_at))


def _may_settle(row: SendRow | None, held_by: str | None, states: Sequence[str] | None) -> bool:
    if row is None:
        return False
    if held_by is not None and not (row.claim == held_by and row.state in HELD_STATES):
        return False
    return states is None or row.state in states


Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
#: key_set(keys) -> a context manager yielding ``(predicate, params)``: a condition on the column ``key_`` that
#: selects exactly those keys
KeySet = Callable[[Sequence[str]], AbstractContextManager[tuple[str, list[Any]]]]
#: insert(table, column names, the values column by column)
Insert = Callable[[str, Sequence[str], Sequence[Sequence[Any]]], None]


class SQLCampaignStore(CampaignStore):
    """The three tables next to the shop's data, reached through ``run(sql, params)``.

    ``insert(table, columns, values)`` inserts many rows given column by column; ``transaction()`` is a context manager that commits
    on success and rolls back on error; ``is_conflict(error)`` says whether an error is a duplicate key.
    Tables are created on first use with types every supported engine accepts.
    """

    CAMPAIGNS = "shopcrm_campaigns"
    OUTBOX = "shopcrm_outbox"
    OCCURRENCES = "shopcrm_occurrences"
    SENDS = "shopcrm_sends"
    OPT_OUTS = "shopcrm_opt_outs"
    MESSAGE_EVENTS = "shopcrm_message_events"

    def __init__(
        self,
        run: Run,
        insert: Insert,
        transaction: Callable[[], AbstractContextManager[None]],
        *,
        placeholder: str = "?",
        is_conflict: Callable[[Exception], bool] = is_duplicate_key,
        write_events: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
        prepare_events: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
        lock_rows: bool = False,
        key_set: KeySet | None = None,
        lookup_chunk: int | None = None,
        returning: bool = False,
        library: LibraryStore | None = None,
        arrow: bool = False,
    ) -> None:
        #: the library's tables (names, version), shared with the segment and settings stores of the same source
        self._library = library or LibraryStore(LibraryTables(), run, transaction, placeholder=placeholder)
        tables = self._library.tables
        self.CAMPAIGNS, self.OUTBOX, self.OCCURRENCES = tables.campaigns, tables.outbox, tables.occurrences
        self.SENDS, self.OPT_OUTS, self.MESSAGE_EVENTS = tables.sends, tables.opt_outs, tables.message_events
        self.CONSENTS = tables.consents
        self._run = run
        self._insert = insert
        self._transaction = transaction
        self._p = placeholder
        self._is_conflict = is_conflict
        #: where outcome events go, inside the ledger's transaction (default: ``shopcrm_message_events``)
        self._write_events = write_events or self._insert_message_events
        #: before the ledger's transaction, what ``write_events`` needs made for these events (DuckDB: the events
        #: table's new columns, added in a transaction of their own: two transactions adding the same column at once
        #: conflict, and the settle of a dispatcher running beside another would fail)
        self._prepare_events = prepare_events
        #: ``SELECT ... FOR UPDATE`` before a conditional settle (servers with row locks: PostgreSQL, MySQL)
        self._for_update = " FOR UPDATE" if lock_rows else ""
        #: how a set of keys reaches a statement: placeholders (500 at a time), or the engine's own (a registered
        #: list parameter on DuckDB, any number at once)
        self._key_set = key_set or self._placeholders
        self._key_chunk = 500 if key_set is None else 1_000_000
        #: outbox rows by key through placeholders, this many at a time, so that the engine looks them up in the
        #: primary key's index instead of scanning every rendered message (DuckDB: a semi-join scans them all)
        self._lookup_chunk = lookup_chunk
        #: ``UPDATE ... RETURNING`` (PostgreSQL, DuckDB, SQLite 3.35+): a claim reads back what it took in one statement
        self._returning = returning
        #: ``insert`` takes Arrow arrays (DuckDB): a large batch's columns go in without a Python object per row
        self._arrow = arrow
        self._ready = False

    def _send_select(self) -> str:
        return f"SELECT {_SEND_SELECT_COLUMNS} FROM {self.SENDS}"

    @contextmanager
    def _customers_in(self, stored: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        """``customer_id IN (...)`` over stored (JSON) customer ids, the way the engine takes a set of keys (one
        list parameter on DuckDB and PostgreSQL, placeholders elsewhere): the key set's condition on ``key_``,
        put on ``customer_id``."""
        with self._key_set(stored) as (clause, params):
            assert clause.startswith("key_ "), clause
            yield "customer_id" + clause[len("key_"):], params

    def opt_outs_of(self, customer_ids: Collection[Any]) -> dict[Any, dict[str, datetime]]:
        self._ensure()
        out: dict[Any, dict[str, datetime]] = {}
        for chunk in _chunks([json.dumps(c) for c in dict.fromkeys(customer_ids)], self._key_chunk):
            with self._customers_in(chunk) as (clause, params):
                rows = self._run(f"SELECT customer_id, consent_group, opted_out_at FROM {self.OPT_OUTS} WHERE {clause}",
                                 params)
            for customer, group, at in rows:
                out.setdefault(json.loads(customer), {})[str(group)] = datetime.fromisoformat(str(at))
        return out

    def planned_since_of(self, since: datetime, customer_ids: Collection[Any]) -> list[OutboxRow]:
        self._ensure()
        p = self._p
        out: list[OutboxRow] = []
        for chunk in _chunks([json.dumps(c) for c in dict.fromkeys(customer_ids)], self._key_chunk):
            with self._customers_in(chunk) as (clause, params):
                rows = self._run(self._select() + f" WHERE status = 'planned' AND send_at >= {p} AND {clause}",
                                 [_stamp(since), *params])
            out += [OutboxRow.from_tuple(r) for r in rows]
        return out

    def tick_marks(self) -> TickMarks:
        marks: TickMarks | None = getattr(self, "_sql_marks", None)
        if marks is None:  # one per store: it remembers that its tables exist (no catalogue query per tick)
            tables = self._library.tables
            marks = self._sql_marks = SQLTickMarks(
                tables.tick_marks, tables.wakeups, self._run, self._insert, self._transaction, self._ensure,
                placeholder=self._p, present=lambda: self._library.has_table("tick_marks"),
                list_parameter=self._library.dialect == "duckdb")
        return marks

    @contextmanager
    def _placeholders(self, keys: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        yield f"key_ IN ({', '.join([self._p] * len(keys))})", list(keys)

    def _ensure(self) -> None:
        """Create the library's tables, check their version and upgrade them (once)."""
        if self._ready:
            return
        self._library.ensure()
        if not self._library.present:
            from shopcrm.sources._library import ReadOnlyShopError

            raise ReadOnlyShopError(
                f"this read-only shop has no campaign tables ({self.CAMPAIGNS}, {self.OUTBOX}, ...) and cannot create "
                "them: no campaign was ever saved in it; save one in a writable open first"
            )
        self._ready = True

    def put_campaign(self, campaign_id: str, document: str, saved_at: datetime) -> None:
        self._ensure()
        p = self._p
        with self._transaction():
            self._run(f"DELETE FROM {self.CAMPAIGNS} WHERE id = {p}", (campaign_id,))
            self._run(f"INSERT INTO {self.CAMPAIGNS} (id, document, saved_at) VALUES ({p}, {p}, {p})",
                      (campaign_id, document, _stamp(saved_at)))

    def campaigns(self) -> list[tuple[str, str, datetime]]:
        self._ensure()
        rows = self._run(f"SELECT id, document, saved_at FROM {self.CAMPAIGNS} ORDER BY id", ())
        return [(str(i), str(d), datetime.fromisoformat(str(t))) for i, d, t in rows]

    def delete_campaign(self, campaign_id: str) -> bool:
        self._ensure()
        p = self._p
        with self._transaction():
            found = self._run(f"SELECT id FROM {self.CAMPAIGNS} WHERE id = {p}", (campaign_id,))
            self._run(f"DELETE FROM {self.CAMPAIGNS} WHERE id = {p}", (campaign_id,))
        return bool(found)

    def _select(self) -> str:
        columns = ", ".join("key_" if c == "key" else c for c in OUTBOX_COLUMNS)
        return f"SELECT {columns} FROM {self.OUTBOX}"

    def outbox(
        self, *, campaign_ids: Sequence[str] | None = None, since: datetime | None = None, status: str | None = None,
        customer_ids: Sequence[Any] | None = None,
    ) -> list[OutboxRow]:
        if customer_ids is not None:  # in chunks: engines bound the number of parameters
            ids = list(dict.fromkeys(json.dumps(c) for c in customer_ids))
            found: list[OutboxRow] = []
            for start in range(0, len(ids), self._key_chunk):
                found += self._outbox(campaign_ids, since, status, ids[start:start + self._key_chunk])
            return sorted(found, key=lambda r: (r.due_at, r.campaign_id, json.dumps(r.customer_id), r.step, r.key))
        return self._outbox(campaign_ids, since, status, None)

    def _outbox(
        self, campaign_ids: Sequence[str] | None, since: datetime | None, status: str | None, customers: list[str] | None,
    ) -> list[OutboxRow]:
        self._ensure()
        p = self._p
        where: list[str] = []
        params: list[Any] = []
        if customers is not None:
            if not customers:
                return []
            with self._customers_in(customers) as (clause, bound):
                where.append(clause)
                params += bound
        if campaign_ids is not None:
            if not campaign_ids:
                return []
            where.append(f"campaign_id IN ({', '.join([p] * len(campaign_ids))})")
            params += list(campaign_ids)
        if since is not None:
            where.append(f"due_at >= {p}")
            params.append(_stamp(since))
        if status is not None:
            where.append(f"status = {p}")
            params.append(status)
        sql = self._select() + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY due_at, campaign_id, customer_id, step, key_"
        return [OutboxRow.from_tuple(r) for r in self._run(sql, params)]

    def planned_since(self, since: datetime) -> list[OutboxRow]:
        self._ensure()
        p = self._p
        rows = self._run(self._select() + f" WHERE status = 'planned' AND send_at >= {p}", (_stamp(since),))
        return [OutboxRow.from_tuple(r) for r in rows]

    def ledger_since(self, since: datetime, customer_ids: Collection[Any] | None = None) -> list[LedgerEntry]:
        self._ensure()
        p = self._p
        select = f"SELECT key_, customer_id, campaign_id, purpose, channel, send_at FROM {self.OUTBOX} WHERE status = 'planned' AND send_at >= {p}"
        if customer_ids is None:
            found = self._run(select, (_stamp(since),))
        else:
            found = []
            for chunk in _chunks([json.dumps(c) for c in dict.fromkeys(customer_ids)], self._key_chunk):
                with self._customers_in(chunk) as (clause, params):
                    found += self._run(f"{select} AND {clause}", [_stamp(since), *params])
        return [LedgerEntry(key, _customer_id(customer), campaign, purpose, channel, _instant(send))
                for key, customer, campaign, purpose, channel, send in found]

    def occurrences(self, campaign_ids: Sequence[str]) -> set[tuple[str, str]]:
        self._ensure()
        if not campaign_ids:
            return set()
        marks = ", ".join([self._p] * len(campaign_ids))
        rows = self._run(f"SELECT campaign_id, occurrence FROM {self.OCCURRENCES} WHERE campaign_id IN ({marks})", list(campaign_ids))
        return {(str(c), str(o)) for c, o in rows}

    def record(self, rows: Sequence[OutboxRow], occurrences: Iterable[tuple[str, str]], at: datetime) -> None:
        self._ensure()
        columns = ["key_" if c == "key" else c for c in OUTBOX_COLUMNS]
        try:
            with self._transaction():
                if rows:
                    self._insert(self.OUTBOX, columns, rows.stored(arrow=self._arrow) if isinstance(rows, OutboxBatch)
                                 else stored_columns(rows))
                pairs = [(c, o, _stamp(at)) for c, o in occurrences]
                if pairs:
                    self._insert(self.OCCURRENCES, ["campaign_id", "occurrence", "planned_at"],
                                 [list(column) for column in zip(*pairs, strict=True)])
        except Exception as error:
            if self._is_conflict(error):
                raise TickConflict(f"another tick recorded some of these decisions first ({error}); run the tick again") from error
            raise

    # -- the send ledger ---------------------------------------------------------
    def enqueue_due(self, now: datetime) -> int:
        self._ensure()
        p = self._p
        stamp = _stamp(now)
        columns = ", ".join("key_" if c == "key" else c for c in SEND_COLUMNS)
        try:
            with self._transaction():
                before = self._run(f"SELECT COUNT(*) FROM {self.SENDS}", ())[0][0]
                self._run(
                    f"INSERT INTO {self.SENDS} ({columns}) "
                    f"SELECT o.key_, o.customer_id, o.campaign_id, 0, 'queued', 0, o.send_at, NULL, '', '', '', '', 0, {p}, '', 0, "
                    "'', '', '', '', NULL "
                    f"FROM {self.OUTBOX} o WHERE o.status = 'planned' AND o.send_at <= {p} "
                    f"AND NOT EXISTS (SELECT 1 FROM {self.SENDS} s WHERE s.key_ = o.key_)",
                    (stamp, stamp),
                )
                after = self._run(f"SELECT COUNT(*) FROM {self.SENDS}", ())[0][0]
        except Exception as error:
            if self._is_conflict(error):  # another dispatcher queued some of them first: they are queued
                return 0
            raise
        return int(after) - int(before)

    def sends(self, *, keys: Sequence[str] | None = None, states: Sequence[str] | None = None) -> list[SendRow]:
        self._ensure()
        p = self._p
        found: list[SendRow] = []
        state_sql = f"state IN ({', '.join([p] * len(states))})" if states is not None else ""
        if keys is None:
            sql = self._send_select() + (f" WHERE {state_sql}" if state_sql else "")
            found = [SendRow.from_tuple(r) for r in self._run(sql, list(states or ()))]
        for part in _chunks(list(keys), self._key_chunk) if keys is not None else []:
            with self._key_set(part) as (in_keys, params):
                sql = self._send_select() + f" WHERE {in_keys}" + (f" AND {state_sql}" if state_sql else "")
                found += [SendRow.from_tuple(r) for r in self._run(sql, [*params, *(states or ())])]
        return sorted(found, key=lambda r: r.key)

    def due_sends(self, now: datetime, limit: int) -> list[SendRow]:
        self._ensure()
        p = self._p
        rows = self._run(
            self._send_select() + f" WHERE state IN ('queued', 'retry') AND next_at <= {p} ORDER BY next_at, key_ LIMIT {int(limit)}",
            (_stamp(now),),
        )
        return [SendRow.from_tuple(r) for r in rows]

    def expired_leases(self, now: datetime) -> list[SendRow]:
        self._ensure()
        rows = self._run(self._send_select() + f" WHERE state IN ('claimed', 'inflight') AND lease_until < {self._p} ORDER BY key_",
                         (_stamp(now),))
        return [SendRow.from_tuple(r) for r in rows]

    def claim(
        self, keys: Sequence[str], claim: str, lease_until: datetime, now: datetime, *, expired: bool = False,
        batch_ref: str | None = None,
    ) -> list[SendRow]:
        self._ensure()
        p = self._p
        taken: list[SendRow] = []
        for part in _chunks(sorted(keys), self._key_chunk):
            try:
                with self._transaction(), self._key_set(part) as (in_keys, params):
                    if expired:
                        sql = (f"UPDATE {self.SENDS} SET claim = {p}, lease_until = {p}, updated_at = {p} "
                               f"WHERE {in_keys} AND state IN ('claimed', 'inflight') AND lease_until < {p}")
                        values: tuple[Any, ...] = (claim, _stamp(lease_until), _stamp(now), *params, _stamp(now))
                    elif batch_ref is None:
                        sql = (f"UPDATE {self.SENDS} SET state = 'claimed', claim = {p}, lease_until = {p}, updated_at = {p}, "
                               f"attempts = attempts + 1 WHERE {in_keys} AND state IN ('queued', 'retry')")
                        values = (claim, _stamp(lease_until), _stamp(now), *params)
                    else:  # claimed and handed over with the channel's prepared batch, in one commit
                        sql = (f"UPDATE {self.SENDS} SET state = 'inflight', batch_ref = {p}, claim = {p}, lease_until = {p}, "
                               f"updated_at = {p}, attempts = attempts + 1 WHERE {in_keys} AND state IN ('queued', 'retry')")
                        values = (batch_ref, claim, _stamp(lease_until), _stamp(now), *params)
                    if self._returning:  # exactly the rows this statement took, in one round trip
                        rows = self._run(f"{sql} RETURNING {_SEND_SELECT_COLUMNS}", values)
                    else:
                        self._run(sql, values)
                        rows = self._run(self._send_select() + f" WHERE {in_keys} AND claim = {p} AND lease_until = {p}",
                                         (*params, claim, _stamp(lease_until)))
            except Exception as error:
                if is_contention(error):  # another dispatcher holds these rows: they are taken, not ours
                    continue
                raise
            taken += [SendRow.from_tuple(r) for r in rows]
        return taken

    def hand_over(self, keys: Sequence[str], claim: str, batch_ref: str, lease_until: datetime, now: datetime) -> list[str]:
        self._ensure()
        p = self._p
        held: list[str] = []
        for part in _chunks(sorted(keys), self._key_chunk):
            with self._transaction(), self._key_set(part) as (in_keys, params):
                sql = (f"UPDATE {self.SENDS} SET state = 'inflight', batch_ref = {p}, lease_until = {p}, updated_at = {p} "
                       f"WHERE {in_keys} AND claim = {p} AND state IN ('claimed', 'inflight')")
                values = (batch_ref, _stamp(lease_until), _stamp(now), *params, claim)
                if self._returning:
                    rows = self._run(f"{sql} RETURNING key_", values)
                else:
                    self._run(sql, values)
                    rows = self._run(f"SELECT key_ FROM {self.SENDS} WHERE {in_keys} AND claim = {p} AND state = 'inflight' "
                                     f"AND lease_until = {p}", (*params, claim, _stamp(lease_until)))
            held += [str(r[0]) for r in rows]
        return held

    def settle(
        self, rows: Sequence[SendRow], events: Sequence[Mapping[str, Any]] = (),
        opt_outs: Sequence[tuple[Any, str, datetime, str]] = (), *, held_by: str | None = None,
        states: Sequence[str] | None = None,
    ) -> set[str]:
        if not rows:
            return set()
        self._ensure()
        p = self._p
        columns = ["key_" if c == "key" else c for c in SEND_COLUMNS]
        written: set[str] = set()
        self.prepare_events([*events, *opt_out_events(opt_outs)])
        with self._transaction():
            for part in _chunks([r.key for r in rows], self._key_chunk):
                with self._key_set(part) as (in_keys, params):
                    where, extra = [f"{in_keys}"], []
                    if held_by is not None:
                        where.append(f"claim = {p} AND state IN ('claimed', 'inflight')")
                        extra.append(held_by)
                    if states is not None:
                        where.append(f"state IN ({', '.join([p] * len(states))})")
                        extra += list(states)
                    found = self._run(f"SELECT key_ FROM {self.SENDS} WHERE {' AND '.join(where)}{self._for_update}",
                                      [*params, *extra])
                mine = [str(r[0]) for r in found]
                if mine:
                    with self._key_set(mine) as (in_keys, params):
                        self._run(f"DELETE FROM {self.SENDS} WHERE {in_keys}", params)
                written.update(mine)
            kept = [r for r in rows if r.key in written]
            if kept:
                self._insert(self.SENDS, columns, [list(column) for column in zip(*(r.stored() for r in kept), strict=True)])
            happened = [e for e in events if e["message_key"] in written]
            if happened:
                self._write_events(happened)
            if opt_outs:
                self._put_opt_outs(opt_outs)
        return written

    def outbox_by_keys(self, keys: Sequence[str]) -> dict[str, OutboxRow]:
        self._ensure()
        out: dict[str, OutboxRow] = {}
        lookup = self._key_set if self._lookup_chunk is None else self._placeholders
        for part in _chunks(list(keys), self._lookup_chunk or self._key_chunk):
            with lookup(part) as (in_keys, params):
                rows = self._run(self._select() + f" WHERE {in_keys}", params)
            out.update((row.key, row) for row in (OutboxRow.from_tuple(r) for r in rows))
        return out


    # -- opt-outs -------------------------------------------------------------------
    def add_opt_outs(self, rows: Sequence[tuple[Any, str, datetime, str]]) -> None:
        if not rows:
            return
        self._ensure()
        self.prepare_events(opt_out_events(rows))
        with self._transaction():
            self._put_opt_outs(rows)

    def _put_opt_outs(self, rows: Sequence[tuple[Any, str, datetime, str]]) -> None:
        """The opt-outs and their ``opted_out`` events (inside the caller's transaction: an opt-out is never kept
        without the event that announces it, nor the event without the opt-out)."""
        if not rows:
            return
        p = self._p
        latest = {(json.dumps(c), g): (_stamp(at), reason) for c, g, at, reason in rows}
        for customer, group in latest:  # inside the caller's transaction
            self._run(f"DELETE FROM {self.OPT_OUTS} WHERE customer_id = {p} AND consent_group = {p}", (customer, group))
        values: list[list[Any]] = [
            [c for c, _ in latest], [g for _, g in latest], [v[0] for v in latest.values()], [v[1] for v in latest.values()],
        ]
        self._insert(self.OPT_OUTS, ["customer_id", "consent_group", "opted_out_at", "reason"], values)
        self._write_events(opt_out_events(rows))

    def opt_outs(self) -> dict[Any, dict[str, datetime]]:
        self._ensure()
        out: dict[Any, dict[str, datetime]] = {}
        for customer, group, at in self._run(f"SELECT customer_id, consent_group, opted_out_at FROM {self.OPT_OUTS}", ()):
            out.setdefault(json.loads(customer), {})[str(group)] = datetime.fromisoformat(str(at))
        return out

    # -- consent evidence (K2) -------------------------------------------------------
    _CONSENT_FIELDS = ("record_id", "customer_id", "consent_group", "granted", "given_at", "how", "text_version",
                       "recorded_by", "recorded_at")

    def add_consents(self, records: Sequence[ConsentRecord]) -> None:
        if not records:
            return
        self._ensure()
        self._library.writable("record consents")
        withdrawals = _withdrawals(records)
        self.prepare_events(opt_out_events(withdrawals))
        p = self._p
        with self._transaction():
            values: list[list[Any]] = [
                [uuid.uuid4().hex for _ in records], [json.dumps(r.customer_id) for r in records], [r.group for r in records],
                [int(r.granted) for r in records], [_stamp(r.at) for r in records], [r.how for r in records],
                [r.text_version for r in records], [r.by for r in records], [_stamp(r.recorded_at) for r in records],
            ]
            self._insert(self.CONSENTS, list(self._CONSENT_FIELDS), values)
            for customer, mine in _by_customer(records).items():  # the opt-outs they change, read and written here
                current = {str(g): (datetime.fromisoformat(str(at)), str(why or "")) for g, at, why in self._run(
                    f"SELECT consent_group, opted_out_at, reason FROM {self.OPT_OUTS} WHERE customer_id = {p}{self._for_update}",
                    (customer,))}
                after = opt_outs_after(current, mine)
                for group in current.keys() | after.keys():
                    if current.get(group) == after.get(group):
                        continue
                    self._run(f"DELETE FROM {self.OPT_OUTS} WHERE customer_id = {p} AND consent_group = {p}", (customer, group))
                    if group in after:
                        self._run(f"INSERT INTO {self.OPT_OUTS} (customer_id, consent_group, opted_out_at, reason) "
                                  f"VALUES ({p}, {p}, {p}, {p})", (customer, group, _stamp(after[group][0]), after[group][1]))
            if withdrawals:
                self._write_events(opt_out_events(withdrawals))

    def consents(self, customer_ids: Collection[Any] | None = None) -> list[ConsentRecord]:
        self._ensure()
        if self._library.read_only and not self._library.has_table("consents"):
            return []  # written by a shopcrm before the consent evidence: none recorded
        select = f"SELECT {', '.join(self._CONSENT_FIELDS[1:])} FROM {self.CONSENTS}"
        rows: list[tuple[Any, ...]] = []
        if customer_ids is None:
            rows = self._run(select, ())
        else:
            for chunk in _chunks([json.dumps(c) for c in dict.fromkeys(customer_ids)], self._key_chunk):
                with self._customers_in(chunk) as (clause, params):
                    rows += self._run(f"{select} WHERE {clause}", params)
        found = [ConsentRecord(customer_id=json.loads(c), group=str(g), granted=bool(granted),
                               at=datetime.fromisoformat(str(at)), how=str(how),
                               text_version=None if version is None else str(version), by=str(by),
                               recorded_at=datetime.fromisoformat(str(recorded)))
                 for c, g, granted, at, how, version, by, recorded in rows]
        return sorted(found, key=lambda r: (r.at, r.recorded_at))

    # -- delivery events (for sources whose events table is not ours) -------------------
    _EVENT_FIELDS = ("customer_id", "event", "ts", "message_key", "campaign_id", "channel", "kind", "cost", "provider_id",
                     "reason", "code", "priced_as", "price_source")

    def _insert_message_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Outcome events into ``shopcrm_message_events`` (inside the caller's transaction)."""
        values: list[list[Any]] = [[] for _ in self._EVENT_FIELDS]
        for event in events:
            for i, name in enumerate(self._EVENT_FIELDS):
                value = event.get(name)
                if name == "customer_id":
                    value = json.dumps(value)
                elif name == "ts":
                    value = _stamp(value)
                values[i].append(value)
        self._insert(self.MESSAGE_EVENTS, list(self._EVENT_FIELDS), values)

    def prepare_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        if events and self._prepare_events is not None:
            self._prepare_events(events)

    @property
    def prepares_events(self) -> bool:
        return self._prepare_events is not None

    def add_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        self._ensure()
        self.prepare_events(events)
        with self._transaction():
            self._write_events(events)

    def message_events(self) -> list[dict[str, Any]]:
        self._ensure()
        rows = self._run(f"SELECT {', '.join(self._EVENT_FIELDS)} FROM {self.MESSAGE_EVENTS} ORDER BY ts", ())
        out = []
        for row in rows:
            event = dict(zip(self._EVENT_FIELDS, row, strict=True))
            event["customer_id"] = json.loads(event["customer_id"])
            event["ts"] = datetime.fromisoformat(str(event["ts"]))
            out.append(event)
        return out

_SEND_SELECT_COLUMNS = ", ".join("key_" if c == "key" else c for c in SEND_COLUMNS)



def _chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [values[i:i + size] for i in range(0, len(values), size)]
