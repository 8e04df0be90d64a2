"""Spark SQL: the same rules on tables or temporary views of a SparkSession."""

from __future__ import annotations

import warnings
from typing import Any

import attrs
from sqlglot import exp

from shopcrm.compiler import render
from shopcrm.errors import ShopCRMWarning
from shopcrm.mapping import CustomersMap, EventsMap, Mapping, resolve
from shopcrm.products._situations import ProductSituations
from shopcrm.products._sql import saved_policy, with_policy
from shopcrm.schema import Schema
from shopcrm.sources._base import Source, column_type
from shopcrm.sources._campaign_store import CampaignStore
from shopcrm.sources._store import Store

__all__ = ["NotDurableWarning", "SparkSource"]


class NotDurableWarning(ShopCRMWarning):
    """A shop keeps its campaigns, outbox and send ledger in memory only (a Spark shop without ``store=``)."""


#: the in-memory store is said once per process, not at every Spark shop of a test session
_warned = False


class SparkSource(Source):
    """Reads ``customers`` and ``events`` through ``spark.sql``.

    Set ``spark.sql.session.timeZone`` to ``UTC`` so that timestamps without a
    zone mean UTC, as everywhere in shopcrm.

    Spark has nowhere for the library to write: give a ``store`` (an operational database, see
    :class:`shopcrm.sources._store.Store`) to keep segments, settings, campaigns, the outbox, the send ledger,
    opt-outs and message events durably.  Without one they live in memory as long as this object (for tests
    and ad-hoc sessions), and the first campaign store asked for says so once per process
    (:class:`NotDurableWarning`).
    """

    dialect = "spark"
    #: issue 14: the thresholds of the product situations rules and triggers read (else the store's saved setting)
    product_situations: ProductSituations | None = None

    def __init__(
        self, spark: Any, *, customers: str = "customers", events: str = "events", mapping: Mapping | None = None,
        store: Store | None = None,
    ) -> None:
        if mapping is not None and (customers, events) != ("customers", "events"):
            raise ValueError("name the tables either with customers=/events= or in the mapping, not both")
        self.spark = spark
        #: issue 15: where the library's tables live (None: in memory)
        self.store = store
        if mapping is None and store is not None and (customers, events) == ("customers", "events"):
            saved = store.settings.get("mapping")  # the mapping saved with the store (Shop.from_spark(mapping=...))
            if saved is not None:
                mapping = Mapping.from_dict(saved)
        #: which tables and columns hold customers and events (:class:`shopcrm.mapping.Mapping`)
        self.mapping = mapping if mapping is not None else Mapping(CustomersMap(customers), EventsMap(events))
        self.customers_table = self.mapping.customers.table
        self.events_table = self.mapping.events.table
        self._schema: Schema | None = None

    def _columns(self, name: str) -> dict[str, str]:
        if not self.spark.catalog.tableExists(name):
            return {}
        return {field.name: field.dataType.typeName() for field in self.spark.table(name).schema.fields}

    def schema(self) -> Schema:
        if self._schema is None:
            customers, events = self._columns(self.customers_table), self._columns(self.events_table)
            products, history = (self._columns(t.table) for t in self.mapping.product_tables())
            tables = [t.name for t in self.spark.catalog.listTables()] if not customers or not events else []
            self._schema = resolve(
                self.mapping, customers, events, kind_of=column_type, tables=tables, where="this Spark session",
                products=products, product_history=history,
            )
            policy = self.product_situations
            if policy is None and self.store is not None:
                policy = saved_policy(self.store.settings.get("product_situations"))
            if policy is not None:
                history_table = with_policy(self._schema.product_history, policy)
                self._schema = attrs.evolve(self._schema, product_history=history_table)
        return self._schema

    def fetch(self, query: exp.Expression) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(render(query, self.dialect)).collect()]

    def campaign_store(self) -> CampaignStore:
        global _warned
        if self.store is None and not _warned:
            _warned = True
            warnings.warn(
                "this Spark shop keeps its campaigns, outbox and send ledger in memory: they are gone when the "
                "process ends, and a tick in another process plans everything again; give an operational database, "
                "e.g. Shop.from_spark(spark, store='postgresql://user@host/crm') (see docs/engines/spark.md)",
                NotDurableWarning, stacklevel=3,
            )
        return super().campaign_store()

    def __repr__(self) -> str:
        where = repr(self.store) if self.store is not None else "in memory, not durable"
        return f"SparkSource({self.customers_table}, {self.events_table}; library tables {where})"
