"""The Shop: gathers data from a source, calls the pure core, runs the SQL.

>>> shop = Shop.open(path=":memory:")
>>> shop.load_customers([{"customer_id": "c1", "age": 27}])
>>> shop.count({"attribute": "age", "gte": 20}, now=datetime(2026, 3, 1))
1
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from shopcrm.campaigns import Campaign, MessagingPolicy
from shopcrm.campaigns._preview import Preview
from shopcrm.compiler import compile_counts, compile_members, render
from shopcrm.dsl import Rule, parse_rule, resolve_segments
from shopcrm.dsl._parse import RuleLike
from shopcrm.errors import RuleError
from shopcrm.explain import Explanation, explain
from shopcrm.lifecycle import LifecyclePolicy, LifecycleRow
from shopcrm.lifecycle._summary import LifecycleSummary
from shopcrm.profile import CustomerProfile
from shopcrm.recipients import RecipientColumns
from shopcrm.reference import CustomerId
from shopcrm.schema import ColumnType, Schema
from shopcrm.sources._base import SavedSegment, Source
from shopcrm.sources._campaign_store import OutboxRow
from shopcrm.ticking import TickResult
from shopcrm.timeline import to_utc_naive

__all__ = ["Shop"]

_SEGMENT_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


class Shop:
    """A shop's customers and events on one engine, and its named segments."""

    def __init__(
        self,
        source: Source,
        *,
        lifecycle_policy: LifecyclePolicy | None = None,
        messaging_policy: MessagingPolicy | None = None,
        recipient_columns: RecipientColumns | None = None,
    ) -> None:
        self.source = source
        #: thresholds of stages, moments, RFM and cycle risk, for shop.lifecycle and lifecycle/rfm/cycle rules
        self.lifecycle_policy = lifecycle_policy or LifecyclePolicy()
        #: consent, quiet hours, caps, ad lines and prices that campaigns obey (Korean defaults)
        self.messaging_policy = messaging_policy or MessagingPolicy()
        #: which customer columns hold phone, e-mail, consents, ...
        self.recipient_columns = recipient_columns or RecipientColumns()

    # ----------------------------------------------------------- constructors
    @classmethod
    def open(cls, path: str | Path = ":memory:") -> Shop:
        """The embedded DuckDB shop; a file path persists data and segments."""
        from shopcrm.sources.duckdb_store import DuckDBSource

        return cls(DuckDBSource(path))

    @classmethod
    def from_dbapi(
        cls,
        connection: Any,
        *,
        dialect: str,
        customers: str = "customers",
        events: str = "events",
        types: dict[str, str] | None = None,
    ) -> Shop:
        """A shop over your own database through a DB-API connection (sqlite3, psycopg, PyMySQL)."""
        from shopcrm.sources.dbapi import DBAPISource

        return cls(DBAPISource(connection, dialect=dialect, customers=customers, events=events, types=types))

    @classmethod
    def from_spark(cls, spark: Any, *, customers: str = "customers", events: str = "events") -> Shop:
        """A shop over Spark tables or temporary views."""
        from shopcrm.sources.spark import SparkSource

        return cls(SparkSource(spark, customers=customers, events=events))

    @classmethod
    def from_source(cls, source: Source) -> Shop:
        """A shop over any source, e.g. one installed as a plugin."""
        return cls(source)

    def __enter__(self) -> Shop:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the source (the embedded store's database)."""
        self.source.close()

    # ---------------------------------------------------------------- loading
    def _store(self) -> Any:
        from shopcrm.sources.duckdb_store import DuckDBSource

        if not isinstance(self.source, DuckDBSource):
            raise TypeError(
                f"loading data needs the embedded DuckDB shop (Shop.open); this shop reads a "
                f"{type(self.source).__name__}, whose tables are yours to fill"
            )
        return self.source

    def load_customers(self, data: Any, *, progress: bool = False) -> int:
        """Add customers (an iterable of dicts, a DataFrame, an Arrow table, or a Parquet/CSV path).

        A customer id loaded again replaces the earlier row. Returns the rows loaded.  ``progress`` draws a
        bar on stderr (elapsed time, then the rows loaded).
        """
        return self._load("customers", data, progress)

    def load_events(self, data: Any, *, progress: bool = False) -> int:
        """Append events; they need ``customer_id``, ``event`` and ``ts``. Returns the rows loaded."""
        return self._load("events", data, progress)

    def _load(self, table: str, data: Any, progress: bool) -> int:
        from shopcrm._progress import bar

        with bar(progress, total=1, desc=f"load {table}", unit="table") as shown:
            rows = int(self._store().load(table, data))
            shown.step(f"{rows:,} rows")
        return rows

    @property
    def schema(self) -> Schema:
        """The customers and events tables with their column types."""
        return self.source.schema()

    # --------------------------------------------------------------- segments
    def _resolve(self, rule: RuleLike) -> Rule:
        model = parse_rule(rule)
        store = self.source.segment_store()

        def lookup(name: str) -> Rule | None:
            saved = store.get(name)
            return parse_rule(saved.rule_json) if saved else None

        return resolve_segments(model, lookup)

    def save_segment(
        self, name: str, rule: RuleLike, description: str | None = None, *, now: datetime | None = None
    ) -> SavedSegment:
        """Save (or replace) a named rule after checking it, its references and its fields."""
        if not isinstance(name, str) or not _SEGMENT_NAME.match(name) or name != name.strip():
            raise ValueError(
                f"{name!r} is not a segment name: use 1 to 100 characters without control characters "
                "or surrounding spaces"
            )
        model = parse_rule(rule)
        store = self.source.segment_store()

        def lookup(other: str) -> Rule | None:
            if other == name:
                return model
            saved = store.get(other)
            return parse_rule(saved.rule_json) if saved else None

        from shopcrm.dsl import InSegment

        resolved = resolve_segments(InSegment(in_segment=name), lookup)
        try:
            schema = self.source.schema()
        except ValueError:
            schema = None
        if schema is not None:
            compile_members(
                resolved,
                schema,
                now=datetime(2000, 1, 1),
                dialect=self.source.dialect,
                lifecycle_policy=self.lifecycle_policy,
            )
        stamp = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
        saved = SavedSegment(name, model.to_json(), description, stamp)
        store.put(saved)
        return saved

    def segment(self, name: str) -> Rule:
        """The rule saved under ``name``."""
        saved = self.source.segment_store().get(name)
        if saved is None:
            known = [s.name for s in self.source.segment_store().all()]
            raise KeyError(f"no segment named {name!r}; saved segments: {', '.join(known) or 'none'}")
        return parse_rule(saved.rule_json)

    def segments(self) -> list[SavedSegment]:
        """Every saved segment, sorted by name."""
        return self.source.segment_store().all()

    def delete_segment(self, name: str) -> None:
        """Delete a saved segment; a segment other saved segments use cannot be deleted."""
        store = self.source.segment_store()
        users = [s.name for s in store.all() if s.name != name and _uses(parse_rule(s.rule_json), name)]
        if users:
            raise RuleError.at("", f"segment {name!r} is used by {', '.join(users)}; change those first")
        if not store.delete(name):
            raise KeyError(f"no segment named {name!r}")

    # --------------------------------------------------------------- counting
    def count(self, rule: RuleLike, *, now: datetime) -> int:
        """How many customers match ``rule`` as of ``now``."""
        return self.count_many([rule], now=now)[0]

    def count_many(self, rules: Sequence[RuleLike], *, now: datetime) -> list[int]:
        """Counts for many rules in one query that shares one pass over the events."""
        if not rules:
            return []
        resolved = [self._resolve(r) for r in rules]
        query = compile_counts(
            resolved,
            self.source.schema(),
            now=now,
            dialect=self.source.dialect,
            lifecycle_policy=self.lifecycle_policy,
        )
        row = self.source.fetch(query)[0]
        return [int(v or 0) for v in row]

    def members(self, rule: RuleLike, *, now: datetime) -> list[CustomerId]:
        """The ids of the customers matching ``rule`` as of ``now``, sorted."""
        query = compile_members(
            self._resolve(rule),
            self.source.schema(),
            now=now,
            dialect=self.source.dialect,
            lifecycle_policy=self.lifecycle_policy,
        )
        return sorted(r[0] for r in self.source.fetch(query))

    def to_sql(
        self, rule: RuleLike, *, now: datetime, dialect: str | None = None, pretty: bool = True
    ) -> str:
        """The members query, checked against this shop's tables, for its engine or another dialect."""
        target = dialect or self.source.dialect
        query = compile_members(
            self._resolve(rule),
            self.source.schema(),
            now=now,
            dialect=target,
            lifecycle_policy=self.lifecycle_policy,
        )
        return render(query, target, pretty=pretty)

    def explain(self, rule: RuleLike, *, now: datetime) -> Explanation:
        """The count at every node of the rule tree (one query) and the SQL."""
        model = parse_rule(rule)
        return explain(model, self._resolve, self._count_resolved, now=now, sql=self.to_sql(model, now=now))

    # -------------------------------------------------------------- lifecycle
    def lifecycle_rows(self, *, now: datetime, policy: LifecyclePolicy | None = None) -> list[LifecycleRow]:
        """Every customer's stage, moments, RFM and cycle status as of ``now`` (one query)."""
        from shopcrm.lifecycle._sql import compile_lifecycle, rows_from_sql

        query = compile_lifecycle(
            self.source.schema(), now=now, dialect=self.source.dialect, policy=policy or self.lifecycle_policy
        )
        return rows_from_sql(self.source.fetch(query))

    def lifecycle(self, *, now: datetime, policy: LifecyclePolicy | None = None) -> Any:
        """The lifecycle of every customer as a pyarrow Table (``.to_pandas()``, ``polars.from_arrow``).

        Columns: customer_id, stage, moments, orders, last_seen, recency_days, frequency, monetary,
        r_score, f_score, m_score, rfm_segment, cycle_status, expected_gap_days.
        """
        from shopcrm.lifecycle._sql import LIFECYCLE_COLUMNS, arrow_from_sql, compile_lifecycle

        query = compile_lifecycle(
            self.source.schema(), now=now, dialect=self.source.dialect, policy=policy or self.lifecycle_policy
        )
        table = arrow_from_sql(self.source.fetch_arrow(query, list(LIFECYCLE_COLUMNS)))
        return table.sort_by("customer_id")  # type: ignore[attr-defined]

    def rfm(self, *, now: datetime, policy: LifecyclePolicy | None = None) -> Any:
        """Recency, frequency, monetary, the 1-5 scores and the named segment of every customer with an order
        in the policy's RFM lookback, as a pyarrow Table sorted by customer_id (the RFM columns of
        :meth:`lifecycle`, from a smaller query that reads only the order events).

        Columns: customer_id, recency_days, frequency, monetary, r_score, f_score, m_score, rfm_segment.
        """
        from shopcrm.lifecycle._sql import RFM_COLUMNS, compile_rfm, rfm_arrow_from_sql

        query = compile_rfm(self.source.schema(), now=now, dialect=self.source.dialect, policy=policy or self.lifecycle_policy)
        table = rfm_arrow_from_sql(self.source.fetch_arrow(query, list(RFM_COLUMNS)))
        return table.sort_by("customer_id")  # type: ignore[attr-defined]

    def lifecycle_summary(self, *, now: datetime, policy: LifecyclePolicy | None = None) -> LifecycleSummary:
        """Customers per stage, per stage x moment (the 12 segments), per RFM segment and per cycle status."""
        from shopcrm.lifecycle._summary import summarize_table

        return summarize_table(self.lifecycle(now=now, policy=policy), to_utc_naive(now))

    def profile(self, customer_id: Any, *, now: datetime, timeline_limit: int = 50) -> CustomerProfile:
        """One customer: attributes, lifecycle, the latest events (newest first) and the current cart."""
        from sqlglot import exp

        from shopcrm.profile import CustomerProfile, current_cart

        schema = self.source.schema()
        when = to_utc_naive(now)
        ident = exp.convert(customer_id)

        def rows(table: Any, alias: str, extra: list[exp.Expression], order: bool) -> list[dict[str, Any]]:
            names = list(table.columns)
            query = exp.select(*[exp.column(n, table=alias, quoted=True) for n in names]).from_(
                exp.alias_(exp.to_table(table.name, quoted=True), alias, table=True)
            ).where(exp.and_(exp.EQ(this=exp.column("customer_id", table=alias, quoted=True), expression=ident), *extra))
            if order:
                query = query.order_by(exp.Ordered(this=exp.column("ts", table=alias, quoted=True), desc=True))
            return [dict(zip(names, r, strict=True)) for r in self.source.fetch(query)]

        found = rows(schema.customers, "c", [], order=False)
        if not found:
            raise KeyError(f"no customer {customer_id!r} in {schema.customers.name!r}")
        from shopcrm.compiler._dialects import dialect_for

        quirks = dialect_for(self.source.dialect)
        before_now = exp.LT(this=quirks.timestamp_column(exp.column("ts", table="e", quoted=True)), expression=quirks.timestamp_literal(when))
        events = rows(schema.events, "e", [before_now], order=True)
        for event in events:
            event["ts"] = to_utc_naive(event["ts"])
        lifecycle = self._lifecycle_of(found[0]["customer_id"], when)
        return CustomerProfile(
            customer_id=found[0]["customer_id"],
            now=when,
            attributes=found[0],
            lifecycle=lifecycle,
            timeline=tuple(events[:timeline_limit]),
            cart=tuple(current_cart(events, self.lifecycle_policy)),
        )

    def _lifecycle_of(self, customer_id: Any, now: datetime) -> LifecycleRow:
        """One customer's lifecycle row: the shop-wide query (RFM ranks need everyone), one row returned."""
        from sqlglot import exp

        from shopcrm.lifecycle._sql import compile_lifecycle, rows_from_sql

        query = compile_lifecycle(self.source.schema(), now=now, dialect=self.source.dialect, policy=self.lifecycle_policy)
        ctes = query.args.pop("with_")
        one = exp.select("*").from_(query.subquery("shopcrm_lifecycle")).where(
            exp.EQ(this=exp.column("customer_id"), expression=exp.convert(customer_id))
        )
        one.set("with_", ctes)
        return rows_from_sql(self.source.fetch(one))[0]

    # -------------------------------------------------------------- campaigns
    def save_campaign(
        self, campaign: Campaign | dict[str, Any] | str, *, now: datetime | None = None, check: bool = True,
    ) -> Campaign:
        """Check and save (or replace) a campaign; it takes part in ticks from ``now`` (a scenario reacts only
        to trigger events after it was saved).

        The check compiles the audience against the shop's tables and renders every variant on every
        channel of the chain for sample customers (audience members and the customers with the longest
        values of the fields the templates read): a missing variable, an over-long text or a policy that
        lacks the advertising lines is a :class:`~shopcrm.errors.CampaignError` now, not at send time.
        """
        from shopcrm.campaigns import parse_campaign
        from shopcrm.campaigns._validate import check_templates

        model = parse_campaign(campaign)
        stamp = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
        if check:
            from shopcrm.errors import CampaignError
            from shopcrm.ticking import sample_recipients

            try:
                audience = self._resolve(model.audience)
                compile_members(audience, self.source.schema(), now=stamp, dialect=self.source.dialect,
                                lifecycle_policy=self.lifecycle_policy)
            except RuleError as error:
                raise CampaignError([(f"audience.{p}" if p else "audience", m) for p, m in error.problems]) from None
            samples, event, contexts = sample_recipients(self, model, stamp)
            problems = check_templates(model, samples, now=stamp, policy=self.messaging_policy, event=event, contexts=contexts)
            if problems:
                raise CampaignError(problems)
        self.source.campaign_store().put_campaign(model.id, model.to_json(), stamp)
        return model

    def enable_playbook(self, name: str, *, now: datetime | None = None, **changes: Any) -> Campaign:
        """Save playbook ``name`` (see :data:`shopcrm.campaigns.PLAYBOOKS`) with ``changes``, checked like
        :meth:`save_campaign`."""
        from shopcrm.campaigns import playbook

        return self.save_campaign(playbook(name, **changes), now=now)

    def campaign(self, campaign_id: str) -> Campaign:
        """The campaign saved under ``campaign_id``."""
        for found, document, _ in self.source.campaign_store().campaigns():
            if found == campaign_id:
                return Campaign.model_validate_json(document)
        known = [c for c, _, _ in self.source.campaign_store().campaigns()]
        raise KeyError(f"no campaign {campaign_id!r}; saved campaigns: {', '.join(known) or 'none'}")

    def campaigns(self) -> list[Campaign]:
        """Every saved campaign, by id."""
        return [Campaign.model_validate_json(d) for _, d, _ in self.source.campaign_store().campaigns()]

    def delete_campaign(self, campaign_id: str) -> None:
        """Delete a campaign (what it planned stays in the outbox)."""
        if not self.source.campaign_store().delete_campaign(campaign_id):
            raise KeyError(f"no campaign {campaign_id!r}")

    def tick(self, *, now: datetime, dry_run: bool = False, progress: bool = False) -> TickResult:
        """Plan every enabled campaign as of ``now`` and record the plan in the outbox (see
        :mod:`shopcrm.ticking`); a tick run twice plans nothing twice.  ``progress`` draws a bar on stderr."""
        from shopcrm.ticking import tick

        return tick(self, now, dry_run=dry_run, progress=progress)

    def dispatch(self, channels: Mapping[str, Any], *, drain: bool = False, **options: Any) -> Any:
        """Deliver the planned messages that are due through ``channels`` (chain channel -> Channel, or the
        plugin configuration :func:`shopcrm.plugins.channels_from_config` reads); see
        :class:`shopcrm.dispatching.Dispatcher` for ``options``.  ``drain`` also waits for retries and
        deferrals.  Returns a :class:`~shopcrm.dispatching.DispatchReport`."""
        import asyncio

        from shopcrm.channels import Channel
        from shopcrm.dispatching import Dispatcher
        from shopcrm.plugins import channels_from_config

        built = dict(channels) if all(isinstance(c, Channel) for c in channels.values()) else channels_from_config(dict(channels))

        async def run() -> Any:
            try:
                return await Dispatcher(self, built, **options).run(drain=drain)
            finally:
                for channel in {id(c): c for c in built.values()}.values():
                    await channel.aclose()

        return asyncio.run(run())

    def record_deliveries(self, reports: Sequence[Any], *, now: datetime | None = None) -> dict[str, int]:
        """Apply delivery reports (``shopcrm.channels.DeliveryReport``, e.g. from
        ``SolapiChannel.delivery_reports(webhook_body)``): delivered messages are marked so, undelivered ones
        fall back along their chain or fail; see :meth:`shopcrm.dispatching.Dispatcher.record_deliveries`."""
        from shopcrm.dispatching import Dispatcher

        when = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
        return Dispatcher(self, {}, clock=lambda: when).record_deliveries(list(reports))

    def record_opt_out(self, customer_id: Any, group: str = "all", *, at: datetime | None = None, reason: str = "") -> None:
        """Record that a customer opted out of advertising on a consent group (``sms``, ``kakao``, ``email``,
        ``push``) or ``all``: from an 080 service, an unsubscribe link, a provider's report.  Planning and
        dispatching honour it at once, until the customer consents again (a consent timestamp after it)."""
        groups = ("all", "sms", "kakao", "email", "push")
        if group not in groups:
            raise ValueError(f"{group!r} is not a consent group; use one of {', '.join(groups)}")
        stamp = to_utc_naive(at) if at else datetime.now(UTC).replace(tzinfo=None)
        self.source.campaign_store().add_opt_outs([(self._customer_id(customer_id), group, stamp, reason)])

    def _customer_id(self, customer_id: Any) -> Any:
        """``customer_id`` as the customers table holds it (``"1"`` for a text column given ``1``, ``1`` for an
        integer column given ``"1"``); a KeyError when no customer has it."""
        from sqlglot import exp

        try:
            table = self.source.schema().customers
        except ValueError:
            raise KeyError(f"no customer {customer_id!r}: the shop has no customers table yet") from None
        kind = table.type_of("customer_id")
        value = customer_id
        if isinstance(value, bool) or value is None:
            raise KeyError(f"{customer_id!r} is not a customer id")
        if kind == ColumnType.INTEGER:
            if (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,19}\s*", value)) or (isinstance(value, float) and value.is_integer()):
                value = int(value)
            if not isinstance(value, int):
                raise KeyError(f"no customer {customer_id!r}: the ids in {table.name!r} are integers")
        elif kind == ColumnType.STRING and isinstance(value, int | float):
            value = str(int(value)) if isinstance(value, int) or value.is_integer() else str(value)
        query = exp.select(exp.column("customer_id", table="c", quoted=True)).from_(
            exp.alias_(exp.to_table(table.name, quoted=True), "c", table=True)
        ).where(exp.EQ(this=exp.column("customer_id", table="c", quoted=True), expression=exp.convert(value))).limit(1)
        found = self.source.fetch(query)
        if not found:
            raise KeyError(f"no customer {customer_id!r} in {table.name!r}; an opt-out names a customer of that table")
        return found[0][0]

    def outbox(
        self, *, campaign_id: str | None = None, status: str | None = "planned", since: datetime | None = None,
    ) -> list[OutboxRow]:
        """Recorded decisions, by due time: planned messages (``status="planned"``), holdouts, suppressions
        (``status=None``: all)."""
        return self.source.campaign_store().outbox(
            campaign_ids=None if campaign_id is None else [campaign_id], since=since and to_utc_naive(since), status=status,
        )

    def preview(self, campaign: Campaign | dict[str, Any] | str, *, now: datetime, progress: bool = False) -> Preview:
        """The audience funnel of a campaign (saved id, model, dict or JSON) if sent at ``now``: per channel of
        the chain, the audience -> with a contact -> allowed -> not capped -> sendable now / deferred ->
        after holdout, and what the planner would plan through the whole chain with its cost.  ``progress``
        draws a bar on stderr."""
        from shopcrm.campaigns import parse_campaign
        from shopcrm.ticking import preview_campaign

        if isinstance(campaign, str) and not campaign.lstrip().startswith("{"):
            model = self.campaign(campaign)
        else:
            model = parse_campaign(campaign)
        return preview_campaign(self, model, to_utc_naive(now), progress=progress)

    def _count_resolved(self, rules: Sequence[Rule], now: datetime) -> list[int]:
        query = compile_counts(
            list(rules),
            self.source.schema(),
            now=now,
            dialect=self.source.dialect,
            lifecycle_policy=self.lifecycle_policy,
        )
        return [int(v or 0) for v in self.source.fetch(query)[0]]


def _uses(rule: Rule, name: str) -> bool:
    from shopcrm.dsl import InSegment, children

    if isinstance(rule, InSegment):
        return rule.in_segment == name
    return any(_uses(c, name) for c in children(rule))
