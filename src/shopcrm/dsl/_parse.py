"""Turning JSON, dicts and models into validated rules, with readable errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shopcrm.dsl._nodes import (
    MAX_DEPTH,
    NODE_KEYS,
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
    check_depth,
    too_deep_message,
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
    items = [item for item in loc if not _internal(item)]
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            text = _printable(str(item))
            out += f".{text}" if out else text
            if i + 1 < len(items) and items[i + 1] == item:
                i += 1
        i += 1
    return out


_SHOWN_LENGTH = 120
#: how deeply JSON containers may nest in a rule document: two per and/or level, one per
#: not, and a few inside a leaf (where -> field -> operators -> list)
_MAX_CONTAINERS = 2 * MAX_DEPTH + 8


def _shown(value: Any) -> str:
    """A bad value as it appears in a message: JSON when possible, shortened."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except Exception:  # any object may be handed in; the message must still be built
            text = f"<{type(value).__name__}>"
    text = _printable(text)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 3] + "..."


def _printable(text: str) -> str:
    """Text for a message or path that encodes as UTF-8: lone surrogates escaped (``\\ud800``)."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


_SCHEMA_LABEL = re.compile(r"^(<[a-z]+>|[a-z-]+\[.*\])$")


def _internal(item: int | str) -> bool:
    """A union tag (``<int>``) or a pydantic schema label (``function-after[...]``), not part of the rule."""
    return isinstance(item, str) and bool(_SCHEMA_LABEL.match(item))


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    value = error.get("input")
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        return f"{_shown(error['loc'][-1])} is not allowed here; remove it or check its spelling"
    if kind == "missing":
        return f"{_shown(error['loc'][-1])} is required here"
    if kind in ("rule_node", "window"):
        return f"{_shown(value)} is not a valid node: {msg}"
    return f"{_shown(value)} is not valid: {msg[0].lower()}{msg[1:]}"


def _check_nesting(document: Any) -> None:
    """Refuse a rule document nested too deeply before anything recurses into it.

    Rule nodes (the document itself, items of ``and``/``or``, the value of ``not``)
    nest at most ``MAX_DEPTH`` levels, and JSON containers at most ``_MAX_CONTAINERS``
    (which also stops a self-containing dict or list). Iterative: any depth is safe.
    """
    stack: list[tuple[Any, tuple[int | str, ...], int, int, bool]] = [(document, (), 0, 0, True)]
    while stack:
        value, loc, containers, rules, is_rule = stack.pop()
        if isinstance(value, Mapping):
            # as in validation errors, a rule node's keys follow its tag: attribute.in, not.and[0]
            tag = next((k for k in NODE_KEYS if k in value), None) if is_rule else None
            items: list[tuple[tuple[int | str, ...], Any, bool]] = []
            for key, child in value.items():
                name = key if isinstance(key, str) else repr(key)
                steps = (name,) if tag is None or name == tag else (tag, name)
                items.append((steps, child, is_rule and key in ("and", "or", "not")))
        elif isinstance(value, list | tuple | set | frozenset):
            items = [((i,), child, is_rule) for i, child in enumerate(value)]
            is_rule = False  # a list of rules is one level with its and/or
        else:
            continue
        containers += 1
        rules += 1 if is_rule else 0
        if rules > MAX_DEPTH:
            raise RuleError.at(_document_path(loc), too_deep_message())
        if containers > _MAX_CONTAINERS:
            raise RuleError.at(
                _document_path(loc),
                f"a rule document nests JSON objects and lists at most {_MAX_CONTAINERS} levels deep; "
                "this value is deeper",
            )
        for steps, child, child_is_rule in reversed(items):
            stack.append((child, (*loc, *steps), containers, rules, child_is_rule))


def _document_path(loc: tuple[int | str, ...]) -> str:
    """Keys and indices of a rule document as its JSON path: ``and[1].not``."""
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else f".{item}" if out else str(item)
    return _printable(out)


def _load_json(text: str | bytes) -> Any:
    """JSON text (str, or bytes in UTF-8/16/32) as Python data; every failure a RuleError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleError.at("", f"the rule is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RuleError.at(
            "",
            f"the rule is not valid {exc.encoding.upper()} text: {exc.reason} at byte {exc.start}; "
            "send JSON as UTF-8",
        ) from None
    except RecursionError:
        raise RuleError.at(
            "", f"the rule nests JSON objects and lists too deeply to read; a rule document nests them "
            f"at most {_MAX_CONTAINERS} levels deep"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise RuleError.at("", f"the rule is not valid JSON: {exc}") from None


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
        Everyone | Performed | Aggregate | FirstPerformed | LastPerformed | Attribute | InSegment | Sample
        | Lifecycle | Rfm | Cycle,
    ):
        return rule
    if isinstance(rule, And | Or | Not):
        check_depth(rule)
        return rule
    if isinstance(rule, str | bytes | bytearray):
        rule = _load_json(bytes(rule) if isinstance(rule, bytearray) else rule)
    if not isinstance(rule, Mapping):
        raise RuleError.at(
            "", f"a rule is a JSON object such as {{'everyone': true}}, not {type(rule).__name__}"
        )
    _check_nesting(rule)
    try:
        model = _adapter().validate_python(dict(rule))
    except ValidationError as exc:
        problems = [(format_path(tuple(e["loc"])), _message(e)) for e in exc.errors()]
        raise RuleError(problems) from None
    check_depth(model)
    return model


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

    def walk(node: Rule, stack: tuple[str, ...], path: str, depth: int) -> Rule:
        if depth > MAX_DEPTH:  # nodes and named-segment hops both count: the result stays shallow
            raise RuleError.at(path, too_deep_message())
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
            return walk(target, (*stack, name), path, depth + 1)
        if isinstance(node, And):
            return And(and_=[walk(c, stack, f"{path}.and[{i}]".lstrip("."), depth + 1) for i, c in enumerate(node.and_)])
        if isinstance(node, Or):
            return Or(or_=[walk(c, stack, f"{path}.or[{i}]".lstrip("."), depth + 1) for i, c in enumerate(node.or_)])
        if isinstance(node, Not):
            return Not(not_=walk(node.not_, stack, f"{path}.not".lstrip("."), depth + 1))
        return node

    check_depth(rule)
    return walk(rule, (), "", 1)
