"""A small Python builder for notebooks that produces exactly the DSL's models.

>>> rule = (
...     did("product_viewed", category="shoes").times(gte=3).within("30d")
...     & (did("order_completed", product_id="P1") | did("order_completed", product_id="P2"))
...     & ~did("promotion_joined", promotion_id="PROMO1")
...     & attr("age").between(20, 39)
... )

Keyword filters take a bare value (equality), a list (``in``) or an operator dict
(``amount={"gte": 50000}``).  Every builder turns into a rule with ``to_rule()``;
``&``, ``|`` and ``~`` do so on their own.  Each step is validated as it is taken:
a bad argument is a :class:`~shopcrm.RuleError` naming the JSON path it would have
in the rule document (``did("x").within("30 days")`` fails at ``performed.within.last``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import attrs

from shopcrm.dsl._nodes import (
    Aggregate,
    Attribute,
    Everyone,
    FirstPerformed,
    InSegment,
    LastPerformed,
    Performed,
    Rule,
    Sample,
    _RuleOps,
)
from shopcrm.errors import RuleError

__all__ = [
    "aggregate",
    "as_rule",
    "attr",
    "did",
    "did_not",
    "everyone",
    "first_did",
    "last_did",
    "sample",
    "segment",
]

_N = TypeVar("_N")

# Operators that hold for any value: they complete a partly built node so that its
# other parts can be checked (and reported at their JSON paths) as soon as they are given.
_ANY_ATTRIBUTE = {"is_null": True}
_ANY_AGGREGATE = {"gte": 0}
_ANY_AGO = {"lt": "1s"}


def as_rule(value: Any) -> Rule:
    """A rule model from a model, a builder, a dict or JSON (validated)."""
    from shopcrm.dsl._parse import parse_rule

    return parse_rule(value)


_OPTIONAL = ("where", "within", "times", "not_followed_by")


def _build(kind: type[_N], document: dict[str, Any]) -> _N:
    """The node of a JSON-shaped document; a RuleError with the JSON path of each problem.

    Optional parts not given (None) are left out; every value the caller gave is kept.
    """
    rule = as_rule({k: v for k, v in document.items() if v is not None or k not in _OPTIONAL})
    assert isinstance(rule, kind)
    return rule


def _values(values: Any) -> Any:
    """A collection given for ``in``/``not_in`` as a list; anything else as given (to be refused)."""
    if isinstance(values, list | tuple | set | frozenset) or (
        isinstance(values, Iterable) and not isinstance(values, str | bytes | bytearray | Mapping)
    ):
        return list(values)
    return values


def _filter(where: Mapping[str, Any]) -> dict[str, Any] | None:
    if not where:
        return None
    out: dict[str, Any] = {}
    for key, value in where.items():
        if isinstance(value, list | tuple | set | frozenset):
            out[key] = {"in": list(value)}
        else:
            out[key] = value
    return out


def _window(last: Any, ago: Any, between: Any, path: str) -> dict[str, Any] | None:
    """The JSON window for ``within(...)``: one of last, ago, between."""
    given = [w for w in (last, ago, between) if w is not None]
    if len(given) > 1:
        raise RuleError.at(path, "give one window: last=..., ago={...} or between=(start, end)")
    if last is not None:
        return {"last": last}
    if ago is not None:
        return {"ago": dict(ago) if isinstance(ago, Mapping) else ago}
    if between is not None:
        return {"between": list(between) if isinstance(between, list | tuple) else between}
    return None


@attrs.frozen
class _PerformedBuilder(_RuleOps):
    event: Any
    where_: dict[str, Any] = attrs.field(factory=dict)
    window: dict[str, Any] | None = None
    times_: dict[str, Any] | None = None
    follow: dict[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        self.to_rule()  # every step is checked when it is taken

    def __repr__(self) -> str:
        return repr(self.to_rule())  # the builder code, as a rule prints

    def _repr_html_(self) -> str:
        return self.to_rule()._repr_html_()

    def where(self, **filters: Any) -> _PerformedBuilder:
        """Add filters on the event's properties."""
        return attrs.evolve(self, where_={**self.where_, **filters})

    def within(
        self,
        last: str | None = None,
        *,
        ago: Mapping[str, str] | None = None,
        between: tuple[str | datetime, str | datetime] | None = None,
    ) -> _PerformedBuilder:
        """Restrict to a window: ``within("30d")``, ``within(ago={"gte": "1d", "lt": "7d"})``."""
        return attrs.evolve(self, window=_window(last, ago, between, "performed.within"))

    def times(self, **cmp: Any) -> _PerformedBuilder:
        """Compare the count of matching events: ``times(gte=3)``, ``times(eq=0)``."""
        return attrs.evolve(self, times_=cmp or None)

    def not_followed_by(self, event: str, /, within: str | None = None, **where: Any) -> _PerformedBuilder:
        """Count only events that no matching ``event`` follows (within a duration if given)."""
        follow: dict[str, Any] = {"performed": event}
        if where:
            follow["where"] = _filter(where)
        if within is not None:
            follow["within"] = within
        return attrs.evolve(self, follow=follow)

    def to_rule(self) -> Performed:
        """The ``performed`` model."""
        return _build(
            Performed,
            {
                "performed": self.event,
                "where": _filter(self.where_),
                "within": self.window,
                "times": self.times_,
                "not_followed_by": self.follow,
            },
        )


def did(event: str, /, **where: Any) -> _PerformedBuilder:
    """Customers who performed ``event`` (matching ``where``) at least once; refine with methods."""
    return _PerformedBuilder(event, dict(where))


def did_not(event: str, /, **where: Any) -> _PerformedBuilder:
    """Customers who never performed ``event`` (in the window, if one is added)."""
    return _PerformedBuilder(event, dict(where), times_={"eq": 0})


class _Comparable:
    """``>=``, ``<`` ... and named operator methods that build a rule."""

    def _make(self, ops: dict[str, Any]) -> Rule:
        raise NotImplementedError

    def eq(self, value: Any) -> Rule:
        return self._make({"eq": value})

    def ne(self, value: Any) -> Rule:
        return self._make({"ne": value})

    def lt(self, value: Any) -> Rule:
        return self._make({"lt": value})

    def lte(self, value: Any) -> Rule:
        return self._make({"lte": value})

    def gt(self, value: Any) -> Rule:
        return self._make({"gt": value})

    def gte(self, value: Any) -> Rule:
        return self._make({"gte": value})

    __lt__ = lt
    __le__ = lte
    __gt__ = gt
    __ge__ = gte

    def between(self, low: Any, high: Any) -> Rule:
        """Both ends inclusive."""
        return self._make({"between": [low, high]})

    def isin(self, values: Any) -> Rule:
        return self._make({"in": _values(values)})

    def not_in(self, values: Any) -> Rule:
        return self._make({"not_in": _values(values)})

    def where(self, **ops: Any) -> Rule:
        """Any operator object, e.g. ``where(gte=1, lt=5)``."""
        return self._make({("in" if k == "in_" else k): v for k, v in ops.items()})


@attrs.frozen(eq=False)
class _AttributeBuilder(_Comparable):
    name: Any

    def __attrs_post_init__(self) -> None:
        self._make(_ANY_ATTRIBUTE)  # the name is checked at once

    def _make(self, ops: dict[str, Any]) -> Rule:
        return _build(Attribute, {"attribute": self.name, **ops})

    def contains(self, text: str) -> Rule:
        return self._make({"contains": text})

    def starts_with(self, text: str) -> Rule:
        return self._make({"starts_with": text})

    def is_null(self, flag: bool = True) -> Rule:
        return self._make({"is_null": flag})

    def ago(self, **ages: str) -> Rule:
        """A timestamp attribute aged in a range: ``ago(gte="1d", lt="7d")``."""
        return self._make({"ago": ages})


def attr(name: str) -> _AttributeBuilder:
    """A customer attribute to compare: ``attr("age").between(20, 39)``, ``attr("grade") == ...``."""
    return _AttributeBuilder(name)


@attrs.frozen(eq=False)
class _AggregateBuilder(_Comparable):
    fn: Any
    field: Any
    event: Any
    where_: dict[str, Any] = attrs.field(factory=dict)
    window: dict[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        self._make(_ANY_AGGREGATE)  # function, field, event, filters and window are checked at once

    def where(self, **filters: Any) -> Any:
        """Add filters on the event's properties."""
        return attrs.evolve(self, where_={**self.where_, **filters})

    def within(
        self,
        last: str | None = None,
        *,
        ago: Mapping[str, str] | None = None,
        between: tuple[str | datetime, str | datetime] | None = None,
    ) -> _AggregateBuilder:
        return attrs.evolve(self, window=_window(last, ago, between, "aggregate.within"))

    def _make(self, ops: dict[str, Any]) -> Rule:
        return _build(
            Aggregate,
            {
                "aggregate": self.fn,
                "of": self.field,
                "performed": self.event,
                "where": _filter(self.where_),
                "within": self.window,
                **ops,
            },
        )


def aggregate(fn: str, of: str, performed: str, /, **where: Any) -> _AggregateBuilder:
    """``aggregate("sum", "amount", "order_completed").within("90d") >= 300000``."""
    return _AggregateBuilder(fn, of, performed, dict(where))


@attrs.frozen
class _LastBuilder:
    key: str
    event: Any
    where_: dict[str, Any]

    def __attrs_post_init__(self) -> None:
        self.ago(**_ANY_AGO)  # event and filters are checked at once

    def ago(self, **ages: str) -> Rule:
        """The first/last matching event's age lies in the range."""
        document = {self.key: self.event, "where": _filter(self.where_), "ago": ages}
        if self.key == "first_performed":
            return _build(FirstPerformed, document)
        return _build(LastPerformed, document)


def last_did(event: str, /, **where: Any) -> _LastBuilder:
    """``last_did("session_started").ago(gte="30d", lt="60d")``."""
    return _LastBuilder("last_performed", event, dict(where))


def first_did(event: str, /, **where: Any) -> _LastBuilder:
    """``first_did("order_completed").ago(lt="7d")``: first order in the last week."""
    return _LastBuilder("first_performed", event, dict(where))


def segment(name: str) -> InSegment:
    """Membership of a named segment."""
    return _build(InSegment, {"in_segment": name})


def sample(percent: float, salt: str) -> Sample:
    """A deterministic ``percent``% of customers (holdouts, A/B splits)."""
    return _build(Sample, {"sample": {"percent": percent, "salt": salt}})


def everyone() -> Everyone:
    """Every customer."""
    return Everyone()
