"""How rules read the keys of a JSON ``properties`` column (``properties.<key>``): shared by the reference evaluator
and the compiler, so that both decide alike.

A property compares by its JSON type, as a column compares by its column type: a number with numbers, a string with
strings, true/false with booleans. One key may hold values of different types in different events, so a value of
another type is no error: it satisfies the comparison no more than NULL does. Arrays, objects and JSON null are
compared with nothing (their text differs from engine to engine); ``is_null`` holds for JSON null and a missing key.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["JsonKind", "json_ago_message", "json_kind"]

#: the JSON types rules compare: the type of the rule's value
JsonKind = Literal["number", "string", "boolean"]


def json_kind(op: str, value: Any) -> JsonKind:
    """The JSON type an operator reads a property as: that of its rule value (``contains`` and ``starts_with``:
    strings). The models give each operator values of one type."""
    if op in ("contains", "starts_with"):
        return "string"
    sample = value[0] if isinstance(value, tuple | list) else value
    if isinstance(sample, bool):
        return "boolean"
    return "string" if isinstance(sample, str) else "number"


def json_ago_message(name: str) -> str:
    """What ``ago`` on a JSON property is told (by the compiler and the reference evaluator alike)."""
    return (
        f"ago works on timestamps; {name!r} is a key of the JSON properties column, whose values are numbers, "
        "strings or booleans; compare it with operators such as gte instead"
    )
