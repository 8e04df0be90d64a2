"""Event values read in SQL the way the pure reference reads them: a conversion's revenue and order id from their
own column, else from a JSON ``properties`` column, with text parsed as Python's ``float()`` would (anything else is
NULL, counted 0), on every engine; and the functions SQLite needs registered for it (and for SHA-256).

Shared by the campaign report (:mod:`shopcrm.report_sql`) and the global control group's lift
(:mod:`shopcrm.program_lift`).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from shopcrm.compiler._dialects import Dialect
from shopcrm.sources._base import Source

__all__ = ["SQLITE_NUMBER", "SQLITE_SHA", "event_property", "register_sqlite_functions", "revenue_number", "sha_hex16"]

SQLITE_SHA = "shopcrm_sha256"
SQLITE_NUMBER = "shopcrm_revenue"
#: a number as Python's float() reads it (no 'nan', 'inf' or underscores: those are revenue 0, like text)
_NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"


def _col(name: str, table: str = "e") -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def revenue_number(quirks: Dialect, dialect: str, value: exp.Expression, numeric: bool) -> exp.Expression:
    """A revenue value as a double: numbers as they are, numeric text parsed, anything else NULL (counted 0)."""
    if numeric:
        return quirks.to_double(value)
    if dialect == "sqlite":
        return _fn(SQLITE_NUMBER, value)
    text = exp.Trim(this=quirks.to_text(value))
    pattern = exp.Literal.string(_NUMBER)
    if dialect == "mysql":  # MariaDB has no REGEXP_LIKE
        test: exp.Expression = exp.GT(this=_fn("REGEXP_INSTR", text, pattern), expression=exp.Literal.number(0))
    else:
        test = exp.RegexpLike(this=text, expression=pattern)
    return exp.Case(ifs=[exp.If(this=test, true=quirks.to_double(text.copy()))])


def event_property(quirks: Dialect, dialect: str, source: Source, name: str, *, number: bool) -> exp.Expression:
    """A conversion property from its own column (when not NULL), else from a JSON ``properties`` column."""
    table = source.schema().events
    parts: list[exp.Expression] = []
    if table.has(name):
        numeric = table.type_of(name).is_numeric
        parts.append(revenue_number(quirks, dialect, _col(name), numeric) if number else quirks.to_text(_col(name)))
    if table.has("properties") and name != "properties":
        text = quirks.json_text(_col("properties"), name)
        parts.append(revenue_number(quirks, dialect, text, False) if number else text)
    if not parts:
        return exp.null()
    return parts[0] if len(parts) == 1 else exp.Coalesce(this=parts[0], expressions=parts[1:])


def register_sqlite_functions(source: Source) -> bool:
    """Register SHA-256 and the revenue parser on a SQLite connection; False when there is none to register on."""
    import hashlib

    from shopcrm.measurement._attribution import _revenue

    connection = getattr(source, "connection", None)
    if connection is None or not hasattr(connection, "create_function"):
        return False

    def sha(value: Any) -> str | None:
        return None if value is None else hashlib.sha256(str(value).encode()).hexdigest()

    def number(value: Any) -> float | None:
        return None if value is None else _revenue(value)

    connection.create_function(SQLITE_SHA, 1, sha, deterministic=True)
    connection.create_function(SQLITE_NUMBER, 1, number, deterministic=True)
    return True


def sha_hex16(dialect: str, text: exp.Expression, digits: int = 16) -> exp.Expression:
    """The first 16 (or ``digits``) lower-case hex digits of SHA-256 of ``text`` (UTF-8), on DuckDB, PostgreSQL,
    MySQL, Spark or SQLite (with :func:`register_sqlite_functions`)."""
    def _fn(name: str, *args: exp.Expression) -> exp.Expression:
        return exp.Anonymous(this=name, expressions=list(args))

    if dialect == "duckdb":
        digest = _fn("sha256", text)
    elif dialect == "postgres":
        digest = _fn("encode", _fn("sha256", _fn("convert_to", text, exp.Literal.string("UTF8"))),
                     exp.Literal.string("hex"))
    elif dialect in ("mysql", "spark"):
        digest = exp.Lower(this=_fn("SHA2", text, exp.Literal.number(256)))
    elif dialect == "sqlite":
        digest = _fn(SQLITE_SHA, text)
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(f"no SHA-256 in SQL for {dialect!r}")
    return _fn("substr", digest, exp.Literal.number(1), exp.Literal.number(digits))
