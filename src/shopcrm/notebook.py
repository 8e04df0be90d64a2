"""Notebook helpers: audience members as a frame, breakdowns, overlaps and trends, as small value objects
that print compactly, draw as HTML in Jupyter and convert with ``to_arrow()`` / ``to_pandas()``.

The :class:`~shopcrm.Shop` methods ``members_frame``, ``breakdown``, ``overlap`` and ``trend`` call the
functions here; each compiles sqlglot trees (the members query of :func:`shopcrm.compiler.compile_members`
used as a set) and runs one query, except ``trend``, which runs one count query per instant.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import attrs
from sqlglot import exp

from shopcrm.compiler import compile_counts, compile_members
from shopcrm.compiler._dialects import dialect_for
from shopcrm.dsl import And, Rule
from shopcrm.errors import RuleError
from shopcrm.schema import ColumnType
from shopcrm.timeline import parse_duration, to_utc_naive

if TYPE_CHECKING:
    from shopcrm.dsl._parse import RuleLike
    from shopcrm.shop import Shop

__all__ = ["Breakdown", "Overlap", "Trend", "breakdown", "members_frame", "overlap", "rules_given", "trend"]

_FRAMES = ("arrow", "pandas", "polars")
#: the most instants one trend evaluates (one count query each)
MAX_TREND_POINTS = 1000


def _bar(share: float, width: int = 200) -> str:
    return f"<div style='background:#4c78a8;height:0.8em;width:{share * width:.1f}px'></div>"


def _convert(table: Any, as_: str) -> Any:
    if as_ == "arrow":
        return table
    if as_ == "pandas":
        return table.to_pandas()
    if as_ == "polars":
        import polars as pl

        return pl.from_arrow(table)
    raise ValueError(f"as_={as_!r} is not a frame kind; use one of {', '.join(map(repr, _FRAMES))}")


def _members_of(shop: Shop, rule: Rule, now: datetime) -> tuple[exp.Select, Any]:
    """The members query (CTEs lifted out, so it can sit in an ``IN``) and its CTEs."""
    query = compile_members(
        rule, shop.source.schema(), now=now, dialect=shop.source.dialect, lifecycle_policy=shop.lifecycle_policy
    )
    ctes = query.args.pop("with_", None)
    inner = exp.select(exp.column("customer_id", table="shopcrm_m", quoted=True)).from_(
        query.subquery("shopcrm_m")
    )
    return inner, ctes


def _customer_column(shop: Shop, name: Any, what: str) -> str:
    table = shop.source.schema().customers
    if not isinstance(name, str) or not table.has(name):
        from difflib import get_close_matches

        close = get_close_matches(str(name), list(table.columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{what} {name!r} is not a column of {table.name!r}{hint} "
            f"(its columns: {', '.join(table.columns)})"
        )
    return name


def _in_audience(shop: Shop, rule: Rule, now: datetime, columns: Sequence[Any]) -> exp.Select:
    """``SELECT columns FROM customers AS shopcrm_c WHERE customer_id IN (members)``."""
    inner, ctes = _members_of(shop, rule, now)
    customers = shop.source.schema().customers
    query = (
        exp.select(*columns)
        .from_(customers.relation("shopcrm_c"))
        .where(exp.In(this=exp.column("customer_id", table="shopcrm_c", quoted=True), query=inner.subquery()))
    )
    if ctes is not None:
        query.set("with_", ctes)
    return query


# ------------------------------------------------------------------ members_frame
def members_frame(
    shop: Shop, rule: RuleLike, *, now: datetime, columns: Sequence[str] | None = None, as_: str = "arrow"
) -> Any:
    """The customers matching ``rule`` at ``now`` with their attributes, sorted by id, in one query.

    ``columns``: customer columns to return (``customer_id`` always comes first); ``None``: all of them.
    ``as_``: ``"arrow"`` (a pyarrow Table), ``"pandas"`` or ``"polars"`` (those need their extras).
    """
    if as_ not in _FRAMES:
        raise ValueError(f"as_={as_!r} is not a frame kind; use one of {', '.join(map(repr, _FRAMES))}")
    table = shop.source.schema().customers
    if isinstance(columns, str):
        raise TypeError(f"columns is a list of column names, e.g. [{columns!r}], not one string")
    wanted = list(table.columns) if columns is None else [_customer_column(shop, c, "column") for c in columns]
    names = ["customer_id", *dict.fromkeys(c for c in wanted if c != "customer_id")]
    when = to_utc_naive(now)
    query = _in_audience(
        shop, shop._resolve(rule), when, [exp.column(n, table="shopcrm_c", quoted=True).as_(n) for n in names]
    ).order_by(exp.column("customer_id", table="shopcrm_c", quoted=True))
    return _convert(shop.source.fetch_arrow(query, names), as_)


# ---------------------------------------------------------------------- breakdown
@attrs.frozen
class Breakdown:
    """Audience size per value of a customer attribute (``None``: customers without a value)."""

    rule: Rule
    by: str
    now: datetime
    #: (value, customers), the largest group first
    rows: tuple[tuple[Any, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.rows)

    def to_dict(self) -> dict[Any, int]:
        return dict(self.rows)

    def to_arrow(self) -> Any:
        import pyarrow as pa

        total = self.total or 1
        return pa.table({
            self.by: [v for v, _ in self.rows],
            "customers": pa.array([n for _, n in self.rows], pa.int64()),
            "share": pa.array([n / total for _, n in self.rows], pa.float64()),
        })

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def __repr__(self) -> str:
        shown = ", ".join(f"{v}: {n:,}" for v, n in self.rows[:8]) + (", ..." if len(self.rows) > 8 else "")
        return f"<Breakdown by {self.by} of {self.total:,} customers as of {self.now:%Y-%m-%d %H:%M} UTC: {shown}>"

    def __str__(self) -> str:
        total = self.total or 1
        lines = [f"{self.total:,} customers by {self.by} as of {self.now:%Y-%m-%d %H:%M} UTC"]
        lines += [f"  {v!s:<24} {n:>10,}  {n / total:6.1%}" for v, n in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        total = self.total or 1
        rows = "".join(
            f"<tr><td>{html.escape(str(v))}</td><td style='text-align:right'>{n:,}</td>"
            f"<td style='text-align:right'>{n / total:.1%}</td><td>{_bar(n / total)}</td></tr>"
            for v, n in self.rows
        )
        return (
            f"<table class='shopcrm-breakdown'><caption>{self.total:,} customers by {html.escape(self.by)} "
            f"as of {self.now:%Y-%m-%d %H:%M} UTC</caption>"
            f"<tr><th>{html.escape(self.by)}</th><th>customers</th><th>share</th><th></th></tr>{rows}</table>"
        )

    def plot(self) -> Any:
        """A horizontal bar chart (a matplotlib Figure; needs the ``plot`` extra)."""
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(8, 0.4 * len(self.rows) + 1))
        axis.barh([str(v) for v, _ in self.rows][::-1], [n for _, n in self.rows][::-1], color="#4c78a8")
        axis.set_title(f"customers by {self.by}")
        figure.tight_layout()
        return figure


def _order(row: tuple[Any, int]) -> tuple[int, bool, str]:
    return (-row[1], row[0] is None, str(row[0]))


def breakdown(shop: Shop, rule: RuleLike, by: str, *, now: datetime) -> Breakdown:
    """How many customers matching ``rule`` have each value of the customer column ``by``
    (one grouped query; customers without a value form the ``None`` group)."""
    column = _customer_column(shop, by, "by=")
    when = to_utc_naive(now)
    resolved = shop._resolve(rule)
    value = exp.column(column, table="shopcrm_c", quoted=True)
    # groups are exact values on every engine: MySQL's default collations would fold 'A' and 'a' (and 'a ')
    key: exp.Expression = value
    if shop.source.schema().customers.columns.get(column) is ColumnType.STRING:
        key = dialect_for(shop.source.dialect).string_equality(value.copy())
    shown = value if key is value else exp.Min(this=value)  # one exact value per group: MIN is that value
    query = _in_audience(shop, resolved, when, [shown.as_("v"), exp.Count(this=exp.Star()).as_("n")]).group_by(key)
    rows = sorted(((v, int(n)) for v, n in shop.source.fetch(query)), key=_order)
    return Breakdown(resolved, column, when, tuple(rows))


# ------------------------------------------------------------------------ overlap
@attrs.frozen
class Overlap:
    """Pairwise audience intersections: ``matrix[i][j]`` customers match both rule i and rule j
    (the diagonal: each rule's own size)."""

    names: tuple[str, ...]
    now: datetime
    matrix: tuple[tuple[int, ...], ...]

    def size(self, a: str, b: str | None = None) -> int:
        """Customers in ``a`` and ``b`` (``b`` omitted: in ``a``)."""
        i, j = self.names.index(a), self.names.index(b if b is not None else a)
        return self.matrix[i][j]

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {a: dict(zip(self.names, row, strict=True)) for a, row in zip(self.names, self.matrix, strict=True)}

    def to_arrow(self) -> Any:
        import pyarrow as pa

        columns: dict[str, Any] = {"segment": list(self.names)}
        for j, name in enumerate(self.names):
            columns[name] = pa.array([row[j] for row in self.matrix], pa.int64())
        return pa.table(columns)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas().set_index("segment")

    def __repr__(self) -> str:
        return f"<Overlap of {len(self.names)} segments as of {self.now:%Y-%m-%d %H:%M} UTC: " + ", ".join(
            f"{n} {self.matrix[i][i]:,}" for i, n in enumerate(self.names)
        ) + ">"

    def __str__(self) -> str:
        width = max(len(n) for n in self.names)
        lines = [" " * width + "".join(f"{n[:12]:>14}" for n in self.names)]
        lines += [f"{n:<{width}}" + "".join(f"{v:>14,}" for v in row) for n, row in zip(self.names, self.matrix, strict=True)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.names)
        body = ""
        for i, (name, row) in enumerate(zip(self.names, self.matrix, strict=True)):
            own = row[i] or 1
            cells = "".join(
                f"<td style='text-align:right;background:rgba(76,120,168,{0.6 * v / own:.2f})' "
                f"title='{v / own:.0%} of {html.escape(name)}'>{v:,}</td>"
                for v in row
            )
            body += f"<tr><th>{html.escape(name)}</th>{cells}</tr>"
        return (f"<table class='shopcrm-overlap'><caption>customers in both (row, column) as of "
                f"{self.now:%Y-%m-%d %H:%M} UTC</caption><tr><th></th>{head}</tr>{body}</table>")


def rules_given(
    rules: Any, what: str
) -> tuple[list[str] | None, list[RuleLike]]:
    """``(names, rules)`` from ``{name: rule}`` (names given) or a list of rules (``names`` None).

    A dict is always ``{name: rule}``, never one rule: a dict that looks like one rule (a key such as
    ``attribute`` with a value that is no rule) is a TypeError saying so.
    """
    from shopcrm.dsl import NODE_KEYS, parse_rule

    if isinstance(rules, Mapping):
        bad = [k for k in rules if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{what} takes {{name: rule}} with text names; {bad[0]!r} is not a name")
        for key, value in rules.items():
            if key in NODE_KEYS:
                try:
                    parse_rule(value)
                except RuleError:
                    raise TypeError(
                        f"{what} got a dict that looks like one rule (key {key!r}); a dict here maps names to "
                        f"rules: pass {{'name': rule, ...}}, a list [rule, ...], or use shop.count(rule)"
                    ) from None
        return list(rules), list(rules.values())
    if isinstance(rules, str | bytes | bytearray) or hasattr(rules, "KEY") or hasattr(rules, "to_rule"):
        raise TypeError(
            f"{what} takes a list of rules or a {{name: rule}} dict, not one rule ({type(rules).__name__}); "
            "wrap it in a list, or use shop.count(rule)"
        )
    if not isinstance(rules, Iterable):
        raise TypeError(f"{what} takes a list of rules or a {{name: rule}} dict, not {type(rules).__name__}")
    return None, list(rules)


def _named(rules: Any, what: str) -> list[tuple[str, RuleLike]]:
    """``{name: rule}`` or a sequence of rules (named by their builder text, or ``#i`` when it is long)."""
    from shopcrm.dsl import parse_rule

    names, given = rules_given(rules, what)
    if names is not None:
        return list(zip(names, given, strict=True))
    out: list[tuple[str, RuleLike]] = []
    for i, rule in enumerate(given):
        text = repr(parse_rule(rule))
        out.append((text if len(text) <= 40 else f"#{i}", rule))
    return out


def overlap(shop: Shop, rules: Sequence[RuleLike] | Mapping[str, RuleLike], *, now: datetime) -> Overlap:
    """Customers in both of every pair of rules, counted in one query (the ``n * (n + 1) / 2`` pair
    intersections as columns of one :func:`~shopcrm.compiler.compile_counts` query)."""
    named = _named(rules, "overlap")
    if not named:
        raise ValueError("overlap needs at least one rule")
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ValueError(f"overlap needs distinct names, got {names!r}")
    when = to_utc_naive(now)
    resolved = [shop._resolve(r) for _, r in named]
    pairs = [(i, j) for i in range(len(resolved)) for j in range(i, len(resolved))]
    combined: list[Rule] = [resolved[i] if i == j else And(and_=[resolved[i], resolved[j]]) for i, j in pairs]
    query = compile_counts(
        combined, shop.source.schema(), now=when, dialect=shop.source.dialect, lifecycle_policy=shop.lifecycle_policy
    )
    counts = [int(v or 0) for v in shop.source.fetch(query)[0]]
    matrix = [[0] * len(names) for _ in names]
    for (i, j), n in zip(pairs, counts, strict=True):
        matrix[i][j] = matrix[j][i] = n
    return Overlap(tuple(names), when, tuple(tuple(row) for row in matrix))


# -------------------------------------------------------------------------- trend
@attrs.frozen
class Trend:
    """Segment size at a series of instants, each counted as of that instant (point in time)."""

    rule: Rule
    every: str
    #: (instant in UTC, customers), oldest first
    points: tuple[tuple[datetime, int], ...]

    def to_dict(self) -> dict[datetime, int]:
        return dict(self.points)

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.table({
            "at": pa.array([t for t, _ in self.points], pa.timestamp("us")),
            "customers": pa.array([n for _, n in self.points], pa.int64()),
        })

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def __repr__(self) -> str:
        shown = ", ".join(f"{t:%Y-%m-%d} {n:,}" for t, n in self.points[-6:])
        return f"<Trend every {self.every}, {len(self.points)} points (UTC): {'..., ' if len(self.points) > 6 else ''}{shown}>"

    def __str__(self) -> str:
        return "\n".join(f"{t:%Y-%m-%d %H:%M} UTC {n:>10,}" for t, n in self.points)

    def _repr_html_(self) -> str:
        top = max((n for _, n in self.points), default=0) or 1
        rows = "".join(
            f"<tr><td>{t:%Y-%m-%d %H:%M}</td><td style='text-align:right'>{n:,}</td><td>{_bar(n / top)}</td></tr>"
            for t, n in self.points
        )
        return (f"<table class='shopcrm-trend'><caption>{html.escape(repr(self.rule))} every {html.escape(self.every)}"
                f"</caption><tr><th>at (UTC)</th><th>customers</th><th></th></tr>{rows}</table>")

    def plot(self) -> Any:
        """A line chart (a matplotlib Figure; needs the ``plot`` extra)."""
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(8, 3))
        axis = cast(Any, axis)
        axis.plot([t for t, _ in self.points], [n for _, n in self.points], marker="o", color="#4c78a8")
        axis.set_ylabel("customers")
        figure.autofmt_xdate()
        figure.tight_layout()
        return figure


def trend_instants(now: datetime, every: timedelta, since: datetime) -> list[datetime]:
    """``now``, ``now - every``, ... back to ``since`` (inclusive), oldest first."""
    if every <= timedelta(0):
        raise ValueError("every must be a positive duration, e.g. '1d' or '1w'")
    if since > now:
        raise ValueError(f"since ({since.isoformat()}) is after now ({now.isoformat()})")
    steps = (now - since) // every
    if steps + 1 > MAX_TREND_POINTS:
        raise ValueError(
            f"a trend from {since:%Y-%m-%d} to {now:%Y-%m-%d} every {every} has {steps + 1:,} points, more than "
            f"{MAX_TREND_POINTS:,}; use a longer every= or a later since="
        )
    return [now - k * every for k in range(steps, -1, -1)]


def trend(
    shop: Shop, rule: RuleLike, *, every: str = "1w", since: datetime | None = None, now: datetime, periods: int = 12
) -> Trend:
    """The size of ``rule``'s audience as of ``now``, ``now - every``, ... back to ``since`` (default:
    ``periods`` steps back), each instant evaluated point in time, exactly ``shop.count(rule, now=t)``.

    One count query per instant (rules are relative to their ``now``, so instants share no pass).
    """
    try:
        step = parse_duration(every)
    except ValueError as error:
        raise RuleError.at("every", str(error)) from None
    when = to_utc_naive(now)
    start = to_utc_naive(since) if since is not None else when - periods * step
    instants = trend_instants(when, step, start)
    resolved = shop._resolve(rule)
    points = tuple((t, shop._count_resolved([resolved], t)[0]) for t in instants)
    return Trend(resolved, every, points)
