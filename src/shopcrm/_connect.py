"""A shop from a URL: ``postgresql://``, ``mysql://``, ``sqlite:///``, ``duckdb:///`` or a plain DuckDB path.

>>> shop = connect("sqlite:///:memory:")  # doctest: +SKIP

Above the sources: it builds the :class:`~shopcrm.Shop` facade, which no source may import (issue 15).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopcrm.shop import Shop
from shopcrm.sources.urls import _QUERY_OPTIONS, _file, _parse, _scheme, _server

__all__ = ["connect"]


def connect(url: str | Path, **options: Any) -> Shop:
    """The shop a URL names; a text without ``scheme://`` is a DuckDB file path.

    ``postgresql://user:password@host:5432/db``, ``mysql://user:password@host:3306/db``, ``sqlite:///shop.db``
    (``sqlite:////abs/path.db`` for an absolute path), ``duckdb:///shop.duckdb``.  Query parameters
    ``customers``, ``events``, ``library_schema`` and ``library_prefix`` set the Shop's options, as do
    keyword ``options`` (which win; ``store=`` keeps the library's tables in another database, see
    :func:`shopcrm.sources._store.store_from`)."""
    text = str(url)
    scheme = _scheme(text)
    if scheme is None:
        return Shop.open(text, **options)
    dialect, _, query = _parse(text, _QUERY_OPTIONS)
    settings: dict[str, Any] = {**query, **options}
    if dialect in ("sqlite", "duckdb"):
        path = _file(text)
        if dialect == "duckdb":
            if "store" in settings:
                raise ValueError(
                    "the embedded DuckDB shop keeps the library's tables in its own file; store= is for a shop read "
                    "on another engine (a postgresql://, mysql:// or sqlite:/// URL, Shop.from_spark)"
                )
            return Shop.open(path, **settings)
        import sqlite3

        if path != ":memory:" and not Path(path).exists():
            raise FileNotFoundError(f"no SQLite file {path!r} (from {text!r})")
        if settings.pop("read_only", False):  # SQLite's own read-only mode: a write fails in the driver
            connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        else:
            connection = sqlite3.connect(path)
        return _owning(Shop.from_dbapi(connection, dialect="sqlite", **settings), connection)
    if settings.pop("read_only", False):
        raise ValueError(
            f"read_only is for DuckDB and SQLite files; on {dialect} connect as a database user that may only read "
            "(and let the writing processes use another)"
        )
    connection = _server(dialect, text)
    try:
        shop = Shop.from_dbapi(connection, dialect=dialect, **settings)
    except BaseException:
        connection.close()
        raise
    return _owning(shop, connection)


def _owning(shop: Shop, connection: Any) -> Shop:
    """The shop closes the connection a URL opened (``shop.close()``, or leaving ``with``), after the source's own
    close (which closes a store it opened)."""
    own = shop.source.close

    def close() -> None:
        try:
            own()
        finally:
            connection.close()

    setattr(shop.source, "close", close)  # noqa: B010 -- an instance's own close, not the class's
    return shop
