"""The campaign report: what a campaign's messages did, read from the shop's store (``shop.report(...)``).

The shell around :mod:`shopcrm.measurement`.  The figures (:class:`Figures`) come from the shop's engine where the
library's tables share its database (:mod:`shopcrm.report_sql`: the compiled attribution of
:mod:`shopcrm.measurement._sql`), else from the pure reference: the sends (the ledger's ``sent`` and ``delivered``
rows, their ``message_sent`` times, variant and step from the outbox), the clicks and the conversion events read into
Python and handed to :func:`shopcrm.measurement.attribute`.  This module turns either into the rows (the funnel,
the ratios, the fatigue figure), the holdout lift and the A/B tests.  The figures' meaning is the contract's
(``docs/measurement.md``).

Choices this module makes (also in ``docs/measurement.md``, "The campaign report"):

- ``since``/``until`` select the messages: sends whose send time, and outbox decisions whose exposure time (the
  planned send time, else the due time), fall in ``[since, until)``.  Clicks and conversions count up to ``now``
  (never after it), so a report of last week read today includes this week's purchases inside the windows.
- Conversions are de-duplicated by order over every conversion event before ``now`` (contract section 1), then
  those from ``since`` on are kept: an order first recorded before ``since`` and recorded again inside the range is
  no conversion of the range.
- The last click is chosen among every click of every send before ``now`` (contract section 3), whatever its
  campaign or send time: a report of some campaigns, or of a range, credits its sends only the conversions they win
  (a conversion whose last click is on another campaign's message, or on one sent outside the range, goes to none
  of them), so the campaigns' own reports never credit one conversion twice.
- ``audience``, ``planned`` and ``held_out`` count outbox decisions (one per customer, step and occurrence):
  ``audience = planned + held_out``.  They have no carrying channel, so a breakdown by ``channel`` or ``kind``
  leaves them empty (null).
- A send's time is its ledger row's ``sent_at`` (the instant the dispatcher recorded its ``message_sent`` event);
  a row without it (written before the ledger kept it, or filled by hand) takes its earliest ``message_sent``
  event, else its ledger row's last update.
- **Opt-outs after a message** (fatigue): recipients in the row with an opt-out recorded at ``t`` where
  ``s <= t < s + 7 days`` for one of their sends ``s`` in the row (only each customer's latest opt-out per consent
  group is kept by the store, so an opt-out later withdrawn and renewed counts at its latest time).
- Incrementality pools the campaign's occurrences in the range: a member's exposure is their earliest planned (or
  held-out) time, their outcome the conversions in ``[exposure, exposure + measurement window)`` before ``now``.
"""

from __future__ import annotations

import html
import json
import math
import os
import pathlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from shopcrm._figures import Figures, SegmentLabels, _cid
from shopcrm.measurement import (
    AttributionPolicy,
    Click,
    Member,
    Outcome,
    Send,
    Summary,
    attribute,
    conversions,
    member_outcomes,
    summarise,
)
from shopcrm.measurement._attribution import BREAKDOWNS
from shopcrm.measurement.stats import ABTest, Lift, RevenueStats, SampleRatioMismatch
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:
    from shopcrm.shop import Shop
    from shopcrm.sources._campaign_store import OutboxRow, SendRow

__all__ = ["FATIGUE_WINDOW", "CampaignLift", "CampaignReport", "Figures", "SegmentLabels", "build_report"]

_STATS_NOTE = "the intervals and the sample-ratio test need scipy and statsmodels: pip install 'shopcrm[measurement]'"

#: how long after a send an opt-out counts against it (the "opt-outs after a message" figure)
FATIGUE_WINDOW = timedelta(days=7)
#: the funnel's columns that are counts of outbox decisions (null in channel/kind breakdowns)
_OUTBOX_COLUMNS = ("audience", "held_out", "planned")
_COUNT_COLUMNS = (
    "audience", "held_out", "planned", "sent", "delivered", "failed", "fallen_back", "recipients", "clicked",
    "attributed_conversions", "attributed_customers", "influenced_conversions", "influenced_customers",
    "opt_outs_after",
)
_MONEY_COLUMNS = ("attributed_revenue", "influenced_revenue", "cost")
_RATIO_COLUMNS = ("ctr", "roas", "cost_per_conversion", "messages_per_purchase", "attributed_conversion_rate",
                  "influenced_conversion_rate")
_LIFT_COLUMNS = ("treated_n", "treated_conversions", "holdout_n", "holdout_conversions", "treated_rate", "holdout_rate",
                 "absolute_lift", "absolute_lift_low", "absolute_lift_high", "relative_lift", "relative_lift_low",
                 "relative_lift_high", "incremental_conversions", "incremental_revenue", "iroas", "srm_p_value",
                 "srm_mismatch")
_SENT_STATES = ("sent", "delivered")
_MESSAGE_EVENTS = ("message_sent", "message_clicked")


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


@attrs.frozen
class CampaignLift:
    """Holdout versus treatment of one campaign (intention to treat, contract section 6).

    ``lift`` and ``srm`` are None when the statistics packages are missing (``note`` says so); the counts and
    revenue statistics are always there."""

    campaign_id: str
    holdout_share: float
    treated_n: int
    treated_conversions: int
    holdout_n: int
    holdout_conversions: int
    treated_revenue: RevenueStats
    holdout_revenue: RevenueStats
    cost: float
    lift: Lift | None
    srm: SampleRatioMismatch | None
    note: str | None = None

    def columns(self) -> dict[str, Any]:
        """The lift's figures as report columns."""
        out: dict[str, Any] = dict.fromkeys(_LIFT_COLUMNS)
        out.update(treated_n=self.treated_n, treated_conversions=self.treated_conversions, holdout_n=self.holdout_n,
                   holdout_conversions=self.holdout_conversions,
                   treated_rate=_ratio(self.treated_conversions, self.treated_n),
                   holdout_rate=_ratio(self.holdout_conversions, self.holdout_n))
        if self.lift is not None:
            lift = self.lift
            out.update(absolute_lift=lift.absolute_lift, relative_lift=lift.relative_lift,
                       incremental_conversions=lift.incremental_conversions,
                       incremental_revenue=lift.incremental_revenue, iroas=lift.iroas)
            if lift.absolute_interval is not None:
                out.update(absolute_lift_low=lift.absolute_interval.low, absolute_lift_high=lift.absolute_interval.high)
            if lift.relative_interval is not None:
                out.update(relative_lift_low=lift.relative_interval.low, relative_lift_high=lift.relative_interval.high)
        if self.srm is not None:
            out.update(srm_p_value=self.srm.p_value, srm_mismatch=self.srm.mismatch)
        return out

    def __str__(self) -> str:
        lines = [f"holdout lift of {self.campaign_id!r} (configured holdout {self.holdout_share:.0%})"]
        if self.lift is not None:
            lines += ["  " + line for line in str(self.lift).splitlines()]
        else:
            lines.append(f"  treated {self.treated_conversions:,} / {self.treated_n:,}, "
                         f"holdout {self.holdout_conversions:,} / {self.holdout_n:,}")
        if self.srm is not None:
            lines.append(f"  sample ratio: {self.srm}")
        if self.note:
            lines.append(f"  {self.note}")
        return "\n".join(lines)


def _show(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column in _RATIO_COLUMNS:
        return f"{value:.2%}" if column in ("ctr", "attributed_conversion_rate", "influenced_conversion_rate") else f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_LABELS = (
    ("audience", "audience (planned + held out)"), ("held_out", "held out"), ("planned", "planned"), ("sent", "sent"),
    ("delivered", "delivered"), ("fallen_back", "fallen back"), ("failed", "failed"), ("recipients", "recipients"),
    ("clicked", "clicked"), ("ctr", "CTR"), ("attributed_conversions", "attributed conversions"),
    ("attributed_revenue", "attributed revenue"), ("influenced_conversions", "influenced conversions*"),
    ("influenced_revenue", "influenced revenue*"), ("cost", "cost"), ("roas", "ROAS"),
    ("cost_per_conversion", "cost per conversion"), ("messages_per_purchase", "messages per purchase"),
    ("opt_outs_after", "opt-outs within 7 days"),
)
_INFLUENCED_NOTE = "* influenced figures count a purchase once per row; they are not summable across campaigns"


@attrs.frozen
class CampaignReport:
    """A campaign report: one row per campaign (or per cell of the breakdown ``by`` within each campaign).

    ``rows`` are flat dicts (see :meth:`to_arrow` for the columns); ``summaries`` the pure reference's figures behind
    them; ``lifts`` the holdout comparison per campaign that has a holdout; ``ab_tests`` the A/B test per campaign
    with two or more variants; ``daily`` attributed conversions and revenue per campaign and UTC day; ``method``
    how the figures were computed (``"sql"`` by the shop's engine, ``"reference"`` by the pure reference).
    Ratios with a zero denominator are None (null in Arrow, "-" in text)."""

    since: datetime | None
    until: datetime | None
    now: datetime
    by: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    summaries: tuple[Summary, ...]
    lifts: Mapping[str, CampaignLift]
    policy: AttributionPolicy
    daily: tuple[tuple[str, str, int, float], ...] = ()
    ab_tests: Mapping[str, ABTest] = attrs.field(factory=dict)
    method: str = "reference"

    @property
    def columns(self) -> list[str]:
        """The report's columns, in order."""
        return ["campaign_id", *self.by, *_COUNT_COLUMNS[:7], "clicked", "ctr", "recipients",
                "attributed_conversions", "attributed_revenue", "attributed_customers", "attributed_conversion_rate",
                "influenced_conversions", "influenced_revenue", "influenced_customers", "influenced_conversion_rate",
                "cost", "roas", "cost_per_conversion", "messages_per_purchase", "opt_outs_after", *_LIFT_COLUMNS]

    def row(self, campaign_id: str, **cell: str) -> dict[str, Any]:
        """The row of one campaign (and cell: ``report.row("spring", variant="A")``); KeyError when absent."""
        for row in self.rows:
            if row["campaign_id"] == campaign_id and all(row.get(k) == v for k, v in cell.items()):
                return row
        raise KeyError(f"the report has no row for campaign {campaign_id!r} {cell or ''}; it has "
                       f"{sorted({r['campaign_id'] for r in self.rows})}")

    def to_arrow(self) -> Any:
        """The report as a ``pyarrow.Table``, one row per campaign or cell; undefined ratios are nulls."""
        import pyarrow as pa

        types: dict[str, Any] = {c: pa.string() for c in ("campaign_id", *self.by)}
        types.update({c: pa.int64() for c in (*_COUNT_COLUMNS, "treated_n", "treated_conversions", "holdout_n",
                                              "holdout_conversions")})
        types["srm_mismatch"] = pa.bool_()
        columns = self.columns
        schema = pa.schema([(c, types.get(c, pa.float64())) for c in columns])
        return pa.table({c: [row.get(c) for row in self.rows] for c in columns}, schema=schema)

    def to_pandas(self) -> Any:
        """The report as a pandas DataFrame (through Arrow)."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """The report as a polars DataFrame (through Arrow)."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def _title(self) -> str:
        span = f"{self.since.isoformat() if self.since else '...'} to {self.until.isoformat() if self.until else '...'}"
        by = f", by {', '.join(self.by)}" if self.by else ""
        return f"Campaign report, messages sent {span}, as of {self.now.isoformat()}{by}"

    def _heads(self, row: Mapping[str, Any]) -> str:
        return " / ".join([str(row["campaign_id"]), *(f"{d}={row[d] or '(none)'}" for d in self.by)])

    def __str__(self) -> str:
        lines = [self._title()]
        if not self.rows:
            lines.append("  no messages in this range")
        width = max(len(label) for _, label in _LABELS)
        for row in self.rows:
            lines.append("")
            lines.append(self._heads(row))
            for column, label in _LABELS:
                lines.append(f"  {label.ljust(width)}  {_show(row.get(column), column)}")
        for lift in self.lifts.values():
            lines += ["", str(lift)]
        for campaign_id, test in self.ab_tests.items():
            lines += ["", f"A/B test of {campaign_id!r} (treated members per variant, intention to treat)",
                      *("  " + line for line in str(test).splitlines())]
        lines += ["", _INFLUENCED_NOTE]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _LABELS)
        body = "".join(
            "<tr><th>" + html.escape(self._heads(row)) + "</th>"
            + "".join(f"<td>{html.escape(_show(row.get(c), c))}</td>" for c, _ in _LABELS) + "</tr>"
            for row in self.rows
        )
        lifts = "".join(f"<pre>{html.escape(str(lift))}</pre>" for lift in self.lifts.values())
        lifts += "".join(f"<pre>{html.escape(f'A/B test of {c!r}')}\n{html.escape(str(t))}</pre>"
                         for c, t in self.ab_tests.items())
        return (f"<div><strong>{html.escape(self._title())}</strong><table><thead><tr><th></th>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>{lifts}<p><small>{html.escape(_INFLUENCED_NOTE)}</small></p></div>")

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """The report as one self-contained HTML page (figures table; funnel, daily conversions and lift charts as
        inline SVG; opens offline).  Writes it to ``path`` (UTF-8) when given; returns the page.  Needs the
        ``report`` extra (altair, vl-convert-python).  ``title`` replaces the default heading."""
        from shopcrm.report_html import render_html

        page = render_html(self, title=title)
        if path is not None:
            pathlib.Path(path).write_text(page, encoding="utf-8")
        return page


# ---------------------------------------------------------------------------------------------------------------------
# reading the store


def _in(ts: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts < until)


def _events(shop: Shop, names: Sequence[str], *, campaign_ids: Sequence[str] | None, before: datetime,
            extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Events named ``names`` before ``before``, from the shop's events table in one query, plus (for message
    events) the library's ``shopcrm_message_events`` where the store keeps them beside a shop whose events table is
    not its own.  ``extra`` names further columns to read when the table has them."""
    from sqlglot import exp

    from shopcrm.compiler._dialects import dialect_for

    source = shop.source
    table = source.schema().events
    quirks = dialect_for(source.dialect)
    columns = ["customer_id", "event", "ts", *(c for c in extra if table.has(c))]
    found: list[dict[str, Any]] = []
    if not any(c in extra for c in ("message_key",)) or table.has("message_key"):
        ts = quirks.timestamp_column(exp.column("ts", table="e", quoted=True))
        where: list[exp.Expression] = [
            exp.In(this=exp.column("event", table="e", quoted=True), expressions=[exp.Literal.string(n) for n in names]),
            exp.LT(this=ts, expression=quirks.timestamp_literal(before)),
        ]
        if campaign_ids is not None and table.has("campaign_id"):
            where.append(exp.In(this=exp.column("campaign_id", table="e", quoted=True),
                                expressions=[exp.Literal.string(c) for c in campaign_ids]))
        query = exp.select(*[exp.column(c, table="e", quoted=True) for c in columns]).from_(
            table.relation("e")).where(exp.and_(*where))
        found += [dict(zip(columns, row, strict=True)) for row in source.fetch(query)]
    if "message_key" in extra:
        wanted = set(names)
        for event in shop.source.campaign_store().message_events():
            if event.get("event") in wanted and (campaign_ids is None or event.get("campaign_id") in campaign_ids):
                found.append(event)
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for event in found:
        if event.get("ts") is None:
            continue
        event["ts"] = to_utc_naive(event["ts"])
        if event["ts"] >= before:
            continue
        mark = (event.get("event"), event.get("message_key"), event["ts"], json.dumps(event.get("customer_id"), default=str))
        if "message_key" in extra and mark in seen:
            continue
        seen.add(mark)
        out.append(event)
    return out


def _conversion_rows(shop: Shop, policy: AttributionPolicy, before: datetime) -> list[dict[str, Any]]:
    """Every conversion event before ``before`` as rows :func:`shopcrm.measurement.conversions` reads: the revenue
    and order properties from their own columns, else from a JSON ``properties`` column."""
    props = (policy.revenue_property, policy.order_property)
    rows = _events(shop, [policy.conversion_event], campaign_ids=None, before=before, extra=("properties", *props))
    out = []
    for row in rows:
        properties: dict[str, Any] = {}
        raw = row.get("properties")
        if isinstance(raw, str) and raw:
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = None
        if isinstance(raw, Mapping):
            properties.update(raw)
        for name in props:
            if row.get(name) is not None:
                properties[name] = row[name]
        out.append({"customer_id": row["customer_id"], "event": row["event"], "ts": row["ts"], "properties": properties})
    return out


def _exposure(row: OutboxRow) -> datetime:
    return row.send_at or row.due_at


def build_report(
    shop: Shop, campaign: str | Sequence[str] | None = None, *, since: datetime | str | None = None,
    until: datetime | str | None = None, now: datetime | str, by: str | Sequence[str] = (),
    method: str | None = None, sequential: bool = False, segments: Mapping[str, Any] | Sequence[str] | None = None,
    segments_at: datetime | str | None = None,
) -> CampaignReport:
    """The campaign report of ``shop`` (see :meth:`shopcrm.Shop.report`)."""
    from shopcrm.campaigns._planner import paused_gc
    from shopcrm.measurement._attribution import _by
    from shopcrm.report_sql import can_compute, sql_figures

    dims = _by(by)
    when = to_utc_naive(now)
    lo = to_utc_naive(since) if since is not None else None
    hi = to_utc_naive(until) if until is not None else None
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"the report's range is empty: until ({hi.isoformat()}) must be after since ({lo.isoformat()})")
    if method not in (None, "sql", "reference"):
        raise ValueError(f"method is 'sql' (the shop's engine computes the report), 'reference' (the pure Python "
                         f"reference) or None (SQL where the engine can); got {method!r}")
    hi = when if hi is None else min(hi, when)
    policy = shop.attribution_policy
    models = {c.id: c for c in shop.campaigns()}
    if campaign is None:
        ids: list[str] | None = None
    else:
        ids = [campaign] if isinstance(campaign, str) else list(campaign)
        unknown = [c for c in ids if c not in models]
        if unknown:
            raise KeyError(f"no campaign {', '.join(map(repr, unknown))}; the shop has {sorted(models) or 'none'}")
    labels = _segments(shop, dims, segments, segments_at if segments_at is not None else since)
    use_sql = can_compute(shop) if method is None else method == "sql"
    if use_sql and not can_compute(shop):
        raise ValueError(f"this shop's report cannot run as SQL: its campaign store is not in its "
                         f"{shop.source.dialect} database; use method='reference' (or None)")
    if use_sql:
        # the collector paused while the queries are built and run: their trees (whose nodes point at their parents)
        # are a few thousand small objects, and a collection among them walks every live object of the process;
        # what they leave is collected at the next collection after the pause
        with paused_gc():
            figures = sql_figures(shop, ids, lo, hi, when, dims, policy, FATIGUE_WINDOW, labels)
    else:
        figures = _reference_figures(shop, ids, lo, hi, when, dims, policy, labels)

    outbox_counts = not (set(dims) & {"channel", "kind"})
    by_cell = {(s.campaign_id, *(v for _, v in s.cell)): s for s in figures.summaries}
    cells = set(by_cell) | {c for c, n in figures.funnel.items()
                            if n.get("failed") or (outbox_counts and (n.get("planned") or n.get("held_out")))}
    rows: list[dict[str, Any]] = []
    for cell in sorted(cells):
        summary = by_cell.get(cell) or Summary(
            campaign_id=cell[0], cell=tuple(zip(dims, cell[1:], strict=True)), sends=0, recipients=0, clicked=0,
            attributed_conversions=0, attributed_revenue=0.0, attributed_customers=0, influenced_conversions=0,
            influenced_revenue=0.0, influenced_customers=0, cost=0.0)
        n = figures.funnel.get(cell, {})
        out: dict[str, Any] = summary.to_dict()
        if outbox_counts:
            out.update(planned=n.get("planned", 0), held_out=n.get("held_out", 0))
            out["audience"] = out["planned"] + out["held_out"]
        else:
            out.update(dict.fromkeys(_OUTBOX_COLUMNS))
        out["sent"] = summary.sends
        for column in ("delivered", "fallen_back", "failed", "opt_outs_after"):
            out[column] = n.get(column, 0)
        out.update(dict.fromkeys(_LIFT_COLUMNS))
        rows.append(out)

    lifts: dict[str, CampaignLift] = {}
    tests: dict[str, Any] = {}
    for campaign_id in sorted({c for c, _, _ in figures.outcomes}):
        model = models.get(campaign_id)
        share = (model.holdout_percent / 100) if model is not None else 0.0
        mine = {(v, st): o for (c, v, st), o in figures.outcomes.items() if c == campaign_id}
        cost = math.fsum(sorted(s.cost for s in figures.summaries if s.campaign_id == campaign_id))
        if share or any(st == "holdout" for _, st in mine):
            lifts[campaign_id] = _lift(campaign_id, share, mine, cost)
        arms = {v: o for (v, st), o in mine.items() if st == "planned"}
        if len(arms) >= 2:
            found = _ab(campaign_id, model, arms, sequential)
            if found is not None:
                tests[campaign_id] = found
    if not dims:
        for out in rows:
            lift = lifts.get(out["campaign_id"])
            if lift is not None:
                out.update(lift.columns())
    return CampaignReport(since=lo, until=to_utc_naive(until) if until is not None else None, now=when, by=dims,
                          rows=tuple(rows), summaries=figures.summaries, lifts=lifts, policy=policy,
                          daily=figures.daily, ab_tests=tests, method=figures.method)


def _segments(shop: Shop, dims: tuple[str, ...], segments: Mapping[str, Any] | Sequence[str] | None,
              at: datetime | str | None) -> SegmentLabels | None:
    if "segment" not in dims:
        if segments is not None:
            raise ValueError("segments= is for a breakdown by segment: add by='segment' (or leave segments out)")
        return None
    if segments is None:
        pairs = [(s.name, shop.segment(s.name)) for s in shop.segments()]
    elif isinstance(segments, Mapping):
        pairs = [(str(name), shop._resolve(rule)) for name, rule in segments.items()]
    elif isinstance(segments, str):
        raise ValueError(f"segments= is a list of saved segment names or a {{name: rule}} mapping, not the text "
                         f"{segments!r}; write segments=[{segments!r}]")
    else:
        pairs = [(name, shop.segment(name)) for name in segments]
    if not pairs:
        raise ValueError("a breakdown by segment needs segments: pass segments={'vip': rule, ...} or the names of "
                         "saved segments (the shop has none saved)")
    if any(name == "" for name, _ in pairs):
        raise ValueError("a segment of the breakdown needs a non-empty name (an empty one is the cell of the others)")
    if at is None:
        raise ValueError("a breakdown by segment reads membership at one instant: give since= (the default) or "
                         "segments_at=")
    resolved = [(name, shop._resolve(rule)) for name, rule in pairs]
    return SegmentLabels(tuple(resolved), to_utc_naive(at))


def _reference_figures(shop: Shop, ids: list[str] | None, lo: datetime | None, hi: datetime, when: datetime,
                       dims: tuple[str, ...], policy: AttributionPolicy,
                       segments: SegmentLabels | None = None) -> Figures:
    """The figures through the pure reference: the store's rows read into Python, :func:`attribute` and
    :func:`summarise` (a shop whose campaign store is not in a SQL database, and the tests' yardstick)."""
    store = shop.source.campaign_store()
    # the outbox: who was planned and who was held out
    decided = [r for status in ("planned", "holdout") for r in store.outbox(campaign_ids=ids, status=status)]
    decided = [r for r in decided if _exposure(r) < when and _in(_exposure(r), lo, hi)]
    planned_rows = {r.key: r for r in decided if r.status == "planned"}

    # the ledger: sends (sent or delivered), failures; send times from message_sent events.  Every campaign's: the
    # clicks of the sends the report leaves out (other campaigns, other times) compete for the last click
    everything: list[SendRow] = store.sends()
    ledger = [r for r in everything if ids is None or r.campaign_id in ids]
    sent_times: dict[str, datetime] = {}
    clicks: list[Click] = []
    for event in _events(shop, _MESSAGE_EVENTS, campaign_ids=None, before=when, extra=("message_key", "campaign_id")):
        key = event.get("message_key")
        if not key:
            continue
        if event["event"] == "message_sent":
            if key not in sent_times or event["ts"] < sent_times[key]:
                sent_times[str(key)] = event["ts"]
        else:
            clicks.append(Click(message_key=str(key), clicked_at=event["ts"]))
    labels = segments.of(shop) if segments is not None else {}

    def sent_at(row: SendRow) -> datetime:
        return row.sent_at or sent_times.get(row.key, row.updated_at)

    def chosen(row: SendRow) -> bool:
        return (ids is None or row.campaign_id in ids) and _in(sent_at(row), lo, hi)

    # the rivals: sends before now that the report leaves out, clicked (only their clicks matter)
    clicked = {c.message_key for c in clicks}
    rival_rows = [r for r in everything if r.state in _SENT_STATES and r.key in clicked and sent_at(r) < when
                  and not chosen(r)]
    missing = list(dict.fromkeys([*(r.key for r in ledger if r.key not in planned_rows),
                                  *(r.key for r in rival_rows if not r.channel and r.key not in planned_rows)]))
    outbox_of = dict(planned_rows)
    outbox_of.update(store.outbox_by_keys(missing) if missing else {})

    def channel_of(row: SendRow) -> str:
        planned = outbox_of.get(row.key)
        return row.channel or (planned.channel if planned else "")

    rivals = [Send(message_key=r.key, customer_id=r.customer_id, campaign_id=r.campaign_id, channel=channel_of(r),
                   sent_at=sent_at(r)) for r in rival_rows]
    sends: list[Send] = []
    states: dict[str, SendRow] = {}
    failed: list[SendRow] = []
    for row in ledger:
        planned = outbox_of.get(row.key)
        if row.state in _SENT_STATES:
            at = sent_at(row)
            if at >= when or not _in(at, lo, hi):
                continue
            sends.append(Send(message_key=row.key, customer_id=row.customer_id, campaign_id=row.campaign_id,
                              variant=planned.variant if planned else "", step=planned.step if planned else "",
                              channel=channel_of(row), kind=row.kind or (planned.kind if planned else ""), sent_at=at,
                              cost=row.cost, segment=labels.get(_cid(row.customer_id), "")))
            states[row.key] = row
        elif row.state == "failed" and planned is not None and _in(_exposure(planned), lo, hi):
            failed.append(row)

    # conversions de-duplicated by order over every conversion event before now, then those from the report's
    # start (an order first recorded before it is no conversion of the range, contract section 1)
    convs = [c for c in conversions(_conversion_rows(shop, policy, when), policy) if lo is None or c.ts >= lo]
    credits = attribute(sends, clicks, convs, policy, rivals=rivals)
    summaries = summarise(credits, dims)

    def cell_of(values: Mapping[str, str], campaign_id: str) -> tuple[str, ...]:
        return (campaign_id, *(str(values.get(d, "")) for d in dims))

    funnel: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not set(dims) & {"channel", "kind"}:
        for r in decided:
            cell = cell_of({"variant": r.variant, "step": r.step, "segment": labels.get(_cid(r.customer_id), "")},
                           r.campaign_id)
            funnel[cell]["planned" if r.status == "planned" else "held_out"] += 1
    for lost in failed:
        planned = outbox_of.get(lost.key)
        values = {"variant": planned.variant if planned else "", "step": planned.step if planned else "",
                  "channel": lost.channel or (planned.channel if planned else ""),
                  "kind": lost.kind or (planned.kind if planned else ""),
                  "segment": labels.get(_cid(lost.customer_id), "")}
        funnel[cell_of(values, lost.campaign_id)]["failed"] += 1
    sends_in: dict[tuple[str, ...], list[Send]] = defaultdict(list)
    for send in sends:
        sends_in[cell_of({d: str(getattr(send, d)) for d in BREAKDOWNS}, send.campaign_id)].append(send)
    opt_outs = {_cid(c): list(groups.values()) for c, groups in store.opt_outs().items()}
    for cell, cell_sends in sends_in.items():
        funnel[cell]["delivered"] += sum(1 for s in cell_sends if states[s.message_key].state == "delivered")
        funnel[cell]["fallen_back"] += sum(1 for s in cell_sends if states[s.message_key].chain_index > 0)
        funnel[cell]["opt_outs_after"] += _fatigue(cell_sends, opt_outs, when)

    members = [Member(customer_id=r.customer_id, campaign_id=r.campaign_id, variant=r.variant, status=r.status,
                      exposed_at=_exposure(r)) for r in decided]
    outcomes = member_outcomes(members, convs, policy, now=when)
    daily: dict[tuple[str, str], list[float]] = defaultdict(list)
    for credit in credits.attributed:
        daily[(credit.send.campaign_id, credit.conversion.ts.date().isoformat())].append(credit.conversion.revenue)
    return Figures(summaries=tuple(summaries), funnel={c: dict(n) for c, n in funnel.items()}, outcomes=outcomes,
                   daily=tuple((c, d, len(v), math.fsum(sorted(v))) for (c, d), v in sorted(daily.items())),
                   method="reference")


def _fatigue(sends: Iterable[Send], opt_outs: Mapping[str, list[datetime]], now: datetime) -> int:
    """Recipients with an opt-out at ``t``, ``s <= t < s + FATIGUE_WINDOW`` for one of their sends ``s``, before now."""
    tired = set()
    for send in sends:
        who = _cid(send.customer_id)
        if any(send.sent_at <= t < send.sent_at + FATIGUE_WINDOW and t < now for t in opt_outs.get(who, ())):
            tired.add(who)
    return len(tired)


def _lift(campaign_id: str, share: float, outcomes: Mapping[tuple[str, str], Outcome], cost: float) -> CampaignLift:
    """Treatment (planned members, all variants) against holdout (held-out members), each member's outcome within
    the measurement window after their earliest exposure."""
    from shopcrm.measurement import stats

    def pooled(status: str) -> tuple[int, RevenueStats]:
        found = [o for (_, st), o in outcomes.items() if st == status]
        return (sum(o.converted for o in found),
                RevenueStats(sum(o.n for o in found), math.fsum(o.revenue for o in found),
                             max(0.0, math.fsum(o.revenue_squares for o in found))))

    (treated_conv, treated), (held_conv, held) = pooled("planned"), pooled("holdout")
    lift: Lift | None = None
    srm: SampleRatioMismatch | None = None
    note = None
    try:
        lift = stats.lift(treated.n, treated_conv, held.n, held_conv, treated_revenue=treated,
                          holdout_revenue=held, cost=cost)
        srm = stats.sample_ratio_mismatch(treated.n, held.n, share)
    except ImportError:
        note = _STATS_NOTE
    return CampaignLift(campaign_id, share, treated.n, treated_conv, held.n, held_conv, treated, held, cost, lift, srm,
                        note)


def _ab(campaign_id: str, model: Any, arms: Mapping[str, Outcome], sequential: bool) -> ABTest | None:
    """The A/B test of a campaign's variants (treated members only, intention to treat); the control is the
    campaign's first variant (else the first by name).  None without the statistics packages."""
    from shopcrm.measurement import stats

    names = [v.name for v in getattr(model, "variants", None) or ()]
    control = next((n for n in names if n in arms), min(arms))
    try:
        return stats.ab_test({v: (o.n, o.converted, RevenueStats(o.n, o.revenue, o.revenue_squares))
                              for v, o in sorted(arms.items())}, control, sequential=sequential)
    except ImportError:
        return None
