"""The library's own tables in a shop's database: their names (a schema and a prefix), their DDL, the
schema version they are at, and the settings kept with the shop.

Every ``shopcrm_*`` table a store creates is declared here once, so that ``shopcrm ddl`` prints exactly what
the stores run.  The version of these tables is a row of the settings table (``library``); a store written
by an older shopcrm is upgraded on the first writable open, and a store written by a newer one is refused.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import attrs

from shopcrm.errors import ShopCRMError

__all__ = [
    "DDL_DIALECTS", "SCHEMA_VERSION", "LibraryStore", "LibraryTables", "MemorySettingsStore", "ReadOnlyShopError",
    "SQLSettingsStore", "SettingsStore", "ShopLockedError", "StoreVersionError", "stored_id",
]

#: the version of the library's tables this shopcrm writes: 1 is shopcrm 0.1's ledger (no ``batch_ref`` and
#: ``checks`` in the send ledger), 2 adds them and the settings table, 3 prices each send by what carried it
#: (``channel``, ``kind``, ``priced_as``, ``price_source`` in the send ledger; ``priced_as``, ``price_source``
#: in the message events)
SCHEMA_VERSION = 4
#: the dialects ``shopcrm ddl`` prints for (aliases accepted)
DDL_DIALECTS = {"duckdb": "duckdb", "sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres",
                "mysql": "mysql", "mariadb": "mysql"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
#: the settings row that records the version of the library's tables
VERSION_ROW = "library"


def stored_id(customer_id: Any) -> str:
    """A customer id as the library's tables keep it: its JSON text (``json.dumps``), without the call for the
    usual plain text ids (printable ASCII without a quote or backslash: the text in quotes)."""
    if type(customer_id) is str and customer_id.isascii() and customer_id.isprintable() and '"' not in customer_id \
            and "\\" not in customer_id:
        return f'"{customer_id}"'
    return json.dumps(customer_id)

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
Transaction = Callable[[], AbstractContextManager[None]]


class StoreVersionError(ShopCRMError, RuntimeError):
    """The library's tables were written by a shopcrm this one cannot read, or need an upgrade first."""


class ReadOnlyShopError(ShopCRMError, PermissionError):
    """A write on a shop opened with ``read_only=True``."""


class ShopLockedError(ShopCRMError, OSError):
    """Another process holds the shop's DuckDB file for writing."""


def _check_schema(_: object, __: object, value: str | None) -> None:
    if value is not None and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a schema name: use letters, digits and underscores, not starting with a digit")


def _check_prefix(_: object, __: object, value: str) -> None:
    if not _PREFIX.match(value):
        raise ValueError(
            f"{value!r} is not a table prefix: use 1 to 31 letters, digits and underscores, not starting with a digit "
            "(the default is 'shopcrm_')"
        )


@attrs.frozen
class LibraryTables:
    """Where the library's tables live: an optional ``schema`` (PostgreSQL, MySQL database, DuckDB schema)
    and a name ``prefix`` (default ``shopcrm_``)."""

    schema: str | None = attrs.field(default=None, validator=_check_schema)
    prefix: str = attrs.field(default="shopcrm_", validator=_check_prefix)

    def name(self, base: str) -> str:
        """The table's name as statements write it: ``crm.shopcrm_outbox``."""
        table = f"{self.prefix}{base}"
        return f"{self.schema}.{table}" if self.schema else table

    @property
    def campaigns(self) -> str:
        return self.name("campaigns")

    @property
    def outbox(self) -> str:
        return self.name("outbox")

    @property
    def occurrences(self) -> str:
        return self.name("occurrences")

    @property
    def sends(self) -> str:
        return self.name("sends")

    @property
    def opt_outs(self) -> str:
        return self.name("opt_outs")

    @property
    def message_events(self) -> str:
        return self.name("message_events")

    @property
    def consents(self) -> str:
        """K2: the append-only evidence of consents given and withdrawn (nothing updates or deletes a row)."""
        return self.name("consents")

    @property
    def segments(self) -> str:
        return self.name("segments")

    @property
    def tick_marks(self) -> str:
        return self.name("tick_marks")

    @property
    def wakeups(self) -> str:
        return self.name("wakeups")

    @property
    def settings(self) -> str:
        return self.name("settings")

    # -- issue 15: tracked segments (entries and exits) and tracked attributes ------------------------------
    @property
    def memberships(self) -> str:
        return self.name("memberships")

    @property
    def membership_changes(self) -> str:
        return self.name("membership_changes")

    @property
    def tracked(self) -> str:
        return self.name("tracked")

    @property
    def tracked_values(self) -> str:
        return self.name("tracked_values")

    def membership_ddl(self, dialect: str = "duckdb") -> list[str]:
        """A row per stay of a customer in a tracked segment; each customer's next possible change; what is
        tracked (and its watermark); the last seen value of each tracked attribute.  On DuckDB the next changes
        have no primary key: DuckDB rewrites a keyed table's index at the checkpoint after every write (most of a
        refresh's time at 1M customers), and the store keeps one row per customer itself (it deletes a
        candidate's row before writing its new one)."""
        key = "" if dialect == "duckdb" else ", PRIMARY KEY (segment, customer_id)"
        return [
            f"CREATE TABLE IF NOT EXISTS {self.memberships} (segment VARCHAR(200) NOT NULL, customer_id VARCHAR(200) NOT NULL, "
            "entered_at VARCHAR(32) NOT NULL, exited_at VARCHAR(32))",
            f"CREATE TABLE IF NOT EXISTS {self.membership_changes} (segment VARCHAR(200) NOT NULL, "
            f"customer_id VARCHAR(200) NOT NULL, next_change_at VARCHAR(32) NOT NULL{key})",
            f"CREATE TABLE IF NOT EXISTS {self.tracked} (name VARCHAR(210) PRIMARY KEY, document TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.tracked_values} (attribute VARCHAR(200) NOT NULL, "
            "customer_id VARCHAR(200) NOT NULL, value TEXT, PRIMARY KEY (attribute, customer_id))",
        ]

    def segments_ddl(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.segments} (name VARCHAR(200) PRIMARY KEY, rule TEXT NOT NULL, "
                "description TEXT, updated_at VARCHAR(40) NOT NULL)")

    def ddl(self, dialect: str = "duckdb") -> list[str]:
        """Every statement that creates the library's tables (each idempotent), in the order a store runs them."""
        if dialect not in DDL_DIALECTS:
            raise ValueError(f"no DDL for dialect {dialect!r}; use one of {', '.join(sorted(set(DDL_DIALECTS.values())))}")
        dialect = DDL_DIALECTS[dialect]
        statements = []
        if self.schema:
            if dialect == "sqlite":
                raise ValueError(
                    f"SQLite has no schemas (library_schema={self.schema!r}); give a table prefix instead, e.g. "
                    "library_prefix='crm_'"
                )
            # a MySQL schema is a database: its own character set, which must hold Korean text
            charset = " CHARACTER SET utf8mb4" if dialect == "mysql" else ""
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {self.schema}{charset}")
        statements += [
            f"CREATE TABLE IF NOT EXISTS {self.settings} (name VARCHAR(100) PRIMARY KEY, document TEXT NOT NULL, "
            "updated_at VARCHAR(32) NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.campaigns} (id VARCHAR(100) PRIMARY KEY, document TEXT NOT NULL, "
            "saved_at VARCHAR(32) NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.outbox} (key_ VARCHAR(64) PRIMARY KEY, customer_id VARCHAR(200) NOT NULL, "
            "campaign_id VARCHAR(100) NOT NULL, step VARCHAR(40) NOT NULL, occurrence VARCHAR(40) NOT NULL, "
            "variant VARCHAR(40) NOT NULL, purpose VARCHAR(20) NOT NULL, channel VARCHAR(20) NOT NULL, "
            "kind VARCHAR(20) NOT NULL, status VARCHAR(20) NOT NULL, due_at VARCHAR(32) NOT NULL, "
            "send_at VARCHAR(32), cost DOUBLE PRECISION NOT NULL, message TEXT NOT NULL, planned_at VARCHAR(32) NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.occurrences} (campaign_id VARCHAR(100) NOT NULL, "
            "occurrence VARCHAR(40) NOT NULL, planned_at VARCHAR(32) NOT NULL, PRIMARY KEY (campaign_id, occurrence))",
            f"CREATE TABLE IF NOT EXISTS {self.sends} (key_ VARCHAR(64) PRIMARY KEY, customer_id VARCHAR(200) NOT NULL, "
            "campaign_id VARCHAR(100) NOT NULL, chain_index INTEGER NOT NULL, state VARCHAR(20) NOT NULL, "
            "attempts INTEGER NOT NULL, next_at VARCHAR(32) NOT NULL, lease_until VARCHAR(32), claim VARCHAR(64), "
            "provider_id VARCHAR(200), code VARCHAR(64), reason TEXT, cost DOUBLE PRECISION NOT NULL, "
            "updated_at VARCHAR(32) NOT NULL, batch_ref VARCHAR(200), checks INTEGER NOT NULL DEFAULT 0, "
            "channel VARCHAR(20), kind VARCHAR(20), priced_as VARCHAR(60), price_source VARCHAR(20), sent_at VARCHAR(32))",
            f"CREATE TABLE IF NOT EXISTS {self.opt_outs} (customer_id VARCHAR(200) NOT NULL, consent_group VARCHAR(20) NOT NULL, "
            "opted_out_at VARCHAR(32) NOT NULL, reason TEXT, PRIMARY KEY (customer_id, consent_group))",
            f"CREATE TABLE IF NOT EXISTS {self.consents} (record_id VARCHAR(32) PRIMARY KEY, customer_id VARCHAR(200) NOT NULL, "
            "consent_group VARCHAR(20) NOT NULL, granted INTEGER NOT NULL, given_at VARCHAR(32) NOT NULL, "
            "how VARCHAR(200) NOT NULL, text_version VARCHAR(200), recorded_by VARCHAR(200) NOT NULL, "
            "recorded_at VARCHAR(32) NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.message_events} (customer_id VARCHAR(200) NOT NULL, event VARCHAR(40) NOT NULL, "
            "ts VARCHAR(32) NOT NULL, message_key VARCHAR(64) NOT NULL, campaign_id VARCHAR(100), channel VARCHAR(20), "
            "kind VARCHAR(20), cost DOUBLE PRECISION, provider_id VARCHAR(200), reason TEXT, code VARCHAR(64), "
            "priced_as VARCHAR(60), price_source VARCHAR(20))",
            self.segments_ddl(),
            # watermark ticks (issue 15): how far each scenario was ticked, and when each customer's next step is due
            f"CREATE TABLE IF NOT EXISTS {self.tick_marks} (campaign_id VARCHAR(100) PRIMARY KEY, "
            "saved_at VARCHAR(32) NOT NULL, ticked_at VARCHAR(32) NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.wakeups} (campaign_id VARCHAR(100) NOT NULL, customer_id VARCHAR(200) NOT NULL, "
            "due_at VARCHAR(32) NOT NULL, PRIMARY KEY (campaign_id, customer_id))",
            *self.membership_ddl(dialect),
        ]
        return statements


def _now_stamp() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class LibraryStore:
    """The library's tables in one database, reached through ``run(sql, params)``: created (idempotently),
    version-checked and upgraded once, on first use.  A read-only store creates and upgrades nothing."""

    def __init__(
        self, tables: LibraryTables, run: Run, transaction: Transaction, *, placeholder: str = "?",
        dialect: str = "duckdb", read_only: bool = False,
    ) -> None:
        self.tables = tables
        self._run = run
        self._transaction = transaction
        self.placeholder = placeholder
        self.dialect = dialect
        self.read_only = read_only
        self._ready = False
        #: whether the tables exist (a read-only store over a database the library never wrote: no)
        self.present = True

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement on the database holding the library's tables (``placeholder`` marks its parameters), for
        stores of further library tables (issue 15: wherever the tables live, beside the events or in a store)."""
        return self._run(sql, params)

    def transaction(self) -> AbstractContextManager[None]:
        """A transaction on that database (re-entrant: a block inside a block joins it)."""
        return self._transaction()

    def writable(self, what: str) -> None:
        """ReadOnlyShopError when this store may not write."""
        if self.read_only:
            raise ReadOnlyShopError(
                f"cannot {what}: this shop was opened with read_only=True; open it without read_only in the one "
                "process that writes (see docs/library-tables.md)"
            )

    def ensure(self) -> None:
        if self._ready:
            return
        if self.read_only:
            self.present = self._has_settings()
            version = self._version() if self.present else SCHEMA_VERSION
            self._refuse_newer(version)
            if version < SCHEMA_VERSION:
                raise StoreVersionError(
                    f"the library's tables are at schema version {version}, older than this shopcrm's "
                    f"{SCHEMA_VERSION}; open the shop once without read_only to upgrade them"
                )
            self._ready = True
            return
        with self._transaction():
            for statement in self.tables.ddl(self.dialect):
                self._run(statement, ())
        version = self._version()
        self._refuse_newer(version)
        if version < SCHEMA_VERSION:
            self._upgrade(version)
            try:
                self.write_row(VERSION_ROW, {"schema_version": SCHEMA_VERSION})
            except Exception:  # another process recorded it at the same moment (a duplicate key): fine if it did
                if self._version() != SCHEMA_VERSION:
                    raise
        self._ready = True

    def readable(self) -> bool:
        """Whether the settings table is there (a newer store is refused); creates nothing."""
        if self._ready:
            return self.present
        if not self._has_settings():
            return False
        self._refuse_newer(self._version())
        return True

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            from shopcrm._version import __version__

            raise StoreVersionError(
                f"the library's tables ({self.tables.settings}) are at schema version {version}, written by a newer "
                f"shopcrm; this shopcrm {__version__} understands version {SCHEMA_VERSION} at most: upgrade shopcrm "
                "(pip install -U shopcrm) before opening this shop"
            )

    def _has_settings(self) -> bool:
        return self.has_table("settings")

    def has_table(self, base: str) -> bool:
        """Whether the library's table ``base`` (``settings``, ``segments``, ...) is there, in its schema; asked
        of the catalogue, not by a failing statement (which would abort a PostgreSQL transaction)."""
        p = self.placeholder
        table = f"{self.tables.prefix}{base}"
        if self.dialect == "sqlite":
            sql, params = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name = {p}", [table]
        elif self.dialect in ("duckdb", "postgres", "mysql"):
            here = "DATABASE()" if self.dialect == "mysql" else "current_schema()"
            sql = (f"SELECT table_name FROM information_schema.tables WHERE table_name = {p} AND table_schema = "
                   + (p if self.tables.schema else here))
            params = [table, self.tables.schema] if self.tables.schema else [table]
        else:
            try:
                self._run(f"SELECT 1 FROM {self.tables.name(base)} WHERE 1 = 0", ())
            except Exception:
                return False
            return True
        return bool(self._run(sql, params))

    def _version(self) -> int:
        """The recorded version; a store without one predates versions (shopcrm 0.1 or 0.2 before settings): 1."""
        found = self.read_row(VERSION_ROW)
        if found is None:
            return 1
        try:
            return int(found["schema_version"])
        except (KeyError, TypeError, ValueError):
            raise StoreVersionError(
                f"the {VERSION_ROW!r} row of {self.tables.settings} holds {found!r}, not a schema version; "
                f"set it to {{\"schema_version\": {SCHEMA_VERSION}}} if the tables match this shopcrm"
            ) from None

    def _upgrade(self, version: int) -> None:
        """From version 1: a send ledger made by shopcrm 0.1 lacks the batch reference and the check count.  From
        version 2: the send ledger lacks the carrying channel and kind and the pricing (``priced_as``,
        ``price_source``), the message events the pricing (rows sent before keep them empty: unknown).  From version
        3: the send ledger lacks the send time (``sent_at``; rows sent before keep it empty, and their send time is
        read from their ``message_sent`` events as before)."""
        sends = self.tables.sends
        self._add_columns(sends, [("batch_ref", "VARCHAR(200)"), ("checks", "INTEGER NOT NULL DEFAULT 0")])
        self._add_columns(sends, [("channel", "VARCHAR(20)"), ("kind", "VARCHAR(20)"), ("priced_as", "VARCHAR(60)"),
                                  ("price_source", "VARCHAR(20)")])
        self._add_columns(self.tables.message_events, [("priced_as", "VARCHAR(60)"), ("price_source", "VARCHAR(20)")])
        self._add_columns(sends, [("sent_at", "VARCHAR(32)")])
        if self.dialect == "duckdb":
            self._unkey_membership_changes()

    def _unkey_membership_changes(self) -> None:
        """From version 3 on DuckDB: the next changes of tracked segments lose their primary key (see
        :meth:`LibraryTables.membership_ddl`); the rows are copied into a table without it."""
        changes = self.tables.membership_changes
        bare = changes.rsplit(".", 1)[-1]
        schema = self.tables.schema
        [(keyed,)] = self._run(
            "SELECT COUNT(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY' "
            + ("AND schema_name = ?" if schema else "AND schema_name = current_schema()"),
            (bare, schema) if schema else (bare,))
        if not keyed:
            return
        with self._transaction():
            self._run(f"CREATE TABLE {changes}_unkeyed AS SELECT * FROM {changes}", ())
            self._run(f"DROP TABLE {changes}", ())
            self._run(f"ALTER TABLE {changes}_unkeyed RENAME TO {bare}", ())

    def _add_columns(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        """Add ``columns`` (name, type) to ``table`` unless it has them (all or none: they came together)."""
        try:
            with self._transaction():
                self._run(f"SELECT {', '.join(name for name, _ in columns)} FROM {table} WHERE 1 = 0", ())
        except Exception:
            with self._transaction():
                for name, kind in columns:
                    self._run(f"ALTER TABLE {table} ADD COLUMN {name} {kind}", ())

    # -- settings rows --------------------------------------------------------------------------
    def read_row(self, name: str) -> dict[str, Any] | None:
        p = self.placeholder
        rows = self._run(f"SELECT document FROM {self.tables.settings} WHERE name = {p}", (name,))
        if not rows:
            return None
        document = json.loads(str(rows[0][0]))
        return document if isinstance(document, dict) else None

    def write_row(self, name: str, document: Mapping[str, Any]) -> None:
        p = self.placeholder
        text = json.dumps(dict(document), ensure_ascii=False, sort_keys=True)
        with self._transaction():
            self._run(f"DELETE FROM {self.tables.settings} WHERE name = {p}", (name,))
            self._run(f"INSERT INTO {self.tables.settings} (name, document, updated_at) VALUES ({p}, {p}, {p})",
                      (name, text, _now_stamp()))


class SettingsStore(ABC):
    """Named JSON documents kept with the shop (``messaging_policy``, ``recipient_columns``,
    ``lifecycle_policy``, ``mapping``, ...)."""

    @abstractmethod
    def get(self, name: str) -> dict[str, Any] | None:
        """The document saved under ``name``, or None."""

    @abstractmethod
    def put(self, name: str, document: Mapping[str, Any]) -> None:
        """Save (or replace) ``document`` under ``name``."""


class MemorySettingsStore(SettingsStore):
    """Settings of a source without storage of its own (Spark): they last as long as the Shop object."""

    def __init__(self) -> None:
        self._documents: dict[str, str] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        found = self._documents.get(name)
        return None if found is None else dict(json.loads(found))

    def put(self, name: str, document: Mapping[str, Any]) -> None:
        if name == VERSION_ROW:
            raise ValueError(f"{VERSION_ROW!r} is the library's own settings row; choose another name")
        self._documents[name] = json.dumps(dict(document), ensure_ascii=False)


class SQLSettingsStore(SettingsStore):
    """Settings in the ``shopcrm_settings`` table of the shop's own database."""

    def __init__(self, library: LibraryStore) -> None:
        self._library = library

    def get(self, name: str) -> dict[str, Any] | None:
        """Reading creates nothing: a database the library never wrote simply has no settings."""
        if not self._library.readable():
            return None
        return self._library.read_row(name)

    def put(self, name: str, document: Mapping[str, Any]) -> None:
        if name == VERSION_ROW:
            raise ValueError(f"{VERSION_ROW!r} is the library's own settings row; choose another name")
        self._library.writable(
            f"save the setting {name!r} (to use one without saving it, pass it to Shop.open(..., read_only=True, "
            f"{name}=...))"
        )
        self._library.ensure()
        self._library.write_row(name, document)
