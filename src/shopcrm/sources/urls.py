"""A shop from a URL: ``postgresql://``, ``mysql://``, ``sqlite:///``, ``duckdb:///`` or a plain DuckDB path.

>>> shop = connect("sqlite:///:memory:")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from shopcrm.shop import Shop

__all__ = ["SCHEMES", "connect", "open_url"]

#: URL schemes and the dialect each reaches
SCHEMES = {
    "postgresql": "postgres", "postgres": "postgres", "postgresql+psycopg": "postgres",
    "mysql": "mysql", "mariadb": "mysql", "mysql+pymysql": "mysql",
    "sqlite": "sqlite", "duckdb": "duckdb",
}
#: the driver module of each dialect, and what to install for it
_DRIVERS = {"postgres": ("psycopg", "'shopcrm[postgres]'"),
            "mysql": ("pymysql", "'shopcrm[mysql]'")}
#: options of the Shop constructors a URL's query string may set (``?customers=shop.members&library_schema=crm``)
_QUERY_OPTIONS = ("customers", "events", "library_schema", "library_prefix")


def _driver(dialect: str) -> Any:
    module, extra = _DRIVERS[dialect]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"a {dialect} URL needs the {module} driver, which is not installed; install it with: pip install {extra}"
        ) from None


def _scheme(text: str) -> str | None:
    head, sep, _ = text.partition("://")
    return head.lower() if sep else None


def connect(url: str | Path, **options: Any) -> Shop:
    """The shop a URL names; a text without ``scheme://`` is a DuckDB file path.

    ``postgresql://user:password@host:5432/db``, ``mysql://user:password@host:3306/db``, ``sqlite:///shop.db``
    (``sqlite:////abs/path.db`` for an absolute path), ``duckdb:///shop.duckdb``.  Query parameters
    ``customers``, ``events``, ``library_schema`` and ``library_prefix`` set the Shop's options, as do
    keyword ``options`` (which win; ``store=`` keeps the library's tables in another database, see
    :func:`shopcrm.sources._store.store_from`)."""
    from shopcrm.shop import Shop

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


def open_url(url: str, options: tuple[str, ...], *, create: bool = False) -> tuple[Any, str, dict[str, str]]:
    """An open connection to the database ``url`` names, its dialect, and the query parameters (each one of
    ``options``).  ``create``: a SQLite file that does not exist yet is created (a store's new file)."""
    dialect, _, query = _parse(url, options)
    if dialect == "duckdb":
        import duckdb

        return duckdb.connect(_file(url)), dialect, query
    if dialect == "sqlite":
        import sqlite3

        path = _file(url)
        if not create and path != ":memory:" and not Path(path).exists():
            raise FileNotFoundError(f"no SQLite file {path!r} (from {url!r})")
        return sqlite3.connect(path), dialect, query
    return _server(dialect, url), dialect, query


def _parse(text: str, options: tuple[str, ...]) -> tuple[str, Any, dict[str, str]]:
    """The dialect of a URL, its parts and its query parameters (each one of ``options``)."""
    scheme = _scheme(text)
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown database URL scheme {scheme!r} in {_hide_password(text)!r}; use postgresql://, mysql://, "
            "sqlite:/// or duckdb:/// (or a DuckDB file path)"
        )
    parts = urlsplit(text)
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(options))
    if unknown:
        raise ValueError(f"unknown URL parameter {', '.join(map(repr, unknown))}; the URL may set {', '.join(options)}")
    return SCHEMES[scheme], parts, query


def _file(text: str) -> str:
    """The file a ``sqlite:///`` or ``duckdb:///`` URL names."""
    scheme = _scheme(text)
    parts = urlsplit(text)
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if parts.netloc:
        raise ValueError(f"{scheme} URLs name a file, not a host: {scheme}:///relative.db or {scheme}:////abs/path.db")
    if not path:
        raise ValueError(f"{_hide_password(text)!r} names no file; e.g. {scheme}:///shop.db")
    return path


def _server(dialect: str, text: str) -> Any:
    """A connection to the PostgreSQL or MySQL server a URL names."""
    driver = _driver(dialect)
    parts = urlsplit(text)
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ValueError(f"{_hide_password(text)!r} names no database; e.g. {_scheme(text)}://user:password@host:port/shop")
    host = parts.hostname or "localhost"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if dialect == "postgres":
        params: dict[str, Any] = {"host": host, "dbname": database}
        if parts.port:
            params["port"] = parts.port
    else:
        params = {"host": host, "database": database, "charset": "utf8mb4", "autocommit": False}
        params["port"] = parts.port or 3306
    if user:
        params["user"] = user
    if password is not None:
        params["password"] = password
    return _open(driver, params, text)


def _open(driver: Any, params: dict[str, Any], url: str) -> Any:
    try:
        return driver.connect(**params)
    except Exception as error:  # the driver's own OperationalError: say which URL, never its password
        raise ConnectionError(f"cannot connect to {_hide_password(url)}: {error}") from error


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


def _hide_password(url: str) -> str:
    """The URL with its password replaced by ``***`` (for error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
