"""The embedded default: a shop kept in DuckDB, in memory or in a file."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from shopcrm.compiler import render
from shopcrm.products._situations import ProductSituations
from shopcrm.products._sql import saved_policy, with_policy
from shopcrm.schema import ColumnType, Schema, Table, check_identifier
from shopcrm.sources._base import SegmentStore, Source, column_type
from shopcrm.sources._campaign_store import CampaignStore, PiecedTexts, SQLCampaignStore
from shopcrm.sources._library import (
    LibraryStore,
    LibraryTables,
    ReadOnlyShopError,
    SettingsStore,
    ShopLockedError,
    SQLSettingsStore,
)
from shopcrm.sources._sql_segments import SQLSegmentStore
from shopcrm.sources._transactions import Transactions, is_contention
from shopcrm.timeline import to_utc_naive

__all__ = ["DuckDBSource", "LoadError"]

CUSTOMERS = "customers"
EVENTS = "events"
PRODUCTS = "products"
HISTORY = "product_history"
#: the index a load keeps on the customers' ids: a tick reads the rows of a few dozen listed customers, which a scan
#: of a million rows took 60-80 ms to find and the index finds in 10 ms (issue 15, the idle tick)
CUSTOMERS_INDEX = "shopcrm_customers_id"
_REQUIRED = {CUSTOMERS: ("customer_id",), EVENTS: ("customer_id", "event", "ts"), PRODUCTS: ("product_id",),
             HISTORY: ("product_id", "ts")}
_NEEDS = {CUSTOMERS: "a customer_id", EVENTS: "a customer_id, an event name and a ts", PRODUCTS: "a product_id",
          HISTORY: "a product_id and a ts"}
#: the column holding each table's id, and the columns unique within one load
_ID = {CUSTOMERS: "customer_id", EVENTS: "customer_id", PRODUCTS: "product_id", HISTORY: "product_id"}
_UNIQUE = {CUSTOMERS: ("customer_id",), PRODUCTS: ("product_id",), HISTORY: ("product_id", "ts")}
#: the product history's state columns and the types they are kept as
_STATE = {"price": "DOUBLE", "stock": "BIGINT", "available": "BOOLEAN"}
_INCOMING = "shopcrm_incoming"
_WANTED = {
    ColumnType.INTEGER: "whole numbers",
    ColumnType.FLOAT: "numbers",
    ColumnType.TIMESTAMP: "timestamps (datetimes or ISO 8601 text)",
    ColumnType.BOOLEAN: "true/false values",
    ColumnType.JSON: "JSON (dicts, lists or JSON text)",
    ColumnType.STRING: "text",
}


class LoadError(ValueError):
    """Data handed to ``load_customers`` / ``load_events`` cannot be stored."""


class DuckDBSource(Transactions, Source):
    """Customers and events in an embedded DuckDB database.

    ``path=":memory:"`` keeps everything in memory; a file path persists data and
    named segments.  Timestamps are stored as UTC ``TIMESTAMP``.
    """

    dialect = "duckdb"
    #: issue 14: the thresholds of the product situations rules and triggers read (else the saved setting)
    product_situations: ProductSituations | None = None

    def __init__(
        self, path: str | Path = ":memory:", *, connection: duckdb.DuckDBPyConnection | None = None,
        read_only: bool = False, library_schema: str | None = None, library_prefix: str = "shopcrm_",
    ) -> None:
        self.path = str(path)
        self.read_only = read_only
        #: a read-only open of a file another process holds reads a snapshot copied here (removed on close)
        self._snapshot: Path | None = None
        self.con = connection if connection is not None else self._connect(self.path, read_only)
        if not read_only:
            self.con.execute("SET TimeZone = 'UTC'")
        else:
            with suppress(duckdb.Error):
                self.con.execute("SET TimeZone = 'UTC'")
        self._depth = 0  # how many _transaction() blocks are open
        #: the library's tables (campaigns, outbox, ledger, segments, settings): their schema/prefix and version
        self.library = LibraryStore(LibraryTables(library_schema, library_prefix), self._run, self._transaction,
                                    placeholder="?", dialect="duckdb", read_only=read_only)
        self._marks_present = False  # issue 15: whether the tick marks table exists (once it does, it stays)
        self._segments = SQLSegmentStore(self._run, "?", transaction=self._transaction, library=self.library)
        self._settings = SQLSettingsStore(self.library)
        self._schema: Schema | None = None
        self._campaigns: CampaignStore | None = None
        self._types: dict[str, dict[str, str]] = {}

    def _connect(self, path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
        """The file's connection; a file another process holds is a clear ShopLockedError for a writer, and a
        snapshot copy for a reader (DuckDB lets no other process in while one writes)."""
        try:
            if read_only and path != ":memory:" and not Path(path).exists():
                raise FileNotFoundError(f"no shop file {path!r} to open read-only; a writable Shop.open(path) creates it")
            return duckdb.connect(path, read_only=read_only and path != ":memory:")
        except duckdb.ConnectionException as error:
            if "different configuration" not in str(error):
                raise
            raise ShopLockedError(
                f"this process already has {path!r} open {'for writing' if read_only else 'read-only'}; use that "
                "Shop (a writable one reads too), or close it before opening the file again"
            ) from error
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            holder = _holder(str(error))
            if read_only:
                return self._snapshot_of(path, error)
            raise ShopLockedError(
                f"another process{holder} holds {path!r} for writing (DuckDB allows one writing process per file); "
                "open it with Shop.open(path, read_only=True) to read a snapshot, or stop that process first "
                "(see docs/library-tables.md)"
            ) from error

    def _snapshot_of(self, path: str, error: Exception) -> duckdb.DuckDBPyConnection:
        """Copy the file (and its write-ahead log) and open the copy read-only; a copy taken while the writer
        checkpoints may be torn, so a copy that does not open is taken again (three tries)."""
        import shutil
        import tempfile

        last: Exception = error
        for _ in range(3):
            folder = Path(tempfile.mkdtemp(prefix="shopcrm-snapshot-"))
            copy = folder / Path(path).name
            shutil.copyfile(path, copy)
            wal = Path(path + ".wal")
            if wal.exists():
                with suppress(FileNotFoundError):
                    shutil.copyfile(wal, str(copy) + ".wal")
            try:
                con = duckdb.connect(str(copy), read_only=True)
                con.execute("SELECT 1").fetchall()
            except duckdb.Error as failed:
                last = failed
                shutil.rmtree(folder, ignore_errors=True)
                continue
            self._snapshot = folder
            return con
        raise ShopLockedError(
            f"another process holds {path!r} for writing and no consistent snapshot of it could be read; try again, "
            "or stop that process first"
        ) from last

    # ----------------------------------------------------------------- Source
    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.con.execute(sql, list(params)).fetchall()
        except duckdb.InvalidInputException as error:
            if "read-only" in str(error):
                raise _read_only() from error
            raise

    def _columns(self, table: str) -> dict[str, str]:
        schema, _, name = table.rpartition(".")
        # duckdb_columns() is what DuckDB's information_schema.columns view selects from (same rows, renamed
        # columns): asked directly it answers in a quarter of the time (~1 ms instead of ~4 ms), and every load and
        # every schema() asks it several times
        rows = self._run(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = "
            + ("?" if schema else "current_schema()") + " ORDER BY column_index",
            (name, schema) if schema else (name,),
        )
        return {str(name): str(kind) for name, kind in rows}

    def schema(self) -> Schema:
        if self._schema is None:
            customers, events = self._columns(CUSTOMERS), self._columns(EVENTS)
            if customers and not events:  # customers without behaviour yet: an empty events table
                id_type = customers.get("customer_id", "VARCHAR")
                temporary = " TEMP" if self.read_only else ""  # read-only: an empty table of this session only
                self.con.execute(f'CREATE{temporary} TABLE "{EVENTS}" (customer_id {id_type}, event VARCHAR, ts TIMESTAMP)')
                events = self._columns(EVENTS)
            missing = [t for t, cols in ((CUSTOMERS, customers), (EVENTS, events)) if not cols]
            if missing:
                raise LoadError(
                    f"the shop has no {' and no '.join(missing)} yet; load data first with "
                    "shop.load_customers(...) and shop.load_events(...)"
                )
            products, history = self._columns(PRODUCTS), self._columns(HISTORY)
            self._schema = Schema(
                Table(CUSTOMERS, {n: column_type(t) for n, t in customers.items()}),
                Table(EVENTS, {n: column_type(t) for n, t in events.items()}),
                products=Table(PRODUCTS, {n: column_type(t) for n, t in products.items()}) if products else None,
                product_history=with_policy(Table(HISTORY, {n: column_type(t) for n, t in history.items()}),
                                            self.product_situations or saved_policy(self._settings.get("product_situations")))
                if history else None,
            )
        return self._schema

    def fetch(self, query: exp.Expression) -> list[tuple[Any, ...]]:
        return self.con.execute(render(query, self.dialect)).fetchall()

    def fetch_arrow(self, query: exp.Expression, columns: list[str]) -> Any:
        self._settle()
        table = self.con.sql(render(query, self.dialect)).to_arrow_table()
        return table.rename_columns(columns)

    def _settle(self) -> None:
        """End a result a caller left unfinished on this connection (``shop.source.con.execute(...).fetchone()`` in a
        notebook): DuckDB 2 refuses to register data or run a relation while one is open (ResourceInUseException),
        and any statement fetched to its end closes it."""
        self.con.execute("SELECT 1").fetchall()

    def segment_store(self) -> SegmentStore:
        return self._segments

    def scratch_table(self, name: str, query: exp.Expression, columns: Mapping[str, ColumnType]) -> Table:
        """Issue 15: a temporary table of the query's rows (this connection only), for a shell that reads them
        many times (a refresh reads its candidates' rows once per segment)."""
        check_identifier(name, "table name")
        self.con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {render(query, self.dialect)}')
        return Table(name, dict(columns))

    def scratch_ids(self, name: str, ids: Sequence[Any]) -> Table:
        """Issue 15: a temporary table of customer ids (one list parameter), typed as the customers table's ids."""
        check_identifier(name, "table name")
        kind = self._declared(CUSTOMERS, ["customer_id"]).get("customer_id", "VARCHAR")
        self.con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT unnest(CAST(? AS {kind}[])) AS customer_id',
                         [list(ids)])
        return Table(name, {"customer_id": self.schema().customers.type_of("customer_id")})

    def settings_store(self) -> SettingsStore:
        """Settings kept with the shop, in its ``shopcrm_settings`` table."""
        return self._settings

    def campaign_store(self) -> CampaignStore:
        if self._campaigns is None:
            # delivery outcomes are events like any other: they go into the events table, in the ledger's transaction
            self._campaigns = SQLCampaignStore(self._run, self._insert, self._transaction,
                                               write_events=self._write_message_events,
                                               prepare_events=self._event_columns_for, key_set=self._key_set,
                                               library=self.library, arrow=True)
        return self._campaigns

    @contextmanager
    def _key_set(self, keys: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        """``key_ IN (SELECT unnest(?))`` over one list parameter: DuckDB binds hundreds of placeholders slowly,
        and a list needs neither pyarrow nor pandas (registering an Arrow table imports both: ~110 MiB)."""
        yield "key_ IN (SELECT unnest(CAST(? AS VARCHAR[])))", [list(keys)]

    def _unnested(self, table: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        """``SELECT unnest(?) AS "a", unnest(?) AS "b" ...``: rows given column by column, one list parameter per
        column, each cast to the type the table declares for it."""
        declared = self._declared(table, columns)
        parts = []
        for column in columns:
            check_identifier(column, "column name")
            kind = declared.get(column)
            bound = "?" if kind is None or kind == '"NULL"' else f"CAST(? AS {kind}[])"
            parts.append(f'unnest({bound}) AS "{column}"')
        return "SELECT " + ", ".join(parts), [list(v) for v in values]

    def _declared(self, table: str, columns: Sequence[str]) -> dict[str, str]:
        """The table's column types (cached; forgotten whenever a column is added or retyped)."""
        known = self._types.get(table)
        if known is None or any(column not in known for column in columns):
            known = self._columns(table)
            if known:
                self._types[table] = known
        return known

    def _event_columns_for(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Before a transaction that writes ``events``: the columns the events table lacks for them, added in a
        transaction of their own.  Two transactions adding the same column at once conflict in DuckDB's catalogue
        (two dispatchers settling, a dispatcher beside a refresh): so the second to add it, refused, finds it
        added by the other and goes on.  Inside a transaction already (its writes would be committed early) nothing
        is done here, and the write adds the columns itself."""
        if self._depth or self.read_only:
            return
        names = list(dict.fromkeys(name for event in events for name in event))
        for _ in range(5):
            try:
                known: Mapping[str, Any] = self.schema().events.columns
            except LoadError:
                return  # no events table yet: the first write creates it
            if all(name in known for name in names):
                return
            try:
                with self._transaction():
                    existing = self._columns(EVENTS)
                    self._add_event_columns(events, [name for name in names if name not in existing])
            except duckdb.Error as error:
                if not is_contention(error):
                    raise  # (after five refusals, the write itself adds what is still missing)
                self._schema = None  # the other adder's columns are read again
                self._types.clear()

    def _add_event_columns(self, events: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
        """The columns ``names`` added to the events table, each typed from the events' values (text where every
        one is None)."""
        if not names:
            return
        rows, bound = self._unnested(EVENTS, names, [[e.get(name) for e in events] for name in names])
        for name, kind, *_ in self.con.execute(f"DESCRIBE {rows}", bound).fetchall():
            declared = "VARCHAR" if str(kind) == '"NULL"' else kind
            self.con.execute(f'ALTER TABLE "{EVENTS}" ADD COLUMN IF NOT EXISTS "{name}" {declared}')
        self._schema = None
        self._types.clear()

    def _write_message_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Delivery outcomes into the events table (inside the caller's transaction): columns the table lacks
        are added, typed from the values."""
        names = list(dict.fromkeys(name for event in events for name in event))
        try:
            known: Mapping[str, Any] = self.schema().events.columns  # cached: no catalogue query per batch
        except LoadError:
            known = {}
        existing = known if all(name in known for name in names) else self._columns(EVENTS)
        if not existing:
            self.load(EVENTS, list(events))
            return
        self._add_event_columns(events, [name for name in names if name not in existing])
        rows, bound = self._unnested(EVENTS, names, [[e.get(name) for e in events] for name in names])
        self.con.execute(f'INSERT INTO "{EVENTS}" BY NAME {rows}', bound)
        instants = [e["ts"] for e in events if isinstance(e.get("ts"), datetime)]
        if instants:  # a report or click older than a tick's mark (issue 15)
            self._rewind_marks(to_utc_naive(min(instants)))

    def _begin(self) -> None:
        self.con.begin()

    def _commit(self) -> None:
        self.con.commit()

    def _rollback(self) -> None:
        self._types.clear()  # a column added in the transaction is gone again
        with suppress(duckdb.Error):  # never hide the error that made the rollback necessary
            self.con.rollback()

    def _insert(self, table: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> None:
        """Many rows, given column by column, as one list parameter per column (DuckDB's executemany is slow;
        lists are as fast as a registered Arrow table and import neither pyarrow nor pandas)."""
        for part in table.split("."):
            check_identifier(part, "table name")
        names = ", ".join(f'"{c}"' for c in columns)
        quoted = ".".join(f'"{part}"' for part in table.split("."))
        # a batch's ready Arrow columns, or its message texts as pieces for the engine to join
        arrow = any(isinstance(v, PiecedTexts) or type(v).__module__.startswith("pyarrow") for v in values)
        if values and (arrow or len(values[0]) >= self.ARROW_ROWS) and self._insert_arrow(table, quoted, names, columns, values):
            return
        if arrow:
            values = [v.to_pylist() if isinstance(v, PiecedTexts) or type(v).__module__.startswith("pyarrow") else v  # type: ignore[attr-defined]
                      for v in values]
        rows, bound = self._unnested(table, columns, values)
        self._run(f"INSERT INTO {quoted} ({names}) {rows}", bound)

    #: from how many rows :meth:`_insert` hands DuckDB Arrow arrays instead of list parameters: a broadcast's million
    #: outbox rows go in about three times faster, at the price of importing pandas (pyarrow's list conversion does)
    ARROW_ROWS = 100_000

    def _insert_arrow(self, table: str, quoted: str, names: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> bool:
        """The rows as Arrow arrays, each cast to the type the table declares for it; False (nothing inserted) when
        a column's values are not all text, numbers, booleans or None (then the list parameters take them).

        A column of :class:`PiecedTexts` is joined here, in the statement: its pieces are a second table, and each row
        takes its pieces by index and puts its contacts between them.  The rows go in as given: sorting them by key in
        the statement (for a faster primary-key build) cost more than it saved (issue 15, a 1M broadcast: record
        2.03-2.26 s sorted, 1.71-2.02 s as given).
        """
        import pyarrow as pa

        pieced = next((i for i, v in enumerate(values) if isinstance(v, PiecedTexts)), None)
        try:
            arrays = [v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array([]) if i == pieced else pa.array(
                v if isinstance(v, list) else list(v)) for i, v in enumerate(values)]
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return False
        plain = (pa.string(), pa.float64(), pa.int64(), pa.bool_(), pa.null())
        if any(array.type not in plain for array in arrays):  # instants, structures: the list parameters cast them
            return False
        declared = self._declared(table, columns)
        selected = []
        for i, column in enumerate(columns):
            check_identifier(column, "column name")
            kind = declared.get(column)
            value = f'"r"."c{i}"'
            if i == pieced:  # the pieces around the contacts: p.s0 || r.m0 || p.s1 || ... || p.sN
                texts = values[i]
                assert isinstance(texts, PiecedTexts)
                value = " || ".join(f'"p"."s{j // 2}"' if j % 2 == 0 else f'"r"."m{j // 2}"' for j in range(2 * len(texts.contacts) + 1))
            selected.append(value if kind is None or kind == '"NULL"' else f"CAST({value} AS {kind})")
        names_in = [f"c{i}" for i in range(len(columns)) if i != pieced]
        arrays = [array for i, array in enumerate(arrays) if i != pieced]
        joined = ""
        # registered, not views: a view over a Python object cannot be stored in a database file
        view, pieces_view = "__shopcrm_rows", "__shopcrm_pieces"
        self._settle()
        if pieced is not None:
            texts = values[pieced]
            assert isinstance(texts, PiecedTexts)
            arrays += [texts.index, *texts.contacts]
            names_in += ["m_index", *[f"m{j}" for j in range(len(texts.contacts))]]
            self.con.register(pieces_view, pa.Table.from_arrays(
                [pa.array(range(len(texts.pieces[0])), pa.int32()), *texts.pieces],
                names=["idx", *[f"s{j}" for j in range(len(texts.pieces))]]))
            joined = f' JOIN {pieces_view} AS "p" ON "p"."idx" = "r"."m_index"'
        self.con.register(view, pa.Table.from_arrays(arrays, names=names_in))
        try:
            self._run(f'INSERT INTO {quoted} ({names}) SELECT {", ".join(selected)} FROM {view} AS "r"{joined}')
        finally:
            for registered in (view, pieces_view) if pieced is not None else (view,):
                with suppress(duckdb.Error):
                    self.con.unregister(registered)
        return True

    def close(self) -> None:
        self.con.close()
        if self._snapshot is not None:
            import shutil

            shutil.rmtree(self._snapshot, ignore_errors=True)
            self._snapshot = None

    # ---------------------------------------------------------------- loading
    def load(self, table: str, data: Any, *, at: datetime | None = None) -> int:
        """Append rows to ``customers`` or ``products`` (replacing ids loaded before), ``events`` or
        ``product_history``.

        All or nothing: the data is checked first (every row has its required values,
        customer and product ids are unique within one load, every value fits the column it goes to),
        then stored in one transaction.  Returns the number of rows loaded.  Products loaded ``at`` an instant
        also append to the product history the state of every product that is new there or changed.
        """
        if self.read_only:
            raise _read_only()
        if table == PRODUCTS and at is None:
            raise ValueError("products are loaded at an instant: pass at= (the shop passes the current time)")
        self._settle()
        relation = self._relation(data, table)
        incoming = {c: str(t) for c, t in zip(relation.columns, relation.types, strict=True)}
        for column in incoming:
            check_identifier(column, "column name")
        missing = [c for c in _REQUIRED[table] if c not in incoming]
        if missing:
            raise LoadError(
                f"{table} data has no {', '.join(repr(m) for m in missing)} column; it has "
                f"{', '.join(incoming) or 'no columns'}; {table} need {', '.join(_REQUIRED[table])}"
            )
        self.con.register(_INCOMING, relation)
        try:
            existing = self._columns(table)
            select = ", ".join(self._select_expr(c, t) for c, t in incoming.items())
            view = f"SELECT {select} FROM {_INCOMING}"
            history = self._columns(HISTORY) if table in (PRODUCTS, HISTORY) else {}
            if table == HISTORY and not existing:  # the state columns keep their types whatever the first load has
                existing = {"product_id": incoming["product_id"], "ts": "TIMESTAMP", **_STATE}
            count = self._check(table, incoming, existing, view)
            if table in (PRODUCTS, HISTORY) and history:
                self._check_history(table, view, at)
            with self._transaction():
                if table == HISTORY and not history:
                    self.con.execute(f'CREATE TABLE "{HISTORY}" AS SELECT product_id, CAST(NULL AS TIMESTAMP) AS ts, '
                                     + ", ".join(f'CAST(NULL AS {k}) AS "{c}"' for c, k in _STATE.items())
                                     + f" FROM ({view}) LIMIT 0")
                    self._add_columns(table, self._columns(HISTORY), view)
                elif not existing:
                    self.con.execute(f'CREATE TABLE "{table}" AS {view} LIMIT 0')
                else:
                    self._add_columns(table, existing, view)
                if table in (CUSTOMERS, PRODUCTS):
                    key = _ID[table]
                    self.con.execute(f'DELETE FROM "{table}" WHERE "{key}" IN (SELECT "{key}" FROM ({view}))')
                self.con.execute(f'INSERT INTO "{table}" BY NAME {view}')
                if table == CUSTOMERS:
                    self.con.execute(f'CREATE INDEX IF NOT EXISTS "{CUSTOMERS_INDEX}" ON "{CUSTOMERS}" ("customer_id")')
                if table == EVENTS:
                    self._rewind_ticks(view)
                if table == PRODUCTS:
                    assert at is not None
                    self._record_history(view, at, history)
        except duckdb.Error as exc:
            raise LoadError(f"{table} could not be loaded, and nothing of it was stored: {exc}") from exc
        finally:
            self._schema = None
            self._types.clear()
            with suppress(duckdb.Error):
                self.con.unregister(_INCOMING)
        return count

    def _rewind_ticks(self, view: str) -> None:
        """Issue 15: events older than a scenario's watermark arrived late; inside the load's transaction, move the
        watermarks back to the oldest of them, so that the next tick reads them (a watermark tick reads only what
        came after its mark)."""
        oldest = self.con.execute(f"SELECT CAST(min(ts) AS VARCHAR) FROM ({view})").fetchone()
        if oldest is not None and oldest[0] is not None:
            self._rewind_marks(datetime.fromisoformat(str(oldest[0])))

    def _rewind_marks(self, to: datetime) -> None:
        """Every watermark after ``to`` moved back to it (inside the caller's transaction): the scenarios' tick marks,
        and where the next refresh of each tracked segment takes its candidates from."""
        self.membership_store().rewind(to)
        if not self._marks_present:
            self._marks_present = self.library.has_table("tick_marks")
            if not self._marks_present:
                return
        stamp = to.isoformat(sep=" ", timespec="microseconds")
        self.con.execute(f"UPDATE {self.library.tables.tick_marks} SET ticked_at = ? WHERE ticked_at > ?", [stamp, stamp])

    def _select_expr(self, column: str, kind: str, *, try_: bool = False) -> str:
        """How an incoming column is stored: timestamps as naive UTC, properties as JSON.

        ``try_`` gives NULL instead of an error for a value that does not convert."""
        quoted = f'"{column}"'
        cast = "TRY_CAST" if try_ else "CAST"
        upper = kind.upper()
        if column == "ts" or upper.startswith("TIMESTAMP"):
            if upper == "TIMESTAMP":
                return quoted
            if upper.startswith(("VARCHAR", "TIMESTAMP WITH TIME ZONE", "DATE")):
                return f"{cast}({cast}({quoted} AS TIMESTAMPTZ) AS TIMESTAMP) AS {quoted}"
            return f"{cast}({quoted} AS TIMESTAMP) AS {quoted}"
        if column == "properties" and upper != "JSON":
            return f"{cast}({quoted} AS JSON) AS {quoted}"
        return quoted

    def _check(self, table: str, incoming: dict[str, str], existing: dict[str, str], view: str) -> int:
        """Refuse, before anything is written, data that could not be stored whole; the row count."""
        numbered = f"(SELECT row_number() OVER () - 1 AS shopcrm_row, * FROM {_INCOMING})"
        for column in _REQUIRED[table]:
            rows = self.con.execute(
                f'SELECT shopcrm_row FROM {numbered} WHERE "{column}" IS NULL ORDER BY 1'
            ).fetchall()
            if rows:
                raise LoadError(
                    f"{len(rows)} {table} row(s) have no {column} ({_rows_named(r[0] for r in rows)}); "
                    f"every row of {table} needs {_NEEDS[table]}"
                )
        if existing:
            self._check_id_type(table, existing, view)
        if table in _UNIQUE:
            keys = ", ".join(f'"{k}"' for k in _UNIQUE[table])
            shown_key = " || ' at ' || ".join(f'CAST("{k}" AS VARCHAR)' for k in _UNIQUE[table])
            dupes = self.con.execute(
                f"SELECT {shown_key}, list(shopcrm_row ORDER BY shopcrm_row) FROM {numbered} "
                f"GROUP BY {keys} HAVING COUNT(*) > 1 ORDER BY min(shopcrm_row) LIMIT 5"
            ).fetchall()
            if dupes:
                shown = "; ".join(f"{d[0]!r} ({_rows_named(d[1])})" for d in dupes)
                what = {CUSTOMERS: "customer ids", PRODUCTS: "product ids",
                        HISTORY: "a product's history instants (product_id, ts)"}[table]
                keep = {CUSTOMERS: "keep one row per customer (a later load replaces it)",
                        PRODUCTS: "keep one row per product (a later load replaces it)",
                        HISTORY: "keep one row per product and instant: the state it had from then on"}[table]
                raise LoadError(f"{what} must be unique within one load; repeated: {shown}; {keep}")
        for column, kind in incoming.items():
            self._check_fits(table, column, kind, existing.get(column), numbered)
        counted = self.con.execute(f"SELECT COUNT(*) FROM {_INCOMING}").fetchall()
        return int(counted[0][0])

    def _check_fits(self, table: str, column: str, kind: str, target: str | None, numbered: str) -> None:
        """Every value of an incoming column converts to the column it goes to, without loss."""
        converted = self._select_expr(column, kind, try_=True).removesuffix(f' AS "{column}"')
        if target == '"NULL"':
            target = None
        if target is not None and target != kind:
            converted = f"TRY_CAST({converted} AS {target})"
        if converted == f'"{column}"':
            return
        wrong = f"{converted} IS NULL"
        whole = target is not None and column_type(target) is ColumnType.INTEGER
        if whole and column_type(kind) not in (ColumnType.INTEGER, ColumnType.BOOLEAN):  # 1.5 must not become 2
            wrong += f' OR TRY_CAST("{column}" AS DOUBLE) IS DISTINCT FROM {converted}'
        rows = self.con.execute(
            f'SELECT shopcrm_row, CAST("{column}" AS VARCHAR) FROM {numbered} '
            f'WHERE "{column}" IS NOT NULL AND ({wrong}) ORDER BY 1'
        ).fetchall()
        if rows:
            shown = ", ".join(f"row {r[0]}: {r[1]!r}" for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            kind_of = column_type(target) if target is not None else (
                ColumnType.TIMESTAMP if column == "ts" else ColumnType.JSON
            )
            held = f"holds {target} values" if target is not None else f"is stored as {kind_of.value}"
            raise LoadError(
                f"{table}.{column} {held}, and {len(rows)} value(s) do not fit it ({shown}); "
                f"load {_WANTED.get(kind_of, 'values of that type')} there, or leave it empty (NULL)"
            )

    def _check_id_type(self, table: str, existing: dict[str, str], view: str) -> None:
        described = self.con.execute(f"DESCRIBE {view}").fetchall()
        incoming = {str(r[0]): str(r[1]) for r in described}
        key = _ID[table]
        old, new = column_type(existing[key]), column_type(incoming[key])
        if old is not new and ColumnType.STRING in (old, new):
            raise LoadError(
                f"{table}.{key} holds {existing[key]} values, but the new data has "
                f"{incoming[key]}; load ids of one kind (all strings or all integers)"
            )

    # -- issue 14 (catalog): the product history, kept by load_products and load_product_history ------------------
    def _check_history(self, table: str, view: str, at: datetime | None) -> None:
        """History only moves forward: products loaded ``at`` an instant before a product's newest history row are
        refused; history rows repeating a (product_id, ts) the history has are refused."""
        if table == PRODUCTS:
            late = self.con.execute(
                f'SELECT CAST(h.product_id AS VARCHAR), max(h.ts) FROM "{HISTORY}" h WHERE h.product_id IN '
                f"(SELECT product_id FROM ({view})) GROUP BY h.product_id HAVING max(h.ts) > ? ORDER BY 1 LIMIT 5",
                [at],
            ).fetchall()
            if late:
                shown = ", ".join(f"{r[0]!r} (history at {r[1]:%Y-%m-%d %H:%M:%S})" for r in late)
                raise LoadError(
                    f"products loaded at {at:%Y-%m-%d %H:%M:%S} UTC would rewrite the past of {shown}: a product's "
                    "history only moves forward; load them at or after their newest history row"
                )
            return
        clash = self.con.execute(
            f'SELECT CAST(v.product_id AS VARCHAR), v.ts FROM ({view}) v JOIN "{HISTORY}" h '
            "ON h.product_id = v.product_id AND h.ts = v.ts ORDER BY 1, 2 LIMIT 5"
        ).fetchall()
        if clash:
            shown = ", ".join(f"{r[0]!r} at {r[1]:%Y-%m-%d %H:%M:%S}" for r in clash)
            raise LoadError(
                f"the product history already has a row for {shown}; one row per product and instant (the state from "
                "then on): leave those rows out"
            )

    def _record_history(self, view: str, at: datetime, history: dict[str, str]) -> None:
        """Append ``at`` the state of every loaded product that is new to the history or whose price, stock or
        availability differs from its newest history row (a row already at ``at`` is replaced)."""
        if not history:
            id_type = self._columns(PRODUCTS)["product_id"]
            self.con.execute(f'CREATE TABLE "{HISTORY}" (product_id {id_type}, ts TIMESTAMP, '
                             + ", ".join(f'"{c}" {k}' for c, k in _STATE.items()) + ")")
        catalog = self._columns(PRODUCTS)
        kept = [c for c in _STATE if c in catalog]  # a state the catalog does not hold carries over from the history
        state = ", ".join(f'CAST(p."{c}" AS {k}) AS "{c}"' if c in kept else f'h."{c}" AS "{c}"' for c, k in _STATE.items())
        changed = " OR ".join([f'CAST(p."{c}" AS {_STATE[c]}) IS DISTINCT FROM h."{c}"' for c in kept] or ["FALSE"])
        latest = (f'SELECT product_id, ts, {", ".join(chr(34) + c + chr(34) for c in _STATE)} FROM "{HISTORY}" '
                  "QUALIFY row_number() OVER (PARTITION BY product_id ORDER BY ts DESC) = 1")
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE shopcrm_changed AS SELECT p.product_id, {state}, h.ts AS latest "
            f'FROM "{PRODUCTS}" p LEFT JOIN ({latest}) h ON h.product_id = p.product_id '
            f"WHERE p.product_id IN (SELECT product_id FROM ({view})) AND (h.product_id IS NULL OR {changed})"
        )
        try:
            self.con.execute(f'DELETE FROM "{HISTORY}" WHERE ts = ? AND product_id IN '
                             "(SELECT product_id FROM shopcrm_changed WHERE latest = ?)", [at, at])
            columns = ", ".join(f'"{c}"' for c in _STATE)
            self.con.execute(f'INSERT INTO "{HISTORY}" (product_id, ts, {columns}) '
                             f"SELECT product_id, ?, {columns} FROM shopcrm_changed", [at])
        finally:
            self.con.execute("DROP TABLE IF EXISTS shopcrm_changed")

    def _add_columns(self, table: str, existing: dict[str, str], view: str) -> None:
        described = self.con.execute(f"DESCRIBE {view}").fetchall()
        for name, kind, *_ in described:
            if name not in existing:
                kind = "VARCHAR" if str(kind) == '"NULL"' else kind
                self.con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')
            elif existing[name] == '"NULL"' and str(kind) != '"NULL"':
                # every value so far was NULL (the first load had none): the first real values decide the type;
                # DuckDB retypes no column of a table with an index (the load makes the customers' one again)
                if table == CUSTOMERS:
                    self.con.execute(f'DROP INDEX IF EXISTS "{CUSTOMERS_INDEX}"')
                self.con.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{name}" TYPE {kind}')

    def _relation(self, data: Any, table: str) -> duckdb.DuckDBPyRelation:
        if isinstance(data, str | Path):
            path = Path(data)
            if not path.exists():
                raise LoadError(f"no file at {str(path)!r} to load {table} from")
            suffix = path.suffix.lower()
            if suffix in (".parquet", ".pq"):
                return self.con.read_parquet(str(path))
            if suffix in (".csv", ".tsv", ".txt"):
                return self.con.read_csv(str(path))
            raise LoadError(f"cannot load {table} from {path.name!r}: use a .parquet or .csv file")
        module = type(data).__module__.split(".")[0]
        if module == "pyarrow":
            return self.con.from_arrow(data)
        if module == "polars":
            return self.con.from_arrow(data.to_arrow())
        if module == "pandas":
            return self.con.from_df(data)
        if isinstance(data, Mapping) or not isinstance(data, Iterable):
            raise LoadError(
                f"cannot load {table} from {type(data).__name__}: pass an iterable of dicts, a pandas or "
                "polars DataFrame, a pyarrow Table, or a Parquet/CSV path"
            )
        return self.con.from_arrow(_rows_to_arrow(data, table))


def _plain(value: Any, column: str) -> Any:
    if isinstance(value, datetime | date):
        return to_utc_naive(value)
    if column == "ts" and isinstance(value, str):
        return to_utc_naive(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _rows_to_arrow(rows: Iterable[Mapping[str, Any]], table: str) -> Any:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {}
    count = 0
    for row in rows:
        if not isinstance(row, Mapping):
            raise LoadError(f"{table} rows must be dicts; row {count} is {type(row).__name__}")
        for key in row:
            if key not in columns:
                columns[key] = [None] * count
        for key, values in columns.items():
            try:
                values.append(_plain(row.get(key), key))
            except (ValueError, OverflowError) as exc:
                raise LoadError(
                    f"{table} row {count} (counting from 0): {key} {row.get(key)!r} is not a timestamp ({exc}); "
                    "use a datetime or ISO 8601 text such as '2026-03-10T09:00:00+09:00'"
                ) from exc
        count += 1
    if not count:
        raise LoadError(f"no {table} rows to load")
    try:
        return pa.table({k: pa.array(v) for k, v in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LoadError(f"{table} rows mix value types in one column: {exc}") from exc


def _rows_named(rows: Iterable[int]) -> str:
    """Row numbers (counting from 0) for a message, the first few of them."""
    numbers = list(rows)
    shown = ", ".join(str(n) for n in numbers[:5]) + (", ..." if len(numbers) > 5 else "")
    return f"row{'s' if len(numbers) > 1 else ''} {shown}, counting from 0"


def _holder(message: str) -> str:
    """`` (PID 1234)`` from DuckDB's lock error, when it names the holder."""
    import re

    found = re.search(r"PID (\d+)", message)
    return f" (PID {found.group(1)})" if found else ""


def _read_only() -> ReadOnlyShopError:
    """DuckDB's refusal to write on a read-only database, said plainly."""
    return ReadOnlyShopError(
        "this shop was opened with read_only=True and cannot be written; open it without read_only in the one "
        "process that writes (see docs/library-tables.md)"
    )
