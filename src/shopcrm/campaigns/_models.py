"""The campaign document: audience, purpose, channel chain, variants, holdout and schedule (pydantic, JSON).

A campaign is data: it round-trips through JSON, has a JSON Schema
(:func:`campaign_json_schema`) and is checked when it is built.  Three kinds of
schedule, discriminated by ``kind``: ``one_off`` (at a local time), ``recurring``
(daily or weekly at a local time) and ``triggered`` (a scenario entered on an
event: wait, branch, send; exit events; re-entry rule).
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from shopcrm.campaigns._friendtalk import brand_messages_for
from shopcrm.dsl import Everyone, Rule, parse_rule
from shopcrm.errors import CampaignError
from shopcrm.timeline import iso_duration, parse_duration

__all__ = [
    "CHANNELS",
    "AlimTalk",
    "BrandLayout",
    "Branch",
    "Button",
    "Campaign",
    "Channel",
    "Content",
    "OneOff",
    "Purpose",
    "Recommend",
    "Recurring",
    "Schedule",
    "Send",
    "Step",
    "Triggered",
    "Variant",
    "Wait",
    "WaitUntil",
    "campaign_json_schema",
    "parse_campaign",
    "reentry_blocks",
]

Purpose = Literal["informational", "advertising"]
Channel = Literal["alimtalk", "brand_message", "sms", "email", "push", "webhook"]
#: the channels a chain may name, in no particular order (``friendtalk`` is read as ``brand_message``)
CHANNELS: tuple[str, ...] = get_args(Channel)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: a campaign document saved by shopcrm 0.x before durations were written in days: pydantic wrote 365 days as
#: ``P1Y`` (``P<years>Y<days>D...``, a year being 365 days), which :func:`stored_campaign` reads back
_PYDANTIC_YEARS = re.compile(r"^P(\d+)Y((?:\d+D)?(?:T.*)?)$")
_reading_stored: ContextVar[bool] = ContextVar("shopcrm_reading_stored_campaign", default=False)


def _duration(value: Any, what: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{what} is a duration such as '30m', '1d' or 'P1D', not {value!r}")
    years = _PYDANTIC_YEARS.match(value) if _reading_stored.get() else None
    if years is not None:
        rest = years.group(2)
        return timedelta(days=365 * int(years.group(1))) + (parse_duration(f"P{rest}") if rest else timedelta(0))
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not a duration; use forms like '30m', '1d', 'P1D'") from None


#: a duration, written to JSON in days (``"P400D"``): pydantic's own form counts years (``"P1Y35D"``), which the
#: duration parser refuses (a year has no fixed length), so a saved campaign could not be read back
Duration = Annotated[timedelta, PlainSerializer(iso_duration, return_type=str, when_used="json")]
Reentry = Literal["once", "every_time"] | Duration


def reentry_blocks(reentry: Reentry, last: datetime | None, at: datetime) -> bool:
    """Whether a customer who last got a recurring campaign (or entered a scenario) at ``last`` is kept out at
    ``at`` by the ``reentry`` rule: ``once`` keeps out for good, a duration for that long after ``last``."""
    if last is None or last >= at or reentry == "every_time":
        return False
    return reentry == "once" or (isinstance(reentry, timedelta) and at - last < reentry)


def _reentry_value(cls: type, value: Any) -> Any:
    """``once``, ``every_time`` or a duration (how often one customer may get a recurring campaign or enter a scenario)."""
    if value in ("once", "every_time") or isinstance(value, timedelta):
        return value
    return _duration(value, "reentry (once, every_time or a duration)")


class Button(_Frozen):
    """A link button (AlimTalk, Brand Message, push): its label and a URL template."""

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)


class AlimTalk(_Frozen):
    """A pre-approved AlimTalk template: its code, its approved body with ``#{var}`` slots, and how each
    slot is filled (a jinja2 template per variable, e.g. ``{"고객명": "{{ name }}"}``)."""

    template_code: str = Field(min_length=1)
    body: str = Field(min_length=1)
    variables: dict[str, str] = Field(default_factory=dict)


_STRATEGY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: how many products one message may ask for (a carousel holds at most 6; an e-mail grid is meant to be short)
MAX_RECOMMENDATIONS = 12


class Recommend(_Frozen):
    """``{"strategy": "also_bought", "k": 4}``: the message's templates get ``recommendations``, the top ``k``
    products of ``strategy`` for each recipient (see :func:`shopcrm.recommend.for_customers`), gathered for the
    whole audience in one batch when a tick plans.  In a triggered scenario the trigger event's ``product_id``
    is left out unless ``exclude_trigger`` is false."""

    strategy: str = "also_bought"
    k: int = Field(default=4, ge=1, le=MAX_RECOMMENDATIONS)
    exclude_trigger: bool = True

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if not _STRATEGY.match(value):
            raise ValueError(f"strategy {value!r} is a recommender's name such as 'also_bought', 'popular' or 'personal' "
                             "(lower-case letters, digits and '_')")
        return value


#: the Brand Message layouts a content may ask for, and how many products each holds (from, to)
BRAND_LAYOUT_ITEMS: dict[str, tuple[int, int]] = {"list": (3, 4), "carousel": (2, 6)}


class BrandLayout(_Frozen):
    """How a Brand Message shows ``recommendations``: ``text`` (the body only, the default), ``list`` (a wide item
    list: a ``header`` of at most 20 characters and 3-4 products with images, at most 2 buttons) or ``carousel``
    (a carousel feed of 2-6 product cards with images, each with one ``item_button``).  The products come from
    ``content.recommend``; products without an image are skipped."""

    layout: Literal["text", "list", "carousel"] = "text"
    header: str | None = None
    item_button: str = Field(default="보러 가기", min_length=1, max_length=8)


class Content(_Frozen):
    """One message's copy.  ``text`` is the body of SMS/LMS/MMS, Brand Message and push and the plain
    text of e-mail; ``subject`` is the LMS/MMS and e-mail subject and the push title.  All are jinja2.

    ``recommend`` asks for product recommendations (templates read them as ``recommendations``);
    ``brand_message`` shows them as a Brand Message list or carousel."""

    text: str = Field(min_length=1)
    subject: str | None = None
    html: str | None = None
    alimtalk: AlimTalk | None = None
    buttons: tuple[Button, ...] = ()
    image_url: str | None = None
    recommend: Recommend | None = None
    brand_message: BrandLayout | None = None

    @model_validator(mode="after")
    def _recommendations(self) -> Content:
        problems: list[str] = []
        sources = [self.text, self.subject, self.html, *(x for b in self.buttons for x in (b.name, b.url))]
        if self.alimtalk is not None:
            sources += list(self.alimtalk.variables.values())
        if self.recommend is None and any(s is not None and "recommendations" in s for s in sources):
            problems.append("the templates read recommendations but the content asks for none: add "
                            "\"recommend\": {\"strategy\": \"also_bought\", \"k\": 4}")
        layout = self.brand_message.layout if self.brand_message is not None else "text"
        if layout != "text":
            low, high = BRAND_LAYOUT_ITEMS[layout]
            if self.recommend is None:
                problems.append(f"a Brand Message {layout} shows recommended products: add \"recommend\": "
                                f"{{\"strategy\": \"also_bought\", \"k\": {high}}}")
            elif self.recommend.k < low:
                problems.append(f"a Brand Message {layout} holds {low} to {high} products; recommend.k is "
                                f"{self.recommend.k}: ask for at least {low}")
            if layout == "list" and not (self.brand_message and self.brand_message.header):
                problems.append("a Brand Message list needs a header (at most 20 characters): set brand_message.header")
            if layout == "carousel" and self.buttons:
                problems.append("a Brand Message carousel has one button per card (brand_message.item_button), "
                                "not content.buttons; remove them")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Variant(_Frozen):
    """An A/B/n arm: a name, a weight (share of the sendable audience) and its content."""

    name: str = Field(min_length=1, max_length=40)
    weight: int = Field(default=1, ge=1)
    content: Content


class OneOff(_Frozen):
    """Send once, at a local time in the shop's time zone."""

    kind: Literal["one_off"] = "one_off"
    at: datetime


class Recurring(_Frozen):
    """Send every day, or on some weekdays (0 Monday .. 6 Sunday), or on some days of the month (``month_days``,
    1 to 28: every month has them), at a local time, between optional dates.

    ``reentry`` says how often one customer may get it: ``every_time`` (each occurrence they are in the
    audience), ``once`` (ever), or a duration such as ``"30d"`` (a customer who stays in a segment
    for weeks hears from it once per 30 days).
    """

    kind: Literal["recurring"] = "recurring"
    at: time
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    month_days: tuple[int, ...] | None = None
    starts: datetime | None = None
    ends: datetime | None = None
    reentry: Reentry = "every_time"

    _reentry = field_validator("reentry", mode="before")(_reentry_value)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 0 <= d <= 6 for d in value):
            raise ValueError(f"weekdays are 0 (Monday) to 6 (Sunday), at least one; got {list(value)}")
        return tuple(sorted(set(value)))

    @field_validator("month_days")
    @classmethod
    def _month_days(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(not 1 <= d <= 28 for d in value)):
            raise ValueError(f"month_days are days 1 to 28 of the month (every month has them), at least one; got {list(value)}")
        return None if value is None else tuple(sorted(set(value)))


class Wait(_Frozen):
    """``{"wait": "1d"}``: wait a duration."""

    wait: Duration

    @field_validator("wait", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> timedelta:
        return _duration(value, "wait")


class WaitUntil(_Frozen):
    """``{"wait_until": "10:00"}``: wait until the next time this local time of day comes (now if it is now)."""

    wait_until: time


class Send(_Frozen):
    """``{"send": "reminder"}``: send the campaign's variants; with ``variants``, these instead.  The name
    identifies the step in idempotency keys and reports; it is unique within the campaign."""

    send: str = Field(min_length=1, max_length=40)
    variants: tuple[Variant, ...] | None = None


class Branch(_Frozen):
    """``{"if": RULE, "then": [...], "else": [...]}``: the rule is evaluated for the customer at that moment."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    if_: Rule = Field(alias="if")
    then: tuple[Step, ...] = ()
    else_: tuple[Step, ...] = Field(default=(), alias="else")

    @field_validator("if_", mode="before")
    @classmethod
    def _rule(cls, value: Any) -> Rule:
        return parse_rule(value)


def _step_key(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("wait", "wait_until", "send", "if"):
            if key in value:
                return key
        return None
    kinds: dict[type, str] = {Wait: "wait", WaitUntil: "wait_until", Send: "send", Branch: "if"}
    return kinds.get(type(value))


Step = Annotated[
    Union[  # noqa: UP007
        Annotated[Wait, Tag("wait")],
        Annotated[WaitUntil, Tag("wait_until")],
        Annotated[Send, Tag("send")],
        Annotated[Branch, Tag("if")],
    ],
    Discriminator(_step_key, custom_error_type="step", custom_error_message="a step is one of {'wait': ...}, "
                  "{'wait_until': 'HH:MM'}, {'send': NAME}, {'if': RULE, 'then': [...], 'else': [...]}"),
]
Branch.model_rebuild()


class Triggered(_Frozen):
    """A scenario: entered when the customer performs ``on``, then ``steps`` in order.

    ``exit_on`` events performed after the entry end the scenario before any later step (an
    ``order_completed`` ends a cart reminder).  ``reentry``: ``once`` (ever), ``every_time``, or a
    duration such as ``"30d"`` (at most one entry per that long).  ``entry_window`` bounds how long
    after the trigger a customer can still enter (a tick that comes late still plans; a trigger
    older than this is ignored).
    """

    kind: Literal["triggered"] = "triggered"
    on: str = Field(min_length=1)
    steps: tuple[Step, ...] = Field(min_length=1)
    exit_on: tuple[str, ...] = ()
    reentry: Reentry = "once"
    #: issue 15: only trigger events whose properties have these values start the scenario, e.g.
    #: ``{"segment": "vip"}`` on ``segment_entered`` (a property the event lacks matches nothing)
    where: dict[str, str | int | float | bool] | None = None

    _reentry = field_validator("reentry", mode="before")(_reentry_value)

    @field_validator("where", mode="before")
    @classmethod
    def _where_values(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, dict) or not value:
            raise ValueError(f"where is {value!r}; give a non-empty mapping of event property to the value it must "
                             "have, e.g. {'segment': 'vip'}")
        for key, wanted in value.items():
            if not isinstance(key, str) or not re.match(r"^[^\W\d]\w*$", key):
                raise ValueError(f"{key!r} is not an event property name; use letters, digits and underscores, "
                                 "e.g. 'segment'")
            if wanted is None or isinstance(wanted, dict | list | tuple):
                raise ValueError(f"where[{key!r}] is {wanted!r}; give one text, number or true/false the property "
                                 f"must equal, e.g. {{{key!r}: 'vip'}}")
        return value

    def matches(self, properties: Any) -> bool:
        """Whether a trigger event with these properties starts the scenario (every ``where`` value equal)."""
        def equal(value: Any, wanted: Any) -> bool:
            return value is wanted if isinstance(value, bool) or isinstance(wanted, bool) else bool(value == wanted)

        return self.where is None or all(key in properties and equal(properties[key], wanted)
                                         for key, wanted in self.where.items())


Schedule = Annotated[
    Union[Annotated[OneOff, Tag("one_off")], Annotated[Recurring, Tag("recurring")], Annotated[Triggered, Tag("triggered")]],  # noqa: UP007
    Discriminator(
        lambda v: v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None),
        custom_error_type="schedule",
        custom_error_message="a schedule has kind 'one_off', 'recurring' or 'triggered'",
    ),
]


def _send_steps(steps: tuple[Step, ...]) -> list[Send]:
    out: list[Send] = []
    for step in steps:
        if isinstance(step, Send):
            out.append(step)
        elif isinstance(step, Branch):
            out += _send_steps(step.then) + _send_steps(step.else_)
    return out


class Campaign(_Frozen):
    """A campaign: who (``audience``), why (``purpose``), how (``channels``, first preferred, the rest
    fallbacks), what (``variants``), a control group (``holdout_percent``) and when (``schedule``).

    ``priority`` decides which campaign wins when frequency caps bind (higher first).  ``max_delay``
    is how late a due message may still be planned (a tick that comes later suppresses it as
    ``expired`` instead of sending stale news).
    """

    id: str
    name: str = ""
    purpose: Purpose
    audience: Rule = Field(default_factory=lambda: Everyone(everyone=True))
    channels: tuple[Channel, ...] = Field(min_length=1)
    variants: tuple[Variant, ...] = Field(min_length=1)
    holdout_percent: float = Field(default=0, ge=0, lt=100)
    schedule: Schedule
    priority: int = 0
    max_delay: Duration = timedelta(days=1)
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"campaign id {value!r} must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value

    @field_validator("audience", mode="before")
    @classmethod
    def _audience(cls, value: Any) -> Rule:
        return parse_rule(value)

    @field_validator("channels", mode="before")
    @classmethod
    def _friendtalk(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and "friendtalk" in value:
            return brand_messages_for(value, "a campaign's channels", stacklevel=3)
        return value

    @field_validator("max_delay", mode="before")
    @classmethod
    def _max_delay(cls, value: Any) -> timedelta:
        return _duration(value, "max_delay")

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        problems: list[str] = []
        if len(set(self.channels)) != len(self.channels):
            problems.append(f"channels name a channel twice: {list(self.channels)}")
        if self.purpose == "advertising" and "alimtalk" in self.channels:
            problems.append(
                "AlimTalk carries informational messages only; an advertising campaign uses brand_message, "
                "sms, email or push"
            )
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            problems.append(f"variant names repeat: {names}")
        if isinstance(self.schedule, Triggered):
            sends = [s.send for s in _send_steps(self.schedule.steps)]
            if not sends:
                problems.append("a triggered scenario needs at least one send step")
            if len(set(sends)) != len(sends):
                problems.append(f"send step names repeat: {sends}; each names its step in idempotency keys")
            if {"entered", "not_entered"} & set(sends):
                problems.append("'entered' and 'not_entered' name a scenario's entry decisions; call the send step something else")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def send_steps(self) -> list[Send]:
        """The scenario's send steps (one implicit step named ``main`` for one-off and recurring)."""
        if isinstance(self.schedule, Triggered):
            return _send_steps(self.schedule.steps)
        return [Send(send="main")]

    def variants_of(self, step: Send) -> tuple[Variant, ...]:
        return step.variants or self.variants

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


def stored_campaign(document: str | bytes) -> Campaign:
    """A campaign as a store keeps it (its JSON): also one saved before durations were written in days."""
    token = _reading_stored.set(True)
    try:
        return Campaign.model_validate_json(document)
    finally:
        _reading_stored.reset(token)


def parse_campaign(document: Campaign | dict[str, Any] | str | bytes) -> Campaign:
    """A validated campaign from a model, a dict or JSON; errors name each problem's place."""
    if isinstance(document, Campaign):
        return document
    try:
        if isinstance(document, str | bytes):
            return Campaign.model_validate_json(document)
        return Campaign.model_validate(document)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            problems.append((where, message))
        raise CampaignError(problems) from None


def campaign_json_schema() -> dict[str, Any]:
    """The JSON Schema of a campaign document."""
    return Campaign.model_json_schema(by_alias=True)
