"""The rule nodes of the segment DSL: pydantic models of the JSON contract.

A rule is a JSON object with exactly one discriminating key (``and``, ``or``,
``not``, ``everyone``, ``performed``, ``aggregate``, ``first_performed``,
``last_performed``, ``attribute``, ``in_segment``, ``sample``).  The models are
frozen; ``&``, ``|`` and ``~`` combine them into new rules.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from shopcrm.dsl._json import json_ago_message
from shopcrm.errors import RuleError
from shopcrm.lifecycle._policy import snake
from shopcrm.timeline import TsBound, age_bounds, parse_duration, to_utc_naive

__all__ = [
    "sample_bucket",
    "Aggregate",
    "Ago",
    "AgeRange",
    "And",
    "Attribute",
    "Between",
    "Comparison",
    "Cycle",
    "Everyone",
    "FirstPerformed",
    "Follow",
    "InSegment",
    "Last",
    "LastPerformed",
    "Lifecycle",
    "MAX_DEPTH",
    "NODE_KEYS",
    "Not",
    "Or",
    "Performed",
    "Rfm",
    "Rule",
    "Sample",
    "SampleSpec",
    "Window",
    "check_depth",
    "check_windows",
    "window_bounds",
]

_IDENTIFIER = re.compile(r"^[^\W\d]\w*$")


#: how deeply rule nodes (and, or, not, resolved in_segment) may nest; the compilers
#: and the reference evaluator recurse once per level, well inside Python's stack at this depth
MAX_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
_DURATION_MAX_LENGTH = 40


def _check_duration(value: str) -> str:
    if isinstance(value, str) and len(value) > _DURATION_MAX_LENGTH:
        raise ValueError(
            f"{value[:_DURATION_MAX_LENGTH]!r}... is not a duration: it is longer than "
            f"{_DURATION_MAX_LENGTH} characters; use forms like '30d', '12h', 'P30D'"
        )
    try:
        parse_duration(value)
    except OverflowError:
        raise ValueError(
            f"{value!r} is too long a duration: it is more than {timedelta.max.days:,} days; "
            "use a duration that fits between the year 1 and the year 9999, e.g. '36500d'"
        ) from None
    return value


def _check_text(value: str) -> str:
    """Text a rule carries reaches every engine as UTF-8: no lone surrogates, no NUL."""
    if "\x00" in value:
        raise ValueError(f"{value!r} contains a NUL character (\\x00), which engines cannot store; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{value!r} is not valid Unicode text: {exc.reason} at position {exc.start}; "
            "send text as UTF-8 (a lone surrogate such as '\\ud800' has no UTF-8 form)"
        ) from None
    return value


def _check_scalar(value: Any) -> Any:
    """Numbers and text a rule compares must be representable in every engine."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        raise ValueError(f"{shown} is not a finite number; rules compare finite numbers only, e.g. 0, 2.5 or 1e9")
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        shown = str(value) if abs(value) < 10**40 else f"an integer of {len(str(abs(value)))} digits"
        raise ValueError(
            f"{shown} is outside the 64-bit integer range engines store "
            f"({_INT64[0]} to {_INT64[1]}); use a smaller integer or a float such as 1e20"
        )
    if isinstance(value, str):
        _check_text(value)
    return value


def _check_field(value: str) -> str:
    parts = value.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts) or (
        len(parts) == 2 and parts[0] != "properties"
    ):
        raise ValueError(
            f"{value!r} is not a field name; use a column name of letters, digits and "
            "underscores that does not start with a digit (e.g. 'category'), or "
            "'properties.<key>' for a key of the JSON properties column"
        )
    return value


def _check_event(value: str) -> str:
    if not value or not value.strip():
        raise ValueError("an event name must be a non-empty string, e.g. 'order_completed'")
    return _check_text(value)


def _check_flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(
            f"{value!r} is not true or false: is_null takes true or false (JSON booleans), no other value; "
            "use {'is_null': true} for a missing value and {'is_null': false} for a present one"
        )
    return value


def _check_percent(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"{value!r} is not a number: percent takes a number from 0 to 100, e.g. 10 or 12.5 (not text or true/false)"
        )
    return value


def _check_instant(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        shown = "true/false" if isinstance(value, bool) else repr(value)
        raise ValueError(
            f"{shown} is not an ISO 8601 datetime: between takes two of them, e.g. ['2026-01-01T00:00:00', "
            "'2026-02-01T00:00:00+09:00'] (numbers such as Unix timestamps are not read as instants)"
        )
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
Flag = Annotated[bool, BeforeValidator(_check_flag)]
Percent = Annotated[int | float, BeforeValidator(_check_percent)]
Instant = Annotated[datetime, BeforeValidator(_check_instant)]
FieldName = Annotated[str, AfterValidator(_check_field)]
EventName = Annotated[str, AfterValidator(_check_event)]
Text = Annotated[str, AfterValidator(_check_text)]


def _scalar_tag(value: Any) -> str | None:
    """The one type a value is validated as (no lax coercion: 0 is not False); None: no scalar."""
    for kind, tag in ((bool, "<bool>"), (int, "<int>"), (float, "<float>"), (str, "<str>")):
        if isinstance(value, kind):
            return tag
    return None


# Tags in angle brackets are left out of error paths (see format_path).
Scalar = Annotated[
    Union[  # noqa: UP007
        Annotated[StrictBool, Tag("<bool>")],
        Annotated[StrictInt, Tag("<int>")],
        Annotated[StrictFloat, Tag("<float>")],
        Annotated[StrictStr, Tag("<str>")],
    ],
    Discriminator(
        _scalar_tag, custom_error_type="scalar", custom_error_message="a value is a number, a string, true or false"
    ),
    BeforeValidator(_check_scalar),
]


def _join(path: str, *parts: str) -> str:
    return ".".join(p for p in (path, *parts) if p)


def _before(now: datetime, age: timedelta, text: str, path: str) -> datetime:
    """``now - age``; a RuleError at ``path`` when that is before the year 1."""
    try:
        return now - age
    except OverflowError:
        longest = (now - datetime.min).days
        raise RuleError.at(
            path,
            f"{text!r} before now ({now.isoformat()}) is earlier than the year 1, the first instant "
            f"a timestamp holds; at this now use at most '{longest}d'",
        ) from None


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True
    )

    def __repr_args__(self) -> Any:
        # parts left out (None) are not shown: Comparison(gte=3), not Comparison(eq=None, ne=None, ...)
        return [(k, v) for k, v in super().__repr_args__() if v is not None]


class AgeRange(_Frozen):
    """A range of ages (``now - ts``): ``{"gte": "1d", "lt": "7d"}``."""

    gte: Duration | None = None
    gt: Duration | None = None
    lte: Duration | None = None
    lt: Duration | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> AgeRange:
        if all(v is None for v in (self.gte, self.gt, self.lte, self.lt)):
            raise ValueError(
                "an age range needs at least one of gte, gt, lte, lt, e.g. {'gte': '1d', 'lt': '7d'}"
            )
        return self

    def ages(self) -> dict[str, timedelta]:
        """The given bounds as timedeltas, keyed by operator."""
        out: dict[str, timedelta] = {}
        for op in ("gte", "gt", "lte", "lt"):
            value = getattr(self, op)
            if value is not None:
                out[op] = parse_duration(value)
        return out

    def bounds(self, now: datetime, path: str = "") -> tuple[TsBound, ...]:
        """Bounds on a timestamp whose age lies in this range (always ``ts < now``).

        ``path`` is the range's own rule path; an age reaching before the year 1 is a
        RuleError there (``performed.within.ago.lt``).
        """
        ages = self.ages()
        for op, age in ages.items():
            _before(now, age, getattr(self, op), _join(path, op))
        return age_bounds(ages, now)


class Last(_Frozen):
    """``{"last": D}``: exactly ``{"ago": {"lt": D}}``."""

    last: Duration

    def bounds(self, now: datetime, path: str = "") -> tuple[TsBound, ...]:
        """``now - D < ts < now`` (``path``: the window's rule path, for a RuleError before the year 1)."""
        age = parse_duration(self.last)
        _before(now, age, self.last, _join(path, "last"))
        return age_bounds({"lt": age}, now)


class Ago(_Frozen):
    """``{"ago": RANGE}``."""

    ago: AgeRange

    def bounds(self, now: datetime, path: str = "") -> tuple[TsBound, ...]:
        """Bounds on ``ts`` for the range of ages."""
        return self.ago.bounds(now, _join(path, "ago"))


class Between(_Frozen):
    """``{"between": [a, b]}``: absolute ``a <= ts < b`` (and still ``ts < now``)."""

    between: tuple[Instant, Instant]

    @field_validator("between", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) == 2:
            try:
                return tuple(to_utc_naive(v) if isinstance(v, str | datetime) else v for v in value)
            except ValueError as exc:
                raise ValueError(
                    f"{list(value)!r} is not a pair of ISO 8601 datetimes; "
                    "use e.g. ['2026-01-01T00:00:00', '2026-02-01T00:00:00']"
                ) from exc
            except OverflowError:
                raise ValueError(
                    f"{list(value)!r} reaches outside the years 1 to 9999 once converted to UTC; "
                    "use instants inside that range"
                ) from None
        return value

    @field_validator("between")
    @classmethod
    def _ordered(cls, value: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
        try:
            value = (to_utc_naive(value[0]), to_utc_naive(value[1]))
        except OverflowError:
            raise ValueError(
                f"{[v.isoformat() for v in value]!r} reaches outside the years 1 to 9999 once converted "
                "to UTC; use instants inside that range"
            ) from None
        if value[0] > value[1]:
            raise ValueError(f"between starts after it ends: {value[0]} > {value[1]}")
        return value

    def bounds(self, now: datetime, path: str = "") -> tuple[TsBound, ...]:
        """``a <= ts < b`` and ``ts < now``."""
        return (TsBound("lt", now), TsBound("gte", self.between[0]), TsBound("lt", self.between[1]))


def _window_tag(value: Any) -> str | None:
    return _tag_of(value, ("last", "ago", "between"))


Window = Annotated[
    Union[Annotated[Last, Tag("last")], Annotated[Ago, Tag("ago")], Annotated[Between, Tag("between")]],  # noqa: UP007
    Discriminator(
        _window_tag,
        custom_error_type="window",
        custom_error_message="a window is one of {'last': '30d'}, {'ago': {'gte': '1d', 'lt': '7d'}} "
        "or {'between': [ISO_DATETIME, ISO_DATETIME]}",
    ),
]

OPERATORS = (
    "eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in",
    "contains", "starts_with", "is_null", "ago",
)
COUNT_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in")


class _Operators(_Frozen):
    """The operator fields shared by comparisons, attributes and aggregates."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    between: tuple[Scalar, Scalar] | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in", min_length=1)
    not_in: tuple[Scalar, ...] | None = Field(default=None, min_length=1)
    contains: Text | None = None
    starts_with: Text | None = None
    is_null: Flag | None = None
    ago: AgeRange | None = None

    @field_validator("lt", "lte", "gt", "gte")
    @classmethod
    def _ordered(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(_NO_ORDER)
        return value

    @field_validator("between", "in_", "not_in")
    @classmethod
    def _one_kind(cls, value: tuple[Any, ...] | None, info: ValidationInfo) -> tuple[Any, ...] | None:
        if value is None:
            return value
        name = "in" if info.field_name == "in_" else info.field_name
        kinds = list(dict.fromkeys(_kind_of(v) for v in value))
        if len(kinds) > 1:
            raise ValueError(
                f"{name} mixes {' and '.join(kinds)}: {list(value)!r}; give values of one kind (numbers, strings or "
                "true/false); for values of several kinds, join rules of one kind each with or"
            )
        if name == "between" and kinds == ["true/false"]:
            raise ValueError(_NO_ORDER)
        return value

    def operators(self) -> dict[str, Any]:
        """The operators that are set, keyed by their JSON name (``in``, not ``in_``)."""
        out: dict[str, Any] = {}
        for name in OPERATORS:
            value = getattr(self, "in_" if name == "in" else name)
            if value is not None:
                out[name] = value
        return out

    def _require_operator(self, what: str) -> None:
        if not self.operators():
            raise ValueError(
                f"{what} needs at least one operator: one of {', '.join(OPERATORS)}"
            )


class Comparison(_Operators):
    """An operator object: ``{"gte": 50000}``, ``{"in": ["shoes", "bags"]}``."""

    @model_validator(mode="after")
    def _needs_operator(self) -> Comparison:
        self._require_operator("a comparison")
        return self


def _count_only(ops: _Operators, what: str) -> None:
    for name, value in ops.operators().items():
        if name not in COUNT_OPERATORS:
            raise ValueError(
                f"{name!r} cannot compare {what}; use one of {', '.join(COUNT_OPERATORS)}"
            )
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{what} is compared with numbers, not {v!r}")


_NO_ORDER = "true and false have no order: compare booleans with eq, ne, in or not_in"


def _kind_of(value: Any) -> str:
    """A scalar's kind in messages: ``a number``, ``a string``, ``true/false``."""
    if isinstance(value, bool):
        return "true/false"
    return "a string" if isinstance(value, str) else "a number"


def _filter_tag(value: Any) -> str:
    return "<operators>" if isinstance(value, dict | Comparison) else "<value>"


Filter = dict[
    FieldName,
    Annotated[
        Union[Annotated[Scalar, Tag("<value>")], Annotated[Comparison, Tag("<operators>")]],  # noqa: UP007
        Discriminator(_filter_tag),
    ],
]


class _RuleOps:
    """``&``, ``|`` and ``~`` on every rule node and builder."""

    def __and__(self, other: Any) -> And:
        from shopcrm.dsl._builder import as_rule

        left, right = as_rule(self), as_rule(other)
        parts = [*(left.and_ if isinstance(left, And) else [left])]
        parts += right.and_ if isinstance(right, And) else [right]
        return And(and_=parts)

    def __or__(self, other: Any) -> Or:
        from shopcrm.dsl._builder import as_rule

        left, right = as_rule(self), as_rule(other)
        parts = [*(left.or_ if isinstance(left, Or) else [left])]
        parts += right.or_ if isinstance(right, Or) else [right]
        return Or(or_=parts)

    def __invert__(self) -> Rule:
        from shopcrm.dsl._builder import as_rule

        inner = as_rule(self)
        return inner.not_ if isinstance(inner, Not) else Not(not_=inner)


class _Node(_Frozen, _RuleOps):
    KEY: ClassVar[str] = ""

    @model_serializer(mode="wrap")
    def _key_first(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and self.KEY in data:
            return {self.KEY: data[self.KEY], **{k: v for k, v in data.items() if k != self.KEY}}
        return data

    def __repr__(self) -> str:
        """The builder code of the rule, e.g. ``did("order_completed").within("30d") & attr("age").between(20, 39)``;
        evaluated with ``from shopcrm.dsl import *`` it gives an equal rule (through ``parse_rule``)."""
        from shopcrm.dsl._repr import rule_repr

        return rule_repr(self)

    def __str__(self) -> str:
        return self.__repr__()

    def _repr_html_(self) -> str:
        import html

        return (
            f"<div class='shopcrm-rule'><code>{html.escape(self.__repr__())}</code>"
            f"<details><summary>JSON</summary><pre>{html.escape(self.to_json())}</pre></details></div>"
        )

    def to_json(self) -> str:
        """The rule as compact JSON."""
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        """The rule as plain JSON-able data."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class And(_Node):
    """All of the rules hold."""

    KEY: ClassVar[str] = "and"
    and_: list[Rule] = Field(alias="and", min_length=1)


class Or(_Node):
    """Any of the rules holds."""

    KEY: ClassVar[str] = "or"
    or_: list[Rule] = Field(alias="or", min_length=1)


class Not(_Node):
    """The complement within all customers."""

    KEY: ClassVar[str] = "not"
    not_: Rule = Field(alias="not")


class Everyone(_Node):
    """Every customer."""

    KEY: ClassVar[str] = "everyone"
    everyone: Literal[True] = True


class Follow(_Frozen):
    """The event that cancels a ``performed`` event when it follows it."""

    performed: EventName
    where: Filter | None = None
    within: Duration | None = None


class Performed(_Node):
    """The count of matching events inside the window satisfies ``times`` (default ``{"gte": 1}``)."""

    KEY: ClassVar[str] = "performed"
    performed: EventName
    where: Filter | None = None
    within: Window | None = None
    times: Comparison | None = None
    not_followed_by: Follow | None = None

    @field_validator("times")
    @classmethod
    def _numeric_times(cls, value: Comparison | None) -> Comparison | None:
        if value is not None:
            _count_only(value, "times (a count)")
        return value


class Aggregate(_Node, _Operators):
    """``sum``/``avg``/``min``/``max``/``count_distinct`` of a field over matching events, compared."""

    KEY: ClassVar[str] = "aggregate"
    aggregate: Literal["sum", "avg", "min", "max", "count_distinct"]
    of: FieldName
    performed: EventName
    where: Filter | None = None
    within: Window | None = None

    @model_validator(mode="after")
    def _numeric(self) -> Aggregate:
        self._require_operator("an aggregate")
        _count_only(self, f"{self.aggregate} of {self.of!r}")
        return self


class FirstPerformed(_Node):
    """The customer's first matching event lies in the range of ages."""

    KEY: ClassVar[str] = "first_performed"
    first_performed: EventName
    where: Filter | None = None
    ago: AgeRange


class LastPerformed(_Node):
    """The customer's most recent matching event lies in the range of ages."""

    KEY: ClassVar[str] = "last_performed"
    last_performed: EventName
    where: Filter | None = None
    ago: AgeRange


class Attribute(_Node, _Operators):
    """Compares a customer attribute: ``{"attribute": "age", "between": [20, 39]}``."""

    KEY: ClassVar[str] = "attribute"
    attribute: FieldName

    @model_validator(mode="after")
    def _needs_operator(self) -> Attribute:
        self._require_operator(f"attribute {self.attribute!r}")
        return self


class InSegment(_Node):
    """Membership of another named segment."""

    KEY: ClassVar[str] = "in_segment"
    in_segment: Text = Field(min_length=1)


def sample_bucket(salt: str, customer_id: Any) -> int:
    """A customer's sample bucket, 0..9999: the first 8 hex digits of md5(``salt:customer_id``) mod 10,000.
    ``{"sample": {"percent": P, "salt": S}}`` holds exactly the customers whose bucket is below ``P * 100``;
    the compilers compute the same number in SQL."""
    digest = hashlib.md5(f"{salt}:{customer_id}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % 10000


class SampleSpec(_Frozen):
    """A deterministic P% of customers, bucketed by md5 of ``salt:customer_id``."""

    percent: Percent = Field(ge=0, le=100)
    salt: Text


class Sample(_Node):
    """``{"sample": {"percent": P, "salt": S}}``."""

    KEY: ClassVar[str] = "sample"
    sample: SampleSpec


class Lifecycle(_Node):
    """``{"lifecycle": STAGE}`` or ``{"lifecycle": STAGE, "moment": MOMENT}``; STAGE may be ``"any"``."""

    KEY: ClassVar[str] = "lifecycle"
    lifecycle: Literal["any", "never_purchased", "first_purchase", "repeat", "loyal"]
    moment: Literal["cart_abandoned", "signup_dropoff", "cooling_off", "lapsed"] | None = None


class Rfm(_Node):
    """``{"rfm": "champions"}``: the customer's named RFM segment, by its name in snake case (a policy's segment
    "Big Spenders" is ``{"rfm": "big_spenders"}``)."""

    KEY: ClassVar[str] = "rfm"
    rfm: StrictStr

    @field_validator("rfm")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        spelled = snake(value)
        if not value or value != spelled:
            hint = f"; did you mean {spelled!r}?" if spelled else ""
            raise ValueError(
                f"{value!r} is not an RFM segment's name in rules: rules write it in snake case (lower-case words "
                f"joined by underscores), e.g. 'champions', 'cant_lose_them', 'big_spenders'{hint}"
            )
        return value


class Cycle(_Node):
    """``{"cycle": "at_risk"}``: purchase-cycle risk from the customer's usual gap between orders."""

    KEY: ClassVar[str] = "cycle"
    cycle: Literal["active", "at_risk", "churned"]


NODE_KEYS: tuple[str, ...] = (
    "and", "or", "not", "everyone", "aggregate", "performed",
    "first_performed", "last_performed", "attribute", "in_segment", "sample",
    "lifecycle", "rfm", "cycle",
)


def _tag_of(value: Any, keys: tuple[str, ...]) -> str | None:
    if isinstance(value, dict):
        for key in keys:
            if key in value:
                return key
        return None
    for key in keys:
        if getattr(value, "KEY", None) == key or (
            not hasattr(value, "KEY") and hasattr(value, key)
        ):
            return key
    return None


def _rule_tag(value: Any) -> str | None:
    return _tag_of(value, NODE_KEYS)


Rule = Annotated[
    Union[  # noqa: UP007
        Annotated[And, Tag("and")],
        Annotated[Or, Tag("or")],
        Annotated[Not, Tag("not")],
        Annotated[Everyone, Tag("everyone")],
        Annotated[Aggregate, Tag("aggregate")],
        Annotated[Performed, Tag("performed")],
        Annotated[FirstPerformed, Tag("first_performed")],
        Annotated[LastPerformed, Tag("last_performed")],
        Annotated[Attribute, Tag("attribute")],
        Annotated[InSegment, Tag("in_segment")],
        Annotated[Sample, Tag("sample")],
        Annotated[Lifecycle, Tag("lifecycle")],
        Annotated[Rfm, Tag("rfm")],
        Annotated[Cycle, Tag("cycle")],
    ],
    Discriminator(
        _rule_tag,
        custom_error_type="rule_node",
        custom_error_message="a rule is an object with one of the keys "
        "and, or, not, everyone, performed, aggregate, first_performed, last_performed, "
        "attribute, in_segment, sample, lifecycle, rfm, cycle",
    ),
]

for _model in (And, Or, Not, Performed, Aggregate):
    _model.model_rebuild()


def window_bounds(window: Last | Ago | Between | None, now: datetime, path: str = "") -> tuple[TsBound, ...]:
    """Bounds on an event's ``ts`` for a window (no window: every event before ``now``).

    ``path`` is the window's rule path (``and[0].performed.within``); a window reaching
    before the year 1 at this ``now`` is a RuleError there.
    """
    return (TsBound("lt", now),) if window is None else window.bounds(now, path)


def _after(now: datetime, span: timedelta, text: str, path: str) -> None:
    """A RuleError at ``path`` when ``now + span`` is after the year 9999."""
    try:
        now + span
    except OverflowError:
        longest = (datetime.max - now).days
        raise RuleError.at(
            path,
            f"{text!r} after an event before now ({now.isoformat()}) reaches past the year 9999, the last "
            f"instant a timestamp holds; at this now use at most '{longest}d'",
        ) from None


def check_windows(rule: Rule, now: datetime, path: str = "") -> None:
    """Every relative time of ``rule`` as an instant at ``now``, or a RuleError with its path.

    A window or range of ages reaching before the year 1, or a ``not_followed_by``
    duration reaching past the year 9999, cannot be compared with timestamps; nor can
    a key of the JSON properties column (``ago`` on ``properties.<key>``). The
    reference evaluator and the compiler both call this before anything else, so
    they refuse such a rule alike, whatever the data.
    """
    stack: list[tuple[Rule, str]] = [(rule, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, And | Or):
            tag = "and" if isinstance(node, And) else "or"
            items = node.and_ if isinstance(node, And) else node.or_
            stack.extend((child, f"{_join(at, tag)}[{i}]") for i, child in reversed(list(enumerate(items))))
        elif isinstance(node, Not):
            stack.append((node.not_, _join(at, "not")))
        elif isinstance(node, Performed):
            here = _join(at, "performed")
            window_bounds(node.within, now, _join(here, "within"))
            _where_windows(node.where, now, here)
            follow = node.not_followed_by
            if follow is not None:
                there = _join(here, "not_followed_by")
                _where_windows(follow.where, now, there)
                if follow.within is not None:
                    _after(now, parse_duration(follow.within), follow.within, _join(there, "within"))
        elif isinstance(node, Aggregate):
            here = _join(at, "aggregate")
            window_bounds(node.within, now, _join(here, "within"))
            _where_windows(node.where, now, here)
        elif isinstance(node, FirstPerformed | LastPerformed):
            here = _join(at, node.KEY)
            _where_windows(node.where, now, here)
            node.ago.bounds(now, _join(here, "ago"))
        elif isinstance(node, Attribute) and node.ago is not None:
            node.ago.bounds(now, _join(at, "attribute", "ago"))


def _where_windows(where: dict[str, Any] | None, now: datetime, path: str) -> None:
    for key, cond in (where or {}).items():
        if isinstance(cond, Comparison) and cond.ago is not None:
            if key.startswith("properties."):  # a JSON value is no timestamp (the compiler says the same)
                raise RuleError.at(_join(path, "where", key, "ago"), json_ago_message(key))
            cond.ago.bounds(now, _join(path, "where", key, "ago"))


def check_depth(rule: Rule, path: str = "") -> None:
    """A RuleError at the first node nested deeper than :data:`MAX_DEPTH` levels."""
    stack: list[tuple[Rule, str, int]] = [(rule, path, 1)]
    while stack:
        node, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RuleError.at(at, too_deep_message())
        if isinstance(node, And | Or):
            tag = "and" if isinstance(node, And) else "or"
            items = node.and_ if isinstance(node, And) else node.or_
            stack.extend((child, f"{_join(at, tag)}[{i}]", depth + 1) for i, child in reversed(list(enumerate(items))))
        elif isinstance(node, Not):
            stack.append((node.not_, _join(at, "not"), depth + 1))


def too_deep_message() -> str:
    """What a rule nested too deeply is told."""
    return (
        f"rules nest at most {MAX_DEPTH} levels deep (counting and, or, not and named segments); "
        "flatten this one, e.g. merge nested ands (or ors) into one list, or drop double negations"
    )
