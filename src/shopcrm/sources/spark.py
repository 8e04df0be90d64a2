"""Spark SQL: the same rules on tables or temporary views of a SparkSession."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from shopcrm.compiler import render
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.sources._base import Source, column_type

__all__ = ["SparkSource"]


class SparkSource(Source):
    """Reads ``customers`` and ``events`` through ``spark.sql``.

    Set ``spark.sql.session.timeZone`` to ``UTC`` so that timestamps without a
    zone mean UTC, as everywhere in shopcrm.
    """

    dialect = "spark"

    def __init__(self, spark: Any, *, customers: str = "customers", events: str = "events") -> None:
        self.spark = spark
        self.customers_table = customers
        self.events_table = events
        self._schema: Schema | None = None

    def _table(self, name: str) -> Table:
        fields = self.spark.table(name).schema.fields
        columns = {}
        for field in fields:
            kind = field.dataType.typeName()
            columns[field.name] = ColumnType.TIMESTAMP if field.name == "ts" else column_type(kind)
        return Table(name, columns)

    def schema(self) -> Schema:
        if self._schema is None:
            self._schema = Schema(self._table(self.customers_table), self._table(self.events_table))
        return self._schema

    def fetch(self, query: exp.Expression) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(render(query, self.dialect)).collect()]
