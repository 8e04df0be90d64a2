"""Turning JSON, dicts and models into validated rules, with readable errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shopcrm.dsl._nodes import (
    Aggregate,
    And,
    Attribute,
    Cycle,
    Everyone,
    FirstPerformed,
    InSegment,
    LastPerformed,
    Lifecycle,
    Not,
    Or,
    Performed,
    Rfm,
    Rule,
    Sample,
)
from shopcrm.errors import RuleError, SegmentCycleError

__all__ = ["RuleLike", "children", "format_path", "parse_rule", "resolve_segments", "rule_json_schema"]

RuleLike = Any  # Rule | Mapping[str, Any] | str (JSON) | a builder


@cache
def _adapter() -> TypeAdapter[Rule]:
    return TypeAdapter(Rule)


def format_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's error location as a JSON path: ``and[1].performed.within.last``.

    Tagged unions put the tag before the field of the same name (``performed``,
    ``performed``); the pair is shown once.
    """
    out = ""
    items = list(loc)
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += f".{item}" if out else str(item)
            if i + 1 < len(items) and items[i + 1] == item:
                i += 1
        i += 1
    return out


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    value = error.get("input")
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        return f"{error['loc'][-1]!r} is not allowed here; remove it or check its spelling"
    if kind == "missing":
        return f"{error['loc'][-1]!r} is required here"
    if kind in ("rule_node", "window"):
        shown = json.dumps(value, default=str, ensure_ascii=False)
        return f"{shown} is not a valid node: {msg}"
    shown = json.dumps(value, default=str, ensure_ascii=False)
    return f"{shown} is not valid: {msg[0].lower()}{msg[1:]}"


def parse_rule(rule: RuleLike) -> Rule:
    """A validated rule from a model, a builder, a dict or a JSON string.

    Raises
    ------
    RuleError
        With the JSON path of each problem, the bad value and what would be valid.
    """
    if hasattr(rule, "to_rule"):
        rule = rule.to_rule()
    if isinstance(
        rule,
        And | Or | Not | Everyone | Performed | Aggregate | FirstPerformed | LastPerformed | Attribute | InSegment | Sample
        | Lifecycle | Rfm | Cycle,
    ):
        return rule
    if isinstance(rule, str | bytes):
        try:
            rule = json.loads(rule)
        except json.JSONDecodeError as exc:
            raise RuleError.at("", f"the rule is not valid JSON: {exc}") from exc
    if not isinstance(rule, Mapping):
        raise RuleError.at(
            "", f"a rule is a JSON object such as {{'everyone': true}}, not {type(rule).__name__}"
        )
    try:
        return _adapter().validate_python(dict(rule))
    except ValidationError as exc:
        problems = [(format_path(tuple(e["loc"])), _message(e)) for e in exc.errors()]
        raise RuleError(problems) from None


def rule_json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule document, for editors and UI builders."""
    return _adapter().json_schema(by_alias=True)


def children(rule: Rule) -> list[Rule]:
    """The direct sub-rules of a rule node."""
    if isinstance(rule, And):
        return list(rule.and_)
    if isinstance(rule, Or):
        return list(rule.or_)
    if isinstance(rule, Not):
        return [rule.not_]
    return []


def resolve_segments(rule: Rule, lookup: Callable[[str], Rule | None]) -> Rule:
    """Replace every ``in_segment`` by the named rule it refers to, recursively.

    Raises
    ------
    RuleError
        For an unknown name (listing none: the caller's lookup decides).
    SegmentCycleError
        When named segments refer to each other in a cycle; the message names it.
    """

    def walk(node: Rule, stack: tuple[str, ...], path: str) -> Rule:
        if isinstance(node, InSegment):
            name = node.in_segment
            if name in stack:
                raise SegmentCycleError([*stack[stack.index(name) :], name])
            target = lookup(name)
            if target is None:
                raise RuleError.at(
                    f"{path}.in_segment" if path else "in_segment",
                    f"no segment is named {name!r}; save it first (shop.save_segment) or check the name",
                )
            return walk(target, (*stack, name), path)
        if isinstance(node, And):
            return And(and_=[walk(c, stack, f"{path}.and[{i}]".lstrip(".")) for i, c in enumerate(node.and_)])
        if isinstance(node, Or):
            return Or(or_=[walk(c, stack, f"{path}.or[{i}]".lstrip(".")) for i, c in enumerate(node.or_)])
        if isinstance(node, Not):
            return Not(not_=walk(node.not_, stack, f"{path}.not".lstrip(".")))
        return node

    return walk(rule, (), "")
