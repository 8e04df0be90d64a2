"""The Shop: gathers data from a source, calls the pure core, runs the SQL.

>>> shop = Shop.open(path=":memory:")
>>> shop.load_customers([{"customer_id": "c1", "age": 27}])
>>> shop.count({"attribute": "age", "gte": 20}, now=datetime(2026, 3, 1))
1
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from shopcrm.campaigns import Campaign, MessagingPolicy
from shopcrm.campaigns._models import stored_campaign
from shopcrm.campaigns._preview import Preview
from shopcrm.compiler import compile_counts, compile_members, render
from shopcrm.consents import ConsentRecord
from shopcrm.dsl import Rule, parse_rule, resolve_segments
from shopcrm.dsl._parse import RuleLike
from shopcrm.errors import RuleError
from shopcrm.explain import Explanation, explain
from shopcrm.lifecycle import LifecyclePolicy, LifecycleRow
from shopcrm.lifecycle._summary import LifecycleSummary
from shopcrm.mapping import Mapping as ShopMapping
from shopcrm.notebook import Breakdown, Overlap, Trend
from shopcrm.profile import CustomerProfile
from shopcrm.recipients import RecipientColumns
from shopcrm.reference import CustomerId
from shopcrm.schema import ColumnType, Schema
from shopcrm.sources._base import SavedSegment, Source
from shopcrm.sources._campaign_store import OutboxRow
from shopcrm.sources._membership_store import RefreshConflict
from shopcrm.ticking import TickResult
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:  # issue 12: checks
    from shopcrm.checks import CheckReport, SeenEvent
    from shopcrm.measurement import AttributionPolicy  # issue 13: attribution
    from shopcrm.products import ProductSituations  # issue 14: the catalog
    from shopcrm.program_lift import ProgramLift  # issue 13: the programme's lift
    from shopcrm.report import CampaignReport  # issue 13: the campaign report
    from shopcrm.sources._store import Store  # issue 15: the store

__all__ = ["Shop"]

_SEGMENT_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


class Shop:
    """A shop's customers and events on one engine, and its named segments."""

    # -- issue 12 (settings): settings stored with the shop, read-only opens, URLs, the library's tables --------
    def __init__(
        self,
        source: Source,
        *,
        lifecycle_policy: LifecyclePolicy | None = None,
        messaging_policy: MessagingPolicy | None = None,
        recipient_columns: RecipientColumns | None = None,
    ) -> None:
        """Settings given here apply to this Shop object (they are not saved); those not given are the ones saved
        with the shop (``shop.messaging_policy = ...`` or :meth:`save_settings`), else the defaults."""
        from shopcrm.sources._library import MemorySettingsStore, SettingsStore

        self.source = source
        own = getattr(source, "settings_store", None)
        #: named JSON documents kept with the shop (its ``shopcrm_settings`` table; memory for Spark)
        self.settings: SettingsStore = own() if callable(own) else MemorySettingsStore()
        try:
            #: thresholds of stages, moments, RFM and cycle risk, for shop.lifecycle and lifecycle/rfm/cycle rules
            self._lifecycle_policy = (lifecycle_policy or self._stored("lifecycle_policy", LifecyclePolicy)
                                      or LifecyclePolicy())
            #: consent, quiet hours, caps, ad lines and prices that campaigns obey (Korean defaults)
            self._messaging_policy = (messaging_policy or self._stored("messaging_policy", MessagingPolicy)
                                      or MessagingPolicy())
            #: which customer columns hold phone, e-mail, consents, ...
            self._recipient_columns = (recipient_columns or self._stored("recipient_columns", RecipientColumns)
                                       or RecipientColumns())
        except BaseException:  # a store this shopcrm cannot read: let go of the file
            source.close()
            raise

    def _stored(self, name: str, kind: Any) -> Any:
        document = self.settings.get(name)
        if document is None:
            return None
        try:
            return kind.from_dict(document)
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(
                f"the {name!r} setting stored with this shop cannot be read ({error}); assign a new one "
                f"(shop.{name} = ...) to replace it"
            ) from error

    @property
    def lifecycle_policy(self) -> LifecyclePolicy:
        """Thresholds of stages, moments, RFM and cycle risk; assigning one saves it with the shop."""
        return self._lifecycle_policy

    @lifecycle_policy.setter
    def lifecycle_policy(self, policy: LifecyclePolicy) -> None:
        self.settings.put("lifecycle_policy", policy.to_dict())
        self._lifecycle_policy = policy

    @property
    def messaging_policy(self) -> MessagingPolicy:
        """Consent, quiet hours, caps, ad lines and prices; assigning one saves it with the shop."""
        return self._messaging_policy

    @messaging_policy.setter
    def messaging_policy(self, policy: MessagingPolicy) -> None:
        self.settings.put("messaging_policy", policy.to_dict())
        self._messaging_policy = policy

    @property
    def recipient_columns(self) -> RecipientColumns:
        """Which customer columns hold phone, e-mail, consents, ...; assigning them saves them with the shop."""
        return self._recipient_columns

    @recipient_columns.setter
    def recipient_columns(self, columns: RecipientColumns) -> None:
        self.settings.put("recipient_columns", columns.to_dict())
        self._recipient_columns = columns

    # -- issue 13 (attribution): the attribution policy stored with the shop --------------------------------
    @property
    def attribution_policy(self) -> AttributionPolicy:
        """The conversion event, revenue property and the channels' click and receipt windows (the saved
        ``attribution_policy`` setting, else the defaults); assigning one saves it with the shop."""
        from shopcrm.measurement import AttributionPolicy

        policy = getattr(self, "_attribution_policy", None)
        if policy is None:
            policy = self._stored("attribution_policy", AttributionPolicy) or AttributionPolicy()
            self._attribution_policy = policy
        return policy

    @attribution_policy.setter
    def attribution_policy(self, policy: AttributionPolicy) -> None:
        self.settings.put("attribution_policy", policy.to_dict())
        self._attribution_policy = policy

    def save_settings(self) -> None:
        """Save the messaging policy, recipient columns and lifecycle policy in use (e.g. ones given to the
        constructor, which are not saved by themselves) with the shop."""
        self.settings.put("messaging_policy", self._messaging_policy.to_dict())
        self.settings.put("recipient_columns", self._recipient_columns.to_dict())
        self.settings.put("lifecycle_policy", self._lifecycle_policy.to_dict())

    # ----------------------------------------------------------- constructors
    @classmethod
    def open(
        cls, path: str | Path = ":memory:", *, read_only: bool = False, library_schema: str | None = None,
        library_prefix: str = "shopcrm_", messaging_policy: MessagingPolicy | None = None,
        recipient_columns: RecipientColumns | None = None, lifecycle_policy: LifecyclePolicy | None = None,
    ) -> Shop:
        """The embedded DuckDB shop; a file path persists data, segments, campaigns and settings.

        ``read_only=True`` opens the file for reading only (a notebook beside a dispatcher): every write raises
        ReadOnlyShopError, and a file another process holds is read as a snapshot taken now.  A writable open of
        a file another process holds raises ShopLockedError (DuckDB allows one writing process per file)."""
        from shopcrm.sources.duckdb_store import DuckDBSource

        return cls(DuckDBSource(path, read_only=read_only, library_schema=library_schema, library_prefix=library_prefix),
                   messaging_policy=messaging_policy, recipient_columns=recipient_columns,
                   lifecycle_policy=lifecycle_policy)

    @classmethod
    def connect(cls, url: str | Path, **options: Any) -> Shop:
        """A shop from a DuckDB path or a URL: ``postgresql://user:pw@host:5432/db``, ``mysql://...``,
        ``sqlite:///shop.db``, ``duckdb:///shop.duckdb``; ``options`` go to :meth:`open` / :meth:`from_dbapi`."""
        from shopcrm._connect import connect

        return connect(url, **options)

    @classmethod
    def from_dbapi(
        cls,
        connection: Any,
        *,
        dialect: str,
        customers: str = "customers",
        events: str = "events",
        types: dict[str, str] | None = None,
        mapping: ShopMapping | None = None,
        library_schema: str | None = None,
        library_prefix: str = "shopcrm_",
        store: Store | str | Path | None = None,
    ) -> Shop:
        """A shop over your own database through a DB-API connection (sqlite3, psycopg, PyMySQL).

        ``mapping`` names the shop's own tables and columns (see docs/existing-database.md); with
        one, the tables are read and checked at once (:class:`shopcrm.errors.MappingError`) and the
        mapping is saved with the shop, so that a later ``from_dbapi`` without one (and ``shopcrm --db URL``)
        reads the same tables.  The
        library's tables go into ``library_schema`` (PostgreSQL schema, MySQL database), named
        ``library_prefix`` + name; given a ``store`` (a URL, a DuckDB path or a :class:`shopcrm.Store`; issue 15),
        they live in that database instead, and the library writes nothing beside your tables.
        """
        from shopcrm.sources._store import store_from
        from shopcrm.sources.dbapi import DBAPISource

        kept = None if store is None else store_from(store)
        try:
            source = DBAPISource(connection, dialect=dialect, customers=customers, events=events, types=types,
                                 mapping=mapping, library_schema=library_schema, library_prefix=library_prefix,
                                 store=kept)
            if mapping is not None:
                source.schema()  # checked before it is kept
                source.settings_store().put("mapping", mapping.to_dict())  # reopened shops and the CLI read it
        except BaseException:
            if kept is not None and kept is not store:
                kept.close()
            raise
        return cls(source)

    # -- issue 15 (store): Spark and any source with the library's tables in an operational database -----------
    @classmethod
    def from_spark(
        cls, spark: Any, *, customers: str = "customers", events: str = "events", mapping: ShopMapping | None = None,
        store: Store | str | Path | None = None,
    ) -> Shop:
        """A shop over Spark tables or temporary views (``mapping`` as in :meth:`from_dbapi`).

        ``store`` keeps segments, settings, campaigns, the outbox, the send ledger, opt-outs and message events in
        an operational database: a URL (``postgresql://user:pw@host/crm``, ``mysql://...``, ``sqlite:///crm.db``,
        ``duckdb:///crm.duckdb``), a DuckDB file path, or ``shopcrm.Store(connection, dialect=...)``.  Without one
        they live in memory for as long as this Shop (tests and ad-hoc sessions only: nothing is durable).  With
        one, ``mapping`` is saved in the store, and a later ``from_spark(spark, store=...)`` without one reads
        the same tables."""
        from shopcrm.sources._store import store_from
        from shopcrm.sources.spark import SparkSource

        kept = None if store is None else store_from(store)
        try:
            source = SparkSource(spark, customers=customers, events=events, mapping=mapping, store=kept)
            if mapping is not None:
                source.schema()
                if kept is not None:
                    kept.settings.put("mapping", mapping.to_dict())
        except BaseException:
            if kept is not None and kept is not store:
                kept.close()
            raise
        return cls(source)

    @classmethod
    def from_source(cls, source: Source, *, store: Store | str | Path | None = None) -> Shop:
        """A shop over any source, e.g. one installed as a plugin; ``store`` as in :meth:`from_spark` (for a
        source that keeps no library tables of its own)."""
        if store is not None:
            from shopcrm.sources._store import store_from

            if getattr(source, "library", None) is not None or source.store is not None:
                raise ValueError(
                    f"a {type(source).__name__} keeps the library's tables itself (or has a store already); give "
                    "store= only to a source without its own (Spark, a plugin), or use Shop.from_dbapi(..., store=...)"
                )
            source.store = store_from(store)
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
        self._seen_cache = None  # issue 12 checks: the event names seen may change
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

    # -- issue 14 (catalog): products, their history and the product situations (docs/catalog.md) ------------
    def load_products(self, data: Any, *, at: datetime | None = None, progress: bool = False) -> int:
        """Add products (the inputs :meth:`load_customers` takes); they need ``product_id``, and the library reads
        ``name``, ``category``, ``price``, ``stock``, ``image_url``, ``product_url`` and ``available`` (other
        columns are kept).  A product id loaded again replaces its row.  The load also appends to the
        ``product_history`` table, at ``at`` (default: now, UTC), the price, stock and availability of every product
        that is new or changed; ``at`` before a loaded product's newest history row is refused (LoadError).
        Returns the rows loaded."""
        from shopcrm._progress import bar

        when = to_utc_naive(at) if at is not None else datetime.now(UTC).replace(tzinfo=None)
        with bar(progress, total=1, desc="load products", unit="table") as shown:
            rows = int(self._store().load("products", data, at=when))
            shown.step(f"{rows:,} rows")
        return rows

    def load_product_history(self, data: Any) -> int:
        """Append a product history the shop already keeps (change events or snapshots): rows of ``product_id``,
        ``ts`` and the ``price`` / ``stock`` / ``available`` the product had from ``ts`` on.  A (product_id, ts)
        the history already has is refused (LoadError).  Returns the rows loaded."""
        return int(self._store().load("product_history", data))

    def products(self) -> Any:
        """The catalog as a pyarrow Table sorted by product_id (ValueError when the shop has no products table)."""
        from sqlglot import exp

        table = self.source.schema().products
        if table is None:
            raise ValueError("this shop has no products table; load one with shop.load_products(...) or map the "
                             "shop's own (Mapping(products=ProductsMap(...)))")
        names = list(table.columns)
        query = exp.select(*[exp.column(n, table="p", quoted=True) for n in names]).from_(table.relation("p")).order_by(
            exp.column("product_id", table="p", quoted=True))
        return self.source.fetch_arrow(query, names)

    @property
    def product_situations_policy(self) -> ProductSituations:
        """The thresholds of the product situations that rules and scenario triggers read (price drop percent,
        low stock); assigning one saves it with the shop (a Spark shop keeps it for this Shop object)."""
        from shopcrm.products import ProductSituations
        from shopcrm.products._sql import saved_policy

        given = getattr(self.source, "product_situations", None)
        return given or saved_policy(self.settings.get("product_situations")) or ProductSituations()

    @product_situations_policy.setter
    def product_situations_policy(self, policy: ProductSituations) -> None:
        self.settings.put("product_situations", policy.to_dict())
        self.source.product_situations = policy  # type: ignore[attr-defined]
        if hasattr(self.source, "_schema"):
            self.source._schema = None  # the schema is read again: its history table carries the thresholds

    def product_situations(self, *, now: datetime, policy: Any = None, names: Sequence[str] | None = None) -> Any:
        """The derived product events before ``now`` (``cart_item_price_dropped``, ``wishlist_item_low_stock``,
        ``wishlist_item_back_in_stock``; ``names`` picks some) for every customer, as a pyarrow Table: columns
        customer_id, event, ts, product_id, price, old_price, new_price, percent, stock, name.  ``policy`` is a
        :class:`shopcrm.products.ProductSituations` (default: :attr:`product_situations_policy`)."""
        from sqlglot import exp

        from shopcrm.compiler._dialects import dialect_for
        from shopcrm.products import SITUATION_COLUMNS, SITUATIONS, situations_query
        from shopcrm.products._sql import history_relation

        schema = self.source.schema()
        if schema.product_history is None:
            raise ValueError("this shop keeps no product history; load products (shop.load_products) or map the "
                             "shop's history table (Mapping(product_history=ProductHistoryMap(...)))")
        products = schema.products.relation if schema.products is not None and schema.products.has("name") else None
        query = situations_query(schema.events.relation, history_relation(schema.product_history), now=to_utc_naive(now),
                                 dialect=dialect_for(self.source.dialect), policy=policy or self.product_situations_policy,
                                 products=products,
                                 names=names or SITUATIONS)
        ordered = exp.select("*").from_(query.subquery("shopcrm_situations")).order_by(
            *[exp.column(c, quoted=True) for c in ("customer_id", "event", "ts", "product_id")])
        return self.source.fetch_arrow(ordered, list(SITUATION_COLUMNS))

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
        if name in self.tracked_segments():  # issue 15: a tick would refresh a segment that no longer exists
            raise RuleError.at("", f"segment {name!r} is tracked; stop tracking it first with "
                                   f"shop.untrack_segment({name!r}) (which forgets its members' stays)")
        if not store.delete(name):
            raise KeyError(f"no segment named {name!r}")

    # --------------------------------------------------------------- counting
    def count(self, rule: RuleLike, *, now: datetime) -> int:
        """How many customers match ``rule`` as of ``now``."""
        return self.count_many([rule], now=now)[0]

    @overload
    def count_many(self, rules: Mapping[str, RuleLike], *, now: datetime) -> dict[str, int]: ...
    @overload
    def count_many(self, rules: Sequence[RuleLike], *, now: datetime) -> list[int]: ...
    def count_many(
        self, rules: Sequence[RuleLike] | Mapping[str, RuleLike], *, now: datetime
    ) -> list[int] | dict[str, int]:
        """Counts for many rules in one query that shares one pass over the events: a list for a list of
        rules, ``{name: count}`` for a ``{name: rule}`` dict (a dict is never read as one rule)."""
        from shopcrm.notebook import rules_given

        names, given = rules_given(rules, "count_many")
        if not given:
            return {} if names is not None else []
        self._warn_unseen(*given)
        resolved = [self._resolve(r) for r in given]
        query = compile_counts(
            resolved,
            self.source.schema(),
            now=now,
            dialect=self.source.dialect,
            lifecycle_policy=self.lifecycle_policy,
        )
        row = self.source.fetch(query)[0]
        counts = [int(v or 0) for v in row]
        return counts if names is None else dict(zip(names, counts, strict=True))

    def members(self, rule: RuleLike, *, now: datetime) -> list[CustomerId]:
        """The ids of the customers matching ``rule`` as of ``now``, sorted."""
        self._warn_unseen(rule)
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
        """One customer: attributes, lifecycle, the latest events (newest first), the current cart and wish list."""
        from sqlglot import exp

        from shopcrm.profile import CustomerProfile, current_cart, current_wishlist

        schema = self.source.schema()
        when = to_utc_naive(now)
        ident = exp.convert(customer_id)

        def rows(table: Any, alias: str, extra: list[exp.Expression], order: bool) -> list[dict[str, Any]]:
            names = list(table.columns)
            query = exp.select(*[exp.column(n, table=alias, quoted=True) for n in names]).from_(
                table.relation(alias)
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
            wishlist=tuple(current_wishlist(events, order_event=self.lifecycle_policy.order_event)),
            timezone=self.messaging_policy.timezone,
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
        if check:
            self._warn_campaign(model, stamp)
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
                return stored_campaign(document)
        known = [c for c, _, _ in self.source.campaign_store().campaigns()]
        raise KeyError(f"no campaign {campaign_id!r}; saved campaigns: {', '.join(known) or 'none'}")

    def campaigns(self) -> list[Campaign]:
        """Every saved campaign, by id."""
        return [stored_campaign(d) for _, d, _ in self.source.campaign_store().campaigns()]

    def delete_campaign(self, campaign_id: str) -> None:
        """Delete a campaign (what it planned stays in the outbox)."""
        if not self.source.campaign_store().delete_campaign(campaign_id):
            raise KeyError(f"no campaign {campaign_id!r}")

    def tick(self, *, now: datetime, dry_run: bool = False, progress: bool = False, full: bool = False) -> TickResult:
        """Plan every enabled campaign as of ``now`` and record the plan in the outbox (see
        :mod:`shopcrm.ticking`); a tick run twice plans nothing twice.  ``progress`` draws a bar on stderr.

        A scenario is read from its last tick on: customers with trigger or exit events since then (less
        ``messaging_policy.late_events_within``) and those with a step come due; ``full=True`` reads every
        scenario whole (after events older than that allowance were written by another pipeline).

        Tracked segments are refreshed first.  When another refresh is recording them at the same moment (a
        manual one, another tick), this tick's refresh is refused (:class:`RefreshConflict`) and the tick plans
        without it: the other records the entries and exits, and the next tick reads their events."""
        from shopcrm.ticking import tick

        if not dry_run and self.source.membership_store().tracked():  # issue 15: entries and exits first
            with suppress(RefreshConflict):  # another refresh records them (see above); nothing of this one was kept
                self.refresh_segments(now=now, full=full)
        return tick(self, now, dry_run=dry_run, progress=progress, full=full)

    # ---- issue 15: tracked segments (members with entries and exits) and tracked attributes
    def track_segment(self, name: str, *, now: datetime | None = None) -> None:
        """Keep the members of the saved segment ``name`` with when each entered and left (a row per stay);
        each :meth:`refresh_segments` (and each :meth:`tick`) then writes ``segment_entered`` /
        ``segment_exited`` events with ``segment`` = ``name``.  The first refresh records members silently."""
        from shopcrm.segment_tracking import check_trackable, segment_key

        check_trackable(self.source, self._resolve(self.segment(name)), name)
        self._seen_cache = None  # checks: segment_entered / segment_exited become events the shop writes
        store = self.source.membership_store()
        if segment_key(name) not in store.tracked():
            stamp = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
            store.put_tracked(segment_key(name), {"kind": "segment", "tracked_at": stamp.isoformat(sep=" ")})

    def untrack_segment(self, name: str) -> None:
        """Stop tracking ``name`` and drop its kept members and their history."""
        from shopcrm.segment_tracking import segment_key

        if not self.source.membership_store().forget(segment_key(name)):
            raise KeyError(f"segment {name!r} is not tracked; tracked: {', '.join(self.tracked_segments()) or 'none'}")

    def tracked_segments(self) -> list[str]:
        """The names of the tracked segments."""
        return [k.split(":", 1)[1] for k in self.source.membership_store().tracked() if k.startswith("segment:")]

    def track_attribute(self, column: str = "grade", *, now: datetime | None = None) -> None:
        """Keep each customer's last seen ``column`` (a customers column, e.g. the membership grade); a refresh
        that finds it changed writes a ``<column>_changed`` event with ``old_<column>`` and ``new_<column>``
        (``grade_changed``, ``old_grade``, ``new_grade``: what the ``grade_changed`` playbook sends on).  The
        first refresh records the values without events."""
        from shopcrm.segment_tracking import attribute_key

        columns = self.source.schema().customers.columns
        if column not in columns:
            raise KeyError(f"the customers table has no column {column!r}; its columns are {', '.join(sorted(columns))}")
        self._seen_cache = None  # checks: <column>_changed becomes an event the shop writes
        store = self.source.membership_store()
        if attribute_key(column) not in store.tracked():
            stamp = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
            store.put_tracked(attribute_key(column), {"kind": "attribute", "tracked_at": stamp.isoformat(sep=" ")})

    def untrack_attribute(self, column: str) -> None:
        """Stop tracking ``column`` and drop its last seen values."""
        from shopcrm.segment_tracking import attribute_key

        if not self.source.membership_store().forget(attribute_key(column)):
            raise KeyError(f"attribute {column!r} is not tracked")

    def refresh_segments(self, *, now: datetime, full: bool = False) -> Any:
        """Recompute the tracked segments and attributes at ``now`` (incrementally unless ``full``), record entries
        and exits, write their events, and return what changed (a :class:`shopcrm.SegmentRefresh`)."""
        from shopcrm.segment_tracking import refresh

        rules = {}
        for name in self.tracked_segments():
            if self.source.segment_store().get(name) is None:
                raise KeyError(f"segment {name!r} is tracked but no longer saved; save it again or "
                               f"shop.untrack_segment({name!r})")
            rules[name] = self._resolve(self.segment(name))
        return refresh(self.source, rules, now=now, full=full, lifecycle_policy=self.lifecycle_policy)

    def segment_stays(self, name: str) -> list[Any]:
        """Every stay in the tracked segment ``name``: ``Stay(segment, customer_id, entered_at, exited_at)``."""
        return self.source.membership_store().stays(name)

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

    # -- click tracking and one-click unsubscribe (issue 13, clicks workstream) ----------------------------
    def record_click(self, token: str, *, at: datetime) -> str | None:
        """A click on a tracked link (``{{ link(url) }}``): when ``token`` is one the policy's
        :class:`~shopcrm.tracking.TrackingPolicy` signed, for a message this shop planned, and names one of that
        message's links, records a ``message_clicked`` event (``customer_id``, ``ts=at``, ``message_key``,
        ``campaign_id``, ``channel`` and ``kind`` that carried it, ``link``: the target URL, ``code``: the link
        id) and returns the URL to redirect to.  Anything else (a forged, truncated or foreign token, an unknown
        message) records nothing and returns None.  A click before the message was sent is recorded too: the
        measurement counts only clicks at or after the send (docs/tracking.md)."""
        return self.record_clicks([(token, at)])[0]

    def record_clicks(self, clicks: Iterable[tuple[str, datetime]]) -> list[str | None]:
        """Many clicks at once (a batch from a click log or a queue): ``(token, at)`` pairs, each judged as
        :meth:`record_click` judges one, the valid ones written in one transaction with two reads of the store
        for the whole batch.  Returns each click's redirect target, or None where nothing was recorded."""
        from shopcrm.tracking import link_id

        given = list(clicks)
        tracking = self.messaging_policy.tracking
        found = [tracking.read(token, "click") if tracking is not None and isinstance(token, str) else None
                 for token, _ in given]
        keys = sorted({f.message_key for f in found if f is not None and f.link is not None})
        if not keys:
            return [None] * len(given)
        store = self.source.campaign_store()
        rows = store.outbox_by_keys(keys)
        sends = {r.key: r for r in store.sends(keys=keys)}
        out: list[str | None] = []
        events: list[dict[str, Any]] = []
        for (_, at), token in zip(given, found, strict=True):
            row = rows.get(token.message_key) if token is not None else None
            if token is None or token.link is None or row is None or row.status != "planned":
                out.append(None)
                continue
            link = token.link
            chain = row.chain
            sent = sends.get(row.key)
            index = sent.chain_index if sent is not None and sent.chain_index < len(chain) else 0
            ordered = [chain[index], *(item for i, item in enumerate(chain) if i != index)] if chain else []
            target = next((str(url) for item in ordered for url in item.get("links") or ()
                           if link_id(str(url)) == link), None)
            out.append(target)
            if target is not None:
                carrier = chain[index] if chain else {}
                events.append({
                    "customer_id": row.customer_id, "event": "message_clicked", "ts": to_utc_naive(at),
                    "message_key": row.key, "campaign_id": row.campaign_id, "channel": str(carrier.get("channel", "")),
                    "kind": str(carrier.get("kind", "")), "link": target, "code": link.hex(),
                    "purpose": row.purpose, "cost": 0.0, "provider_id": "", "reason": "",
                })
        if events:
            store.add_events(events)
        return out

    def record_unsubscribe(self, token: str, *, at: datetime) -> bool:
        """A one-click unsubscribe (RFC 8058) through the signed link of an e-mail: when ``token`` is valid and
        names a message this shop planned, its customer is opted out of advertising on that message's consent
        group (``email`` for an e-mail); True.  A bad token or an unknown message changes nothing: False.
        Unsubscribing twice is harmless (the opt-out stays)."""
        from shopcrm.campaigns._policy import CONSENT_GROUP

        tracking = self.messaging_policy.tracking
        found = tracking.read(token, "unsubscribe") if tracking is not None and isinstance(token, str) else None
        if found is None:
            return False
        store = self.source.campaign_store()
        row = store.outbox_by_keys([found.message_key]).get(found.message_key)
        if row is None or row.status != "planned":
            return False
        channels = [str(item.get("channel", "")) for item in row.chain]
        group = "email" if "email" in channels else CONSENT_GROUP.get(row.channel) or "all"
        store.add_opt_outs([(row.customer_id, group, to_utc_naive(at), f"one-click unsubscribe (message {row.key})")])
        return True

    def record_opt_out(self, customer_id: Any, group: str = "all", *, at: datetime | None = None, reason: str = "") -> None:
        """Record that a customer opted out of advertising on a consent group (``sms``, ``kakao``, ``email``,
        ``push``) or ``all``: from an 080 service, an unsubscribe link, a provider's report.  Planning and
        dispatching honour it at once, until the customer consents again (a consent timestamp after it)."""
        groups = ("all", "sms", "kakao", "email", "push")
        if group not in groups:
            raise ValueError(f"{group!r} is not a consent group; use one of {', '.join(groups)}")
        stamp = to_utc_naive(at) if at else datetime.now(UTC).replace(tzinfo=None)
        self.source.campaign_store().add_opt_outs([(self._customer_id(customer_id), group, stamp, reason)])

    def record_consent(
        self, customer_id: Any, group: str, *, granted: bool, how: str, by: str, text_version: str | None = None,
        at: datetime | None = None, now: datetime | None = None,
    ) -> ConsentRecord:
        """Keep the evidence of a consent to advertising given (``granted=True``) or withdrawn (K2): the consent
        group (``sms``, ``kakao``, ``email``, ``push``; ``all`` for a withdrawal of every group), ``how`` the
        customer did it, ``text_version`` the consent text they agreed to (required for a consent given), ``by``
        who records it, ``at`` when the customer did it (default ``now``, which defaults to the clock).

        The record is appended and never changed.  A withdrawal is an opt-out at once (K3, with its ``opted_out``
        event, K9); a consent given lifts an opt-out of its group made before it.  Whether a customer consents now
        is still the customers table's consent column (set it too): this is the proof of how it came to be."""
        from shopcrm.consents import consent_record

        clock = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
        record = consent_record(self._customer_id(customer_id), group, granted=granted, how=how, by=by,
                                text_version=text_version, at=to_utc_naive(at) if at else clock, recorded_at=clock)
        self.source.campaign_store().add_consents([record])
        return record

    def consent_log(self, customer_id: Any | None = None) -> list[ConsentRecord]:
        """The consent evidence :meth:`record_consent` kept (of one customer when given), oldest first."""
        store = self.source.campaign_store()
        return store.consents() if customer_id is None else store.consents([self._customer_id(customer_id)])

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
            table.relation("c")
        ).where(exp.EQ(this=exp.column("customer_id", table="c", quoted=True), expression=exp.convert(value))).limit(1)
        found = self.source.fetch(query)
        if not found:
            raise KeyError(f"no customer {customer_id!r} in {table.name!r}; an opt-out or a consent names a customer of that table")
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

    # ---- issue 13 item 4: the campaign report (shopcrm.report)
    def report(
        self, campaign: str | Sequence[str] | None = None, *, since: datetime | str | None = None,
        until: datetime | str | None = None, now: datetime | str, by: str | Sequence[str] = (),
        method: str | None = None, sequential: bool = False,
        segments: Mapping[str, RuleLike] | Sequence[str] | None = None, segments_at: datetime | str | None = None,
    ) -> CampaignReport:
        """What the campaigns' messages sent in ``[since, until)`` did, as of ``now``: the funnel (audience, held
        out, planned, sent, delivered, fallen back, failed), clicks and CTR, attributed and influenced conversions
        and revenue, cost, ROAS, cost per conversion, messages per purchase, opt-outs after a message, the
        holdout lift and the A/B test of the variants (``sequential=True``: always-valid intervals, safe to look at
        daily); per campaign (all when ``campaign`` is None) or per cell of ``by`` (``variant``, ``step``,
        ``channel``, ``kind``, ``segment``: the first of ``segments`` (names of saved segments or a ``{name: rule}``
        mapping; all saved ones by default) each recipient was in at ``segments_at``, by default ``since``).  The shop's engine computes it in SQL where the library's tables share its
        database (``method="reference"``: the pure Python reference instead).  See :mod:`shopcrm.report` and
        docs/measurement.md."""
        from shopcrm.report import build_report

        return build_report(self, campaign, since=since, until=until, now=now, by=by, method=method,
                            sequential=sequential, segments=segments, segments_at=segments_at)

    # ---- issue 13 (program lift): the global control group against everyone else (shopcrm.program_lift)
    def program_lift(
        self, *, since: datetime | str, until: datetime | str, now: datetime | str, method: str | None = None,
    ) -> ProgramLift:
        """The whole CRM programme's lift: the global control group (``MessagingPolicy.global_control_percent``)
        against every other customer, by their conversions in ``[since, until)`` before ``now``, with the holdout
        formulas (conversion rate and revenue per customer, intervals, incremental conversions and revenue, iROAS
        on the period's advertising cost) and the sample-ratio check.  ValueError when the shop has no global
        control group.  ``method`` forces where the group hash runs (``"sql"`` or ``"python"``; default: SQL when
        the engine has SHA-256).  See :mod:`shopcrm.program_lift` and docs/measurement.md."""
        from shopcrm.program_lift import build_program_lift

        return build_program_lift(self, since=since, until=until, now=now, method=method)

    # ---- issue 14 (recommend): product recommendations for a landing page (shopcrm.recommend)
    def recommend(
        self, customers: Any = None, *, k: int = 10, strategy: Any = "personal", now: datetime | str | None = None,
        exclude: Any = None, fallback: Sequence[Any] | None = None, in_stock: bool = False, has_image: bool = False,
        not_bought: bool = False, min_price: float | None = None, max_price: float | None = None,
    ) -> Any:
        """Up to ``k`` products for each customer, as a pyarrow Table (``customer_id, rank, product_id, score,
        strategy, name, price, category, image_url, product_url``), computed in ONE query.  ``customers``: one id, a
        list of ids, a rule (its members at ``now``) or None for everyone (the customers table's customers and any
        other with catalog events).  ``strategy``: ``personal`` (default),
        ``also_bought``, ``also_viewed``, ``viewed_not_bought``, ``trending``, ``popular`` (a name, a dict with
        options or a list: the whole fallback chain); a single strategy falls back (``personal`` -> ``also_bought``
        -> ``popular``; ``fallback=()`` for none) so that everyone gets k items.  Filters: ``in_stock``,
        ``has_image`` (both need the catalog), ``not_bought``, ``exclude`` (product ids, or ``{customer_id: ids}``),
        ``min_price`` / ``max_price``.  Only events before ``now`` (default: the clock) count.  See
        docs/products.md."""
        from shopcrm.recommend._shop import recommend_table

        return recommend_table(self, customers, k=k, strategy=strategy, now=now, exclude=exclude, fallback=fallback,
                               in_stock=in_stock, has_image=has_image, not_bought=not_bought, min_price=min_price,
                               max_price=max_price)

    # ---- notebook helpers (issue 12 item 7: shopcrm.notebook)
    def __repr__(self) -> str:
        source = self.source
        where = getattr(source, "path", None)
        tables = [getattr(source, "customers_table", "customers"), getattr(source, "events_table", "events")]
        return (f"<Shop {source.dialect}{f' {where!r}' if where else ''} ({type(source).__name__}): "
                f"customers={tables[0]!r}, events={tables[1]!r}>")

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"

    def members_frame(
        self, rule: RuleLike, *, now: datetime, columns: Sequence[str] | None = None, as_: str = "arrow"
    ) -> Any:
        """The customers matching ``rule`` with their attributes (one query), sorted by id, as a pyarrow
        Table, or a pandas/polars DataFrame (``as_="pandas"``/``"polars"``); ``columns`` picks attributes."""
        from shopcrm.notebook import members_frame

        return members_frame(self, rule, now=now, columns=columns, as_=as_)

    def breakdown(self, rule: RuleLike, by: str, *, now: datetime) -> Breakdown:
        """Audience size per value of the customer column ``by`` (one grouped query; no value: ``None``)."""
        from shopcrm.notebook import breakdown

        return breakdown(self, rule, by, now=now)

    def overlap(self, rules: Sequence[RuleLike] | Mapping[str, RuleLike], *, now: datetime) -> Overlap:
        """Customers in both of every pair of rules (``{name: rule}`` or a list), in one query."""
        from shopcrm.notebook import overlap

        return overlap(self, rules, now=now)

    def trend(
        self, rule: RuleLike, *, every: str = "1w", since: datetime | None = None, now: datetime, periods: int = 12
    ) -> Trend:
        """The audience size as of ``now``, ``now - every``, ... back to ``since`` (default ``periods`` steps),
        each exactly ``count(rule, now=t)``; one count query per instant."""
        from shopcrm.notebook import trend

        return trend(self, rule, every=every, since=since, now=now, periods=periods)

    # ---- end of notebook helpers
    def _count_resolved(self, rules: Sequence[Rule], now: datetime) -> list[int]:
        query = compile_counts(
            list(rules),
            self.source.schema(),
            now=now,
            dialect=self.source.dialect,
            lifecycle_policy=self.lifecycle_policy,
        )
        return [int(v or 0) for v in self.source.fetch(query)[0]]

    # ------------------------------------------------- issue 12: checks (silent zeros)
    #: the event names seen (``SELECT event, count(*), max(ts) ... GROUP BY event``) and when they were read
    _seen_cache: tuple[float, dict[str, SeenEvent]] | None = None
    #: how long an unseen name trusts the cache before it is read again (tables filled outside load_events)
    seen_events_ttl: float = 60.0

    def check(self, *, now: datetime | None = None, campaign: str | Campaign | None = None) -> CheckReport:
        """Every problem that would make a saved segment or campaign silently useless (see docs/checks.md):
        event names that never occur (with the closest name that does), triggers never seen, template
        variables without a column, channels without contact or consent columns, a policy without the
        advertising lines.  ``campaign`` (an id or a model) limits it to that campaign.  One grouped query."""
        from shopcrm.checks import ShopFacts, check_shop

        when = to_utc_naive(now) if now else datetime.now(UTC).replace(tzinfo=None)
        try:
            schema: Schema | None = self.source.schema()
        except ValueError:
            schema = None
        store = self.source.segment_store()
        model = self.campaign(campaign) if isinstance(campaign, str) else campaign
        facts = ShopFacts(
            seen_events=self._seen_events(fresh=True) if schema else {},
            customer_columns=tuple(schema.customers.columns) if schema else None,
            event_columns=_event_columns(schema),
            segments={s.name: parse_rule(s.rule_json) for s in store.all()},
            campaigns=[model] if model is not None else self.campaigns(),
            messaging_policy=self.messaging_policy,
            recipient_columns=self.recipient_columns,
            lifecycle_policy=self.lifecycle_policy,
            now=when,
        )
        report = check_shop(facts)
        if model is not None:  # the campaign's own findings and the policy's, not the segments'
            from shopcrm.checks import CheckReport

            report = CheckReport(tuple(f for f in report.findings if f.kind != "segment"))
        return report

    def _seen_events(self, *, fresh: bool = False) -> dict[str, SeenEvent]:
        """Event name -> count and latest time, read once and cached until load_events (or ``fresh``)."""
        import time

        from shopcrm.checks import SeenEvent, seen_events_query

        if self._seen_cache is not None and not fresh:
            return self._seen_cache[1]
        rows = self.source.fetch(seen_events_query(self.source.schema()))
        seen = {str(r[0]): SeenEvent(int(r[1]), to_utc_naive(r[2]) if r[2] is not None else None)
                for r in rows if r[0] is not None}
        if self.source.schema().product_history is not None:
            # the product situations are derived from carts, wish lists and the catalog's history at each instant:
            # a rule or a trigger may name them (their count is not read here: deriving them costs a query of its own)
            from shopcrm.products import SITUATIONS

            for name in SITUATIONS:
                seen.setdefault(name, SeenEvent(0, None))
        # issue 15: a refresh writes the events of tracked segments and attributes; a trigger may name them first
        tracked = self.source.membership_store().tracked()
        if any(key.startswith("segment:") for key in tracked):
            for name in ("segment_entered", "segment_exited"):
                seen.setdefault(name, SeenEvent(0, None))
        for key in tracked:
            if key.startswith("attribute:"):
                seen.setdefault(f"{key.split(':', 1)[1]}_changed", SeenEvent(0, None))
        self._seen_cache = (time.monotonic(), seen)
        return seen

    def _warn_unseen(self, *rules: RuleLike) -> None:
        """Warn (UnseenEventWarning) for each event a rule names that the events table never has; the seen
        names are cached, so only the first count of a shop pays for the one grouped query."""
        import time
        import warnings

        from shopcrm.checks import closest, rule_events, segment_references
        from shopcrm.errors import UnseenEventWarning

        try:
            models = [parse_rule(r) for r in rules]
            named = [n for m in models for n, _ in rule_events(self._resolve(m) if segment_references(m) else m,
                                                               self.lifecycle_policy)]
            seen = self._seen_events() if named else {}
        except ValueError:  # a malformed rule or an empty shop: counting reports it
            return
        missing = [n for n in dict.fromkeys(named) if n not in seen]
        if missing and self._seen_cache and time.monotonic() - self._seen_cache[0] > self.seen_events_ttl:
            seen = self._seen_events(fresh=True)
            missing = [n for n in missing if n not in seen]
        for name in missing:
            warnings.warn(UnseenEventWarning(name, closest(name, seen)), stacklevel=_caller_level())

    def _warn_campaign(self, model: Campaign, now: datetime) -> None:
        """After saving: a CampaignWarning when the campaign would never send, or not on every channel."""
        import warnings

        from shopcrm.checks import CheckReport
        from shopcrm.errors import CampaignWarning

        report = self.check(now=now, campaign=model)
        serious = CheckReport(tuple(f for f in report.findings if f.severity != "info"))
        if serious.findings:
            warnings.warn(CampaignWarning(model.id, serious), stacklevel=_caller_level())


def _event_columns(schema: Schema | None) -> tuple[str, ...]:
    """The columns an event may have: the events table's, and the product situations' when the catalog keeps a
    history (``event.old_price`` in a template of a scenario on ``cart_item_price_dropped``)."""
    if schema is None:
        return ()
    columns = tuple(schema.events.columns)
    if schema.product_history is not None:
        from shopcrm.products import SITUATION_COLUMNS

        columns += tuple(c for c in SITUATION_COLUMNS if c not in columns)
    return columns


def _caller_level() -> int:
    """The stacklevel of warnings.warn that names the first frame outside shopcrm (the user's call)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("shopcrm."):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def _uses(rule: Rule, name: str) -> bool:
    from shopcrm.dsl import InSegment, children

    if isinstance(rule, InSegment):
        return rule.in_segment == name
    return any(_uses(c, name) for c in children(rule))
