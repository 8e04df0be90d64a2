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


@attrs.frozen
class Table:
    """A table: its (possibly schema-qualified) name and its columns' types."""

    name: str
    columns: Mapping[str, ColumnType] = attrs.field(converter=_as_dict)

    def __attrs_post_init__(self) -> None:
        for part in self.name.split("."):
            check_identifier(part, "table name")

    def has(self, column: str) -> bool:
        return column in self.columns

    def type_of(self, column: str) -> ColumnType:
        return self.columns[column]


@attrs.frozen
class Schema:
    """The customers and events tables a rule runs on.

    ``customers`` has ``customer_id`` and attribute columns; ``events`` has
    ``customer_id``, ``event``, ``ts`` and property columns (and optionally a JSON
    ``properties`` column).
    """

    customers: Table
    events: Table

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
