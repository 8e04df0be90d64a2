"""What a data source is: two tables, their schema, and a way to run compiled SQL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

from shopcrm.schema import ColumnType, Schema
from shopcrm.sources._campaign_store import CampaignStore, MemoryCampaignStore
from shopcrm.sources._library import LibraryStore, MemorySettingsStore, SettingsStore
from shopcrm.sources._membership_store import MembershipStore, MemoryMembershipStore, SQLMembershipStore

if TYPE_CHECKING:
    from shopcrm.sources._store import Store

__all__ = ["MemorySegmentStore", "SavedSegment", "SegmentStore", "Source", "column_type"]


@attrs.frozen
class SavedSegment:
    """A named rule kept by a shop."""

    name: str
    rule_json: str
    description: str | None
    updated_at: datetime


class SegmentStore(ABC):
    """Where a source keeps named segments (rules as JSON)."""

    @abstractmethod
    def put(self, segment: SavedSegment) -> None: ...

    @abstractmethod
    def get(self, name: str) -> SavedSegment | None: ...

    @abstractmethod
    def all(self) -> list[SavedSegment]: ...

    @abstractmethod
    def delete(self, name: str) -> bool: ...


class MemorySegmentStore(SegmentStore):
    """Segments kept in memory, for sources that have nowhere to write."""

    def __init__(self) -> None:
        self._items: dict[str, SavedSegment] = {}

    def put(self, segment: SavedSegment) -> None:
        self._items[segment.name] = segment

    def get(self, name: str) -> SavedSegment | None:
        return self._items.get(name)

    def all(self) -> list[SavedSegment]:
        return sorted(self._items.values(), key=lambda s: s.name)

    def delete(self, name: str) -> bool:
        return self._items.pop(name, None) is not None


class Source(ABC):
    """A shop's data: a customers and an events table, and an engine that runs SQL.

    Plugins register subclasses under the entry-point group ``shopcrm.sources``.
    """

    #: The sqlglot dialect the engine speaks; one of ``shopcrm.compiler.DIALECTS``.
    dialect: str = ""
    #: issue 15: the library's tables in an operational database of their own (``Shop.from_spark(spark,
    #: store=...)``); None: beside the source's own tables (the embedded and DB-API shops), or, for a source with
    #: nowhere to write (Spark without a store, plugins), in memory for as long as the object lives (tests only)
    store: Store | None = None

    @abstractmethod
    def schema(self) -> Schema:
        """The two tables and their column types."""

    @abstractmethod
    def fetch(self, query: exp.Expression) -> list[tuple[Any, ...]]:
        """Run a compiled query and return its rows."""

    def fetch_arrow(self, query: exp.Expression, columns: list[str]) -> Any:
        """Run a compiled query and return a pyarrow Table with these column names.

        Engines that speak Arrow (DuckDB) override this to skip Python tuples.
        """
        import pyarrow as pa

        rows = self.fetch(query)
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(columns)})

    def segment_store(self) -> SegmentStore:
        """Where named segments live: the store given, else in memory unless the source can store them."""
        if self.store is not None:
            return self.store.segments
        store = getattr(self, "_memory_segments", None)
        if store is None:
            store = MemorySegmentStore()
            self._memory_segments = store
        return store

    def campaign_store(self) -> CampaignStore:
        """Where campaigns, the outbox and planned occurrences live (a ``CampaignStore``): the store given, else
        in memory unless the source can store them."""
        if self.store is not None:
            return self.store.campaigns
        store = getattr(self, "_memory_campaigns", None)
        if store is None:
            store = MemoryCampaignStore()
            self._memory_campaigns = store
        return store

    def settings_store(self) -> SettingsStore:
        """Settings kept with the shop: the store given, else in memory unless the source can store them."""
        if self.store is not None:
            return self.store.settings
        settings = getattr(self, "_memory_settings", None)
        if settings is None:
            settings = MemorySettingsStore()
            self._memory_settings = settings
        return settings

    def membership_store(self) -> MembershipStore:
        """Where tracked segments keep their members (issue 15): the store given, else the library's tables when
        the source has a :class:`LibraryStore` (``self.library``), else in memory."""
        if self.store is not None:
            return self.store.memberships
        store = getattr(self, "_memberships", None)
        if store is None:
            library = getattr(self, "library", None)
            if isinstance(library, LibraryStore):
                store = SQLMembershipStore(library, insert=getattr(self, "_insert", None))
            else:
                store = MemoryMembershipStore()
            self._memberships = store
        return store

    def close(self) -> None:
        """Release the engine's resources (connections are the caller's to close; a store opened from a URL is
        closed)."""
        if self.store is not None:
            self.store.close()


_NAME_TO_TYPE: tuple[tuple[tuple[str, ...], ColumnType], ...] = (
    (("json",), ColumnType.JSON),
    (("bool",), ColumnType.BOOLEAN),
    (("timestamp", "datetime", "date", "time"), ColumnType.TIMESTAMP),
    (("char", "text", "string", "clob", "uuid", "enum"), ColumnType.STRING),  # before "long": MySQL's longtext
    (("int", "serial", "long", "short", "byte"), ColumnType.INTEGER),
    (("double", "float", "real", "numeric", "decimal", "number"), ColumnType.FLOAT),
)


def column_type(declared: str) -> ColumnType:
    """A column type from an engine's type name (``BIGINT``, ``timestamp with time zone``, ...)."""
    name = declared.lower()
    if name in ("tinyint(1)",):
        return ColumnType.BOOLEAN
    for needles, kind in _NAME_TO_TYPE:
        if any(n in name for n in needles):
            return kind
    return ColumnType.STRING if not name else ColumnType.OTHER
