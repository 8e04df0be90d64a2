"""The global control group against everyone else: what the whole CRM programme earns (``shop.program_lift``).

The measurement contract (section 6, last bullet) asks for the campaign lift formulas applied to the shop's
global control group (``MessagingPolicy.global_control_percent``: a stable share of customers, chosen by a
salted SHA-256 of their id, that no advertising campaign reaches) against every other customer over a period.

Choices this module makes (also in ``docs/measurement.md``, "The global control group"):

- **Population**: every customer of the customers table (distinct non-null ids), assigned by the hash alone
  (intention to treat: consent, contact points and what was sent do not matter).  The library keeps no
  "customer since" column, so a customer who joined during the period is in it too; that is unbiased because
  the hash does not depend on when anyone joined (it only dilutes both groups alike).  A purchase by an id
  that is not in the customers table counts nowhere.
- **Outcome**: conversions (the attribution policy's conversion event, de-duplicated by order exactly as
  :func:`shopcrm.measurement.conversions` does: an order counts once, at its earliest event, with that
  event's revenue) whose time is in ``[since, until)`` and before ``now``.  "Converted" is at least one such
  conversion; revenue is their sum (0 for customers without one).  The order is de-duplicated over all of
  its events before the end of the period, so an order first seen before ``since`` does not count again.
- **Cost** for iROAS: the ledger cost of every advertising campaign's sends (``sent`` or ``delivered``) whose
  send time (their ``message_sent`` event, else the ledger row's last update) is in the period, before ``now``.
- **Where the hash runs**: in the database, as one query returning four numbers per group (members,
  converters, revenue, revenue squared), on DuckDB, PostgreSQL, MySQL/MariaDB and Spark (their own SHA-256)
  and on SQLite through a ``shopcrm_sha256`` function registered on the connection.  The group test compares
  the first 16 hex digits of the digest with a threshold as text, which is the same as comparing the
  integer, so no engine needs unsigned 64-bit arithmetic; the threshold is the smallest 64-bit number whose
  :func:`shopcrm.campaigns.global_control_point` is not below the percent (found by bisection on that very
  function), so SQL and Python draw the same line bit for bit.  On any other engine the ids are fetched once
  and hashed in Python (``method="python"``), with the converters' revenue fetched beside them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

from shopcrm.campaigns._policy import MessagingPolicy, control_threshold, in_global_control
from shopcrm.measurement import AttributionPolicy, conversions
from shopcrm.measurement.stats import Lift, RevenueStats, SampleRatioMismatch
from shopcrm.sources._event_values import event_property, register_sqlite_functions, sha_hex16
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:
    from shopcrm.shop import Shop
    from shopcrm.sources._base import Source

__all__ = [
    "SQL_HASH_DIALECTS", "GroupOutcome", "ProgramLift", "advertising_cost", "build_program_lift", "control_threshold",
    "group_outcomes", "group_query", "reference_outcomes",
]

_SPAN = 2 ** 64
#: the engines whose own SHA-256 the query uses (SQLite through a function registered on the connection)
SQL_HASH_DIALECTS = ("duckdb", "postgres", "mysql", "spark", "sqlite")
_SENT_STATES = ("sent", "delivered")
_EXTRA_NOTE = "the intervals and the sample-ratio test need scipy and statsmodels: pip install 'shopcrm[measurement]'"


# ---------------------------------------------------------------------------------------------------------------------
# the value


@attrs.frozen
class GroupOutcome:
    """One group's sufficient statistics: ``n`` members, ``converted`` of them with at least one conversion, and
    their revenue (members without one count 0)."""

    n: int
    converted: int
    revenue: RevenueStats

    @property
    def rate(self) -> float | None:
        """Converted members / members, or None for an empty group."""
        return None if self.n == 0 else self.converted / self.n

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "converted": self.converted, "rate": self.rate, "revenue": self.revenue.to_dict()}


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


@attrs.frozen
class ProgramLift:
    """The global control group (``control``) against every other customer (``rest``) over ``[since, until)``,
    as of ``now``: the contract's lift formulas with the rest as treatment and the control as holdout.

    ``lift`` (Newcombe and log-ratio intervals, Welch on revenue per customer, incremental conversions and
    revenue, iROAS with ``cost``) and ``srm`` (the split against ``percent``) are None without scipy and
    statsmodels (``note`` says so).  ``method`` says where the group hash ran: ``"sql"`` or ``"python"``."""

    since: datetime
    until: datetime
    now: datetime
    percent: float
    salt: str
    control: GroupOutcome
    rest: GroupOutcome
    cost: float
    lift: Lift | None
    srm: SampleRatioMismatch | None
    method: str
    note: str | None = None

    @property
    def end(self) -> datetime:
        """Where the outcome stops counting: ``until``, or ``now`` when that is earlier."""
        return min(self.until, self.now)

    def columns(self) -> dict[str, Any]:
        """The figures as one flat row (undefined values are None)."""
        out: dict[str, Any] = {
            "since": self.since, "until": self.until, "now": self.now, "global_control_percent": self.percent,
            "control_n": self.control.n, "control_converted": self.control.converted,
            "control_rate": self.control.rate, "control_revenue_per_customer": self.control.revenue.mean,
            "rest_n": self.rest.n, "rest_converted": self.rest.converted, "rest_rate": self.rest.rate,
            "rest_revenue_per_customer": self.rest.revenue.mean, "cost": self.cost,
        }
        lift = self.lift
        absolute = lift.absolute_interval if lift else None
        relative = lift.relative_interval if lift else None
        revenue = lift.revenue if lift else None
        out.update(
            absolute_lift=lift.absolute_lift if lift else None,
            absolute_lift_low=absolute.low if absolute else None, absolute_lift_high=absolute.high if absolute else None,
            relative_lift=lift.relative_lift if lift else None,
            relative_lift_low=relative.low if relative else None, relative_lift_high=relative.high if relative else None,
            revenue_difference=revenue.difference if revenue else None,
            revenue_difference_low=revenue.interval.low if revenue and revenue.interval else None,
            revenue_difference_high=revenue.interval.high if revenue and revenue.interval else None,
            incremental_conversions=lift.incremental_conversions if lift else None,
            incremental_revenue=lift.incremental_revenue if lift else None, iroas=lift.iroas if lift else None,
            srm_p_value=self.srm.p_value if self.srm else None, srm_mismatch=self.srm.mismatch if self.srm else None,
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, nested: the groups, the lift and the sample-ratio test as their own dicts."""
        return {
            "since": self.since.isoformat(), "until": self.until.isoformat(), "now": self.now.isoformat(),
            "percent": self.percent, "salt": self.salt, "control": self.control.to_dict(), "rest": self.rest.to_dict(),
            "cost": self.cost, "lift": self.lift.to_dict() if self.lift else None,
            "srm": self.srm.to_dict() if self.srm else None, "method": self.method, "note": self.note,
        }

    def _title(self) -> str:
        return (f"Global control group ({self.percent:g}% of customers, salt {self.salt!r}) against everyone else, "
                f"conversions {self.since.isoformat()} to {self.end.isoformat()}")

    def rows(self) -> list[tuple[str, str]]:
        def group(g: GroupOutcome) -> str:
            rate = "-" if g.rate is None else f"{g.rate:.2%}"
            return f"{g.converted:,} / {g.n:,} converted = {rate}, revenue per customer {_money(g.revenue.mean)}"

        rows = [("everyone else", group(self.rest)), ("global control", group(self.control)),
                ("advertising cost", _money(self.cost))]
        if self.lift is not None:
            rows += [(k, v) for k, v in self.lift.rows() if k not in ("treated", "holdout")]
        if self.srm is not None:
            rows.append(("sample ratio", str(self.srm)))
        if self.note:
            rows.append(("note", self.note))
        return rows

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join([self._title()] + [f"  {k.ljust(width)}  {v}" for k, v in rows])

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self.rows())
        return f"<div><strong>{html.escape(self._title())}</strong><table>{body}</table></div>"


# ---------------------------------------------------------------------------------------------------------------------
# the group line, the same in SQL and in Python


# ---------------------------------------------------------------------------------------------------------------------
# SQL


def _col(name: str, table: str = "e") -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _outcome_cte(source: Source, policy: AttributionPolicy, since: datetime, end: datetime) -> exp.Select:
    """``customer_id, revenue`` of every customer with a conversion in ``[since, end)`` (orders de-duplicated)."""
    from shopcrm.compiler._dialects import dialect_for

    dialect = source.dialect
    quirks = dialect_for(dialect)
    ts = quirks.timestamp_column(_col("ts"))
    revenue = exp.Coalesce(this=event_property(quirks, dialect, source, policy.revenue_property, number=True),
                           expressions=[exp.Literal.number(0)])
    order = exp.Nullif(this=event_property(quirks, dialect, source, policy.order_property, number=False),
                       expression=exp.Literal.string(""))
    events = exp.select(
        exp.alias_(_col("customer_id"), "customer_id", quoted=True), exp.alias_(ts, "ts", quoted=True),
        exp.alias_(revenue, "revenue", quoted=True), exp.alias_(order, "order_key", quoted=True),
    ).from_(source.schema().events.relation("e")).where(exp.and_(
        exp.EQ(this=_col("event"), expression=exp.Literal.string(policy.conversion_event)),
        exp.LT(this=ts.copy(), expression=quirks.timestamp_literal(end)),
        exp.Not(this=exp.Is(this=_col("customer_id"), expression=exp.null())),
    ))
    first = exp.Window(
        this=exp.RowNumber(), partition_by=[_col("customer_id", "x"), quirks.string_equality(_col("order_key", "x"))],
        order=exp.Order(expressions=[exp.Ordered(this=_col("ts", "x")),
                                     exp.Ordered(this=_col("revenue", "x"), desc=True)]),
    )
    ranked = exp.select(
        _col("customer_id", "x"), _col("ts", "x"), _col("revenue", "x"), _col("order_key", "x"),
        exp.alias_(first, "rn", quoted=True),
    ).from_(events.subquery("x"))
    kept = exp.or_(exp.Is(this=_col("order_key", "r"), expression=exp.null()),
                   exp.EQ(this=_col("rn", "r"), expression=exp.Literal.number(1)))
    return (exp.select(_col("customer_id", "r"), exp.alias_(exp.Sum(this=_col("revenue", "r")), "revenue", quoted=True))
            .from_(ranked.subquery("r"))
            .where(exp.and_(kept, exp.GTE(this=_col("ts", "r"), expression=quirks.timestamp_literal(since))))
            .group_by(_col("customer_id", "r")))


def _members(source: Source, group: exp.Expression | None) -> exp.Select:
    customers = source.schema().customers.relation("c")
    columns: list[Any] = [exp.alias_(_col("customer_id", "c"), "customer_id", quoted=True)]
    if group is not None:
        columns.append(exp.alias_(group, "g", quoted=True))
    return (exp.select(*columns).distinct().from_(customers)
            .where(exp.Not(this=exp.Is(this=_col("customer_id", "c"), expression=exp.null()))))


def group_query(source: Source, messaging: MessagingPolicy, policy: AttributionPolicy, since: datetime,
                end: datetime) -> exp.Select:
    """One query: ``g`` (1 for the global control group), members, converters, revenue and revenue squared."""
    from shopcrm.compiler._dialects import dialect_for

    quirks = dialect_for(source.dialect)
    threshold = control_threshold(messaging.global_control_percent)
    if threshold >= _SPAN:
        inside: exp.Expression = exp.true()
    else:
        text = quirks.concat(exp.Literal.string(f"{messaging.global_control_salt}:"),
                             quirks.to_text(_col("customer_id", "c")))
        inside = exp.LT(this=quirks.string_order(sha_hex16(source.dialect, text)),
                        expression=quirks.string_order(exp.Literal.string(f"{threshold:016x}")))
    group = exp.Case(ifs=[exp.If(this=inside, true=exp.Literal.number(1))], default=exp.Literal.number(0))
    revenue = exp.Coalesce(this=_col("revenue", "o"), expressions=[exp.Literal.number(0)])
    return (exp.select(
        _col("g", "m"), exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True),
        exp.alias_(exp.Count(this=_col("customer_id", "o")), "converted", quoted=True),
        exp.alias_(exp.Sum(this=revenue), "total", quoted=True),
        exp.alias_(exp.Sum(this=exp.Mul(this=revenue.copy(), expression=revenue.copy())), "squares", quoted=True),
    ).from_(_members(source, group).subquery("m"))
        .join(_outcome_cte(source, policy, since, end).subquery("o"),
              on=exp.EQ(this=_col("customer_id", "o"), expression=_col("customer_id", "m")), join_type="LEFT")
        .group_by(_col("g", "m")))


def _stats(n: Any, converted: Any, total: Any, squares: Any) -> GroupOutcome:
    return GroupOutcome(int(n or 0), int(converted or 0),
                        RevenueStats(int(n or 0), float(total or 0.0), max(0.0, float(squares or 0.0))))


def _empty() -> GroupOutcome:
    return GroupOutcome(0, 0, RevenueStats(0, 0.0, 0.0))


def group_outcomes(source: Source, messaging: MessagingPolicy, policy: AttributionPolicy, since: datetime,
                   end: datetime, *, method: str | None = None) -> tuple[GroupOutcome, GroupOutcome, str]:
    """``(control, rest, method)`` over ``source``: the hash in SQL where the engine has SHA-256 (``"sql"``), else
    the ids hashed in Python (``"python"``).  ``method`` forces one (tests compare them)."""
    registered = source.dialect == "sqlite" and register_sqlite_functions(source)
    use_sql = source.dialect in SQL_HASH_DIALECTS and (source.dialect != "sqlite" or registered)
    if method is None:
        method = "sql" if use_sql else "python"
    elif method not in ("sql", "python"):
        raise ValueError(f"method is 'sql' or 'python', not {method!r}")
    elif method == "sql" and not use_sql:
        raise ValueError(f"this {source.dialect} source has no SHA-256 in SQL; use method='python'")
    if method == "sql":
        groups = {int(g): _stats(n, c, t, s) for g, n, c, t, s in source.fetch(group_query(source, messaging, policy, since, end))}
        return groups.get(1, _empty()), groups.get(0, _empty()), method
    ids = [row[0] for row in source.fetch(_members(source, None))]
    revenue = dict(source.fetch(_outcome_cte(source, policy, since, end)))
    return (*_python_groups(ids, revenue, messaging), method)


def _python_groups(ids: Iterable[Any], revenue: Mapping[Any, Any],
                   messaging: MessagingPolicy) -> tuple[GroupOutcome, GroupOutcome]:
    values: dict[bool, list[float]] = {True: [], False: []}
    converted = {True: 0, False: 0}
    for customer in ids:
        inside = in_global_control(customer, messaging)
        value = revenue.get(customer)
        converted[inside] += value is not None
        values[inside].append(float(value or 0.0))
    return (GroupOutcome(len(values[True]), converted[True], RevenueStats.from_values(values[True])),
            GroupOutcome(len(values[False]), converted[False], RevenueStats.from_values(values[False])))


def reference_outcomes(customer_ids: Iterable[Any], events: Iterable[Mapping[str, Any]], messaging: MessagingPolicy,
                       policy: AttributionPolicy, since: datetime, end: datetime) -> tuple[GroupOutcome, GroupOutcome]:
    """The pure reference of :func:`group_outcomes`: ``(control, rest)`` from the customer ids and the event rows
    (``customer_id``, ``event``, ``ts``, and the revenue and order properties as their own keys, as the events
    table's columns, or inside ``properties``, a mapping or JSON text), through
    :func:`shopcrm.measurement.conversions` over the events before ``end``."""
    import json

    before = []
    for event in events:
        if event.get("ts") is None or to_utc_naive(event["ts"]) >= end:
            continue
        raw = event.get("properties")
        properties = dict(json.loads(raw) if isinstance(raw, str) and raw else raw if isinstance(raw, Mapping) else {})
        for name in (policy.revenue_property, policy.order_property):
            if event.get(name) is not None:
                properties[name] = event[name]
        before.append({**event, "properties": properties})
    revenue: dict[Any, float] = {}
    found: dict[Any, list[float]] = {}
    for c in conversions(before, policy):
        if c.ts >= since:
            found.setdefault(c.customer_id, []).append(c.revenue)
    for customer, values in found.items():
        revenue[customer] = math.fsum(sorted(values))
    return _python_groups(dict.fromkeys(c for c in customer_ids if c is not None), revenue, messaging)


# ---------------------------------------------------------------------------------------------------------------------
# cost, and the whole


def advertising_cost(shop: Shop, since: datetime, end: datetime, *, method: str | None = None) -> float:
    """The ledger cost of advertising campaigns' sends (sent or delivered) whose send time (the ledger's ``sent_at``;
    for rows without it the earliest ``message_sent`` event, else the ledger row's last update) is in ``[since, end)``.

    One SQL sum where the library's tables share the shop's database (the embedded DuckDB store, DB-API shops);
    elsewhere (``method="python"``, a Spark shop) the ledger is read into Python."""
    advertising = sorted(c.id for c in shop.campaigns() if c.purpose == "advertising")
    if not advertising:
        return 0.0
    from shopcrm.sources._store import library_beside

    source = shop.source
    library = library_beside(source)  # None when the ledger is in a store of its own (issue 15) or in memory
    store = source.campaign_store()
    if method != "python" and library is not None and source.dialect in SQL_HASH_DIALECTS:
        store.sends(keys=[])  # the library's tables exist (created on first use)
        if not library.present:
            return 0.0
        [(total,)] = source.fetch(_cost_query(source, library.tables, advertising, since, end))
        return float(total or 0.0)
    rows = [r for r in store.sends(states=_SENT_STATES) if r.campaign_id in set(advertising)]
    if not rows:
        return 0.0
    sent_at = _sent_times(shop, advertising, end)
    costs = []
    for row in rows:
        at = row.sent_at or sent_at.get(row.key, row.updated_at)
        if since <= at < end:
            costs.append(row.cost)
    return math.fsum(sorted(costs))


def _cost_query(source: Source, tables: Any, campaign_ids: Sequence[str], since: datetime, end: datetime) -> exp.Select:
    """``SUM(cost)`` of the advertising sends in the period, over the ledger and the ``message_sent`` events of the
    shop's events table and of the library's ``message_events`` (whose instants are text, read as timestamps)."""
    from shopcrm.compiler._dialects import dialect_for

    quirks = dialect_for(source.dialect)
    table = source.schema().events

    def instant(text: exp.Expression) -> exp.Expression:
        if source.dialect == "sqlite":
            return quirks.timestamp_column(text)
        return exp.cast(text, exp.DataType.build(quirks.timestamp_type, dialect=source.dialect))

    def library(name: str, alias: str) -> Any:
        return exp.alias_(exp.to_table(name), alias, table=True)

    ids = [exp.Literal.string(c) for c in campaign_ids]
    sent_event = exp.Literal.string("message_sent")
    parts: list[exp.Select] = [
        exp.select(exp.alias_(_col("message_key", "x"), "k", quoted=True), exp.alias_(instant(_col("ts", "x")), "ts", quoted=True))
        .from_(library(tables.message_events, "x"))
        .where(exp.and_(exp.EQ(this=_col("event", "x"), expression=sent_event.copy()),
                        exp.In(this=_col("campaign_id", "x"), expressions=[i.copy() for i in ids])))
    ]
    if table.has("message_key"):
        where: list[exp.Expression] = [exp.EQ(this=_col("event"), expression=sent_event.copy())]
        if table.has("campaign_id"):
            where.append(exp.In(this=_col("campaign_id"), expressions=[i.copy() for i in ids]))
        parts.insert(0, exp.select(exp.alias_(_col("message_key"), "k", quoted=True),
                                   exp.alias_(quirks.timestamp_column(_col("ts")), "ts", quoted=True))
                     .from_(table.relation("e")).where(exp.and_(*where)))
    sent: exp.Expression = parts[0]
    for part in parts[1:]:
        sent = exp.union(sent, part, distinct=False)
    first = (exp.select(_col("k", "u"), exp.alias_(exp.Min(this=_col("ts", "u")), "ts", quoted=True))
             .from_(exp.Subquery(this=sent, alias=exp.TableAlias(this=exp.to_identifier("u"))))
             .where(exp.LT(this=_col("ts", "u"), expression=quirks.timestamp_literal(end)))
             .group_by(_col("k", "u")))
    at = exp.Coalesce(this=instant(_col("sent_at", "l")), expressions=[_col("ts", "f"), instant(_col("updated_at", "l"))])
    return (exp.select(exp.Sum(this=_col("cost", "l")))
            .from_(library(tables.sends, "l"))
            .join(first.subquery("f"), on=exp.EQ(this=_col("k", "f"), expression=_col("key_", "l")), join_type="LEFT")
            .where(exp.and_(
                exp.In(this=_col("state", "l"), expressions=[exp.Literal.string(s) for s in _SENT_STATES]),
                exp.In(this=_col("campaign_id", "l"), expressions=[i.copy() for i in ids]),
                exp.GTE(this=at, expression=quirks.timestamp_literal(since)),
                exp.LT(this=at.copy(), expression=quirks.timestamp_literal(end)),
            )))


def _sent_times(shop: Shop, campaign_ids: Sequence[str], end: datetime) -> dict[str, datetime]:
    """Each message's earliest ``message_sent`` time before ``end``, from the events table (when it keeps
    message keys) and the library's message events."""
    from shopcrm.compiler._dialects import dialect_for

    source = shop.source
    table = source.schema().events
    quirks = dialect_for(source.dialect)
    out: dict[str, datetime] = {}

    def take(key: Any, ts: Any) -> None:
        if key is None or ts is None:
            return
        at = to_utc_naive(ts)
        if at < end and (str(key) not in out or at < out[str(key)]):
            out[str(key)] = at

    if table.has("message_key"):
        ts = quirks.timestamp_column(_col("ts"))
        where: list[exp.Expression] = [exp.EQ(this=_col("event"), expression=exp.Literal.string("message_sent")),
                 exp.LT(this=ts, expression=quirks.timestamp_literal(end))]
        if table.has("campaign_id"):
            where.append(exp.In(this=_col("campaign_id"), expressions=[exp.Literal.string(c) for c in campaign_ids]))
        query = (exp.select(_col("message_key"), exp.alias_(exp.Min(this=_col("ts")), "ts", quoted=True))
                 .from_(table.relation("e")).where(exp.and_(*where)).group_by(_col("message_key")))
        for key, at in source.fetch(query):
            take(key, at)
    wanted = set(campaign_ids)
    for event in source.campaign_store().message_events():
        if event.get("event") == "message_sent" and event.get("campaign_id") in wanted:
            take(event.get("message_key"), event.get("ts"))
    return out


def build_program_lift(shop: Shop, *, since: datetime | str, until: datetime | str, now: datetime | str,
                       method: str | None = None) -> ProgramLift:
    """The global control group against everyone else (see :meth:`shopcrm.Shop.program_lift`)."""
    from shopcrm.measurement import stats

    messaging = shop.messaging_policy
    if not messaging.global_control_percent:
        raise ValueError(
            "the shop has no global control group: MessagingPolicy.global_control_percent is 0. Set it (e.g. "
            "shop.messaging_policy = attrs.evolve(shop.messaging_policy, global_control_percent=5)) before the "
            "period you want to measure; customers are held out of advertising only from then on"
        )
    lo, hi, when = to_utc_naive(since), to_utc_naive(until), to_utc_naive(now)
    if hi <= lo:
        raise ValueError(f"the period is empty: until ({hi.isoformat()}) must be after since ({lo.isoformat()})")
    if when <= lo:
        raise ValueError(f"now ({when.isoformat()}) is not after since ({lo.isoformat()}): nothing to measure yet")
    end = min(hi, when)
    policy = shop.attribution_policy
    control, rest, used = group_outcomes(shop.source, messaging, policy, lo, end, method=method)
    cost = advertising_cost(shop, lo, end, method=method)
    lift: Lift | None = None
    srm: SampleRatioMismatch | None = None
    note = None
    try:
        lift = stats.lift(rest.n, rest.converted, control.n, control.converted, treated_revenue=rest.revenue,
                          holdout_revenue=control.revenue, cost=cost)
        srm = stats.sample_ratio_mismatch(rest.n, control.n, messaging.global_control_percent / 100)
    except ImportError:
        note = _EXTRA_NOTE
    return ProgramLift(lo, hi, when, float(messaging.global_control_percent), messaging.global_control_salt, control,
                       rest, cost, lift, srm, used, note)

