"""Why an audience is the size it is: the count at every node of a rule tree."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from shopcrm.dsl import (
    Aggregate,
    And,
    Attribute,
    Comparison,
    Everyone,
    FirstPerformed,
    InSegment,
    LastPerformed,
    Not,
    Or,
    Performed,
    Rule,
    Sample,
    children,
)

__all__ = ["Explanation", "describe", "explain"]


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)


def _ops(ops: dict[str, Any]) -> str:
    words = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
    parts = []
    for op, v in ops.items():
        if op == "ago":
            parts.append("aged " + " and ".join(f"{words[k]} {d}" for k, d in v.model_dump(exclude_none=True).items()))
        elif op == "is_null":
            parts.append("is null" if v else "is not null")
        else:
            parts.append(f"{words.get(op, op.replace('_', ' '))} {_value(v)}")
    return ", ".join(parts)


def _where(where: dict[str, Any] | None) -> str:
    if not where:
        return ""
    conds = [f"{k} {_ops(c.operators()) if isinstance(c, Comparison) else '= ' + _value(c)}" for k, c in where.items()]
    return " where " + " and ".join(conds)


def _window(window: Any) -> str:
    if window is None:
        return ""
    data = window.model_dump(mode="json", exclude_none=True)
    if "last" in data:
        return f" in last {data['last']}"
    if "ago" in data:
        return " aged " + " and ".join(f"{k} {v}" for k, v in data["ago"].items())
    return f" between {data['between'][0]} and {data['between'][1]}"


def describe(rule: Rule) -> str:
    """A one-line human description of a rule node (not of its children)."""
    if isinstance(rule, And):
        return "all of"
    if isinstance(rule, Or):
        return "any of"
    if isinstance(rule, Not):
        return "not"
    if isinstance(rule, Everyone):
        return "everyone"
    if isinstance(rule, Performed):
        text = f"performed {rule.performed}{_where(rule.where)}{_window(rule.within)}"
        if rule.times is not None:
            text += f", times {_ops(rule.times.operators())}"
        if rule.not_followed_by is not None:
            f = rule.not_followed_by
            text += f", not followed by {f.performed}{_where(f.where)}" + (f" within {f.within}" if f.within else "")
        return text
    if isinstance(rule, Aggregate):
        return f"{rule.aggregate} of {rule.of} over {rule.performed}{_where(rule.where)}{_window(rule.within)} {_ops(rule.operators())}"
    if isinstance(rule, FirstPerformed | LastPerformed):
        which, event = ("first", rule.first_performed) if isinstance(rule, FirstPerformed) else ("last", rule.last_performed)
        return f"{which} {event}{_where(rule.where)} {_ops({'ago': rule.ago})}"
    if isinstance(rule, Attribute):
        return f"{rule.attribute} {_ops(rule.operators())}"
    if isinstance(rule, InSegment):
        return f"in segment {rule.in_segment!r}"
    if isinstance(rule, Sample):
        return f"sample {rule.sample.percent}% (salt {rule.sample.salt!r})"
    return type(rule).__name__  # pragma: no cover


@attrs.frozen
class Explanation:
    """One node of an explained rule: its count as of ``now`` and its children's."""

    path: str
    label: str
    count: int
    total: int
    children: tuple[Explanation, ...]
    sql: str | None = None
    now: datetime | None = None

    @property
    def share(self) -> float:
        """The count as a fraction of all customers."""
        return self.count / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a UI."""
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "count": self.count,
            "total": self.total,
            "children": [c.to_dict() for c in self.children],
        }
        if self.sql is not None:
            out["sql"] = self.sql
        if self.now is not None:
            out["now"] = self.now.isoformat()
        return out

    def _lines(self, depth: int) -> list[str]:
        line = f"{self.count:>11,} ({self.share:6.1%})  {'  ' * depth}{self.label}"
        return [line] + [text for c in self.children for text in c._lines(depth + 1)]

    def __str__(self) -> str:
        return "\n".join(self._lines(0))

    def _html_node(self) -> str:
        width = max(0.0, min(100.0, self.share * 100))
        bar = (
            f'<span style="display:inline-block;width:120px;height:0.8em;background:#eee;margin-right:8px">'
            f'<span style="display:block;height:100%;width:{width:.1f}%;background:#4c78a8"></span></span>'
        )
        kids = "".join(f"<li>{c._html_node()}</li>" for c in self.children)
        inner = f'<ul style="list-style:none;margin:0;padding-left:1.2em">{kids}</ul>' if kids else ""
        return (
            f"{bar}<b>{self.count:,}</b> <small>({self.share:.1%})</small> "
            f"<code>{html.escape(self.label)}</code>{inner}"
        )

    def _repr_html_(self) -> str:
        sql = (
            f"<details><summary>SQL</summary><pre>{html.escape(self.sql)}</pre></details>" if self.sql else ""
        )
        when = f" as of {html.escape(self.now.isoformat())}" if self.now else ""
        return (
            f'<div class="shopcrm-explain"><div>{self.total:,} customers{when}</div>'
            f'<ul style="list-style:none;padding-left:0">{"<li>" + self._html_node() + "</li>"}</ul>{sql}</div>'
        )


def explain(
    rule: Rule,
    resolve: Callable[[Rule], Rule],
    count_many: Callable[[Sequence[Rule], datetime], list[int]],
    *,
    now: datetime,
    sql: str | None = None,
) -> Explanation:
    """Count every node of ``rule`` (named segments resolved) in one ``count_many`` call."""
    nodes: list[tuple[str, Rule]] = []

    def walk(node: Rule, path: str) -> None:
        nodes.append((path, node))
        tag = "and" if isinstance(node, And) else "or" if isinstance(node, Or) else "not"
        kids = children(node)
        for i, child in enumerate(kids):
            walk(child, f"{path}.{tag}" if isinstance(node, Not) else f"{path}.{tag}[{i}]")

    walk(rule, "")
    counts = count_many([resolve(n) for _, n in nodes] + [Everyone()], now)
    total = counts[-1]
    by_path = {path: (node, count) for (path, node), count in zip(nodes, counts, strict=False)}

    def build(path: str) -> Explanation:
        node, count = by_path[path]
        prefix = path + (".not" if isinstance(node, Not) else "")
        tag = "and" if isinstance(node, And) else "or"
        kid_paths = [prefix] if isinstance(node, Not) else [f"{path}.{tag}[{i}]" for i in range(len(children(node)))]
        return Explanation(
            path=path.lstrip(".") or "$",
            label=describe(node),
            count=count,
            total=total,
            children=tuple(build(p) for p in kid_paths),
        )

    root = build("")
    return attrs.evolve(root, sql=sql, now=now)
