"""Rules shown as the builder code that makes them: ``did("order_completed").within("30d") & attr("age")
.between(20, 39)``.

The text evaluates, in the namespace of :mod:`shopcrm.dsl`, to the same rule (``parse_rule(eval(text))
== rule``); shapes the operators cannot spell (an ``and`` of one rule, an ``and`` directly inside an
``and``, a double ``not``) are spelled with the models' constructors.
"""

from __future__ import annotations

import keyword
from datetime import datetime
from typing import Any

__all__ = ["rule_repr"]

_METHODS = {
    "eq": "eq", "ne": "ne", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte",
    "in": "isin", "not_in": "not_in", "contains": "contains", "starts_with": "starts_with",
}


def _plain(value: Any) -> Any:
    """A value of a model as JSON-shaped Python data (models dumped, tuples as lists)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _kwargs(items: dict[str, Any]) -> str:
    """``a=1, b='x'``, or ``**{'properties.brand': 'x'}`` when a key is no Python identifier."""
    if all(k.isidentifier() and not keyword.iskeyword(k) for k in items):
        return ", ".join(f"{k}={_plain(v)!r}" for k, v in items.items())
    return "**" + repr({k: _plain(v) for k, v in items.items()})


def _call(name: str, *args: str) -> str:
    return f"{name}({', '.join(a for a in args if a)})"


def _window(window: Any) -> str:
    if window is None:
        return ""
    if hasattr(window, "last"):
        return f".within({window.last!r})"
    if hasattr(window, "ago"):
        return f".within(ago={_plain(window.ago)!r})"
    return f".within(between={tuple(_plain(list(window.between)))!r})"


def _ops(ops: dict[str, Any], *, attribute: bool) -> str | None:
    """The builder method for one operator (``.between(20, 39)``); None when the builder cannot spell it."""
    if len(ops) == 1:
        (name, value), = ops.items()
        if name == "between":
            low, high = _plain(value)
            return f".between({low!r}, {high!r})"
        if name in _METHODS:
            return f".{_METHODS[name]}({_plain(value)!r})"
        if attribute and name == "is_null":
            return ".is_null()" if value else ".is_null(False)"
        if attribute and name == "ago":
            return f".ago({_kwargs(_plain(value))})"
    if attribute:
        return f".where({_kwargs(ops)})"
    return None


def _leaf(rule: Any) -> str:
    from shopcrm.dsl import _nodes as n

    if isinstance(rule, n.Performed):
        where = _kwargs(rule.where) if rule.where else ""
        times = rule.times.operators() if rule.times is not None else None
        if times == {"eq": 0}:
            text = _call("did_not", repr(rule.performed), where)
        else:
            text = _call("did", repr(rule.performed), where)
        text += _window(rule.within)
        if times is not None and times != {"eq": 0}:
            text += f".times({_kwargs(times)})"
        follow = rule.not_followed_by
        if follow is not None and "within" in (follow.where or {}):
            return f"parse_rule({rule.to_dict()!r})"  # a filter named like the method's within= argument
        if follow is not None:
            within = f"within={follow.within!r}" if follow.within is not None else ""
            text += "." + _call("not_followed_by", repr(follow.performed), within,
                                _kwargs(follow.where) if follow.where else "")
        return text
    if isinstance(rule, n.Attribute):
        ops = _ops(rule.operators(), attribute=True)
        return f"attr({rule.attribute!r}){ops}"
    if isinstance(rule, n.Aggregate):
        ops = _ops(rule.operators(), attribute=False)
        if ops is not None:
            where = _kwargs(rule.where) if rule.where else ""
            head = _call("aggregate", repr(rule.aggregate), repr(rule.of), repr(rule.performed), where)
            return head + _window(rule.within) + ops
    elif isinstance(rule, n.FirstPerformed | n.LastPerformed):
        name = "first_did" if isinstance(rule, n.FirstPerformed) else "last_did"
        where = _kwargs(rule.where) if rule.where else ""
        event = rule.first_performed if isinstance(rule, n.FirstPerformed) else rule.last_performed
        return _call(name, repr(event), where) + f".ago({_kwargs(_plain(rule.ago))})"
    elif isinstance(rule, n.InSegment):
        return f"segment({rule.in_segment!r})"
    elif isinstance(rule, n.Sample):
        return f"sample({rule.sample.percent!r}, {rule.sample.salt!r})"
    elif isinstance(rule, n.Everyone):
        return "everyone()"
    elif isinstance(rule, n.Lifecycle):
        moment = f", moment={rule.moment!r}" if rule.moment is not None else ""
        return f"Lifecycle(lifecycle={rule.lifecycle!r}{moment})"
    elif isinstance(rule, n.Rfm):
        return f"Rfm(rfm={rule.rfm!r})"
    elif isinstance(rule, n.Cycle):
        return f"Cycle(cycle={rule.cycle!r})"
    return f"parse_rule({rule.to_dict()!r})"


def _model(rule: Any) -> str:
    """Text that evaluates to the model itself (a ``did(...)`` chain is a builder until ``parse_rule``)."""
    from shopcrm.dsl import _nodes as n

    text = rule_repr(rule)
    return f"parse_rule({text})" if isinstance(rule, n.Performed) else text


def rule_repr(rule: Any, *, parent: str = "") -> str:
    """The builder text of ``rule``, parenthesised as needed inside a ``parent`` operator
    (``"&"``, ``"|"``, ``"~"``)."""
    from shopcrm.dsl import _nodes as n

    if isinstance(rule, n.And | n.Or):
        op = "&" if isinstance(rule, n.And) else "|"
        items = rule.and_ if isinstance(rule, n.And) else rule.or_
        if len(items) < 2 or any(isinstance(c, type(rule)) for c in items):
            field = "and_" if isinstance(rule, n.And) else "or_"
            return f"{type(rule).__name__}({field}=[{', '.join(_model(c) for c in items)}])"
        text = f" {op} ".join(rule_repr(c, parent=op) for c in items)
        # & binds tighter than |, ~ tighter than both
        needs = parent == "~" or (parent == "&" and op == "|")
        return f"({text})" if needs else text
    if isinstance(rule, n.Not):
        if isinstance(rule.not_, n.Not):
            return f"Not(not_={_model(rule.not_)})"
        return "~" + rule_repr(rule.not_, parent="~")
    return _leaf(rule)
