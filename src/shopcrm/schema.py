"""What the data looks like: the tables a rule reads and their column types.

Sources describe their data with a :class:`Schema`; the compiler checks every
field a rule names against it, so a missing field fails at compile time with the
columns that do exist.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs
from sqlglot import exp

__all__ = ["ColumnType", "Schema", "Table", "check_identifier"]

_IDENTIFIER = re.compile(r"^[^\W\d]\w*$")


class ColumnType(enum.Enum):
    """The kinds of values a column holds, as far as rules care."""

    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"
    OTHER = "other"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.INTEGER, ColumnType.FLOAT)


def check_identifier(name: str, what: str = "identifier") -> str:
    """``name`` if it is a plain identifier (letters, digits, underscores), else ValueError."""
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{name!r} is not a valid {what}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return name


def _as_dict(columns: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
    return dict(columns)


def _as_names(names: Mapping[str, str]) -> dict[str, str]:
    return dict(names)


def _as_values(values: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    return {column: dict(names) for column, names in values.items()}


@attrs.frozen
class Table:
    """A table: its (possibly schema-qualified) name and its columns' types, by the library's names.

    ``sources`` names the shop's column behind each library column named otherwise
    (``{"customer_id": "member_no"}``); ``values`` renames values of a column, library value to the
    shop's (``{"event": {"order_completed": "ORDER_PAID"}}``).  Both come from a
    :class:`shopcrm.mapping.Mapping`; :meth:`relation` applies them.
    """

    name: str
    columns: Mapping[str, ColumnType] = attrs.field(converter=_as_dict)
    sources: Mapping[str, str] = attrs.field(factory=dict, converter=_as_names, kw_only=True)
    values: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, converter=_as_values, kw_only=True)

    def __attrs_post_init__(self) -> None:
        for part in self.name.split("."):
            check_identifier(part, "table name")

    def has(self, column: str) -> bool:
        return column in self.columns

    def type_of(self, column: str) -> ColumnType:
        return self.columns[column]

    def reference(self) -> exp.Table:
        """The table itself, every part of its name quoted."""
        ident = [exp.to_identifier(p, quoted=True) for p in self.name.split(".")]
        if len(ident) == 1:
            return exp.Table(this=ident[0])
        if len(ident) == 2:
            return exp.Table(this=ident[1], db=ident[0])
        return exp.Table(this=ident[-1], db=ident[-2], catalog=ident[-3])

    def relation(self, alias: str) -> exp.Expression:
        """What a query reads ``FROM``, under ``alias``, with the library's column names and values.

        The table itself when the shop's names are the library's; otherwise a derived table
        ``(SELECT member_no AS customer_id, CASE ... END AS event, ... FROM activity_log) AS alias``.
        """
        if not self.sources and not self.values:
            return exp.alias_(self.reference(), alias, table=True)  # type: ignore[return-value]
        select = exp.select(*[exp.alias_(self._source(c), c, quoted=True) for c in self.columns]).from_(self.reference())
        return select.subquery(alias)

    def _source(self, column: str) -> exp.Expression:
        source = exp.column(self.sources.get(column, column), quoted=True)
        renamed = self.values.get(column)
        if not renamed:
            return source
        return exp.Case(
            ifs=[
                exp.If(this=exp.EQ(this=source.copy(), expression=exp.Literal.string(shop)), true=exp.Literal.string(library))
                for library, shop in renamed.items()
            ],
            default=source,
        )


@attrs.frozen
class Schema:
    """The customers and events tables a rule runs on, and the shop's catalog when it has one.

    ``customers`` has ``customer_id`` and attribute columns; ``events`` has
    ``customer_id``, ``event``, ``ts`` and property columns (and optionally a JSON
    ``properties`` column).
    """

    customers: Table
    events: Table
    #: the catalog (``product_id``, ``name``, ``category``, ``price``, ``stock``, ``image_url``, ``product_url``,
    #: ``available``; extra columns allowed), when the shop has one
    products: Table | None = attrs.field(default=None, kw_only=True)
    #: the catalog's history: one row per change of a product's state (``product_id``, ``ts`` and the
    #: ``price`` / ``stock`` / ``available`` it had from ``ts`` on), when the shop keeps one
    product_history: Table | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        for column in ("customer_id",):
            if not self.customers.has(column):
                raise ValueError(
                    f"the customers table {self.customers.name!r} has no {column!r} column; "
                    f"it has {sorted(self.customers.columns)}"
                )
        for column in ("customer_id", "event", "ts"):
            if not self.events.has(column):
                raise ValueError(
                    f"the events table {self.events.name!r} has no {column!r} column; "
                    f"it has {sorted(self.events.columns)}"
                )
        for table, required in ((self.products, ("product_id",)), (self.product_history, ("product_id", "ts"))):
            if table is None:
                continue
            for column in required:
                if not table.has(column):
                    raise ValueError(
                        f"the products table {table.name!r} has no {column!r} column; it has {sorted(table.columns)}"
                    )
