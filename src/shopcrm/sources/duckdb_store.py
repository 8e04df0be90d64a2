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
from shopcrm.schema import ColumnType, Schema, Table, check_identifier
from shopcrm.sources._base import SegmentStore, Source, column_type
from shopcrm.sources._campaign_store import CampaignStore, SQLCampaignStore
from shopcrm.sources._sql_segments import SQLSegmentStore
from shopcrm.timeline import to_utc_naive

__all__ = ["DuckDBSource", "LoadError"]

CUSTOMERS = "customers"
EVENTS = "events"
_REQUIRED = {CUSTOMERS: ("customer_id",), EVENTS: ("customer_id", "event", "ts")}


class LoadError(ValueError):
    """Data handed to ``load_customers`` / ``load_events`` cannot be stored."""


class DuckDBSource(Source):
    """Customers and events in an embedded DuckDB database.

    ``path=":memory:"`` keeps everything in memory; a file path persists data and
    named segments.  Timestamps are stored as UTC ``TIMESTAMP``.
    """

    dialect = "duckdb"

    def __init__(self, path: str | Path = ":memory:", *, connection: duckdb.DuckDBPyConnection | None = None) -> None:
        self.path = str(path)
        self.con = connection if connection is not None else duckdb.connect(self.path)
        self.con.execute("SET TimeZone = 'UTC'")
        self._segments = SQLSegmentStore(self._run, "?")
        self._schema: Schema | None = None
        self._campaigns: CampaignStore | None = None
        self._key_sets = 0

    # ----------------------------------------------------------------- Source
    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()

    def _columns(self, table: str) -> dict[str, str]:
        rows = self._run(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position",
            (table,),
        )
        return {str(name): str(kind) for name, kind in rows}

    def schema(self) -> Schema:
        if self._schema is None:
            customers, events = self._columns(CUSTOMERS), self._columns(EVENTS)
            if customers and not events:  # customers without behaviour yet: an empty events table
                id_type = customers.get("customer_id", "VARCHAR")
                self.con.execute(f'CREATE TABLE "{EVENTS}" (customer_id {id_type}, event VARCHAR, ts TIMESTAMP)')
                events = self._columns(EVENTS)
            missing = [t for t, cols in ((CUSTOMERS, customers), (EVENTS, events)) if not cols]
            if missing:
                raise LoadError(
                    f"the shop has no {' and no '.join(missing)} yet; load data first with "
                    "shop.load_customers(...) and shop.load_events(...)"
                )
            self._schema = Schema(
                Table(CUSTOMERS, {n: column_type(t) for n, t in customers.items()}),
                Table(EVENTS, {n: column_type(t) for n, t in events.items()}),
            )
        return self._schema

    def fetch(self, query: exp.Expression) -> list[tuple[Any, ...]]:
        return self.con.execute(render(query, self.dialect)).fetchall()

    def fetch_arrow(self, query: exp.Expression, columns: list[str]) -> Any:
        table = self.con.sql(render(query, self.dialect)).to_arrow_table()
        return table.rename_columns(columns)

    def segment_store(self) -> SegmentStore:
        return self._segments

    def campaign_store(self) -> CampaignStore:
        if self._campaigns is None:
            # delivery outcomes are events like any other: they go into the events table, in the ledger's transaction
            self._campaigns = SQLCampaignStore(self._run, self._insert, self._transaction,
                                               write_events=self._write_message_events, key_set=self._key_set)
        return self._campaigns

    @contextmanager
    def _key_set(self, keys: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        """``key_ IN (SELECT ...)`` over a registered Arrow column: DuckDB binds hundreds of placeholders slowly."""
        import pyarrow as pa

        self._key_sets += 1
        name = f"shopcrm_keys_{self._key_sets}"
        self.con.register(name, pa.table({"key_": pa.array(list(keys), pa.string())}))
        try:
            yield f"(SELECT key_ FROM {name})", []
        finally:
            with suppress(duckdb.Error):
                self.con.unregister(name)

    def _write_message_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Delivery outcomes into the events table (inside the caller's transaction): columns the table lacks
        are added, typed from the values."""
        import pyarrow as pa

        names = list(dict.fromkeys(name for event in events for name in event))
        data = pa.table({name: pa.array([_plain(e.get(name), name) for e in events]) for name in names})
        existing = self._columns(EVENTS)
        if not existing:
            self.load(EVENTS, list(events))
            return
        self.con.register("shopcrm_outcomes", data)
        try:
            described = self.con.execute("DESCRIBE SELECT * FROM shopcrm_outcomes").fetchall()
            for name, kind, *_ in described:
                if name not in existing:
                    check_identifier(str(name), "column name")
                    declared = "VARCHAR" if str(kind) == '"NULL"' else kind
                    self.con.execute(f'ALTER TABLE "{EVENTS}" ADD COLUMN "{name}" {declared}')
            self.con.execute(f'INSERT INTO "{EVENTS}" BY NAME SELECT * FROM shopcrm_outcomes')
        finally:
            with suppress(duckdb.Error):
                self.con.unregister("shopcrm_outcomes")
        if any(name not in existing for name in names):
            self._schema = None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def _insert(self, table: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> None:
        """Many rows, given column by column, through Arrow (DuckDB's executemany is slow)."""
        import pyarrow as pa

        check_identifier(table, "table name")
        data = pa.table(dict(zip(columns, values, strict=True)))
        self.con.register("shopcrm_rows", data)
        try:
            names = ", ".join(f'"{c}"' for c in columns)
            self.con.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM shopcrm_rows')
        finally:
            # in a transaction a failed insert aborted, the view goes with the rollback (or the next register)
            with suppress(duckdb.Error):
                self.con.unregister("shopcrm_rows")

    def close(self) -> None:
        self.con.close()

    # ---------------------------------------------------------------- loading
    def load(self, table: str, data: Any) -> int:
        """Append rows to ``customers`` (replacing ids loaded before) or ``events``.

        Returns the number of rows loaded.
        """
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
        self.con.register("shopcrm_incoming", relation)
        try:
            select = ", ".join(self._select_expr(c, t, table) for c, t in incoming.items())
            view = f"SELECT {select} FROM shopcrm_incoming"
            existing = self._columns(table)
            if not existing:
                self.con.execute(f'CREATE TABLE "{table}" AS {view} LIMIT 0')
            else:
                self._check_id_type(table, existing, view)
                self._add_columns(table, existing, view)
            if table == CUSTOMERS:
                self._check_unique_ids(view)
                self.con.execute(
                    f'DELETE FROM "{table}" WHERE customer_id IN (SELECT customer_id FROM ({view}))'
                )
            count = self.con.execute("SELECT COUNT(*) FROM shopcrm_incoming").fetchone()
            self.con.execute(f'INSERT INTO "{table}" BY NAME {view}')
        finally:
            self.con.unregister("shopcrm_incoming")
        self._schema = None
        return int(count[0]) if count else 0

    def _select_expr(self, column: str, kind: str, table: str) -> str:
        quoted = f'"{column}"'
        upper = kind.upper()
        if column == "ts" or upper.startswith("TIMESTAMP"):
            if upper == "TIMESTAMP":
                return quoted
            if upper.startswith(("VARCHAR", "TIMESTAMP WITH TIME ZONE", "DATE")):
                return f"CAST(CAST({quoted} AS TIMESTAMPTZ) AS TIMESTAMP) AS {quoted}"
            return f"CAST({quoted} AS TIMESTAMP) AS {quoted}"
        if column == "properties" and upper != "JSON":
            return f"CAST({quoted} AS JSON) AS {quoted}"
        return quoted

    def _check_id_type(self, table: str, existing: dict[str, str], view: str) -> None:
        described = self.con.execute(f"DESCRIBE {view}").fetchall()
        incoming = {str(r[0]): str(r[1]) for r in described}
        old, new = column_type(existing["customer_id"]), column_type(incoming["customer_id"])
        if old is not new and ColumnType.STRING in (old, new):
            raise LoadError(
                f"{table}.customer_id holds {existing['customer_id']} values, but the new data has "
                f"{incoming['customer_id']}; load ids of one kind (all strings or all integers)"
            )

    def _add_columns(self, table: str, existing: dict[str, str], view: str) -> None:
        described = self.con.execute(f"DESCRIBE {view}").fetchall()
        for name, kind, *_ in described:
            if name not in existing:
                kind = "VARCHAR" if str(kind) == '"NULL"' else kind
                self.con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')
            elif existing[name] == '"NULL"' and str(kind) != '"NULL"':
                # every value so far was NULL (the first load had none): the first real values decide the type
                self.con.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{name}" TYPE {kind}')

    def _check_unique_ids(self, view: str) -> None:
        dupes = self.con.execute(
            f"SELECT customer_id FROM ({view}) GROUP BY customer_id HAVING COUNT(*) > 1 LIMIT 5"
        ).fetchall()
        if dupes:
            shown = ", ".join(repr(d[0]) for d in dupes)
            raise LoadError(f"customer ids must be unique within one load; repeated: {shown}")
        nulls = self.con.execute(f"SELECT COUNT(*) FROM ({view}) WHERE customer_id IS NULL").fetchone()
        if nulls and nulls[0]:
            raise LoadError(f"{nulls[0]} customer rows have no customer_id; every customer needs one")

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
            values.append(_plain(row.get(key), key))
        count += 1
    if not count:
        raise LoadError(f"no {table} rows to load")
    try:
        return pa.table({k: pa.array(v) for k, v in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LoadError(f"{table} rows mix value types in one column: {exc}") from exc
