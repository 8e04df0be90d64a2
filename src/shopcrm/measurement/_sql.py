"""Attribution and the report's aggregates compiled to SQL (sqlglot expression trees), for every engine.

The pure reference (:mod:`shopcrm.measurement._attribution`) says what the figures mean; this module builds the
queries that compute the same figures where the data lives, so that a report of millions of messages reads a few
hundred aggregate rows instead of every message.  No I/O: functions take relations (sqlglot expressions) and a
dialect, and return queries.  The shell (:mod:`shopcrm.report`) builds the input relations from a shop's tables
and runs them; the engine tests run them on DuckDB, SQLite, PostgreSQL, MySQL and Spark against the reference.

Input relations and their columns (every instant as exact integer microseconds since 1970-01-01 UTC, so that
windows are integer comparisons on every engine; ``customer`` any comparable key):

- **sends**: ``message_key, customer, campaign_id, variant, step, channel, kind, sent_us, cost``
  (sent or delivered messages only; ``channel`` the carrying channel), and ``segment`` for a breakdown by it.
- **rivals** (optional): sends as **sends** are (``message_key, customer, channel, sent_us`` are read) that the
  report leaves out (other campaigns, other times) but whose clicks compete for the last click, as the
  reference's ``attribute(..., rivals=)``.
- **clicks**: ``message_key, clicked_us`` (every ``message_clicked`` event; clicks before their message's send
  time and clicks of messages that are not sends are dropped here, as in the reference).
- **conversion events**: ``customer, ts_us, revenue, order_id`` (``revenue`` a double or NULL, NULL counting
  as 0; ``order_id`` text or NULL, empty text being none).  :func:`conversions` de-duplicates them by order,
  over every event given (an order's first event may come before the report's start, ``since_us``).
- **members** (incrementality and A/B): ``campaign_id, variant, status, customer, exposure_us`` with ``status``
  ``planned`` (treatment) or ``holdout``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import attrs
from sqlglot import exp

from shopcrm.compiler._dialects import Dialect
from shopcrm.measurement._attribution import _by
from shopcrm.measurement._policy import OTHER_CHANNELS, AttributionPolicy

__all__ = ["AttributionQueries", "attribution_queries", "conversions", "window_micros"]

_SMS_KINDS = ("lms", "mms")
#: the figures of one summary row, in the order :func:`attribution_queries` selects them after the cell
SUMMARY_COLUMNS = (
    "sends", "recipients", "clicked", "attributed_conversions", "attributed_revenue", "attributed_customers",
    "influenced_conversions", "influenced_revenue", "influenced_customers", "cost",
)
#: the columns of one member-outcome row after ``campaign_id, variant, status``
MEMBER_COLUMNS = ("n", "converted", "revenue", "revenue_squares")


def _c(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _n(value: int) -> exp.Expr:
    return exp.Literal.number(value)


def _s(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def _alias(expression: exp.Expr, name: str) -> exp.Expr:
    """``expression AS "name"``: ``expression`` itself, not a copy (every caller builds it for this one use)."""
    return exp.alias_(expression, name, quoted=True, copy=False)


def _micros(window: timedelta) -> int:
    return (window.days * 86_400 + window.seconds) * 1_000_000 + window.microseconds


def window_micros(channel: exp.Expr, windows: Mapping[str, timedelta]) -> exp.Expr:
    """The window of a message carried by ``channel`` in microseconds, as the policy's lookup gives it (``lms``
    and ``mms`` share ``sms``'s, other channels take ``"*"``; NULL, which covers nothing, without one)."""
    case = exp.Case()
    for name, window in sorted(windows.items()):
        if name != OTHER_CHANNELS:
            case = case.when(exp.EQ(this=channel.copy(), expression=_s(name)), _n(_micros(window)))
    if "sms" in windows:
        for kind in _SMS_KINDS:
            if kind not in windows:
                case = case.when(exp.EQ(this=channel.copy(), expression=_s(kind)), _n(_micros(windows["sms"])))
    if OTHER_CHANNELS in windows:
        case = case.else_(_n(_micros(windows[OTHER_CHANNELS])))
    return case if case.args.get("ifs") else (_n(_micros(windows[OTHER_CHANNELS])) if OTHER_CHANNELS in windows
                                              else exp.Null())


def _sub(query: exp.Query, name: str) -> exp.Expr:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(name, quoted=True)))


def _ref(name: str, alias: str) -> exp.Expr:
    """The table ``name`` (a plain identifier) as ``alias``."""
    return exp.alias_(exp.Table(this=exp.to_identifier(name)), alias, table=True, copy=False)


def _with(query: exp.Select, ctes: Sequence[tuple[str, exp.Query]]) -> exp.Select:
    # the caller's query and CTEs stay as they were (they are shared): copied once each, then attached in place;
    # a copying with_() per CTE deep-copied the growing query every time (and each CTE twice), most of the compile
    if not ctes:
        return query
    query = query.copy()
    for name, cte in ctes:
        query = query.with_(name, as_=cte.copy(), copy=False)
    return query


def conversions(events: exp.Expr, dialect: Dialect, since_us: int | None = None) -> exp.Select:
    """One row per conversion from the conversion events relation ``events`` (see the module's docstring):
    ``conv_id, customer, ts_us, revenue``.  One customer's events with one order id are one conversion, the
    earliest (at one instant the larger revenue); events without an order id are one each.  With ``since_us``
    the conversions before it are left out after the de-duplication (an order first recorded before it is no
    conversion, however often it is recorded again after it; events before it without an order id are dropped
    first, as they cannot matter).  ``conv_id`` numbers the conversions (unique within the query)."""
    order = exp.Nullif(this=_c("order_id", "e"), expression=_s(""))
    revenue = exp.Coalesce(this=_c("revenue", "e"), expressions=[exp.Literal.number(0)])
    present: list[exp.Expr] = [exp.Not(this=exp.Is(this=_c("customer", "e"), expression=exp.Null())),
                               exp.Not(this=exp.Is(this=_c("ts_us", "e"), expression=exp.Null()))]
    if since_us is not None:
        present.append(exp.or_(exp.GTE(this=_c("ts_us", "e"), expression=_n(since_us)),
                               exp.Not(this=exp.Is(this=order.copy(), expression=exp.Null()))))
    cleaned = exp.select(
        _alias(dialect.string_equality(_c("customer", "e")), "customer"), _alias(_c("ts_us", "e"), "ts_us"),
        _alias(exp.cast(revenue, exp.DataType.build(dialect.double_type, dialect=dialect.name)), "revenue"),
        _alias(dialect.string_equality(order), "order_id"),
    ).from_(events, copy=False).where(exp.and_(*present), copy=False)
    first = exp.Window(
        this=exp.RowNumber(),
        partition_by=[_c("customer", "o"), _c("order_id", "o")],
        order=exp.Order(expressions=[exp.Ordered(this=_c("ts_us", "o")),
                                     exp.Ordered(this=_c("revenue", "o"), desc=True)]),
    )
    # one pass: events without an order id share a partition whose ranks are ignored
    ranked = exp.select(_c("customer", "o"), _c("ts_us", "o"), _c("revenue", "o"), _c("order_id", "o"),
                        _alias(first, "rank_")).from_(_sub(cleaned, "o"), copy=False)
    kept: exp.Expr = exp.or_(exp.Is(this=_c("order_id", "r"), expression=exp.Null()),
                             exp.EQ(this=_c("rank_", "r"), expression=_n(1)))
    if since_us is not None:
        kept = exp.and_(kept, exp.GTE(this=_c("ts_us", "r"), expression=_n(since_us)))
    union = exp.select(_c("customer", "r"), _c("ts_us", "r"), _c("revenue", "r")).from_(_sub(ranked, "r"), copy=False).where(
        kept, copy=False)
    # any numbering will do; DuckDB numbers without sorting, which the engines that need an order cannot
    numbering = None if dialect.name == "duckdb" else exp.Order(expressions=[
        exp.Ordered(this=_c("customer", "u")), exp.Ordered(this=_c("ts_us", "u")), exp.Ordered(this=_c("revenue", "u"))])
    number = exp.Window(this=exp.RowNumber(), order=numbering)
    return exp.select(_alias(number, "conv_id"), _c("customer", "u"), _c("ts_us", "u"), _c("revenue", "u")).from_(
        _sub(union, "u"), copy=False)


@attrs.frozen
class AttributionQueries:
    """The report's queries over one set of input relations (see :func:`attribution_queries`).

    - ``summary``: one row per campaign (or cell of ``by``) with sends: ``campaign_id, *by, *SUMMARY_COLUMNS``.
    - ``daily``: attributed conversions per campaign and UTC day: ``campaign_id, day (days since 1970-01-01),
      conversions, revenue``.
    - ``members``: intention-to-treat outcomes per campaign, variant and group, or None without a members
      relation: ``campaign_id, variant, status, n, converted, revenue, revenue_squares``.
    - ``credits``: the attributed credits ``conv_id, customer, ts_us, revenue, message_key`` (tests compare them
      with the reference's, one by one).

    Each query carries the common table expressions it needs.  ``ctes`` lists them in order (``shopcrm_s`` the
    sends with their keys wrapped for exact comparison and the caller's extra columns, ``shopcrm_m`` the members
    likewise, ``shopcrm_cv`` the conversions, ...) and ``bare`` holds the same queries without them: an engine that
    gains from it creates each as a temporary table once (:meth:`staged`) and runs the bare queries."""

    by: tuple[str, ...]
    ctes: tuple[tuple[str, exp.Select], ...]
    bare: Mapping[str, exp.Select]

    @property
    def summary(self) -> exp.Select:
        return self.with_ctes(self.bare["summary"])

    @property
    def daily(self) -> exp.Select:
        return self.with_ctes(self.bare["daily"])

    @property
    def members(self) -> exp.Select | None:
        return self.with_ctes(self.bare["members"]) if "members" in self.bare else None

    @property
    def credits(self) -> exp.Select:
        return self.with_ctes(self.bare["credits"])

    def with_ctes(self, query: exp.Select) -> exp.Select:
        """``query`` (which may read any of :attr:`ctes` by name) with every common table expression attached."""
        return _with(query, self.ctes)


def attribution_queries(
    *, sends: exp.Expr, clicks: exp.Expr, events: exp.Expr, dialect: Dialect,
    policy: AttributionPolicy | None = None, by: Sequence[str] = (), members: exp.Expr | None = None,
    now_us: int | None = None, send_extra: Sequence[str] = (), member_extra: Sequence[str] = (),
    one_send_per_customer: bool = False, member_sizes: exp.Query | None = None, send_counts: str | None = None,
    rivals: exp.Expr | None = None, since_us: int | None = None,
) -> AttributionQueries:
    """The report's aggregates as queries over the relations ``sends``, ``clicks`` and conversion ``events`` (and
    ``members``), each a table or aliased subquery whose columns the module's docstring names.

    ``by`` breaks each campaign down by send dimensions (``variant``, ``step``, ``channel``, ``kind``), as
    :func:`shopcrm.measurement.summarise` does.  The members' outcomes count conversions in
    ``[exposure, exposure + measurement window)`` and before ``now_us`` (when given).  ``send_extra`` and
    ``member_extra`` name further columns of ``sends`` and ``members`` carried into ``shopcrm_s`` and ``shopcrm_m``
    (for the caller's own queries over them).  ``one_send_per_customer`` is the caller's promise that no customer
    has two sends in one campaign (it checked that every campaign's decisions are of one occurrence and step): a
    cell's recipients are then its sends, counted without the costly distinct count.  ``member_sizes``
    (``campaign_id, variant, status, n``: the members counted by the caller, e.g. straight from its table) lets
    ``members`` hold only the members who may have converted: ``bare["members_unique"]`` then takes its sizes
    from there (right only when no customer has two decisions in one campaign).  ``send_counts`` names a relation
    the caller adds to the common table expressions (``campaign_id, *by, sends, recipients, cost``: every send
    counted per cell, e.g. straight from its ledger): the summary takes the counts from there, and ``sends`` may
    then hold only the sends that can meet a click, a conversion or whatever else the caller joins them with.
    ``shopcrm_cv`` comes first among the common table expressions, so that ``sends`` may read it by that name.

    ``rivals`` (a relation aliased ``r0``, see the module's docstring) are the sends the report leaves out whose
    clicks compete for the last click (contract section 3: the winner is chosen among every covering click): a
    conversion whose winning click is a rival's goes to none of ``sends``.  Only the rivals of customers who have a
    send matter (no other customer's conversion can go to a send), so the caller may give just those, or just those
    clicked; a message among both ``sends`` and ``rivals`` must be the same send.  ``clicks`` then holds the rivals'
    clicks too.  ``since_us`` leaves out the conversions before it, after they are de-duplicated over every event of
    ``events`` (an order first recorded earlier is no conversion; see :func:`conversions`)."""
    policy = policy or AttributionPolicy()
    dims = _by(by)
    d = dialect

    def key(column: exp.Expression) -> exp.Expr:
        return d.string_equality(column)

    # sends, with keys wrapped for exact comparison (MySQL's default collations ignore case)
    # the labels a cell needs, and the carrying channel for the windows (narrow rows stage faster)
    labels = ("message_key", "campaign_id", "channel", *(n for n in ("variant", "step", "kind", "segment") if n in dims))
    s_cols = [_alias(key(_c(name, "s")), name) for name in labels]
    s_cols += [_alias(key(_c("customer", "s")), "customer"), _alias(_c("sent_us", "s"), "sent_us"),
               *([_alias(_c("cost", "s"), "cost")] if send_counts is None else []),  # else costs come counted
               *[_alias(_c(n, "s"), n) for n in send_extra]]
    sends_q = exp.select(*s_cols).from_(sends, copy=False)
    click_window = window_micros(_c("channel", "sx"), policy.click_windows)
    receipt_window = window_micros(_c("channel", "sx"), policy.receipt_windows)

    # the clicks that count: of a send, at or after its send time (with the send's cell, to count clicked sends)
    valid = exp.select(
        _alias(_c("message_key", "sx"), "message_key"), _alias(_c("customer", "sx"), "customer"),
        _alias(_c("clicked_us", "k"), "clicked_us"), _alias(_c("sent_us", "sx"), "sent_us"),
        _alias(click_window, "window_us"), *[_alias(_c(n, "sx"), f"cell_{n}") for n in ("campaign_id", *dims)],
    ).from_(_ref("shopcrm_s", "sx"), copy=False).join(
        exp.select(_alias(key(_c("message_key", "k0")), "message_key"), _alias(_c("clicked_us", "k0"), "clicked_us"))
        .from_(clicks, copy=False).subquery("k"),
        on=exp.and_(exp.EQ(this=_c("message_key", "k"), expression=_c("message_key", "sx")),
                    exp.GTE(this=_c("clicked_us", "k"), expression=_c("sent_us", "sx"))),
        join_type="inner", copy=False,
    )
    convs = conversions(events, d, since_us)

    # attributed: the latest covering click wins; then the later send; then the smaller message key
    covering = exp.and_(
        exp.EQ(this=_c("customer", "k"), expression=_c("customer", "cv")),
        exp.LTE(this=_c("clicked_us", "k"), expression=_c("ts_us", "cv")),
        exp.LT(this=_c("ts_us", "cv"), expression=exp.Add(this=_c("clicked_us", "k"), expression=_c("window_us", "k"))),
    )
    ranking = [exp.Ordered(this=_c("clicked_us", "k"), desc=True), exp.Ordered(this=_c("sent_us", "k"), desc=True),
               exp.Ordered(this=d.string_order(_c("message_key", "k")))]
    contest: exp.Expr = _ref("shopcrm_v", "k")
    rival_ctes: list[tuple[str, exp.Select]] = []
    if rivals is not None:
        # the rivals' valid clicks (of customers who have a send) compete with the sends' own; ``mine`` tells them
        # apart (and, last in the ranking, makes a message given among both the send it is)
        rival_sends = exp.select(
            *[_alias(key(_c(n, "r0")), n) for n in ("message_key", "customer", "channel")],
            _alias(_c("sent_us", "r0"), "sent_us"),
        ).from_(rivals, copy=False).where(exp.In(
            this=key(_c("customer", "r0")),
            query=exp.select(_c("customer", "sr")).from_(_ref("shopcrm_s", "sr"), copy=False).subquery()), copy=False)
        rival_clicks = exp.select(
            _alias(_c("message_key", "rx"), "message_key"), _alias(_c("customer", "rx"), "customer"),
            _alias(_c("clicked_us", "k"), "clicked_us"), _alias(_c("sent_us", "rx"), "sent_us"),
            _alias(window_micros(_c("channel", "rx"), policy.click_windows), "window_us"),
        ).from_(_sub(rival_sends, "rx"), copy=False).join(
            exp.select(_alias(key(_c("message_key", "k0")), "message_key"), _alias(_c("clicked_us", "k0"), "clicked_us"))
            .from_(clicks.copy(), copy=False).subquery("k"),
            on=exp.and_(exp.EQ(this=_c("message_key", "k"), expression=_c("message_key", "rx")),
                        exp.GTE(this=_c("clicked_us", "k"), expression=_c("sent_us", "rx"))),
            join_type="inner", copy=False,
        )
        rival_ctes.append(("shopcrm_r", rival_clicks))
        contested = ("message_key", "customer", "clicked_us", "sent_us", "window_us")
        contest = _sub(exp.union(
            exp.select(*[_c(n, "v1") for n in contested], _alias(_n(1), "mine")).from_(_ref("shopcrm_v", "v1"), copy=False),
            exp.select(*[_c(n, "r1") for n in contested], _alias(_n(0), "mine")).from_(_ref("shopcrm_r", "r1"), copy=False),
            distinct=False), "k")
        ranking.append(exp.Ordered(this=_c("mine", "k"), desc=True))
    winner = exp.Window(this=exp.RowNumber(), partition_by=[_c("conv_id", "cv")], order=exp.Order(expressions=ranking))
    candidates = exp.select(
        _alias(_c("conv_id", "cv"), "conv_id"), _alias(_c("customer", "cv"), "customer"),
        _alias(_c("ts_us", "cv"), "ts_us"), _alias(_c("revenue", "cv"), "revenue"),
        _alias(_c("message_key", "k"), "message_key"), _alias(winner, "rank_"),
        *([_alias(_c("mine", "k"), "mine")] if rivals is not None else []),
    ).from_(_ref("shopcrm_cv", "cv"), copy=False).join(contest, on=covering, join_type="inner", copy=False)
    first: exp.Expr = exp.EQ(this=_c("rank_", "w"), expression=_n(1))
    if rivals is not None:  # a rival's click won: no send gets the conversion
        first = exp.and_(first, exp.EQ(this=_c("mine", "w"), expression=_n(1)))
    won = exp.select(*[_c(n, "w") for n in ("conv_id", "customer", "ts_us", "revenue", "message_key")]).from_(
        _sub(candidates, "w"), copy=False).where(first, copy=False)
    credited = exp.select(
        _c("conv_id", "a"), _c("customer", "a"), _c("ts_us", "a"), _c("revenue", "a"),
        *[_alias(_c(n, "ss"), n) for n in ("campaign_id", *dims)],
    ).from_(_ref("shopcrm_w", "a"), copy=False).join(_ref("shopcrm_s", "ss"),
                                 on=exp.EQ(this=_c("message_key", "ss"), expression=_c("message_key", "a")),
                                 join_type="inner", copy=False)

    # influenced: every send whose receipt window covers the conversion, each conversion once per cell
    receipts = exp.select(
        *[_alias(_c(n, "sx"), n) for n in ("campaign_id", *dims)],
        _alias(_c("conv_id", "cv"), "conv_id"), _alias(_c("customer", "cv"), "customer"),
        _alias(_c("revenue", "cv"), "revenue"),
    ).distinct(copy=False).from_(_ref("shopcrm_s", "sx"), copy=False).join(_ref("shopcrm_cv", "cv"), on=exp.and_(
        exp.EQ(this=_c("customer", "cv"), expression=_c("customer", "sx")),
        exp.LTE(this=_c("sent_us", "sx"), expression=_c("ts_us", "cv")),
        exp.LT(this=_c("ts_us", "cv"), expression=exp.Add(this=_c("sent_us", "sx"), expression=receipt_window)),
    ), join_type="inner", copy=False)

    cell = ("campaign_id", *dims)

    def tally(relation: exp.Query, name: str, prefix: str) -> exp.Select:
        return exp.select(
            *[_c(n, name) for n in cell],
            _alias(exp.Count(this=exp.Star()), f"{prefix}_conversions"),
            _alias(exp.Sum(this=_c("revenue", name)), f"{prefix}_revenue"),
            _alias(exp.Count(this=exp.Distinct(expressions=[_c("customer", name)])), f"{prefix}_customers"),
        ).from_(_sub(relation, name), copy=False).group_by(*[_c(n, name) for n in cell], copy=False)

    # clicked sends per cell, from the few valid clicks (not a join of every send with them)
    clicked = exp.select(
        *[_alias(_c(f"cell_{n}", "v"), n) for n in cell],
        _alias(exp.Count(this=exp.Distinct(expressions=[_c("message_key", "v")])), "clicked"),
    ).from_(_ref("shopcrm_v", "v"), copy=False).group_by(*[_c(f"cell_{n}", "v") for n in cell], copy=False)
    sent = exp.select(
        *[_c(n, "s1") for n in cell],
        _alias(exp.Count(this=exp.Star()), "sends"),
        _alias(exp.Count(this=exp.Star()) if one_send_per_customer
               else exp.Count(this=exp.Distinct(expressions=[_c("customer", "s1")])), "recipients"),
        _alias(exp.Sum(this=_c("cost", "s1")), "cost"),
    ).from_(_ref("shopcrm_s", "s1"), copy=False).group_by(*[_c(n, "s1") for n in cell], copy=False)
    per_send = exp.select(
        *[_c(n, "sn") for n in cell], _c("sends", "sn"), _c("recipients", "sn"),
        _alias(exp.Coalesce(this=_c("clicked", "ck"), expressions=[_n(0)]), "clicked"), _c("cost", "sn"),
    ).from_(_sub(sent, "sn") if send_counts is None else _ref(send_counts, "sn"), copy=False).join(
        _sub(clicked, "ck"), on=exp.and_(*[exp.EQ(this=_c(n, "ck"), expression=_c(n, "sn")) for n in cell]),
        join_type="left", copy=False)

    def same_cell(left: str, right: str) -> exp.Expr:
        return exp.and_(*[exp.EQ(this=_c(n, left), expression=_c(n, right)) for n in cell])

    zero = exp.Literal.number(0)
    summary = exp.select(
        *[_c(n, "p") for n in cell], _c("sends", "p"), _c("recipients", "p"), _c("clicked", "p"),
        _alias(exp.Coalesce(this=_c("attributed_conversions", "at"), expressions=[zero.copy()]), "attributed_conversions"),
        _alias(exp.Coalesce(this=_c("attributed_revenue", "at"), expressions=[zero.copy()]), "attributed_revenue"),
        _alias(exp.Coalesce(this=_c("attributed_customers", "at"), expressions=[zero.copy()]), "attributed_customers"),
        _alias(exp.Coalesce(this=_c("influenced_conversions", "inf"), expressions=[zero.copy()]), "influenced_conversions"),
        _alias(exp.Coalesce(this=_c("influenced_revenue", "inf"), expressions=[zero.copy()]), "influenced_revenue"),
        _alias(exp.Coalesce(this=_c("influenced_customers", "inf"), expressions=[zero.copy()]), "influenced_customers"),
        _alias(exp.Coalesce(this=_c("cost", "p"), expressions=[zero.copy()]), "cost"),
    ).from_(_sub(per_send, "p"), copy=False).join(
        _sub(tally(exp.select("*").from_(_ref("shopcrm_a", "a0"), copy=False), "ac", "attributed"), "at"), on=same_cell("at", "p"),
        join_type="left", copy=False,
    ).join(
        _sub(tally(receipts, "rc", "influenced"), "inf"), on=same_cell("inf", "p"), join_type="left", copy=False,
    ).order_by(*[_c(n, "p") for n in cell], copy=False)

    floor_day = exp.IntDiv(this=_c("ts_us", "dc"), expression=_n(86_400_000_000))
    daily = exp.select(
        _c("campaign_id", "dc"), _alias(floor_day, "day"),
        _alias(exp.Count(this=exp.Star()), "conversions"), _alias(exp.Sum(this=_c("revenue", "dc")), "revenue"),
    ).from_(_ref("shopcrm_a", "dc"), copy=False).group_by(_c("campaign_id", "dc"), floor_day.copy(), copy=False).order_by(
        _c("campaign_id", "dc"), floor_day.copy(), copy=False)

    credits = exp.select(*[_c(n, "w") for n in ("conv_id", "customer", "ts_us", "revenue", "message_key")]).from_(
        _ref("shopcrm_w", "w"), copy=False)

    ctes: list[tuple[str, exp.Select]] = [("shopcrm_cv", convs), ("shopcrm_s", sends_q), ("shopcrm_v", valid),
                                          *rival_ctes, ("shopcrm_w", won), ("shopcrm_a", credited)]
    bare = {"summary": summary, "daily": daily, "credits": credits}
    if members is not None:
        m_cols = [_alias(d.string_equality(_c(n, "m0")), n) for n in ("campaign_id", "variant", "customer")]
        m_cols += [_alias(_c(n, "m0"), n) for n in ("status", "exposure_us", *member_extra)]
        ctes += [("shopcrm_m", exp.select(*m_cols).from_(members, copy=False)), ("shopcrm_x", _exposed(d))]
        bare["members"] = _members(d, policy, now_us)
        # when no customer has two decisions in one campaign the earliest exposure is the only one: a caller that
        # checks (``bare["repeated_members"]`` counts them) reads the members directly, without the ranking
        bare["members_unique"] = _members(d, policy, now_us, exposed="shopcrm_m", sizes=member_sizes)
        pair = [_c("campaign_id", "r"), _c("customer", "r")]
        bare["repeated_members"] = exp.select(_alias(exp.Count(this=exp.Star()), "n")).from_(_sub(
            exp.select(*pair).from_(_ref("shopcrm_m", "r"), copy=False).group_by(*[p.copy() for p in pair], copy=False).having(
                exp.GT(this=exp.Count(this=exp.Star()), expression=_n(1)), copy=False), "rp"), copy=False)
    return AttributionQueries(by=dims, ctes=tuple(ctes), bare=bare)


def _exposed(d: Dialect) -> exp.Select:
    """Each member's earliest exposure per campaign (at one instant planned before held out, then the smaller
    variant): ``campaign_id, variant, status, customer, exposure_us``."""
    first = exp.Window(
        this=exp.RowNumber(), partition_by=[_c("campaign_id", "m0"), _c("customer", "m0")],
        order=exp.Order(expressions=[exp.Ordered(this=_c("exposure_us", "m0")),
                                     exp.Ordered(this=_c("status", "m0"), desc=True),
                                     exp.Ordered(this=d.string_order(_c("variant", "m0")))]),
    )
    ranked = exp.select(
        *[_c(n, "m0") for n in ("campaign_id", "variant", "status", "customer", "exposure_us")], _alias(first, "rank_"),
    ).from_(_ref("shopcrm_m", "m0"), copy=False)
    return exp.select(*[_c(n, "m1") for n in ("campaign_id", "variant", "status", "customer", "exposure_us")]).from_(
        _sub(ranked, "m1"), copy=False).where(exp.EQ(this=_c("rank_", "m1"), expression=_n(1)), copy=False)


def _members(d: Dialect, policy: AttributionPolicy, now_us: int | None, exposed: str = "shopcrm_x",
             sizes: exp.Query | None = None) -> exp.Select:
    """Members per campaign, variant and group (of ``shopcrm_x``), and of them those who converted within the
    measurement window after exposure, with the sum and sum of squares of their revenue there.  Only members with a
    conversion are grouped one by one (a join of the exposed with the conversions), so the cost follows buyers."""
    inside = [
        exp.EQ(this=_c("customer", "cv"), expression=_c("customer", "m")),
        exp.LTE(this=_c("exposure_us", "m"), expression=_c("ts_us", "cv")),
        exp.LT(this=_c("ts_us", "cv"),
               expression=exp.Add(this=_c("exposure_us", "m"), expression=_n(_micros(policy.measurement_window)))),
    ]
    if now_us is not None:
        inside.append(exp.LT(this=_c("ts_us", "cv"), expression=_n(now_us)))
    member = [_c(n, "m") for n in ("campaign_id", "variant", "status", "customer")]
    buyers = exp.select(
        *member, _alias(exp.Sum(this=_c("revenue", "cv")), "revenue"),
    ).from_(_ref(exposed, "m"), copy=False).join(_ref("shopcrm_cv", "cv"), on=exp.and_(*inside), join_type="inner", copy=False).group_by(
        *[m.copy() for m in member], copy=False)
    cell = ("campaign_id", "variant", "status")
    bought = exp.select(
        *[_c(n, "b") for n in cell],
        _alias(exp.Count(this=exp.Star()), "converted"),
        _alias(exp.Sum(this=_c("revenue", "b")), "revenue"),
        _alias(exp.Sum(this=exp.Mul(this=_c("revenue", "b"), expression=_c("revenue", "b"))), "revenue_squares"),
    ).from_(_sub(buyers, "b"), copy=False).group_by(*[_c(n, "b") for n in cell], copy=False)
    if sizes is None:
        sizes = exp.select(*[_c(n, "x") for n in cell], _alias(exp.Count(this=exp.Star()), "n")).from_(
            _ref(exposed, "x"), copy=False).group_by(*[_c(n, "x") for n in cell], copy=False)
    zero = exp.Literal.number(0)
    return exp.select(
        *[_c(n, "z") for n in cell], _c("n", "z"),
        _alias(exp.Coalesce(this=_c("converted", "y"), expressions=[zero.copy()]), "converted"),
        _alias(exp.Coalesce(this=_c("revenue", "y"), expressions=[zero.copy()]), "revenue"),
        _alias(exp.Coalesce(this=_c("revenue_squares", "y"), expressions=[zero.copy()]), "revenue_squares"),
    ).from_(_sub(sizes, "z"), copy=False).join(
        _sub(bought, "y"), on=exp.and_(*[exp.EQ(this=_c(n, "y"), expression=_c(n, "z")) for n in cell]), join_type="left", copy=False,
    ).order_by(*[_c(n, "z") for n in cell], copy=False)
