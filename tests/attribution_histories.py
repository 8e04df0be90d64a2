"""Random message histories for the attribution compiler: sends, clicks, conversion events and audience members
as plain rows (instants in microseconds), the reference's answers, and a comparison of an engine's rows with them.

Histories provoke engines: keys that differ only in case or trailing spaces, clicks and purchases exactly on a
window's edge (and one microsecond either side), orders repeated at one instant, NULL revenue, plugin channels
without a receipt window, members exposed twice, rival sends (of campaigns or times a report leaves out) whose clicks
compete for the last click, and a start (``since_us``) before which an order's first event makes its later events
no conversion.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import attrs
from hypothesis import strategies as st

from shopcrm.measurement import (
    AttributionPolicy,
    Click,
    Member,
    Send,
    attribute,
    conversions,
    member_outcomes,
    summarise,
)
from shopcrm.measurement._sql import MEMBER_COLUMNS, SUMMARY_COLUMNS, AttributionQueries

EPOCH = datetime(1970, 1, 1)
T0 = 1_790_000_000_000_000  # 2026-09-21 (microseconds since 1970)
HOUR = 3_600_000_000
DAY = 24 * HOUR
CHANNELS = {"email": "email", "sms": "sms", "lms": "sms", "alimtalk": "alimtalk", "brand_message": "brand_message",
            "push": "push", "webhook": "webhook", "plugin_x": "plugin_x"}
#: offsets that land on and next to the default windows' edges
EDGES = (0, 1, -1, 12 * HOUR, 12 * HOUR - 1, DAY, DAY - 1, 3 * DAY, 3 * DAY - 1, 5 * DAY, 5 * DAY - 1, 7 * DAY,
         7 * DAY - 1, 2 * HOUR + 17)
POLICY = AttributionPolicy()
SEND_COLUMNS = ("message_key", "customer", "campaign_id", "variant", "step", "channel", "kind", "sent_us", "cost")
CLICK_COLUMNS = ("message_key", "clicked_us")
EVENT_COLUMNS = ("customer", "ts_us", "revenue", "order_id")
MEMBER_INPUT_COLUMNS = ("campaign_id", "variant", "status", "customer", "exposure_us")


def instant(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@attrs.frozen
class History:
    id_kind: str
    sends: list[dict[str, Any]]
    clicks: list[dict[str, Any]]
    events: list[dict[str, Any]]
    members: list[dict[str, Any]]
    now_us: int | None
    #: sends the report leaves out (other campaigns, other times) whose clicks still compete for the last click
    rivals: list[dict[str, Any]] = attrs.field(factory=list)
    #: conversions (de-duplicated over every event) before this instant are dropped; None keeps every one
    since_us: int | None = None

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        columns = {"sends": SEND_COLUMNS, "rivals": SEND_COLUMNS, "clicks": CLICK_COLUMNS, "events": EVENT_COLUMNS,
                   "members": MEMBER_INPUT_COLUMNS}[name]
        return [tuple(r[c] for c in columns) for r in getattr(self, name)]


@st.composite
def histories(draw: st.DrawFn) -> History:
    id_kind = draw(st.sampled_from(["str", "int"]))
    pool: list[Any] = ["c1", "C1", "c2", "c2 ", "고객"] if id_kind == "str" else [1, 2, 3, 40]
    customers = st.sampled_from(pool)
    campaigns = st.sampled_from(["spring", "Spring", "fall"])
    variants = st.sampled_from(["A", "a", "B", ""])
    base = st.sampled_from([T0, T0 + DAY, T0 + 4 * DAY + 7])

    sends = []
    for i in range(draw(st.integers(0, 10))):
        channel = draw(st.sampled_from(sorted(CHANNELS)))
        sends.append({
            "message_key": draw(st.sampled_from([f"m{i}", f"M{i}", f"m{i} "])) + f"-{i}",
            "customer": draw(customers), "campaign_id": draw(campaigns), "variant": draw(variants),
            "step": draw(st.sampled_from(["s1", "s2"])), "channel": CHANNELS[channel], "kind": channel,
            # often one shared instant, so that sends tie too
            "sent_us": draw(st.sampled_from([T0, draw(base) + draw(st.sampled_from(EDGES)) + draw(st.integers(0, 3)) * HOUR])),
            "cost": draw(st.sampled_from([0.0, 10.0, 12.0, 39.0, 35.5])),
        })
    # some sends are rivals: of a campaign or a time the report leaves out (their clicks compete all the same)
    rivals = [s for s in sends if draw(st.booleans())] if draw(st.booleans()) else []
    keys = [s["message_key"] for s in sends] + ["unknown"]
    sent = {s["message_key"]: s["sent_us"] for s in sends}
    clicks = []
    for _ in range(draw(st.integers(0, 8))):
        key = draw(st.sampled_from(keys))
        start = sent.get(key, T0)
        # often one shared instant, so that clicks on several messages tie and the send time and key decide
        at = draw(st.sampled_from([start + draw(st.sampled_from(EDGES)), T0 + 5 * DAY, T0 + 5 * DAY]))
        clicks.append({"message_key": key, "clicked_us": at})
    anchors = [s["sent_us"] for s in sends] + [c["clicked_us"] for c in clicks] + [T0]
    events = []
    for _ in range(draw(st.integers(0, 10))):
        events.append({
            "customer": draw(customers), "ts_us": draw(st.sampled_from(anchors)) + draw(st.sampled_from(EDGES)),
            "revenue": draw(st.sampled_from([None, 0.0, 1000.0, 12.5, 39000.0, -3.0])),
            "order_id": draw(st.sampled_from([None, "", "o1", "O1", "o2"])),
        })
    members = []
    for _ in range(draw(st.integers(0, 8))):
        members.append({
            "campaign_id": draw(campaigns), "variant": draw(variants),
            "status": draw(st.sampled_from(["planned", "holdout"])), "customer": draw(customers),
            "exposure_us": draw(st.sampled_from(anchors)) + draw(st.sampled_from(EDGES)),
        })
    now_us = draw(st.one_of(st.none(), st.sampled_from(anchors).map(lambda a: a + 2 * DAY)))
    since_us = draw(st.one_of(st.none(), st.sampled_from(anchors).map(lambda a: a + draw(st.sampled_from(EDGES)))))
    reported = [s for s in sends if not any(s is r for r in rivals)]
    return History(id_kind, reported, clicks, events, members, now_us, rivals, since_us)


def reference(history: History, by: tuple[str, ...]) -> dict[str, Any]:
    """What the pure reference says, as the rows an engine must return."""
    def built(s: dict[str, Any]) -> Send:
        return Send(message_key=s["message_key"], customer_id=s["customer"], campaign_id=s["campaign_id"],
                    variant=s["variant"], step=s["step"], channel=s["channel"], kind=s["kind"],
                    sent_at=instant(s["sent_us"]), cost=s["cost"])

    sends = [built(s) for s in history.sends]
    clicks = [Click(message_key=c["message_key"], clicked_at=instant(c["clicked_us"])) for c in history.clicks]
    convs = conversions([{"customer_id": e["customer"], "event": "order_completed", "ts": instant(e["ts_us"]),
                          "properties": {"amount": e["revenue"], "order_id": e["order_id"]}} for e in history.events],
                        POLICY)
    if history.since_us is not None:  # de-duplicated over every event first, then cut
        convs = [c for c in convs if c.ts >= instant(history.since_us)]
    credits = attribute(sends, clicks, convs, POLICY, rivals=[built(s) for s in history.rivals])
    summary = [(s.campaign_id, *(v for _, v in s.cell), s.sends, s.recipients, s.clicked, s.attributed_conversions,
                s.attributed_revenue, s.attributed_customers, s.influenced_conversions, s.influenced_revenue,
                s.influenced_customers, s.cost) for s in summarise(credits, by)]
    won = sorted((c.conversion.customer_id, _us(c.conversion.ts), c.conversion.revenue, c.send.message_key)
                 for c in credits.attributed)
    daily: Counter[tuple[str, int]] = Counter()
    for c in credits.attributed:
        daily[(c.send.campaign_id, _us(c.conversion.ts) // DAY)] += 1
    members = [Member(customer_id=m["customer"], campaign_id=m["campaign_id"], variant=m["variant"],
                      status=m["status"], exposed_at=instant(m["exposure_us"])) for m in history.members]
    now = instant(history.now_us) if history.now_us is not None else None
    outcomes = [(*cell, o.n, o.converted, o.revenue, o.revenue_squares)
                for cell, o in member_outcomes(members, convs, POLICY, now=now).items()]
    return {"summary": summary, "credits": won, "daily": sorted(daily.items()), "members": outcomes}


def _us(at: datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8")
    if hasattr(value, "is_integer") and not isinstance(value, float):  # Decimal
        return float(value)
    return value


def _same(engine_rows: list[tuple[Any, ...]], reference_rows: list[tuple[Any, ...]], what: str) -> None:
    got = sorted((tuple(_plain(v) for v in row) for row in engine_rows), key=repr)
    want = sorted(reference_rows, key=repr)
    assert len(got) == len(want), f"{what}: {len(got)} rows, the reference has {len(want)}\n{got}\n{want}"
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w), (what, g, w)
        for a, b in zip(g, w, strict=True):
            if isinstance(b, float) or isinstance(a, float):
                assert a is not None, (what, g, w)
                assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6), (what, g, w)
            else:
                assert a == b, f"{what}: engine row {g} != reference {w}"


def check(fetch: Any, queries: AttributionQueries, history: History, dialect: str) -> None:
    """Run ``queries`` through ``fetch(query_text)`` and compare each with the reference."""
    want = reference(history, queries.by)
    summary = fetch(queries.summary.sql(dialect))
    assert all(len(r) == 1 + len(queries.by) + len(SUMMARY_COLUMNS) for r in summary)
    _same(summary, want["summary"], "summary")
    # (MySQL returns keys compared as binary strings as bytes: a customer id is compared as its text)
    credits = [(str(_plain(c)), t, r, k) for _, c, t, r, k in fetch(queries.credits.sql(dialect))]
    _same(credits, [(str(c), *rest) for c, *rest in want["credits"]], "attributed credits")
    daily = [((_plain(c), int(d)), n) for c, d, n, _ in fetch(queries.daily.sql(dialect))]
    assert sorted(daily) == want["daily"], (daily, want["daily"])
    assert queries.members is not None
    members = fetch(queries.members.sql(dialect))
    assert all(len(r) == 3 + len(MEMBER_COLUMNS) for r in members)
    _same(members, want["members"], "member outcomes")
    # the shortcut without ranking: the count of repeated members is right, and with none it gives the same outcomes
    pairs = Counter((m["campaign_id"], m["customer"]) for m in history.members)
    [(repeated,)] = fetch(queries.with_ctes(queries.bare["repeated_members"]).sql(dialect))
    assert repeated == sum(1 for n in pairs.values() if n > 1)
    if not repeated:
        _same(fetch(queries.with_ctes(queries.bare["members_unique"]).sql(dialect)), want["members"],
              "member outcomes without ranking")
