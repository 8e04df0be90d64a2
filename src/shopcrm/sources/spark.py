"""Spark SQL: the same rules on tables or temporary views of a SparkSession."""

from __future__ import annotations

from typing import Any

import attrs
from sqlglot import exp

from shopcrm.compiler import render
from shopcrm.mapping import CustomersMap, EventsMap, Mapping, resolve
from shopcrm.products._situations import ProductSituations
from shopcrm.products._sql import with_policy
from shopcrm.schema import Schema
from shopcrm.sources._base import Source, column_type

__all__ = ["SparkSource"]


class SparkSource(Source):
    """Reads ``customers`` and ``events`` through ``spark.sql``.

    Set ``spark.sql.session.timeZone`` to ``UTC`` so that timestamps without a
    zone mean UTC, as everywhere in shopcrm.
    """

    dialect = "spark"
    #: issue 14: the thresholds of the product situations rules and triggers read (a Spark shop keeps no settings)
    product_situations: ProductSituations | None = None

    def __init__(
        self, spark: Any, *, customers: str = "customers", events: str = "events", mapping: Mapping | None = None
    ) -> None:
        if mapping is not None and (customers, events) != ("customers", "events"):
            raise ValueError("name the tables either with customers=/events= or in the mapping, not both")
        self.spark = spark
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
            if self.product_situations is not None:
                history_table = with_policy(self._schema.product_history, self.product_situations)
                self._schema = attrs.evolve(self._schema, product_history=history_table)
        return self._schema

    def fetch(self, query: exp.Expression) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(render(query, self.dialect)).collect()]
