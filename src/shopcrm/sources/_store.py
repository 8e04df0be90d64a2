"""A durable store beside any engine: the library's operational tables (segments, settings, campaigns, the
outbox, planned occurrences, the send ledger, opt-outs and message events) in a database of their own, while
the shop's customers and events are read on another engine (Spark, or any source).

``Shop.from_spark(spark, store="postgresql://crm@db/crm")`` reads customers and events on Spark and keeps
everything the library writes in PostgreSQL.  A store is named by a URL (``postgresql://``, ``mysql://``,
``sqlite:///path``, ``duckdb:///path``), a DuckDB file path, or given as ``Store(connection, dialect=...)``
over an open DB-API connection (sqlite3, psycopg, PyMySQL) or DuckDB connection.

Which queries may join the library's tables with the shop's events in one statement is decided by
:func:`library_beside`: only when they share one connection.  Everything else reads the store through its
``CampaignStore`` (the report and the programme's lift compute in Python then).
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

from shopcrm.sources._library import LibraryStore, SettingsStore

if TYPE_CHECKING:
    from shopcrm.sources._base import SegmentStore, Source
    from shopcrm.sources._campaign_store import CampaignStore
    from shopcrm.sources._membership_store import MembershipStore

__all__ = ["STORE_DIALECTS", "Store", "library_beside", "library_of", "store_from"]

#: the dialects a store may be kept in (aliases accepted) -> the library's name for each
STORE_DIALECTS = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql",
                  "sqlite": "sqlite", "duckdb": "duckdb"}


def _dialect(dialect: str) -> str:
    found = STORE_DIALECTS.get(str(dialect).lower())
    if found is None:
        raise ValueError(
            f"a store cannot be kept in dialect {dialect!r}; use one of postgres, mysql (or mariadb), sqlite or duckdb"
        )
    return found


class Store:
    """The library's tables in an operational database, over an open connection (``dialect`` says which).

    ``library_schema`` / ``library_prefix`` place the tables as for :meth:`shopcrm.Shop.from_dbapi`.  A store
    made from a URL by :func:`store_from` owns its connection (``close()`` closes it); one made here over your
    connection leaves it open.  Several shops may share one Store object."""

    def __init__(
        self, connection: Any, *, dialect: str, library_schema: str | None = None, library_prefix: str = "shopcrm_",
        owned: bool = False,
    ) -> None:
        self.dialect = _dialect(dialect)
        self.connection = connection
        self.owned = owned
        self._holder: Any
        self._campaigns: CampaignStore | None = None
        if self.dialect == "duckdb":
            import duckdb

            from shopcrm.sources.duckdb_store import DuckDBSource

            if not isinstance(connection, duckdb.DuckDBPyConnection):
                raise TypeError(
                    f"a duckdb store needs a duckdb connection (duckdb.connect(path)), not {type(connection).__name__}"
                )
            self._holder = DuckDBSource(connection=connection, library_schema=library_schema,
                                        library_prefix=library_prefix)
        else:
            from shopcrm.sources.dbapi import DBAPISource

            if not callable(getattr(connection, "cursor", None)):
                raise TypeError(
                    f"a store needs an open DB-API connection (sqlite3, psycopg, PyMySQL) or a URL, not "
                    f"{type(connection).__name__}"
                )
            self._holder = DBAPISource(connection, dialect=self.dialect, library_schema=library_schema,
                                       library_prefix=library_prefix)

    @property
    def library(self) -> LibraryStore:
        """The library's tables in this store (their names, version, and the one ``ensure`` creating them all);
        stores of further tables (segment membership, ...) reach the database through it."""
        library: LibraryStore = self._holder.library
        return library

    @property
    def segments(self) -> SegmentStore:
        """Named segments (``shopcrm_segments``)."""
        store: SegmentStore = self._holder.segment_store()
        return store

    @property
    def settings(self) -> SettingsStore:
        """Settings kept with the shop (``shopcrm_settings``)."""
        store: SettingsStore = self._holder.settings_store()
        return store

    @property
    def memberships(self) -> MembershipStore:
        """Tracked segments' members, their stays and tracked attributes' last values (issue 15)."""
        memberships: MembershipStore = self._holder.membership_store()
        return memberships

    @property
    def campaigns(self) -> CampaignStore:
        """Campaigns, the outbox, occurrences, the send ledger, opt-outs and message events."""
        if self._campaigns is None:
            if self.dialect == "duckdb":
                from shopcrm.sources._campaign_store import SQLCampaignStore

                # outcome events go to shopcrm_message_events: this database's events table is not the shop's
                holder = self._holder
                self._campaigns = SQLCampaignStore(holder._run, holder._insert, holder._transaction,
                                                   key_set=holder._key_set, library=holder.library)
            else:
                self._campaigns = self._holder.campaign_store()
        return self._campaigns

    def shares(self, source: Source) -> bool:
        """Whether ``source`` reads its tables through this store's very connection (one SQL statement may then
        join them with the library's tables)."""
        return getattr(source, "connection", None) is self.connection or getattr(source, "con", None) is self.connection

    def close(self) -> None:
        """Close the connection when this store opened it (from a URL or a path)."""
        if self.owned:
            self.connection.close()

    def __repr__(self) -> str:
        return f"Store({self.dialect}, tables {self.library.tables.name('*')})"


def store_from(
    store: Store | str | PathLike[str], *, library_schema: str | None = None, library_prefix: str | None = None,
) -> Store:
    """A :class:`Store` from what ``store=`` was given: a Store (as it is), a URL (``postgresql://user:pw@host/db``,
    ``mysql://...``, ``sqlite:///crm.db``, ``duckdb:///crm.duckdb``, query parameters ``library_schema`` and
    ``library_prefix``) or a DuckDB file path.  A SQLite or DuckDB file is created when missing."""
    if isinstance(store, Store):
        if library_schema is not None or library_prefix is not None:
            raise ValueError("give library_schema/library_prefix to Store(...) itself, not beside a Store object")
        return store
    if not isinstance(store, str | PathLike):
        raise TypeError(
            f"store= takes a URL (postgresql://..., mysql://..., sqlite:///path, duckdb:///path), a DuckDB file "
            f"path or shopcrm.Store(connection, dialect=...), not a {type(store).__name__}; wrap an open connection "
            "as shopcrm.Store(connection, dialect='postgres')"
        )
    from shopcrm.sources.urls import open_url

    text = str(store)
    if "://" not in text:
        import duckdb

        connection: Any = duckdb.connect(text)
        dialect, options = "duckdb", dict[str, Any]()
    else:
        connection, dialect, options = open_url(text, ("library_schema", "library_prefix"), create=True)
    if library_schema is not None:
        options["library_schema"] = library_schema
    if library_prefix is not None:
        options["library_prefix"] = library_prefix
    try:
        return Store(connection, dialect=dialect, owned=True, **options)
    except BaseException:
        connection.close()
        raise


def library_beside(source: Source) -> LibraryStore | None:
    """The library's tables when one SQL statement may join them with the source's own tables (the embedded
    DuckDB shop, a DB-API shop without a separate store, or a store over the source's very connection); None when
    they live elsewhere (a separate store, or in memory), where callers read them through the stores instead."""
    store = getattr(source, "store", None)
    if store is not None:
        return store.library if store.shares(source) and store.dialect == source.dialect else None
    library = getattr(source, "library", None)
    return library if isinstance(library, LibraryStore) else None


def library_of(source: Source) -> LibraryStore | None:
    """The library's tables wherever they live: the source's store, else the source's own database; None when the
    source keeps them in memory.  A store of further library tables (segment membership, ...) reaches its database
    through this object, and may join them with the events in SQL only when :func:`library_beside` is not None."""
    store = getattr(source, "store", None)
    if store is not None:
        library: LibraryStore = store.library
        return library
    own = getattr(source, "library", None)
    return own if isinstance(own, LibraryStore) else None
