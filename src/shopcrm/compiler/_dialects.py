"""Per-dialect differences, as small classes: only what differs is overridden.

The compiler builds one sqlglot tree per rule; sqlglot renders most of it for
every dialect.  What sqlglot cannot know (how a shop's MySQL compares strings,
how SQLite stores timestamps, how each engine turns an md5 hex prefix into an
integer) lives here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlglot import exp

from shopcrm.dsl._json import JsonKind

__all__ = ["DIALECTS", "SQLITE_FUNCTIONS", "Dialect", "dialect_for"]


def _lit(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _num(value: int) -> exp.Expression:
    return exp.Literal.number(value)


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _when(condition: exp.Expression, value: exp.Expression) -> exp.Expression:
    """``CASE WHEN condition THEN value END``."""
    return exp.Case(ifs=[exp.If(this=condition, true=value)])


def _stamp(at: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS``, the year always four digits (strftime drops the zeros of years before 1000)."""
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d} {at.hour:02d}:{at.minute:02d}:{at.second:02d}"


class Dialect:
    """The ANSI-ish default; each engine overrides what it does differently."""

    name: ClassVar[str] = ""
    text_type: ClassVar[str] = "TEXT"
    timestamp_type: ClassVar[str] = "TIMESTAMP"
    double_type: ClassVar[str] = "DOUBLE"
    #: one rule compiles to set operations of filtered subqueries (INTERSECT/EXCEPT),
    #: which DuckDB runs fastest; elsewhere one grouped pass over the events
    set_form: ClassVar[bool] = False
    #: ``count_many`` packs each grouped pass's tests into bit masks, merged into one relation before one join
    #: with the customers (issue 15: fewer, narrower joins on DuckDB); elsewhere each pass's columns are joined
    pass_masks: ClassVar[bool] = False

    # -- timestamps ---------------------------------------------------------
    def timestamp_literal(self, at: datetime) -> exp.Expression:
        """An instant (naive UTC) as a literal comparable with ts columns."""
        text = f"{_stamp(at)}.{at.microsecond:06d}"
        return exp.cast(_lit(text), exp.DataType.build(self.timestamp_type, dialect=self.name))

    def timestamp_column(self, column: exp.Expression) -> exp.Expression:
        """A timestamp column as it should be compared (SQLite normalises text)."""
        return column

    def plus_seconds(self, column: exp.Expression, seconds: int) -> exp.Expression:
        """``column + seconds`` for a timestamp column."""
        return exp.Add(
            this=column, expression=exp.Interval(this=_lit(str(seconds)), unit=exp.var("SECOND"))
        )

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        """Microseconds since 1970-01-01 of a (UTC) timestamp column, as an exact integer."""
        return _fn("EPOCH_US", column)

    # -- strings ------------------------------------------------------------
    def string_equality(self, value: exp.Expression) -> exp.Expression:
        """A string expression wrapped so that ``=`` is exact (case, padding)."""
        return value

    def string_order(self, value: exp.Expression) -> exp.Expression:
        """A string expression wrapped so that ``<`` orders by code point."""
        return value

    def position(self, haystack: exp.Expression, needle: exp.Expression) -> exp.Expression:
        """1-based position of ``needle`` in ``haystack``; 0 when absent."""
        return exp.StrPosition(this=haystack, substr=needle)

    def substring(self, value: exp.Expression, length: int) -> exp.Expression:
        """The first ``length`` characters."""
        return exp.Substring(this=value, start=_num(1), length=_num(length))

    def to_text(self, value: exp.Expression) -> exp.Expression:
        return exp.cast(value, exp.DataType.build(self.text_type, dialect=self.name))

    def concat(self, *parts: exp.Expression) -> exp.Expression:
        return exp.Concat(expressions=list(parts), safe=True)

    def one_of(self, column: exp.Expression, values: Sequence[str]) -> exp.Expression:
        """``column IN (values)`` for text literals, as a filter this engine applies best."""
        return exp.In(this=column, expressions=[_lit(v) for v in values])

    # -- sample buckets -----------------------------------------------------
    def md5_bucket(self, text: exp.Expression) -> exp.Expression:
        """The sample bucket of a text value: the first 8 hex digits of its md5 as an integer, mod 10,000 (the
        ``sample`` rule, holdouts and variants)."""
        number = self.hex_to_int(exp.Substring(this=self.md5_hex(text), start=_num(1), length=_num(8)))
        return exp.Mod(this=number if isinstance(number, exp.Paren) else exp.Paren(this=number), expression=_num(10000))

    def md5_hex(self, value: exp.Expression) -> exp.Expression:
        """Lower-case hex md5 of a text value."""
        return exp.MD5(this=value)

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        """An 8-digit hex string as an integer: portable sum of digit positions."""
        digits = _lit("0123456789abcdef")
        total: exp.Expression | None = None
        for i in range(8):
            digit = exp.Sub(
                this=self.position(digits, exp.Lower(this=exp.Substring(this=hex8, start=_num(i + 1), length=_num(1)))),
                expression=_num(1),
            )
            term = exp.Mul(this=exp.Paren(this=digit), expression=_num(16 ** (7 - i)))
            total = term if total is None else exp.Add(this=total, expression=term)
        assert total is not None
        return exp.Paren(this=total)

    # -- JSON properties ----------------------------------------------------
    # A property compares by its JSON type: a number with numbers, a string with strings, true/false with booleans.
    # ``json_number``, ``json_string`` and ``json_boolean`` are the value under a key when it is of that type and
    # NULL otherwise (another type, an array, an object, JSON null, no such key), so that a comparison of the
    # wrong type is false (as with NULL) and no engine ever converts a value that does not fit.
    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        """The text of a scalar under ``key`` in a JSON column."""
        return exp.JSONExtractScalar(this=column, expression=_lit(f"$.{key}"))

    def json_raw(self, column: exp.Expression, key: str) -> exp.Expression:
        """The JSON text of the value under ``key`` (a string still in quotes); NULL when there is no such key."""
        return _fn("JSON_QUERY", column.copy(), _lit(f"$.{key}"))

    def json_is(self, column: exp.Expression, key: str, kind: JsonKind) -> exp.Expression:
        """Whether the value under ``key`` is a JSON ``kind``: by the first character of its JSON text."""
        first = exp.Substring(this=self.json_raw(column.copy(), key), start=_num(1), length=_num(1))
        if kind == "string":
            return exp.EQ(this=first, expression=_lit('"'))
        if kind == "boolean":
            return exp.In(this=first, expressions=[_lit("t"), _lit("f")])
        return exp.In(this=first, expressions=[_lit(c) for c in "-0123456789"])

    def json_number(self, column: exp.Expression, key: str) -> exp.Expression:
        """The value under ``key`` as a double when it is a JSON number, else NULL."""
        return _when(self.json_is(column.copy(), key, "number"), self.to_double(self.json_text(column.copy(), key)))

    def json_string(self, column: exp.Expression, key: str) -> exp.Expression:
        """The value under ``key`` when it is a JSON string, else NULL."""
        return _when(self.json_is(column.copy(), key, "string"), self.json_text(column.copy(), key))

    def json_boolean(self, column: exp.Expression, key: str) -> exp.Expression:
        """The value under ``key`` as a boolean when it is JSON true or false, else NULL."""
        return _when(self.json_is(column.copy(), key, "boolean"), exp.EQ(this=self.json_text(column.copy(), key), expression=_lit("true")))

    def json_is_null(self, column: exp.Expression, key: str) -> exp.Expression:
        """Whether there is no value under ``key``, or JSON null (``is_null``)."""
        return exp.Is(this=self.json_text(column.copy(), key), expression=exp.Null())

    def to_double(self, value: exp.Expression) -> exp.Expression:
        return exp.cast(value, exp.DataType.build(self.double_type, dialect=self.name))

    # -- booleans -------------------------------------------------------------
    def boolean(self, value: bool) -> exp.Expression:
        return exp.true() if value else exp.false()

    def mask_union(self, mask: exp.Expression) -> exp.Expression:
        """The aggregate merging one customer's pass masks: their bits are disjoint and a customer has at most one
        row per pass, so the sum is their bitwise OR."""
        return exp.Sum(this=mask)


class DuckDB(Dialect):
    name = "duckdb"
    text_type = "VARCHAR"
    set_form = True
    pass_masks = True

    def mask_union(self, mask: exp.Expression) -> exp.Expression:
        return exp.BitwiseOrAgg(this=mask)  # BIT_OR keeps a BIGINT, where SUM would widen it to HUGEINT

    def one_of(self, column: exp.Expression, values: Sequence[str]) -> exp.Expression:
        """``column = ANY [values]``: DuckDB 2 makes ``IN`` of a few constants an optional zone-map filter and tests it
        after the scan, which then reads every column of every row (10M of 11M events for a tick's histories, 2.3M
        passing); the list is tested in the scan, so the other columns are read for the passing rows only."""
        if len(values) == 1:
            return exp.EQ(this=column, expression=_lit(values[0]))
        return exp.EQ(this=column, expression=exp.Any(this=exp.Array(expressions=[_lit(v) for v in values])))

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        return exp.cast(exp.DPipe(this=_lit("0x"), expression=hex8, safe=True), exp.DataType.build("BIGINT"))

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("json_extract_string", column.copy(), _lit(f"$.{key}"))

    def json_is(self, column: exp.Expression, key: str, kind: JsonKind) -> exp.Expression:
        found = _fn("json_type", column.copy(), _lit(f"$.{key}"))
        names = {"number": ("BIGINT", "UBIGINT", "DOUBLE"), "string": ("VARCHAR",), "boolean": ("BOOLEAN",)}[kind]
        return exp.EQ(this=found, expression=_lit(names[0])) if len(names) == 1 else exp.In(
            this=found, expressions=[_lit(n) for n in names])

    def json_number(self, column: exp.Expression, key: str) -> exp.Expression:
        number = exp.TryCast(this=self.json_text(column.copy(), key), to=exp.DataType.build("DOUBLE"))
        return _when(self.json_is(column.copy(), key, "number"), number)


class SQLite(Dialect):
    """Timestamps are ISO 8601 text; md5 comes from a registered Python function."""

    name = "sqlite"
    double_type = "REAL"

    def timestamp_literal(self, at: datetime) -> exp.Expression:
        return _lit(f"{_stamp(at)}.{at.microsecond // 1000:03d}")

    def timestamp_column(self, column: exp.Expression) -> exp.Expression:
        return _fn("strftime", _lit("%Y-%m-%d %H:%M:%f"), column)

    def plus_seconds(self, column: exp.Expression, seconds: int) -> exp.Expression:
        return _fn("strftime", _lit("%Y-%m-%d %H:%M:%f"), column, _lit(f"+{seconds} seconds"))

    def substring(self, value: exp.Expression, length: int) -> exp.Expression:
        return _fn("substr", value, _num(1), _num(length))

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        seconds = exp.cast(_fn("strftime", _lit("%s"), column), exp.DataType.build("INTEGER"))
        millis = exp.cast(_fn("substr", _fn("strftime", _lit("%f"), column), _num(4)), exp.DataType.build("INTEGER"))
        return exp.Add(this=exp.Mul(this=seconds, expression=_num(1_000_000)), expression=exp.Mul(this=millis, expression=_num(1000)))

    def concat(self, *parts: exp.Expression) -> exp.Expression:
        out = parts[0]
        for part in parts[1:]:
            out = exp.DPipe(this=out, expression=part, safe=True)
        return out

    def md5_hex(self, value: exp.Expression) -> exp.Expression:
        return _fn("md5", value)

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("json_extract", column.copy(), _lit(f"$.{key}"))

    def _json_type(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("json_type", column.copy(), _lit(f"$.{key}"))

    def json_is(self, column: exp.Expression, key: str, kind: JsonKind) -> exp.Expression:
        names = {"number": ("integer", "real"), "string": ("text",), "boolean": ("true", "false")}[kind]
        found = self._json_type(column.copy(), key)
        return exp.EQ(this=found, expression=_lit(names[0])) if len(names) == 1 else exp.In(
            this=found, expressions=[_lit(n) for n in names])

    def json_number(self, column: exp.Expression, key: str) -> exp.Expression:
        return _when(self.json_is(column.copy(), key, "number"), self.to_double(self.json_text(column.copy(), key)))

    def json_boolean(self, column: exp.Expression, key: str) -> exp.Expression:
        """json_extract reads true and false as 1 and 0 (so does a test against TRUE)."""
        found = self._json_type(column.copy(), key)
        return exp.Case(this=found, ifs=[exp.If(this=_lit("true"), true=_num(1)), exp.If(this=_lit("false"), true=_num(0))])


class PostgreSQL(Dialect):
    name = "postgres"
    double_type = "DOUBLE PRECISION"

    def string_order(self, value: exp.Expression) -> exp.Expression:
        return exp.Collate(this=value, expression=exp.Identifier(this="C", quoted=True))

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        epoch = exp.Extract(this=exp.var("EPOCH"), expression=column)  # numeric: exact
        return exp.cast(exp.Mul(this=epoch, expression=_num(1_000_000)), exp.DataType.build("BIGINT"))

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        bits = exp.cast(exp.DPipe(this=_lit("x"), expression=hex8, safe=True), exp.DataType.build("BIT(32)", dialect="postgres"))
        return exp.cast(bits, exp.DataType.build("BIGINT"))

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        json_column = exp.cast(column.copy(), exp.DataType.build("JSONB", dialect="postgres"))
        return _fn("jsonb_extract_path_text", json_column, _lit(key))

    def json_is(self, column: exp.Expression, key: str, kind: JsonKind) -> exp.Expression:
        json_column = exp.cast(column.copy(), exp.DataType.build("JSONB", dialect="postgres"))
        found = _fn("jsonb_typeof", _fn("jsonb_extract_path", json_column, _lit(key)))
        return exp.EQ(this=found, expression=_lit(kind))

    def json_boolean(self, column: exp.Expression, key: str) -> exp.Expression:
        return _when(self.json_is(column.copy(), key, "boolean"), exp.cast(self.json_text(column.copy(), key), exp.DataType.build("BOOLEAN")))


class MySQL(Dialect):
    """Default collations ignore case and trailing spaces: compare binary strings."""

    name = "mysql"
    text_type = "CHAR"
    timestamp_type = "DATETIME(6)"

    def _binary(self, value: exp.Expression) -> exp.Expression:
        return exp.cast(value, exp.DataType.build("BINARY", dialect="mysql"))

    def string_equality(self, value: exp.Expression) -> exp.Expression:
        return self._binary(value)

    def string_order(self, value: exp.Expression) -> exp.Expression:
        return self._binary(value)

    def position(self, haystack: exp.Expression, needle: exp.Expression) -> exp.Expression:
        return exp.StrPosition(this=self._binary(haystack), substr=self._binary(needle))

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        return exp.cast(_fn("CONV", hex8, _num(16), _num(10)), exp.DataType.build("UNSIGNED", dialect="mysql"))

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        return _fn("TIMESTAMPDIFF", exp.var("MICROSECOND"), _lit("1970-01-01 00:00:00"), column)

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("JSON_UNQUOTE", self.json_raw(column.copy(), key))

    def json_raw(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("JSON_EXTRACT", column.copy(), _lit(f"$.{key}"))

    def json_is(self, column: exp.Expression, key: str, kind: JsonKind) -> exp.Expression:
        names = {"number": ("INTEGER", "UNSIGNED INTEGER", "DOUBLE", "DECIMAL"), "string": ("STRING",),
                 "boolean": ("BOOLEAN",)}[kind]
        found = _fn("JSON_TYPE", self.json_raw(column.copy(), key))
        return exp.EQ(this=found, expression=_lit(names[0])) if len(names) == 1 else exp.In(
            this=found, expressions=[_lit(n) for n in names])

    def json_is_null(self, column: exp.Expression, key: str) -> exp.Expression:
        """JSON_UNQUOTE reads JSON null as the text 'null': ask JSON_TYPE."""
        found = exp.Coalesce(this=_fn("JSON_TYPE", self.json_raw(column.copy(), key)), expressions=[_lit("NULL")])
        return exp.EQ(this=found, expression=_lit("NULL"))


class Spark(Dialect):
    name = "spark"
    text_type = "STRING"

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        return _fn("UNIX_MICROS", column)

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        return exp.cast(_fn("CONV", hex8, _num(16), _num(10)), exp.DataType.build("BIGINT"))

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("GET_JSON_OBJECT", column.copy(), _lit(f"$.{key}"))

    def _variant(self, column: exp.Expression, key: str) -> exp.Expression:
        """The value under ``key`` as a VARIANT (Spark 4): NULL for no key or text that is not JSON."""
        return _fn("VARIANT_GET", _fn("TRY_PARSE_JSON", column.copy()), _lit(f"$.{key}"))

    def json_is(self, column: exp.Expression, key: str, kind: JsonKind) -> exp.Expression:
        found = _fn("SCHEMA_OF_VARIANT", self._variant(column.copy(), key))
        if kind == "number":  # BIGINT, DOUBLE or DECIMAL(p,s), as the JSON text of the number asks
            return exp.Or(this=exp.In(this=found, expressions=[_lit("BIGINT"), _lit("DOUBLE")]),
                          expression=exp.Like(this=found.copy(), expression=_lit("DECIMAL(%")))
        return exp.EQ(this=found, expression=_lit({"string": "STRING", "boolean": "BOOLEAN"}[kind]))

    def _typed(self, column: exp.Expression, key: str, kind: JsonKind, to: str) -> exp.Expression:
        return _when(self.json_is(column.copy(), key, kind), _fn("TRY_VARIANT_GET", self._variant(column.copy(), key), _lit("$"), _lit(to)))

    def json_number(self, column: exp.Expression, key: str) -> exp.Expression:
        return self._typed(column.copy(), key, "number", "double")

    def json_string(self, column: exp.Expression, key: str) -> exp.Expression:
        return self._typed(column.copy(), key, "string", "string")

    def json_boolean(self, column: exp.Expression, key: str) -> exp.Expression:
        return self._typed(column.copy(), key, "boolean", "boolean")


class Trino(Dialect):
    name = "trino"
    text_type = "VARCHAR"

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        seconds = _fn("TO_UNIXTIME", column)
        return exp.cast(exp.Round(this=exp.Mul(this=seconds, expression=_num(1_000_000))), exp.DataType.build("BIGINT"))

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        return _fn("from_base", hex8, _num(16))

    def json_raw(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("json_format", _fn("json_extract", column.copy(), _lit(f"$.{key}")))


class BigQuery(Dialect):
    name = "bigquery"
    text_type = "STRING"
    double_type = "FLOAT64"

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        return _fn("UNIX_MICROS", column)

    def plus_seconds(self, column: exp.Expression, seconds: int) -> exp.Expression:
        return _fn("TIMESTAMP_ADD", column, exp.Interval(this=_num(seconds), unit=exp.var("SECOND")))

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        return exp.cast(self.concat(_lit("0x"), hex8), exp.DataType.build("INT64", dialect="bigquery"))

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("JSON_VALUE", column, _lit(f"$.{key}"))


class Snowflake(Dialect):
    name = "snowflake"
    text_type = "VARCHAR"

    def hex_to_int(self, hex8: exp.Expression) -> exp.Expression:
        return _fn("TO_NUMBER", hex8, _lit("XXXXXXXX"))

    def epoch_micros(self, column: exp.Expression) -> exp.Expression:
        return _fn("DATE_PART", exp.var("EPOCH_MICROSECOND"), column)

    def json_text(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("JSON_EXTRACT_PATH_TEXT", column, _lit(key))

    def json_raw(self, column: exp.Expression, key: str) -> exp.Expression:
        return _fn("TO_JSON", _fn("GET", _fn("PARSE_JSON", column.copy()), _lit(key)))


_DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (DuckDB(), SQLite(), PostgreSQL(), MySQL(), Spark(), Trino(), BigQuery(), Snowflake())
}
DIALECTS: tuple[str, ...] = ("duckdb", "sqlite", "postgres", "mysql", "spark", "trino", "bigquery", "snowflake")


def dialect_for(name: str) -> Dialect:
    """The quirks of a dialect by name; ValueError listing the known ones otherwise."""
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; use one of {', '.join(DIALECTS)}") from None


def _md5_hex(value: Any) -> str | None:
    if value is None:
        return None
    return hashlib.md5(str(value).encode("utf-8"), usedforsecurity=False).hexdigest()


SQLITE_FUNCTIONS: Mapping[str, tuple[int, Callable[..., Any]]] = {"md5": (1, _md5_hex)}
