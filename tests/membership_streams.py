"""Random event streams and refresh times for tracked segments, and the check that an engine's incremental
refreshes equal the reference evaluator's full recomputation at every refresh.

A stream is a random shop, a random rule and a few refresh instants (some exactly on a boundary the rule's
durations put after an event, or a microsecond either side).  Each event arrives before a random refresh whose
watermark (the previous refresh's instant) it is not older than, so the stream is one the incremental refresh
promises to follow exactly; on the embedded store a customer's attributes may change between refreshes too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
from hypothesis import strategies as st

import shopcrm
from shopcrm.dsl import parse_rule
from shopcrm.reference import evaluate
from shopcrm.timeline import parse_duration
from strategies import DURATIONS, EVENT_NAMES, RandomShop, rules, shops, texts

SEGMENT = "tracked"
MICRO = timedelta(microseconds=1)


@attrs.frozen
class Stream:
    shop: RandomShop
    rule: shopcrm.Rule
    times: tuple[datetime, ...]
    #: per event of ``shop.events``, the index of the refresh before which it arrives
    arrivals: tuple[int, ...]
    #: before refresh i (i >= 1): a customer's new grade and sign-up instant (embedded store only)
    edits: tuple[tuple[int, Any, Any, Any], ...]


@st.composite
def _timed(draw: st.DrawFn) -> shopcrm.Rule:
    """A single time-relative condition: the flips the random compositions above mostly mask."""
    event = draw(st.sampled_from(EVENT_NAMES))
    kind = draw(st.sampled_from(["last", "ago", "first", "last_performed", "attribute"]))
    ages = {op: draw(st.sampled_from(DURATIONS)) for op in draw(st.lists(st.sampled_from(["gte", "gt", "lte", "lt"]),
                                                                            min_size=1, max_size=2, unique=True))}
    if kind == "last":
        node: dict[str, Any] = {"performed": event, "within": {"last": draw(st.sampled_from(DURATIONS))}}
    elif kind == "ago":
        node = {"performed": event, "within": {"ago": ages}}
    elif kind == "first":
        node = {"first_performed": event, "ago": ages}
    elif kind == "last_performed":
        node = {"last_performed": event, "ago": ages}
    else:
        node = {"attribute": "signed_up_at", "ago": ages}
    return parse_rule(node)


@st.composite
def streams(
    draw: st.DrawFn, *, edits: bool = False, max_events: int = 30, step: timedelta = MICRO, late: bool = False,
) -> Stream:
    """``step``: the smallest difference of instants the engine keeps (SQLite: a millisecond); ``late``: an event
    may arrive after a refresh later than its instant (the embedded store notices, at the load)."""
    shop = draw(shops(max_customers=8, max_events=max_events))
    rule = draw(st.one_of(rules(max_depth=3), _timed(), _timed().map(lambda r: ~r)))
    now = shop.now
    near = [e["ts"] + parse_duration(d) + delta for e in shop.events for d in ("0s", *DURATIONS)
            for delta in (timedelta(0), step, -step)] or [now]
    instant = st.one_of(
        st.sampled_from(near),
        st.integers(-35 * 86400, 35 * 86400).map(lambda s: now + timedelta(seconds=s)),
    )
    times = tuple(sorted(draw(st.lists(instant, min_size=2, max_size=5))))
    arrivals = []
    for event in shop.events:
        # refresh i's watermark is times[i - 1]: an event arriving before it must not be older
        allowed = [0] + [i for i in range(1, len(times)) if late or event["ts"] >= times[i - 1]]
        arrivals.append(draw(st.sampled_from(allowed)))
    changes: list[tuple[int, Any, Any, Any]] = []
    if edits and shop.customers and draw(st.integers(0, 3)) == 0:  # mostly none: edits force a full refresh
        for _ in range(draw(st.integers(1, 2))):
            who = draw(st.sampled_from(shop.customers))["customer_id"]
            signed = draw(st.one_of(st.none(), st.sampled_from(near)))
            changes.append((draw(st.integers(1, len(times) - 1)), who, draw(texts), signed))
    return Stream(shop, rule, times, tuple(arrivals), tuple(changes))


Append = Callable[[shopcrm.Shop, list[dict[str, Any]]], None]
Edit = Callable[[shopcrm.Shop, list[dict[str, Any]]], None]


def check(
    load: Callable[[RandomShop], shopcrm.Shop], stream: Stream, append: Append, edit: Edit | None = None,
    back: Sequence[timedelta] = (),
) -> None:
    """Refresh at each instant on the engine; at each, the members kept, the entered and the exited equal the
    reference's full recomputation (and the first refresh records members without entries).  ``back[i]``, when
    positive: after refresh i, a refresh that far before it (a clock that went back) is skipped and changes nothing."""
    first = [e for e, at in zip(stream.shop.events, stream.arrivals, strict=True) if at == 0]
    engine = load(attrs.evolve(stream.shop, events=first))
    store = engine.source.membership_store()
    for key in list(store.tracked()):  # a server's library tables outlive an example
        store.forget(key)
    engine.save_segment(SEGMENT, stream.rule)
    engine.track_segment(SEGMENT)
    customers = [dict(c) for c in stream.shop.customers]
    arrived = list(first)
    written: list[dict[str, Any]] = []
    before: set[Any] = set()
    for i, now in enumerate(stream.times):
        if i:
            batch = [e for e, at in zip(stream.shop.events, stream.arrivals, strict=True) if at == i]
            if batch:
                append(engine, batch)
                arrived += batch
            changed = [c for c in stream.edits if c[0] == i]
            if changed and edit is not None:
                for _, who, grade, signed in changed:
                    row = next(c for c in customers if c["customer_id"] == who)
                    row["grade"], row["signed_up_at"] = grade, signed
                edit(engine, customers)
        result = engine.refresh_segments(now=now)[SEGMENT]
        expected = evaluate(stream.rule, customers, arrived + written, now=now, schema=stream.shop.schema)
        assert set(store.members(SEGMENT)) == expected, (i, now)
        if i == 0:
            assert result.initial
            assert set(result.entered) == expected
            assert not result.exited
        else:
            assert set(result.entered) == expected - before, (i, now, result)
            assert set(result.exited) == before - expected, (i, now, result)
        assert len(result.entered) == len(set(result.entered))
        assert result.members == len(expected)
        if engine.source.dialect == "duckdb" and i:  # the embedded store's events table holds them: rules see them
            written += [{"customer_id": c, "event": "segment_entered", "ts": now, "segment": SEGMENT} for c in result.entered]
            written += [{"customer_id": c, "event": "segment_exited", "ts": now, "segment": SEGMENT} for c in result.exited]
        before = expected
        if i < len(back) and back[i] > timedelta(0):
            stays = engine.segment_stays(SEGMENT)
            jumped = engine.refresh_segments(now=now - back[i])
            assert jumped[SEGMENT].skipped, jumped
            assert jumped.events == 0
            assert (jumped[SEGMENT].entered, jumped[SEGMENT].exited) == ((), ())
            assert jumped[SEGMENT].members == len(expected)
            assert set(store.members(SEGMENT)) == expected
            assert engine.segment_stays(SEGMENT) == stays
    stays = engine.segment_stays(SEGMENT)
    assert {s.customer_id for s in stays if s.exited_at is None} == before
    assert all(s.exited_at is None or s.entered_at <= s.exited_at for s in stays), stays
    engine.untrack_segment(SEGMENT)  # a server's library tables outlive the test: later tests tick this database
    engine.delete_segment(SEGMENT)
