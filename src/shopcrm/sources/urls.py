"""Database URLs: ``postgresql://``, ``mysql://``, ``sqlite:///``, ``duckdb:///`` or a plain DuckDB path, parsed
and opened (a shop from a URL is :func:`shopcrm.connect`, in ``shopcrm._connect``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["SCHEMES", "open_url"]

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


def _hide_password(url: str) -> str:
    """The URL with its password replaced by ``***`` (for error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
