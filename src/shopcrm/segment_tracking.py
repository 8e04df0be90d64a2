"""Tracked segments and attributes: who entered and who left, refreshed incrementally (issue 15).

A refresh at ``now`` recomputes a tracked segment only for its *candidates*: the customers with an event at or
after the last refresh's instant (the watermark; "at" too, since an event at exactly the last ``now`` was not
yet visible then: only ``ts < now`` exists), and the customers whose ``next_change_at`` (see
:mod:`shopcrm.dsl._boundaries`) has come.  Every other customer's answer cannot have changed, so the
members kept from the last refresh stand.  It recomputes in full instead on the first refresh, when asked
(``full=True``), when the rule changed, when the rule is population-relative (``lifecycle``, ``rfm``,
``cycle``), and when the customers table changed (detected on the embedded DuckDB store by a hash of its
ids and of the columns tracked rules and attributes read; elsewhere pass ``full=True`` after reloading
customers).  An event that arrives late, with a ``ts`` before the watermark, is seen by the next ``full=True``
refresh; on the embedded DuckDB store the load itself moves each segment's candidates back to it (its state's
``since``: :meth:`~shopcrm.sources._membership_store.MembershipStore.rewind`), so the next refresh counts it.

Only new events a rule could count make candidates (a name it reads; when every node reading the name filters it,
one of the filters holds).  Where the engine keeps scratch tables (DuckDB) the candidates' rows are copied once
for every segment, the events only of the names read and only as far back as some window reading each name
reaches at ``now`` (:func:`_horizons`); each segment reads its own candidates from that copy, and the store
reads and writes every segment's rows in one statement per table and kind.

The shell gathers (the engine's members and boundary values, the store's members), the core decides
(:func:`shopcrm.dsl._boundaries.next_change_at`'s compiled form), and the shell applies (the store, the
``segment_entered`` / ``segment_exited`` events).  Members are compared through Python, so the events may be on
one engine and the membership tables in another database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

from shopcrm.compiler import compile_members
from shopcrm.compiler._boundaries import (
    compile_next_changes,
    next_changes_from_rows,
    only_candidates,
    only_listed,
)
from shopcrm.compiler._dialects import dialect_for
from shopcrm.dsl import Rule, children, parse_rule
from shopcrm.dsl._boundaries import boundaries
from shopcrm.dsl._nodes import (
    Aggregate,
    And,
    Attribute,
    Everyone,
    FirstPerformed,
    LastPerformed,
    Not,
    Or,
    Performed,
    Sample,
)
from shopcrm.errors import RuleError, SchemaError
from shopcrm.sources._membership_store import MembershipStore, RefreshConflict, Refreshed
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:
    from shopcrm.lifecycle import LifecyclePolicy
    from shopcrm.sources import Source

__all__ = ["AttributeChange", "SegmentChange", "SegmentRefresh", "refresh"]

#: the events a refresh writes, and the property that names the segment
ENTERED, EXITED = "segment_entered", "segment_exited"


@attrs.frozen
class SegmentChange:
    """One tracked segment's refresh: who entered, who left, how many are members now, and how it was computed
    (``full`` names why every customer was recomputed; else ``candidates`` were)."""

    segment: str
    entered: tuple[Any, ...]
    exited: tuple[Any, ...]
    members: int
    candidates: int | None
    full: str | None = None
    #: the first refresh records the members without events (they did not *enter* now)
    initial: bool = False
    #: why nothing was recomputed (``now`` before the segment's last refresh: a clock that went back); the members
    #: recorded then stand, no event is written, and the next refresh at or after that instant goes on from there
    skipped: str | None = None

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.segment}: skipped, {self.skipped}; {self.members:,} members kept, no events"
        how = f"full ({self.full})" if self.full else f"{self.candidates:,} candidates rechecked"
        first = ", first refresh: no events" if self.initial else ""
        return (f"{self.segment}: {len(self.entered):,} entered, {len(self.exited):,} exited, "
                f"{self.members:,} members; {how}{first}")


@attrs.frozen
class AttributeChange:
    """One tracked attribute's refresh: ``(customer_id, old, new)`` per customer whose value changed."""

    attribute: str
    changed: tuple[tuple[Any, Any, Any], ...]
    initial: bool = False
    #: nothing was read: the customers table is unchanged, or ``reason`` says why
    skipped: bool = False
    #: why a skipped refresh read nothing other than an unchanged table (``now`` before the attribute's last look: a
    #: clock that went back); the values recorded then stand, and the next refresh at or after that instant compares
    reason: str | None = None

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.attribute}: skipped, {self.reason}" if self.reason else f"{self.attribute}: the customers table is unchanged"
        first = " (first refresh: values recorded, no events)" if self.initial else ""
        return f"{self.attribute}: {len(self.changed):,} changed{first}"


@attrs.frozen
class SegmentRefresh:
    """What a refresh changed, per tracked segment and attribute, and how many events it wrote."""

    now: datetime
    segments: tuple[SegmentChange, ...] = ()
    attributes: tuple[AttributeChange, ...] = ()
    events: int = 0

    def __getitem__(self, name: str) -> SegmentChange:
        for change in self.segments:
            if change.segment == name:
                return change
        raise KeyError(f"no tracked segment {name!r} in this refresh; it has {', '.join(c.segment for c in self.segments) or 'none'}")

    def __str__(self) -> str:
        lines = [f"segments refreshed at {self.now:%Y-%m-%d %H:%M:%S} UTC: {self.events:,} events written"]
        lines += [f"  {change}" for change in (*self.segments, *self.attributes)]
        return "\n".join(lines)


def segment_key(name: str) -> str:
    return f"segment:{name}"


def attribute_key(column: str) -> str:
    return f"attribute:{column}"


def customers_signature(source: Source, columns: Sequence[str] | None = None) -> str | None:
    """A cheap fingerprint of the customers table on DuckDB (its row count and a sum of row hashes over ``columns``:
    the ids and the attributes that tracked rules and attributes read, a change to any other column cannot
    change an answer; None: every column); None elsewhere (no cheap way to notice a reload there: refresh with
    ``full=True`` after one)."""
    if source.dialect != "duckdb":
        return None
    table = source.schema().customers
    hashed: list[exp.Expression] = ([exp.column("c")] if columns is None
                                    else [exp.column(c, table="c", quoted=True) for c in columns])
    query = exp.select(exp.Count(this=exp.Star()), exp.Sum(this=exp.Anonymous(this="HASH", expressions=hashed)))
    row = source.fetch(query.from_(table.relation("c")))[0]
    return f"{row[0]}:{row[1]}" if columns is None else f"{','.join(columns)}:{row[0]}:{row[1]}"


def _named(node: Any, names: Callable[[str, Any], Iterable[str]]) -> set[str]:
    """What ``names(key, value)`` gives for every key of a rule as JSON data, at any depth."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.update(names(key, value))
            found |= _named(value, names)
    elif isinstance(node, list):
        for item in node:
            found |= _named(item, names)
    return found


def _attributes(node: Any) -> set[str]:
    """The customer attributes a rule (as JSON data) compares (``attribute`` nodes; ``properties.x``: the
    ``properties`` column)."""
    return _named(node, lambda key, value: [value.split(".", 1)[0]] if key == "attribute" and isinstance(value, str)
                  else [])


def _customer_columns(source: Source, rules: Sequence[Rule], attributes: Sequence[str]) -> list[str]:
    """The customers columns some tracked rule or attribute reads, ``customer_id`` first (in the table's order)."""
    named = {"customer_id", *attributes}
    for rule in rules:
        named |= _attributes(rule.to_dict())
    return ["customer_id", *(c for c in source.schema().customers.columns if c in named and c != "customer_id")]


def _ids(source: Source, query: exp.Select) -> set[Any]:
    return {row[0] for row in source.fetch(query)}


def _recent(source: Source, since: datetime, names: Sequence[str] | None = None) -> set[tuple[Any, Any]]:
    """The customers with an event at or after ``since`` (of one of ``names``, when given), with the names of
    those events."""
    if names is not None and not names:
        return set()
    d = dialect_for(source.dialect)
    query = exp.select(exp.column("customer_id", table="e", quoted=True), exp.column("event", table="e", quoted=True)
                       ).distinct().from_(source.schema().events.relation("e")).where(
        exp.GTE(this=d.timestamp_column(exp.column("ts", table="e", quoted=True)), expression=d.timestamp_literal(since)))
    if names is not None:
        query = query.where(d.one_of(exp.column("event", table="e", quoted=True), list(names)))
    return {(row[0], row[1]) for row in source.fetch(query)}


def _reads(rule: Rule) -> set[str]:
    """The event names a rule's answer depends on (every event-reading node names its event)."""
    return {b.event for b in boundaries(rule).items if b.table == "events" and b.event is not None}


#: the earliest instant of a name's events that can decide an answer (None: any, the whole history)
Horizon = datetime | None


def _horizons(rule: Rule, now: datetime) -> dict[str, Horizon] | None:
    """Per event name ``rule`` reads, the earliest ``ts`` of those events that can decide its answer at ``now`` or
    its next change after (the lower end of the window that reads them; None: the whole history); None for a node
    this does not know (then every event of every name read is kept).  A performed event cancelled by a later one
    (``not_followed_by``) is inside the window, so its canceller is after the window's start too."""
    if isinstance(rule, Performed | Aggregate):
        start = _window_start(rule.within, now)
        found: dict[str, Horizon] = {rule.performed: start}
        follow = rule.not_followed_by if isinstance(rule, Performed) else None
        if follow is not None:
            found = _earliest(found, {follow.performed: start})
        return found
    if isinstance(rule, FirstPerformed):
        return {rule.first_performed: None}  # the first event may be any
    if isinstance(rule, LastPerformed):
        return {rule.last_performed: None}  # the last one may be any
    if isinstance(rule, Everyone | Attribute | Sample):
        return {}
    if isinstance(rule, And | Or | Not):
        merged: dict[str, Horizon] = {}
        for child in children(rule):
            inner = _horizons(child, now)
            if inner is None:
                return None
            merged = _earliest(merged, inner)
        return merged
    return None


def _earliest(a: Mapping[str, Horizon], b: Mapping[str, Horizon]) -> dict[str, Horizon]:
    """Per name of either, the earlier horizon (None, the whole history, is the earliest)."""
    out = dict(a)
    for name, at in b.items():
        if name in out:
            out[name] = None if out[name] is None or at is None else min(out[name], at)  # type: ignore[type-var]
        else:
            out[name] = at
    return out


def _window_start(within: Any, now: datetime) -> Horizon:
    """The earliest ``ts`` a window admits at ``now`` (None: no lower end, or one this cannot compute)."""
    if within is None:
        return None
    try:
        starts = [bound.at for bound in within.bounds(now) if bound.op in ("gt", "gte")]
    except (ValueError, OverflowError):  # a window reaching before the year 1: the whole history
        return None
    return max(starts) if starts else None


def refresh(
    source: Source, rules: Mapping[str, Rule], *, now: datetime, full: bool = False,
    lifecycle_policy: LifecyclePolicy | None = None,
) -> SegmentRefresh:
    """Refresh every tracked segment (``rules``: each tracked segment's resolved rule) and attribute at ``now``,
    write the ``segment_entered`` / ``segment_exited`` and ``<attribute>_changed`` events, and say what changed."""
    now = to_utc_naive(now)
    store = source.membership_store()
    tracked = store.tracked()
    # the customers columns the tracked rules and attributes read: what the fingerprint hashes and the candidates'
    # copy keeps (a change to another column cannot change an answer)
    columns = _customer_columns(source, [rules[key.split(":", 1)[1]] for key in tracked if key.startswith("segment:")],
                                [key.split(":", 1)[1] for key in tracked if key.startswith("attribute:")]
                                ) if tracked else []
    signature = customers_signature(source, columns) if tracked else None
    changes: list[SegmentChange] = []
    attributes: list[AttributeChange] = []
    events: list[dict[str, Any]] = []
    segments = {key.split(":", 1)[1]: state for key, state in tracked.items() if key.startswith("segment:")}
    # a segment last refreshed after ``now`` (the clock went back) is left as it is: recomputed at the earlier instant,
    # it would record exits before the entries they end, and events out of order
    for name, state in list(segments.items()):
        last = _watermark(state)
        if last is not None and now < last:
            del segments[name]
            changes.append(SegmentChange(
                name, (), (), int(state.get("members", 0)), None,
                skipped=_clock_went_back(now, last)))
    reasons = {name: _full_reason(source, rules[name], state, now=now, full=full, signature=signature)
               for name, state in segments.items()}
    # the candidates' scratch tables are made before the transaction: they are this connection's, not the shop's
    shared = _candidates(source, {name: segments[name] for name, reason in reasons.items() if reason is None},
                         rules, now, columns)
    # the columns of the events this refresh may write, added before its transaction (in one of their own) where the
    # events table lacks them: a transaction that changes a table's columns makes DuckDB refuse every other
    # transaction's insert into it until it ends (a dispatcher settling meanwhile would fail)
    if (campaign_store := source.campaign_store()).prepares_events:
        campaign_store.prepare_events(_event_shapes(source, segments, tracked, now))
    # the stays and the events that announce them commit together (where the store and the events share a
    # database): a process killed between the two would otherwise keep an entry whose event never comes, and no
    # later refresh would find that customer entering again
    with _refused_as_conflict(store), store.batch():
        # the states this refresh read, still the stored ones (held until it commits): else another refresh ran
        store.claim({key: state for key, state in tracked.items()
                     if not key.startswith("segment:") or key.split(":", 1)[1] in segments})
        writes: list[Refreshed] = []
        for name, state in segments.items():
            change, write = _refresh_segment(source, name, rules[name], state, now=now, reason=reasons[name],
                                             shared=shared, signature=signature, lifecycle_policy=lifecycle_policy)
            changes.append(change)
            writes.append(write)
        store.apply_many(writes)
        for key, state in tracked.items():
            if key.startswith("attribute:"):
                attributes.append(_refresh_attribute(source, key.split(":", 1)[1], state, now=now, full=full,
                                                     signature=signature))
        for change in changes:
            if not change.initial:
                name = change.segment
                events += [{"customer_id": cid, "event": ENTERED, "ts": now, "segment": name, "message_key": "",
                            "cost": 0.0} for cid in change.entered]
                events += [{"customer_id": cid, "event": EXITED, "ts": now, "segment": name, "message_key": "",
                            "cost": 0.0} for cid in change.exited]
        for found in attributes:
            name = found.attribute
            events += [{"customer_id": cid, "event": f"{name}_changed", "ts": now, f"old_{name}": old,
                        f"new_{name}": new, "message_key": "", "cost": 0.0} for cid, old, new in found.changed]
        if events:
            events.sort(key=lambda e: (e["event"], json.dumps(e["customer_id"])))
            source.campaign_store().add_events(events)
    order = [key.split(":", 1)[1] for key in tracked if key.startswith("segment:")]  # the skipped in their place
    changes.sort(key=lambda change: order.index(change.segment))
    return SegmentRefresh(now, tuple(changes), tuple(attributes), len(events))


def _event_shapes(
    source: Source, segments: Mapping[str, Mapping[str, Any]], tracked: Mapping[str, Mapping[str, Any]], now: datetime,
) -> list[dict[str, Any]]:
    """An event of each kind this refresh may write whose columns the events table lacks: an entry (when a segment
    was refreshed before: a first refresh writes none), and a change of each attribute seen before, its old and new
    values a value of the customers column (the events' columns are typed from their values)."""
    schema = source.schema()
    events, table = schema.events.columns, schema.customers
    shapes: list[dict[str, Any]] = []
    if "segment" not in events and any(_watermark(state) is not None for state in segments.values()):
        shapes.append({"customer_id": None, "event": ENTERED, "ts": now, "segment": "", "message_key": "", "cost": 0.0})
    for key, state in tracked.items():
        name = key.split(":", 1)[1]
        if not key.startswith("attribute:") or not state.get("seen_at") or {f"old_{name}", f"new_{name}"} <= set(events):
            continue
        column = exp.column(name, table="c", quoted=True)
        found = source.fetch(exp.select(column).from_(table.relation("c")).where(column.copy().is_(exp.null()).not_()).limit(1))
        value = _plain(found[0][0]) if found else None
        shapes.append({"customer_id": None, "event": f"{name}_changed", "ts": now, f"old_{name}": value,
                       f"new_{name}": value, "message_key": "", "cost": 0.0})
    return shapes


@contextmanager
def _refused_as_conflict(store: MembershipStore) -> Iterator[None]:
    """Around a refresh's transaction: the engine refusing it because another transaction wrote the same rows at once
    (DuckDB's write conflict, a deadlock, a lock wait that ran out; see :meth:`MembershipStore.contended`) raises
    :class:`RefreshConflict`, as the claim's own check does. The transaction was rolled back: nothing was kept."""
    try:
        yield
    except RefreshConflict:
        raise
    except Exception as error:
        if not store.contended(error):
            raise
        raise RefreshConflict(
            f"another refresh wrote the tracked segments or attributes at the same time, and the database refused this "
            f"one ({type(error).__name__}: {error}): nothing of this refresh was kept; run it again") from error


def _full_reason(
    source: Source, rule: Rule, state: Mapping[str, Any], *, now: datetime, full: bool, signature: str | None,
) -> str | None:
    """Why this refresh recomputes the segment for everyone (None: only its candidates)."""
    found = boundaries(rule)
    watermark = _watermark(state)
    situations = _situations_named(source, found)
    return ("asked (full=True)" if full else "first refresh" if watermark is None
            else "the rule changed" if state.get("rule") != rule.to_json()
            else found.full if found.full is not None
            else f"product situations ({situations}) change with the catalog" if situations
            else "the customers table changed" if signature is not None and state.get("customers") != signature
            else None)


def _clock_went_back(now: datetime, last: datetime) -> str:
    """Why a tracked segment or attribute is left as it is: ``now`` is before its last refresh."""
    return f"now ({now.isoformat(sep=' ')} UTC) is before its last refresh ({last.isoformat(sep=' ')} UTC)"


def _watermark(state: Mapping[str, Any]) -> datetime | None:
    """The instant of a tracked segment's last refresh (None: never refreshed)."""
    return datetime.fromisoformat(state["watermark"]) if state.get("watermark") else None


def _situations_named(source: Source, found: Any) -> str:
    """The product situations (derived from the catalog's history, not the customer's events) a rule names."""
    if source.schema().product_history is None:
        return ""
    from shopcrm.products import SITUATIONS

    return ", ".join(sorted({b.event for b in found.items if b.event in SITUATIONS}))


@attrs.frozen
class _Shared:
    """The candidates of the incrementally refreshed segments: per segment, the customers with a new event of a
    name its rule reads (events of other names cannot change its answer) and those whose next change has come;
    and per segment the schema restricted to its candidates (where the engine keeps scratch tables: the rows of
    all of them materialised once, each segment reading its own by a semi-join on its small table of ids; else
    one schema restricted to all of them, a superset: recomputing a customer who is not a segment's candidate is
    harmless, the answer is the one kept)."""

    ids: Mapping[str, tuple[Any, ...]]
    schemas: Mapping[str, Any]
    #: per segment, its candidates that are members now (one read of the store for all)
    members: Mapping[str, set[Any]]


#: the scratch tables a refresh materialises the candidates' rows into (DuckDB); each segment's ids are in
#: ``shopcrm_candidates_<i>``
SCRATCH = ("shopcrm_candidate_customers", "shopcrm_candidate_events", "shopcrm_candidates")


def _candidates(
    source: Source, segments: Mapping[str, Mapping[str, Any]], rules: Mapping[str, Rule], now: datetime,
    columns: Sequence[str] = (),
) -> _Shared | None:
    if not segments:
        return None
    store = source.membership_store()
    # from the last refresh on, or from the oldest event that arrived late since (MembershipStore.rewind)
    since = min(datetime.fromisoformat(state.get("since") or state["watermark"]) for state in segments.values())
    scratch, scratch_ids = getattr(source, "scratch_table", None), getattr(source, "scratch_ids", None)
    materialised = scratch is not None and scratch_ids is not None
    reads = {name: _reads(rules[name]) for name in segments}
    read = sorted(set().union(*reads.values()))
    # where the rows are copied, only the events of the names read matter; elsewhere the semi-join on the events
    # picks every customer with a new event, and the listed ones must be the others
    recent = _recent(source, since, read if materialised else None)
    by_name: dict[Any, set[Any]] = {}
    for cid, event in recent:
        by_name.setdefault(event, set()).add(cid)
    if materialised:
        _narrow(source, by_name, {name: rules[name] for name in segments}, since, now)
    due = store.due_many(list(segments), now)
    mine = {name: set(due[name]).union(*(by_name.get(event, ()) for event in reads[name])) for name in segments}
    everyone = sorted(set().union(*mine.values()), key=repr)
    per_segment = {name: tuple(cid for cid in everyone if cid in ids) for name, ids in mine.items()}
    schema = source.schema()
    if scratch is None or scratch_ids is None:
        # the customers with any new event, by a semi-join on the events, and the rest listed (a superset: harmless)
        seen = {cid for cid, _ in recent}
        listed = [cid for cid in everyone if cid not in seen]
        restricted = only_candidates(schema, since=since, ids=listed, dialect=source.dialect)
        return _Shared(per_segment, dict.fromkeys(segments, restricted), store.members_among(per_segment))
    ids = scratch_ids(SCRATCH[2], everyone)

    def rows(table: Any, alias: str, kept: Mapping[str, Any]) -> exp.Select:
        keys = exp.select(exp.column("customer_id", table="k", quoted=True)).from_(ids.relation("k"))
        return exp.select(*[exp.column(c, table=alias, quoted=True) for c in kept]).from_(table.relation(alias)).where(
            exp.column("customer_id", table=alias, quoted=True).isin(query=keys))

    # only the columns the rules read: copying every column of the matching rows costs 3x the scan
    kept = {c: kind for c, kind in schema.customers.columns.items() if c in columns} or dict(schema.customers.columns)
    customers = scratch(SCRATCH[0], rows(schema.customers, "c", kept), kept)
    wanted = {"customer_id", "event", "ts"} | {f for name in segments for f in _event_fields(rules[name].to_dict())}
    kept = {c: kind for c, kind in schema.events.columns.items() if c in wanted}
    picked = rows(schema.events, "e", kept).where(_read_events(source, [rules[name] for name in segments], read, now))
    shared = attrs.evolve(schema, customers=customers, events=scratch(SCRATCH[1], picked, kept))
    schemas: dict[str, Any] = {}
    for i, name in enumerate(segments):
        if len(per_segment[name]) == len(everyone):
            schemas[name] = shared
            continue
        own = scratch_ids(f"{SCRATCH[2]}_{i}", per_segment[name])
        schemas[name] = attrs.evolve(shared, customers=only_listed(shared.customers, own),
                                     events=only_listed(shared.events, own))
    return _Shared(per_segment, schemas, store.members_among(per_segment))


def _wheres(node: Any, found: dict[str, list[Any] | None]) -> None:
    """Per event name a rule (as JSON data) reads, the ``where`` of every node reading it (None: some node reads it
    unfiltered)."""
    if isinstance(node, dict):
        for key in ("performed", "first_performed", "last_performed"):
            name = node.get(key)
            if isinstance(name, str):
                where, known = node.get("where"), found.get(name, [])
                # a filter comparing an event's timestamp by age may hold later for an event it rejects now: that
                # event's boundary must be computed now, so its customer is a candidate
                timed = '"ago"' in json.dumps(where, default=str)
                found[name] = None if where is None or known is None or timed else [*known, where]
        for value in node.values():
            _wheres(value, found)
    elif isinstance(node, list):
        for item in node:
            _wheres(item, found)


def _narrow(source: Source, by_name: dict[Any, set[Any]], rules: Mapping[str, Rule], since: datetime,
            now: datetime) -> None:
    """Keep in ``by_name[event]`` only the customers whose new event of that name some node reading it counts
    (its ``where`` holds), when every node of every rule reading it has one: a new product view of another category
    cannot change a rule on shoe views (at 1M, a refresh's candidates of a 7-day shoe-view rule: 21k -> 8k, most
    of the rest due: a boundary counts every view).  The customers with such an event are found by the compiled
    rule ``performed <event> where <where>`` between ``since`` and ``now`` (the new events); a filter that does
    not compile alone leaves the name's customers as they are."""
    wheres: dict[str, list[Any] | None] = {}
    for rule in rules.values():
        _wheres(rule.to_dict(), wheres)
    window = {"between": [since.isoformat(), now.isoformat()]}
    schema = source.schema()
    for event, filters in wheres.items():
        if filters is None or event not in by_name:
            continue
        matched: set[Any] = set()
        try:
            for where in {json.dumps(w, sort_keys=True, default=str): w for w in filters}.values():
                rule = parse_rule({"performed": event, "where": where, "within": window})
                matched |= _ids(source, compile_members(rule, schema, now=now, dialect=source.dialect))
        except (RuleError, SchemaError):  # pragma: no cover - the tracked rule compiles, so its filters do
            continue
        by_name[event] &= matched


def _read_events(source: Source, rules: Sequence[Rule], read: Sequence[str], now: datetime) -> exp.Expr:
    """The condition on an event that some rule can read it at ``now``: one of the names read, at or after the
    name's horizon (the windows that read it; see :func:`_horizons`).  A refresh at 1M with a 7-day rule on
    product views copies the last week's views, not every one."""
    horizons: dict[str, Horizon] = {}
    for rule in rules:
        found = _horizons(rule, now)
        horizons = _earliest(horizons, dict.fromkeys(_reads(rule)) if found is None else
                             {name: found.get(name) for name in _reads(rule)})
    d = dialect_for(source.dialect)
    event, ts = exp.column("event", table="e", quoted=True), exp.column("ts", table="e", quoted=True)
    whole = [name for name in read if horizons.get(name) is None]
    parts: list[exp.Expr] = [d.one_of(event.copy(), whole)] if whole else []
    for name in read:
        at = horizons.get(name)
        if at is not None:
            parts.append(exp.and_(exp.EQ(this=event.copy(), expression=exp.Literal.string(name)),
                                  exp.GTE(this=d.timestamp_column(ts.copy()), expression=d.timestamp_literal(at))))
    return exp.or_(*parts) if parts else exp.false()


def _event_fields(node: Any) -> set[str]:
    """The events columns a rule (as JSON data) names: its ``where`` keys and ``of`` fields (``properties.x``: the
    ``properties`` column)."""
    def names(key: str, value: Any) -> list[str]:
        if key == "where" and isinstance(value, dict):
            return [k.split(".", 1)[0] for k in value]
        return [value.split(".", 1)[0]] if key == "of" and isinstance(value, str) else []
    return _named(node, names)


def _refresh_segment(
    source: Source, name: str, rule: Rule, state: Mapping[str, Any], *, now: datetime, reason: str | None,
    shared: _Shared | None, signature: str | None, lifecycle_policy: LifecyclePolicy | None,
) -> tuple[SegmentChange, Refreshed]:
    """The segment's change and what the store must write for it (all segments' writes go together)."""
    store = source.membership_store()
    found = boundaries(rule)
    dialect = source.dialect
    candidates: list[Any] | None = None
    schema = source.schema()
    if reason is None:
        assert shared is not None
        candidates, schema = list(shared.ids[name]), shared.schemas[name]
        current = shared.members[name]
    else:
        current = store.members(name)
    members = _ids(source, compile_members(rule, schema, now=now, dialect=dialect, lifecycle_policy=lifecycle_policy)
                   ) if candidates != [] else set()
    next_changes: dict[Any, datetime] = {}
    # the shared rows hold other segments' candidates too: their answers stand
    mine = None if candidates is None else set(candidates)
    if found.full is None and found.items and candidates != []:
        queries = compile_next_changes(found, schema, now=now, dialect=dialect)
        next_changes = next_changes_from_rows(
            [(source.fetch(q) if mine is None else [r for r in source.fetch(q) if r[0] in mine], offsets)
             for q, offsets in queries], now=now)
    if mine is not None:
        members &= mine
    entered = sorted(members - current, key=repr)
    exited = sorted(current - members, key=repr)
    total = len(members) if candidates is None else int(state.get("members", 0)) + len(entered) - len(exited)
    new_state = {"kind": "segment", "rule": rule.to_json(), "watermark": now.isoformat(sep=" ", timespec="microseconds"),
                 "customers": signature, "tracked_at": state.get("tracked_at"), "members": total}
    change = SegmentChange(name, tuple(entered), tuple(exited), total, None if candidates is None else len(candidates),
                           reason, initial=not state.get("watermark"))
    return change, Refreshed(name, entered, exited, now, next_changes, candidates, new_state)


def _plain(value: Any) -> Any:
    """A value as the store keeps it (JSON): a timestamp as its ISO text."""
    return json.loads(json.dumps(value, default=str))


def _refresh_attribute(
    source: Source, column: str, state: Mapping[str, Any], *, now: datetime, full: bool, signature: str | None,
) -> AttributeChange:
    store = source.membership_store()
    initial = not state.get("seen_at")
    last = None if initial else datetime.fromisoformat(state["seen_at"])
    if last is not None and now < last:
        # a clock that went back: a change found now would be stamped before the look that still saw the old value
        return AttributeChange(column, (), skipped=True, reason=_clock_went_back(now, last))
    if not initial and not full and signature is not None and state.get("customers") == signature:
        return AttributeChange(column, (), skipped=True)
    table = source.schema().customers
    query = exp.select(exp.column("customer_id", table="c", quoted=True), exp.column(column, table="c", quoted=True)).from_(
        table.relation("c"))
    current = {row[0]: _plain(row[1]) for row in source.fetch(query)}
    old = {} if initial else store.values(column)
    changed = tuple(sorted(((cid, old[cid], value) for cid, value in current.items() if cid in old and old[cid] != value),
                           key=lambda c: repr(c[0])))
    fresh = current if initial else {cid: v for cid, v in current.items() if cid not in old or old[cid] != v}
    stamp = now.isoformat(sep=" ", timespec="microseconds")
    store.put_values(column, fresh, replace=initial,
                     state={"kind": "attribute", "seen_at": stamp, "customers": signature, "tracked_at": state.get("tracked_at")})
    return AttributeChange(column, changed, initial=initial)


def check_trackable(source: Source, rule: Rule, name: str) -> None:
    """A rule whose boundaries cannot be computed on this shop's tables fails when tracked, not at refresh."""
    found = boundaries(rule)
    if found.full is None and found.items:
        compile_next_changes(found, source.schema(), now=datetime(2000, 1, 1), dialect=source.dialect)


def sorted_ids(ids: Sequence[Any]) -> list[Any]:
    return sorted(ids, key=repr)
