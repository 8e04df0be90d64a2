"""Compiled queries as SQL text plus bound parameters, so that no rule value is ever spelled as a literal.

An engine reads a string literal according to its settings (PostgreSQL's
``standard_conforming_strings``, MySQL's ``NO_BACKSLASH_ESCAPES``), which the shop does
not control; a bound parameter is read as data whatever they are.  Every string
literal of the tree becomes a parameter, except the few places where the grammar wants
a literal (``INTERVAL '5' SECOND``), which hold digits the compiler wrote itself.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlglot import exp

__all__ = ["PARAM_STYLES", "bind"]

#: How each driver family marks a named parameter (``{}`` is the name).
PARAM_STYLES: dict[str, str] = {"postgres": "%({})s", "mysql": "%({})s", "sqlite": ":{}", "duckdb": "${}"}
# pyformat drivers read every other ``%`` as the start of a marker: it must be doubled
_PERCENT_DOUBLED = {"%({})s"}
_PLAIN_CONSTANT = re.compile(r"[0-9A-Za-z _.:+-]*")


def bind(query: exp.Expression, dialect: str) -> tuple[str, dict[str, Any]]:
    """The SQL text of ``query`` for ``dialect`` with its string values as named parameters.

    Equal values share one parameter (so PostgreSQL still sees an expression repeated in
    GROUP BY as the same).  Raises ``ValueError`` for a dialect without a known
    parameter style, or when the rendered text does not hold the markers exactly.
    """
    style = PARAM_STYLES.get(dialect)
    if style is None:
        raise ValueError(f"no parameter style known for {dialect!r}; bound queries work on {', '.join(PARAM_STYLES)}")
    token = secrets.token_hex(6)
    tree = query.copy()
    names: dict[str, str] = {}
    for literal in list(tree.find_all(exp.Literal)):
        if not literal.is_string:
            continue
        value = str(literal.this)
        if literal.find_ancestor(exp.Interval) is not None:
            if not _PLAIN_CONSTANT.fullmatch(value):
                raise ValueError(f"an interval literal must be plain digits and words, not {value!r}")
            continue
        name = names.setdefault(value, f"p{len(names)}")
        literal.replace(exp.Literal.string(f"shopcrm_{token}_{name}"))
    sql = tree.sql(dialect=dialect)
    parts = re.split(rf"'shopcrm_{token}_(p\d+)'", sql)
    values = {name: value for value, name in names.items()}
    out: list[str] = []
    used: dict[str, Any] = {}
    for i, part in enumerate(parts):
        if i % 2:
            used[part] = values[part]
            out.append(style.format(part))
            continue
        if f"shopcrm_{token}" in part:  # a marker the generator rewrote: its value would not be bound
            raise ValueError(f"the {dialect} SQL of this query changed a bound value's marker: {sql}")
        out.append(part.replace("%", "%%") if style in _PERCENT_DOUBLED else part)
    return "".join(out), used
