"""The planner: campaigns + the shop's state as of ``now`` -> planned messages and suppressions. Pure.

The planner never sends and never reads a clock.  Everything it needs arrives in a
:class:`ShopState`; everything it decides leaves in a :class:`Plan`: each planned
message has a deterministic idempotency key, so planning the same tick twice (or
overlapping ticks) plans nothing twice as long as the caller records the keys in
the ledger it passes next time.  Every audience member it leaves out gets a
:class:`Suppression` with a machine-readable reason.

Scenario progress is not stored: it is recomputed from the customer's trigger
events, exit events and the ledger, so a crash between ticks loses nothing.
"""

from __future__ import annotations

import gc
import hashlib
import operator
import struct
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import import_module
from itertools import accumulate, islice, repeat
from typing import Any, TypeVar, cast

import attrs

from shopcrm.campaigns._entry import EntryRule, StageMemo, entry_rule
from shopcrm.campaigns._models import (
    Branch,
    Campaign,
    OneOff,
    Recurring,
    Send,
    Triggered,
    Variant,
    Wait,
    WaitUntil,
    reentry_blocks,
)
from shopcrm.campaigns._policy import (
    CONSENT_GROUP,
    KAKAO_TIMEZONE,
    MessagingPolicy,
    in_global_control,
    local,
    utc,
)
from shopcrm.campaigns._templates import (
    _MISSING,
    Decorations,
    Rendered,
    Renderer,
    _apart,
    recommended,
    uses_link,
)
from shopcrm.dsl import Everyone, sample_bucket
from shopcrm.errors import CampaignError
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.reference import evaluate
from shopcrm.schema import Schema
from shopcrm.timeline import to_utc_naive

try:  # CPython's own MD5 hashes a short text about twice as fast as OpenSSL's (the same digest)
    from _md5 import md5 as _md5  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a build without it
    _md5 = hashlib.md5


def _builtin_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (3.11: ``_sha256``; 3.12 on: ``_sha2``): a short text about a quarter faster than
    OpenSSL's, the same digest; OpenSSL's where the build has neither."""
    for module in ("_sha256", "_sha2"):
        try:
            return cast(Callable[[bytes], Any], import_module(module).sha256)
        except (ImportError, AttributeError):  # pragma: no cover - another version or build
            continue
    return hashlib.sha256  # pragma: no cover


_sha256 = _builtin_sha256()

#: the first four bytes of a digest as a big-endian number (``int.from_bytes(digest[:4], "big")`` without the slice)
_first_four = struct.Struct(">I").unpack_from

_T = TypeVar("_T")

#: not looked up yet (a remembered answer may be None)
_UNSET: Any = object()

__all__ = [
    "ENTERED",
    "AudienceHashes",
    "NOT_ENTERED",
    "REASONS",
    "Entry",
    "KeyCache",
    "LedgerEntry",
    "Plan",
    "PlannedMessage",
    "Recipient",
    "ShopState",
    "Suppression",
    "allowed_from",
    "bucket",
    "consent_block",
    "due_occurrence",
    "entry_decision",
    "idempotency_key",
    "message_context",
    "needs_recheck",
    "paused_gc",
    "plan",
    "scenario_span",
]

#: every suppression reason, with what it means
REASONS: dict[str, str] = {
    "already_planned": "this message (idempotency key) is already in the ledger",
    "expired": "the message came due longer ago than the campaign's max_delay",
    "exited": "an exit event ended the scenario before this step",
    "no_recipient": "the audience member is not among the shop's recipients",
    "no_contact": "no contact point on any channel of the chain",
    "opted_out": "opted out (or withdrew) on every channel of the chain",
    "no_consent": "no marketing consent on any channel of the chain",
    "consent_expired": "marketing consent older than the policy allows without re-confirmation (K8)",
    "not_friend": "Brand Message only reaches the channel's friends",
    "capped": "a frequency cap would be exceeded",
    "global_control": "in the shop's global control group (MessagingPolicy.global_control_percent): no advertising",
    "holdout": "in the campaign's control group: planned but not sent",
    "render_failed": "the template could not be rendered for this customer",
    "not_in_audience": "the trigger happened, but the customer was not in the scenario's audience at that moment",
    "already_received": "got this recurring campaign (or was held out of it, or left out as global control) within its reentry window",
}


@attrs.frozen(kw_only=True, weakref_slot=False)
class Recipient:
    """A customer's contact points, consents and template context.

    ``consents`` maps a consent group (``sms``, ``kakao``, ``email``, ``push``) to the instant the
    marketing consent was given or last re-confirmed; ``opted_out`` holds groups (or ``"all"``) the
    customer opted out of, which beats any consent.
    """

    customer_id: Any
    phone: str | None = None
    email: str | None = None
    push_token: str | None = None
    kakao_friend: bool = False
    timezone: str | None = None
    consents: Mapping[str, datetime] = attrs.field(factory=dict)
    night_consent: bool = False
    opted_out: frozenset[str] = frozenset()
    attributes: Mapping[str, Any] = attrs.field(factory=dict)

    def contact(self, channel: str) -> str | None:
        if channel in ("sms", "alimtalk", "brand_message"):
            return self.phone
        if channel == "email":
            return self.email
        if channel == "push":
            return self.push_token
        return "webhook"


@attrs.frozen
class LedgerEntry:
    """A message already planned or sent: its key and what caps count."""

    key: str
    customer_id: Any
    campaign_id: str
    purpose: str
    channel: str
    send_at: datetime


@attrs.frozen(kw_only=True)
class ShopState:
    """What the planner sees at ``now``: filled by the shell (``Shop.tick``) or by tests.

    ``audiences`` maps a campaign id to the ids matching its audience at ``now`` (one-off and
    recurring).  For triggered campaigns, ``triggers`` and ``exits`` map a campaign id to each
    customer's trigger and exit instants (since the campaign became active), and ``histories``
    holds those customers' attributes and events for audience and branch rules evaluated at the
    moment of the step.  ``contexts`` add per-customer template values (cart items, coupons).
    """

    recipients: Mapping[Any, Recipient]
    audiences: Mapping[str, Iterable[Any]] = attrs.field(factory=dict)
    triggers: Mapping[str, Mapping[Any, Sequence[datetime]]] = attrs.field(factory=dict)
    exits: Mapping[str, Mapping[Any, Sequence[datetime]]] = attrs.field(factory=dict)
    histories: Mapping[Any, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]] = attrs.field(factory=dict)
    contexts: Mapping[Any, Mapping[str, Any]] = attrs.field(factory=dict)
    #: the trigger events' properties by (customer id, event name, instant): a scenario's templates see them as ``event``
    trigger_events: Mapping[tuple[Any, str, datetime], Mapping[str, Any]] = attrs.field(factory=dict)
    #: recommended products by (campaign id, the content's :class:`Recommend`, customer id): the product dicts of
    #: :func:`shopcrm.recommend.for_customers`; templates of a content that asks for them see them as ``recommendations``
    recommendations: Mapping[tuple[str, Any, Any], Sequence[Mapping[str, Any]]] = attrs.field(factory=dict)
    ledger: Sequence[LedgerEntry] = ()
    #: per recurring campaign, when each customer last got it (or was held out of it): its reentry rule reads this
    received: Mapping[str, Mapping[Any, datetime]] = attrs.field(factory=dict)
    #: keys decided earlier without a message (holdouts, suppressions): never planned again, never counted by caps
    settled: Collection[str] = frozenset()
    #: (campaign id, customer id) of every key of ``ledger`` and ``settled``, when the shell knows them (a tick does):
    #: a scenario's customer with none has nothing decided, and the plan does not hash their keys to find that out.
    #: None: not known, every key is asked.
    recorded: Collection[tuple[str, Any]] | None = None
    segments: Mapping[str, Any] = attrs.field(factory=dict)
    #: the shop's column types, so rules compare history values as the engine would (ISO text timestamps)
    schema: Schema | None = None
    #: the thresholds lifecycle, rfm and cycle rules use (the contract's defaults when None)
    lifecycle_policy: LifecyclePolicy | None = None
    #: per one-off or recurring campaign id, its members' hashes an engine computed in bulk (:class:`AudienceHashes`);
    #: a member without them is hashed here
    hashes: Mapping[str, AudienceHashes] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class AudienceHashes:
    """The hashes a one-off or recurring campaign's occurrence asks of each member, computed by an engine for the
    whole audience in one query (hashing a million members in Python takes seconds; ``Shop.tick`` asks DuckDB,
    PostgreSQL, MySQL or Spark for them).

    ``members`` is the campaign's audience as given in ``ShopState.audiences`` (the same ids in the same order);
    each other field is a column beside it, or None when not computed: the idempotency key of ``step`` in
    ``occurrence`` (:func:`idempotency_key`), whether the member is in the shop's global control group
    (:func:`~shopcrm.campaigns.in_global_control`), in the campaign's holdout, and the index of its variant in
    ``Campaign.variants_of(step)``.  A None value in a column is one member's hash not computed.  The planner takes
    them as given (they must be this campaign's under this policy) and hashes what is missing; for another
    occurrence or step, or another audience, it hashes everything itself."""

    occurrence: str
    step: str
    members: Sequence[Any]
    keys: Sequence[str | None] | None = None
    controlled: Sequence[bool | None] | None = None
    held_out: Sequence[bool | None] | None = None
    variant: Sequence[int | None] | None = None

    def columns(self) -> list[Sequence[Any] | None]:
        return [self.keys, self.controlled, self.held_out, self.variant]


#: a member without engine hashes: every hash computed by the planner
_NO_HASHES: tuple[None, None, None, None] = (None, None, None, None)


@attrs.frozen(kw_only=True, weakref_slot=False)
class PlannedMessage:
    """A message to send: to whom, from which campaign step and variant, through which channel chain
    (each already rendered), when (naive UTC): ``due_at`` is when it came due, ``send_at`` when it may go
    (the tick's ``now`` for one due earlier; later when quiet hours or channel hours defer it)."""

    key: str
    customer_id: Any
    campaign_id: str
    step: str
    occurrence: str
    variant: str
    purpose: str
    chain: tuple[Rendered, ...]
    contacts: tuple[str, ...]
    due_at: datetime
    send_at: datetime
    estimated_cost: float

    #: whether a clock rule (quiet hours, channel sending hours) moved it past when it could otherwise go
    deferred: bool = False
    #: whether the recipient is the Kakao channel's friend (prices and targets a Brand Message; i13-cost)
    friend: bool = True

    @property
    def channel(self) -> str:
        return self.chain[0].channel


@attrs.frozen(kw_only=True, weakref_slot=False)
class Suppression:
    """An audience member left out, and why (``reason`` is a key of :data:`REASONS`)."""

    customer_id: Any
    campaign_id: str
    step: str
    reason: str
    detail: str = ""
    key: str | None = None
    #: the occurrence (``once``, the local date, or the scenario entry instant) and when the message came due
    occurrence: str = ""
    due_at: datetime | None = None
    #: for a holdout or the global control group, when the message would have been sent (its exposure time in
    #: measurement: the same clock rules as the treatment's planned send)
    send_at: datetime | None = None


@attrs.frozen(kw_only=True)
class Entry:
    """A customer entered a scenario whose audience rule admitted them at the trigger instant ``at``."""

    key: str
    customer_id: Any
    campaign_id: str
    at: datetime


@attrs.frozen(kw_only=True)
class Plan:
    messages: tuple[PlannedMessage, ...]
    suppressions: tuple[Suppression, ...]
    #: scenario steps not yet due: (customer, campaign, step, due instant)
    pending: tuple[tuple[Any, str, str, datetime], ...] = ()
    #: scenario entries decided by an audience rule in this plan (record them: later ticks need not decide again)
    entries: tuple[Entry, ...] = ()
    #: (campaign, customer) -> the earliest instant after ``now`` at which a step (a send or a branch) of one of
    #: the customer's walked entries comes due: with no new event, nothing is decided for them before it (a
    #: watermark tick reads only the customers whose wake-up has come, and those with new events)
    wakeups: Mapping[tuple[str, Any], datetime] = attrs.field(factory=dict)

    def reasons(self) -> Counter[str]:
        return Counter(s.reason for s in self.suppressions)

    def ledger_entries(self) -> list[LedgerEntry]:
        return [LedgerEntry(m.key, m.customer_id, m.campaign_id, m.purpose, m.channel, m.send_at) for m in self.messages]


def _maker(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen, slotted attrs class ``cls`` taking its fields positionally, in order, for the
    million messages and suppressions a broadcast builds.  Only for classes without defaults computed, validators
    or converters.

    A class without a ``__weakref__`` slot is built as a plain slotted twin (the same slots in the same order, so
    the same memory layout) whose ``__init__`` stores each field with a plain attribute store, and then given its
    real class: a third of the cost of filling a frozen class's slots one descriptor call at a time.  CPython
    refuses that class change for a class with a ``__weakref__`` slot; such a class is filled through its slots'
    descriptors (what attrs's ``__init__`` does, without its keyword parsing)."""
    fields = attrs.fields(cast(Any, cls))
    if any(f.validator is not None or f.converter is not None or not f.init for f in fields):
        raise TypeError(f"{cls.__name__} validates or converts a field: build it through its __init__")
    names = [f.name for f in fields]
    slots = tuple(getattr(cls, "__slots__", ()))
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    if "__weakref__" not in slots and sorted(slots) == sorted(names):
        twin = type(f"_{cls.__name__}Twin", (), {"__slots__": slots})
        lines = [f"def __init__(self, {', '.join(names)}):"] + [f"    self.{name} = {name}" for name in names]
        lines.append("    self.__class__ = _cls")
        exec("\n".join(lines), scope)  # generated as attrs generates __init__
        twin.__init__ = scope["__init__"]  # type: ignore[misc]
        made = twin(*([None] * len(names)))
        if type(made) is cls:  # the layouts agree (else fall back below)
            return cast(Callable[..., _T], twin)
    scope.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    lines = [f"def make({', '.join(names)}):", "    made = _new(_cls)"]
    lines += [f"    _set_{name}(made, {name})" for name in names]
    exec("\n".join([*lines, "    return made"]), scope)  # generated as attrs generates __init__
    return cast(Callable[..., _T], scope["make"])


#: ``PlannedMessage(...)`` and ``Suppression(...)`` with their fields in order (the broadcast's hot loop)
_new_message = _maker(PlannedMessage)
_new_suppression = _maker(Suppression)


def due_occurrence(campaign: Campaign, now: datetime, timezone: str = "Asia/Seoul") -> tuple[str, datetime] | None:
    """The latest occurrence of a one-off or recurring campaign due at or before ``now`` (naive UTC):
    its id (``once`` or the local date) and its UTC instant; None when none is due (or triggered)."""
    schedule = campaign.schedule
    if isinstance(schedule, OneOff):
        # a naive time is local to the shop; an aware one is an instant
        due = utc(schedule.at, timezone) if schedule.at.tzinfo is None else to_utc_naive(schedule.at)
        return ("once", due) if due <= now else None
    if not isinstance(schedule, Recurring):
        return None
    today = local(now, timezone).date()
    for back in range(8 if schedule.month_days is None else 32):
        day = today - timedelta(days=back)
        if day.weekday() not in schedule.weekdays or (schedule.month_days is not None and day.day not in schedule.month_days):
            continue
        moment = datetime.combine(day, schedule.at)
        if schedule.starts is not None and moment < schedule.starts:
            return None
        if schedule.ends is not None and moment > schedule.ends:
            continue
        due = utc(moment, timezone)
        if due <= now:
            return day.isoformat(), due
    return None


def scenario_span(steps: Sequence[Any]) -> timedelta:
    """The longest a scenario can take from entry to its last step (a ``wait_until`` counts a day)."""
    total = timedelta(0)
    for step in steps:
        if isinstance(step, Wait):
            total += step.wait
        elif isinstance(step, WaitUntil):
            total += timedelta(days=1)
        elif isinstance(step, Branch):
            total += max(scenario_span(step.then), scenario_span(step.else_))
    return total


#: the step names under which a scenario's entry decisions are recorded (a trigger that entered, or not)
ENTERED = "entered"
NOT_ENTERED = "not_entered"


def consent_block(channel: str, recipient: Recipient, *, advertising: bool, policy: MessagingPolicy, now: datetime) -> str | None:
    """Why ``recipient`` may not get a message on ``channel`` now (a key of :data:`REASONS`), or None.

    The planner asks when it plans; the dispatcher asks again just before sending (consent can be
    withdrawn in between), for every message :func:`needs_recheck` names, informational Brand Messages
    included (a customer who left the channel's friends is no longer reachable on it)."""
    if recipient.contact(channel) is None:
        return "no_contact"
    group = CONSENT_GROUP[channel]
    if channel == "brand_message" and not advertising and not recipient.kakao_friend:
        # Brand Message targets channel friends (I) or, on licensed channels, marketing-consent users (M/N):
        # an informational purpose opens no third way to a non-friend
        if policy.brand_message_friends_only:
            return "not_friend"
        advertising = True  # M/N: the marketing consent rules apply
    if not advertising or group is None:
        return None
    if "all" in recipient.opted_out or group in recipient.opted_out:
        return "opted_out"
    given = recipient.consents.get(group)
    if given is None:
        return "no_consent"
    lapsed = policy.consent_lapsed_before(now)
    if lapsed is not None and given < lapsed:
        return "consent_expired"
    if channel == "brand_message" and policy.brand_message_friends_only and not recipient.kakao_friend:
        return "not_friend"
    return None


def needs_recheck(channel: str, purpose: str) -> bool:
    """Whether a message of ``purpose`` on ``channel`` must pass :func:`consent_block` again just before it
    is sent: every advertising message, and every Brand Message whatever its purpose (friends only)."""
    return purpose != "informational" or channel == "brand_message"


def allowed_from(
    due: datetime, chain: Sequence[str], recipient: Recipient, zone: str, advertising: bool, policy: MessagingPolicy,
) -> datetime:
    """The first instant at or after ``due`` when every channel of ``chain`` may send to ``recipient``: out of
    the quiet hours for advertising (unless night consent lifts them; in the recipient's ``zone``) and inside Kakao's
    Brand Message hours (Korean time)."""
    at = due
    for _ in range(4):
        moved = at
        for channel in chain:
            if advertising and channel not in policy.quiet_hours_exempt and not (
                recipient.night_consent and policy.night_consent_lifts_quiet_hours
            ):
                moved = max(moved, policy.quiet_hours.next_outside(moved, zone))
            if channel == "brand_message":  # Kakao's hours are Korean time, wherever the recipient is
                moved = max(moved, policy.brand_message_closed.next_outside(moved, KAKAO_TIMEZONE))
        if moved == at:
            return at
        at = moved
    return at


def entry_decision(
    campaign: Campaign, customer_id: Any, at: datetime, keys: Collection[str], cache: KeyCache | None = None,
) -> bool | None:
    """Whether the trigger at ``at`` entered the scenario, as recorded keys tell: True when its entry (or a send
    step of that occurrence) is recorded, False when its refusal is, None when nothing is recorded yet.  The keys
    are asked of ``cache`` when one is given (the same keys are asked again later in the tick)."""
    key = idempotency_key if cache is None else cache.key
    occurrence = at.isoformat()
    if key(campaign.id, occurrence, ENTERED, customer_id) in keys:
        return True
    if key(campaign.id, occurrence, NOT_ENTERED, customer_id) in keys:
        return False
    if any(key(campaign.id, occurrence, step.send, customer_id) in keys for step in campaign.send_steps()):
        return True
    return None


#: the DSL's sample bucket: the holdout of campaign X at P% is exactly ``{"sample": {"percent": P, "salt": "holdout:X"}}``
bucket = sample_bucket


def idempotency_key(campaign_id: str, occurrence: str, step: str, customer_id: Any) -> str:
    """Deterministic: the same campaign occurrence, step and customer always give the same key."""
    raw = f"{campaign_id}\x1f{occurrence}\x1f{step}\x1f{customer_id!r}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class KeyCache:
    """The idempotency keys one tick asks for, remembered for that tick only: the tick decides which scenario
    customers it must read by the same keys (:func:`entry_decision`) that its plan asks again, so the tick makes
    one cache and hands it to both (``plan(..., key_cache=...)``).  Nothing is global: a cache lives as long as
    its owner keeps it.

    Keys of text and integer customer ids are remembered (equal ids of these types print alike; other types,
    e.g. a tuple, are hashed each time), at most :attr:`limit` of them; then the cache stops growing."""

    __slots__ = ("_known", "limit")

    def __init__(self, limit: int = 1 << 18) -> None:
        self._known: dict[tuple[str, str, str, str | int], str] = {}
        #: how many keys at most are remembered (a tick of a million scenario customers stays bounded)
        self.limit = limit

    def __len__(self) -> int:
        return len(self._known)

    def key(self, campaign_id: str, occurrence: str, step: str, customer_id: Any) -> str:
        """:func:`idempotency_key`, remembered."""
        if type(customer_id) is not str and type(customer_id) is not int:
            return idempotency_key(campaign_id, occurrence, step, customer_id)
        asked = (campaign_id, occurrence, step, customer_id)
        known = self._known.get(asked)
        if known is None:
            known = idempotency_key(campaign_id, occurrence, step, customer_id)
            if len(self._known) < self.limit:
                self._known[asked] = known
        return known


def _choose(variants: Sequence[Variant], campaign_id: str, step: str, customer_id: Any) -> Variant:
    if len(variants) == 1:
        return variants[0]
    total = sum(v.weight for v in variants)
    point = bucket(f"variant:{campaign_id}:{step}", customer_id) * total // 10000
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    return variants[-1]  # pragma: no cover - point < total


def _repeats(members: Sequence[Any]) -> bool:
    """Whether two of ``members`` (sorted by repr) have one key: one repr.  Integers and texts print alike exactly
    when they are equal, and sorted by repr they sit side by side; other ids are compared by their reprs."""
    if set(map(type, members)) <= {int, str}:
        return any(map(operator.eq, members, islice(members, 1, None)))
    return len(set(map(repr, members))) != len(members)


class _Caps:
    """Per-customer send times per (purpose, channel), from the ledger and this plan.

    A broadcast hands its messages over in one batch (:meth:`later`); they join :attr:`sent` when something next
    asks (:meth:`flush`), so a plan of one broadcast never builds a history per customer it planned."""

    def __init__(self, policy: MessagingPolicy, ledger: Iterable[LedgerEntry]) -> None:
        self.policy = policy
        #: whether some cap allows no message at all (then even a customer without history is capped)
        self.zero_limits = any(cap.limit < 1 for cap in policy.caps)
        self.sent: dict[Any, list[tuple[datetime, str, str]]] = {}
        for entry in ledger:
            self.sent.setdefault(entry.customer_id, []).append((entry.send_at, entry.purpose, entry.channel))
        self._later: list[tuple[str, Sequence[PlannedMessage], int, int]] = []

    def later(self, purpose: str, messages: Sequence[PlannedMessage], start: int, end: int) -> None:
        """The messages of ``purpose`` from ``start`` up to ``end``, counted from the next question on."""
        self._later.append((purpose, messages, start, end))

    def flush(self) -> None:
        """Add the messages handed over by :meth:`later` to :attr:`sent` (call before reading it)."""
        sent = self.sent
        for purpose, messages, start, end in self._later:
            for message in messages[start:end]:
                history = sent.get(message.customer_id)
                sending = (message.send_at, purpose, message.chain[0].channel)
                if history is None:
                    sent[message.customer_id] = [sending]
                else:
                    history.append(sending)
        self._later.clear()

    def binding(self, customer_id: Any, purpose: str, channel: str, at: datetime) -> str | None:
        """The name of the first cap that one more message at ``at`` would exceed, or None.

        Exact for rolling windows: every window of length ``per`` that contains ``at`` is checked.
        """
        if self._later:
            self.flush()
        history = self.sent.get(customer_id)
        if not history and not self.zero_limits:
            return None
        for cap in self.policy.caps:
            if not cap.counts(purpose, channel):
                continue
            times = sorted(t for t, p, c in history or () if cap.counts(p, c) and at - cap.per < t < at + cap.per)
            if len(times) < cap.limit:
                continue
            # windows [s, s + per) containing `at` start in (at - per, at]; the worst one starts at a message time
            starts = [t for t in times if t <= at] + [at]
            for start in starts:
                inside = sum(1 for t in times if start <= t < start + cap.per)
                if inside + 1 > cap.limit:
                    return cap.name
        return None

    def add(self, customer_id: Any, purpose: str, channel: str, at: datetime) -> None:
        if self._later:
            self.flush()
        self.sent.setdefault(customer_id, []).append((at, purpose, channel))


#: a rendered chain remembered by :meth:`_Planner.broadcast`: the renderings, the first one's kind, and its price to a
#: channel friend and to anyone else
_Memo = tuple[tuple[Rendered, ...], str, float, float]


@attrs.define
class _ChainPlan:
    """What a broadcast decides once per consent pattern, zone and night consent: the channel chain (empty: the
    ``reason`` none is left, with its ``detail``), the channels rendered, whether each reaches the phone, the
    renderings per variant (shared by the patterns rendering the same channels), when the chain may send and
    whether a clock rule deferred it."""

    chain: tuple[str, ...]
    reason: str
    detail: str
    shown: tuple[str, ...]
    phone_only: bool
    renderings: tuple[dict[Any, _Memo], ...]
    send_at: datetime
    deferred: bool


@attrs.define
class _Tally:
    """What a plan of one broadcast counts, without its messages: per first channel and kind, the deferred ones,
    the cost (summed in plan order, as over the messages) and the suppression reasons."""

    by_channel: Counter[str] = attrs.field(factory=Counter)
    by_kind: Counter[str] = attrs.field(factory=Counter)
    deferred: int = 0
    cost: float = 0  # an int until a message adds its cost, like sum() over no messages
    reasons: Counter[str] = attrs.field(factory=Counter)

    def suppress(
        self, campaign: Campaign, step: str, customer_id: Any, reason: str, detail: str = "", key: str | None = None,
        occurrence: str = "", due_at: datetime | None = None, send_at: datetime | None = None,
    ) -> None:
        """:meth:`_Planner.suppress`, counted."""
        self.reasons[reason] += 1

    def add(self, channel: str, kind: str, deferred: bool, cost: float) -> None:
        self.by_channel[channel] += 1
        self.by_kind[kind] += 1
        self.deferred += deferred
        self.cost += cost


@attrs.define
class _Planner:
    campaigns: Sequence[Campaign]
    state: ShopState
    now: datetime
    policy: MessagingPolicy
    renderer: Renderer = attrs.field(factory=Renderer)
    messages: list[PlannedMessage] = attrs.field(factory=list)
    suppressions: list[Suppression] = attrs.field(factory=list)
    pending: list[tuple[Any, str, str, datetime]] = attrs.field(factory=list)
    entries: list[Entry] = attrs.field(factory=list)
    wakeups: dict[tuple[str, Any], datetime] = attrs.field(factory=dict)
    keys: set[str] = attrs.field(init=False)
    caps: _Caps = attrs.field(init=False)
    decorations: Decorations = attrs.field(init=False)
    allowed_at: dict[tuple[Any, ...], datetime] = attrs.field(factory=dict)
    in_control: dict[Any, bool] = attrs.field(factory=dict)
    #: render the fallback channels of each chain too (a preview needs only the first, for the cost)
    render_fallbacks: bool = True
    recommendation_views: dict[int, tuple[Any, tuple[Any, ...]]] = attrs.field(factory=dict)
    #: each trigger event's properties in a recipient's zone, made once (a chain's templates read ``event`` each)
    event_views: dict[tuple[int, str], tuple[Mapping[str, Any], dict[str, Any]]] = attrs.field(factory=dict)
    #: per scenario entry rule (by id): the rule and its one-customer form (:func:`entry_rule`), or None
    entry_rules: dict[int, tuple[Any, EntryRule | None]] = attrs.field(factory=dict)
    #: the lifecycle stages the entry rules found, shared by them (:data:`StageMemo`)
    stages: StageMemo = attrs.field(factory=dict)
    #: (campaign id, customer id) with a key in :attr:`keys`, when the state says (``ShopState.recorded``), else None;
    #: only scenarios ask it, so a broadcast's members are not added (a campaign is one or the other)
    recorded: set[tuple[str, Any]] | None = attrs.field(init=False)
    #: plan a one-off or recurring campaign's members in one pass (:meth:`broadcast`) that decides what many members
    #: share once; False walks them one by one through :meth:`send` (the same plan: tests and benchmarks compare them)
    batch: bool = True
    #: count a broadcast's messages and suppressions here instead of building them (a preview's one campaign)
    tally: _Tally | None = None
    #: the idempotency keys asked, remembered for this plan (a tick hands in the cache its reads used)
    key_cache: KeyCache = attrs.field(factory=KeyCache)
    #: the ids of the campaigns listed more than once (a later listing finds the keys of the first)
    listed_twice: frozenset[str] = frozenset()

    def __attrs_post_init__(self) -> None:
        self.keys = {entry.key for entry in self.state.ledger}
        self.keys.update(self.state.settled)
        self.recorded = None if self.state.recorded is None else set(self.state.recorded)
        self.caps = _Caps(self.policy, self.state.ledger)
        self.decorations = self.policy.decorations()

    def run(self) -> Plan:
        ordered = sorted((c for c in self.campaigns if c.enabled), key=lambda c: (-c.priority, c.id))
        missing = [(c.id, problem) for c in ordered for problem in self.policy.problems(c.purpose, c.channels)]
        if self.policy.tracking is None:  # a tracked link with nowhere to point: refuse the campaign, not each message
            missing += [(c.id, "its templates use link() but no tracking base is configured: set MessagingPolicy.tracking = "
                               "TrackingPolicy(base_url='https://shop.example/r', secret=...)")
                        for c in ordered if any("link" in self.renderer.names(v.content)
                                                for step in c.send_steps() for v in c.variants_of(step))]
        if missing:  # fail closed: an advertising text without its sender and 080 lines is unlawful (K6, K7)
            raise CampaignError(missing)
        self.listed_twice = frozenset(c for c, n in Counter(c.id for c in ordered).items() if n > 1)
        for campaign in ordered:
            if isinstance(campaign.schedule, Triggered):
                self.triggered(campaign, campaign.schedule)
            else:
                due = self.occurrence(campaign)
                if due is None:
                    continue
                occurrence, due_at = due
                step = campaign.send_steps()[0]
                audience = self.state.audiences.get(campaign.id, ())
                engine = self.state.hashes.get(campaign.id)
                hashes: Iterable[tuple[Any, ...]] | None = None
                if self.batch and engine is not None and engine.occurrence == occurrence and engine.step == step.send and (
                        engine.members is audience or engine.members == audience):
                    # the members sorted by repr as below, their hashes carried along in the same order
                    reprs = list(map(repr, engine.members))
                    order = sorted(range(len(reprs)), key=reprs.__getitem__)
                    members = list(map(engine.members.__getitem__, order))
                    hashes = zip(*[repeat(None) if column is None else map(column.__getitem__, order)
                                   for column in engine.columns()], strict=False)
                else:
                    members = sorted(audience, key=repr)
                schedule = campaign.schedule
                last = self.state.received.get(campaign.id, {})
                if self.batch:
                    self.broadcast(campaign, step, occurrence, due_at, members, last, hashes)
                    continue
                for customer_id in members:
                    got = last.get(customer_id)
                    if isinstance(schedule, Recurring) and reentry_blocks(schedule.reentry, got, due_at):
                        key = self.key_cache.key(campaign.id, occurrence, step.send, customer_id)
                        self.suppress(campaign, step.send, customer_id, "already_received", f"last {got}",
                                      key=key, occurrence=occurrence, due_at=due_at)
                        continue
                    self.send(campaign, step, occurrence, customer_id, due_at)
        return Plan(messages=tuple(self.messages), suppressions=tuple(self.suppressions), pending=tuple(self.pending),
                    entries=tuple(self.entries), wakeups=self.wakeups)

    # -- when ---------------------------------------------------------------------------------
    def occurrence(self, campaign: Campaign) -> tuple[str, datetime] | None:
        return due_occurrence(campaign, self.now, self.policy.timezone)

    # -- scenarios ----------------------------------------------------------------------------
    def triggered(self, campaign: Campaign, schedule: Triggered) -> None:
        triggers = self.state.triggers.get(campaign.id, {})
        exits = self.state.exits.get(campaign.id, {})
        # an entry whose every step came due longer than max_delay ago still counts for re-entry, but is not walked
        settled_before = self.now - scenario_span(schedule.steps) - campaign.max_delay
        everyone = isinstance(campaign.audience, Everyone)
        recorded = self.recorded
        for customer_id in sorted(triggers, key=repr):
            instants = sorted({t for t in triggers[customer_id] if t <= self.now})  # one entry per instant
            if not instants or instants[-1] < settled_before:
                continue  # nothing in the window a tick reads: nothing to decide
            exit_times = sorted(exits.get(customer_id, ()))
            entered: list[datetime] = []
            for at in instants:
                if reentry_blocks(schedule.reentry, entered[-1] if entered else None, at):
                    continue
                if everyone:
                    decision: bool | None = True
                elif recorded is not None and (campaign.id, customer_id) not in recorded:
                    decision = None  # nothing of theirs is recorded for this scenario: no key to look up
                else:
                    decision = entry_decision(campaign, customer_id, at, self.keys, self.key_cache)
                if decision is None:  # not decided before: the audience rule at that moment decides, once
                    decision = self.matches(campaign.audience, customer_id, at, campaign.id)
                    occurrence = at.isoformat()
                    key = self.key_cache.key(campaign.id, occurrence, ENTERED if decision else NOT_ENTERED, customer_id)
                    if decision:
                        self.entries.append(Entry(key=key, customer_id=customer_id, campaign_id=campaign.id, at=at))
                    else:
                        self.suppress(campaign, NOT_ENTERED, customer_id, "not_in_audience", key=key,
                                      occurrence=occurrence, due_at=at)
                    self.record(key, campaign.id, customer_id)
                if not decision:
                    continue
                entered.append(at)
                if at < settled_before:
                    continue
                self.walk(campaign, schedule.steps, customer_id, at, at, exit_times)

    def matches(self, rule: Any, customer_id: Any, at: datetime, campaign_id: str) -> bool:
        if isinstance(rule, Everyone):
            return True
        history = self.state.histories.get(customer_id)
        if history is None:
            raise CampaignError([(campaign_id, f"the shell passed no history for customer {customer_id!r}, "
                                               "which a rule of this scenario needs")])
        person, events = history
        # events at exactly `at` count as before the step (the trigger itself is part of the moment)
        found = self.entry_rules.get(id(rule))
        if found is None or found[0] is not rule:
            found = self.entry_rules[id(rule)] = (rule, entry_rule(rule, self.state.lifecycle_policy, self.stages))
        if found[1] is not None:  # a rule of lifecycle stages: decided without the reference's classification
            decided = found[1](person, events, at + timedelta(microseconds=1))
            if decided is not None:
                return decided
        return customer_id in evaluate(
            rule, [person], events, now=at + timedelta(microseconds=1), segments=self.state.segments, schema=self.state.schema,
            lifecycle_policy=self.state.lifecycle_policy,
        )

    def walk(
        self, campaign: Campaign, steps: Sequence[Any], customer_id: Any, entry: datetime, at: datetime,
        exit_times: Sequence[datetime],
    ) -> datetime | None:
        occurrence = entry.isoformat()
        zone = self.zone(customer_id)
        for step in steps:
            if isinstance(step, Wait):
                at = at + step.wait
                continue
            if isinstance(step, WaitUntil):
                here = local(at, zone)
                moment = datetime.combine(here.date(), step.wait_until)
                if moment < here:
                    moment += timedelta(days=1)
                at = utc(moment, zone)
                continue
            name = step.send if isinstance(step, Send) else "branch"
            if at > self.now:
                woken = (campaign.id, customer_id)
                if woken not in self.wakeups or at < self.wakeups[woken]:
                    self.wakeups[woken] = at
                if isinstance(step, Send):
                    key = self.key_cache.key(campaign.id, occurrence, step.send, customer_id)
                    if key not in self.keys:
                        self.pending.append((customer_id, campaign.id, step.send, at))
                return None
            if any(entry < t <= at for t in exit_times):
                exit_key = self.key_cache.key(campaign.id, occurrence, name, customer_id) if isinstance(step, Send) else None
                if exit_key is not None and exit_key not in self.keys and self.now - at <= campaign.max_delay:
                    self.suppress(campaign, name, customer_id, "exited", key=exit_key, occurrence=occurrence, due_at=at)
                return None
            if isinstance(step, Branch):
                taken = step.then if self.matches(step.if_, customer_id, at, campaign.id) else step.else_
                result = self.walk(campaign, taken, customer_id, entry, at, exit_times)
                if result is None:
                    return None
                at = result
                continue
            assert isinstance(step, Send)
            self.send(campaign, step, occurrence, customer_id, at, quiet_duplicates=True, entry=entry)
        return at

    # -- a broadcast ---------------------------------------------------------------------------
    def broadcast(
        self, campaign: Campaign, step: Send, occurrence: str, due_at: datetime, members: Sequence[Any],
        last: Mapping[Any, datetime], hashes: Iterable[tuple[Any, ...]] | None = None,
    ) -> None:
        """:meth:`send` for every member of a one-off or recurring campaign's occurrence, in order, with the same
        results: what is the same for many members is decided once (the channel chain per consent pattern, the
        clock rules per chain, zone and night consent, the renderings and their prices per template values), and
        a member costs a few hashes, dictionary look-ups and the objects the plan returns."""
        schedule = campaign.schedule
        recurring = schedule.reentry if isinstance(schedule, Recurring) else None
        policy, now, keys, state = self.policy, self.now, self.keys, self.state
        recipient_of, contexts = state.recipients.get, state.contexts
        advertising = campaign.purpose == "advertising"
        purpose, campaign_id, name = campaign.purpose, campaign.id, step.send
        prefix = f"{campaign_id}\x1f{occurrence}\x1f{name}\x1f"
        sha256 = _sha256
        expired = now - due_at > campaign.max_delay
        earliest = max(due_at, now)
        groups = tuple(dict.fromkeys(g for c in campaign.channels if (g := CONSENT_GROUP[c]) is not None))
        # a chain with at most two consent groups reads them without a loop (a group it lacks reads as never given)
        quick_pattern = len(groups) <= 2
        first_group, second_group = (*groups, "", "")[:2]
        stale = policy.consent_lapsed_before(now)  # a consent given before it has lapsed (K8)
        #: per consent pattern: the chain (or () and why none, with the details), and for a chain the channels
        #: rendered, whether every one reaches the phone, the renderings per variant and the send times per zone
        chains: dict[tuple[Any, ...], _ChainPlan] = {}
        shared: dict[tuple[str, ...], tuple[dict[Any, _Memo], ...]] = {}  # equal chains share their renderings
        self.caps.flush()
        sent_to, zero_limits = self.caps.sent.get, self.caps.zero_limits
        capped_by = self.caps.binding
        bound: dict[tuple[Any, ...], Any] = {}  # (history, channel, instant) -> the binding cap's name or None
        planned = len(self.messages)  # this broadcast's messages from here on: the caps of later campaigns count them
        control = advertising and bool(policy.global_control_percent)
        holdout = campaign.holdout_percent * 100 if campaign.holdout_percent else 0
        holdout_salt = f"holdout:{campaign_id}:"  # bucket(f"holdout:{campaign_id}", id) inlined below
        md5, first_four = _md5, _first_four
        variants = campaign.variants_of(step)
        variant_names = [v.name for v in variants]
        choose = len(variants) > 1
        total = sum(v.weight for v in variants)
        totals = list(accumulate(v.weight for v in variants))
        variant_salt = f"variant:{campaign_id}:{name}:"
        renderer, decorations = self.renderer, self.decorations
        tracking = decorations.tracking
        # per variant, the names its renderings depend on when only plain customer values decide them (no links,
        # e-mail or recommendations): None renders per message; a string is the one attribute it reads (no
        # contexts, no local time, no customer id), looked up directly
        reads: list[tuple[str, ...] | None] = [
            names if v.content.recommend is None and "campaign" not in (names := renderer.names(v.content))
            and "shop" not in names and (tracking is None or not uses_link(names)) and "email" not in campaign.channels
            else None
            for v in variants
        ]
        plain_one: list[str | None] = [
            r[0] if r is not None and len(r) == 1 and r[0] not in ("now", "customer_id") and not contexts else None
            for r in reads
        ]
        memos = 0  # renderings remembered (at most 100,000)
        by_channel: list[dict[str, dict[Any, Rendered | CampaignError]]] = [{} for _ in variants]  # per variant and channel
        local_now: dict[str, datetime] = {}
        prices: dict[tuple[str, bool], float] = {}
        default_zone = policy.timezone
        tally = self.tally
        new_message, add_message = _new_message, self.messages.append
        if tally is None:
            add_suppression = self.suppressions.append

            def left_out(customer_id: Any, reason: str, detail: str, key: str, send_at: datetime | None = None) -> None:
                add_suppression(_new_suppression(customer_id, campaign_id, name, reason, detail, key, occurrence, due_at,
                                                 send_at))
        else:
            counted = tally.reasons

            def left_out(customer_id: Any, reason: str, detail: str, key: str, send_at: datetime | None = None) -> None:
                counted[reason] += 1

        # a message key is needed to find this campaign's earlier decisions, a repeated member or a tracked link
        keyed = tally is None or bool(state.settled) or any(e.campaign_id == campaign_id for e in state.ledger) or len(
            set(members)) != len(members) or any(r is None for r in reads)
        # whether a member's key must be looked up (and remembered): a key the plan starts from may be this
        # campaign's (unless ShopState.recorded says none is), or a member is listed twice; other campaigns' keys
        # never equal this one's (the campaign id is hashed into each)
        if campaign_id in self.listed_twice:
            earlier = True
        elif self.recorded is not None:
            earlier = any(c == campaign_id for c, _ in self.recorded)
        else:
            earlier = bool(state.settled) or any(e.campaign_id == campaign_id for e in state.ledger)
        looked_up = keyed and (earlier or _repeats(members))
        key = ""
        index = 0
        # each member with the engine's hashes (``hashes``, in the members' order), else none: hashed below
        for customer_id, hashed in zip(members, repeat(_NO_HASHES) if hashes is None else hashes, strict=False):
            if keyed:
                key = hashed[0] or sha256(f"{prefix}{customer_id!r}".encode()).digest()[:16].hex()  # hexdigest()[:32]
            if recurring is not None:
                got = last.get(customer_id)
                if reentry_blocks(recurring, got, due_at):
                    left_out(customer_id, "already_received", f"last {got}", key)
                    continue
            if looked_up and key in keys:
                left_out(customer_id, "already_planned", "", key)
                continue
            if expired:
                left_out(customer_id, "expired", f"due {due_at.isoformat()}", key)
                continue
            recipient = recipient_of(customer_id)
            if recipient is None:
                left_out(customer_id, "no_recipient", "", key)
                continue
            # what consent_block reads, per channel of the chain: contact points, friendship, opt-outs, consent ages
            consents = recipient.consents
            friend = recipient.kakao_friend
            if quick_pattern:
                first, second = consents.get(first_group), consents.get(second_group)
                pattern: tuple[Any, ...] = (
                    recipient.phone is None, recipient.email is None, recipient.push_token is None, friend,
                    recipient.opted_out, None if first is None else stale is not None and first < stale,
                    None if second is None else stale is not None and second < stale, recipient.timezone,
                    recipient.night_consent)
            else:
                pattern = (recipient.phone is None, recipient.email is None, recipient.push_token is None, friend,
                           recipient.opted_out, recipient.timezone, recipient.night_consent, *[
                               None if (given := consents.get(g)) is None else stale is not None and given < stale
                               for g in groups])
            found = chains.get(pattern)
            if found is None:
                found = chains[pattern] = self._chain_plan(campaign, recipient, advertising, shared, len(variants), earliest)
            chain = found.chain
            if not chain:
                left_out(customer_id, found.reason, found.detail, key)
                continue
            send_at = found.send_at
            history = sent_to(customer_id)
            if history or zero_limits:
                # the binding cap is a function of the customer's sending history (this broadcast adds to it only
                # after its loop), the channel and the instant: customers with equal histories share the answer
                asked = (tuple(history) if history else (), chain[0], send_at)
                cap = bound.get(asked, _UNSET)
                if cap is _UNSET:
                    cap = bound[asked] = capped_by(customer_id, purpose, chain[0], send_at)
                if cap is not None:
                    left_out(customer_id, "capped", cap, key)
                    continue
            if control and (self.global_control(customer_id) if (controlled := hashed[1]) is None else controlled):
                left_out(customer_id, "global_control", f"would send at {send_at.isoformat()}", key, send_at)
                if looked_up:
                    keys.add(key)
                continue
            if holdout and (first_four(md5(f"{holdout_salt}{customer_id}".encode()).digest())[0] % 10000 < holdout
                            if (held := hashed[2]) is None else held):
                left_out(customer_id, "holdout", "", key, send_at)
                if looked_up:
                    keys.add(key)
                continue
            if choose:
                # _choose: the first variant whose running total of weights exceeds the point (point < total)
                index = bisect_right(totals, first_four(md5(f"{variant_salt}{customer_id}".encode()).digest())[0]
                                     % 10000 * total // 10000) if (chosen := hashed[3]) is None else chosen
            shown = found.shown
            one = plain_one[index]
            memo: Any = None
            table: dict[Any, _Memo] | None = None
            remembered: _Memo | None = None
            if one is not None:
                table = found.renderings[index]
                memo = recipient.attributes.get(one, _MISSING)
                if type(memo) is str:  # the common case: one text value, remembered by itself
                    remembered = table.get(memo)
                else:  # equal values that print differently never share a rendering
                    memo = _apart((memo,))
            elif (read := reads[index]) is not None:
                table = found.renderings[index]
                extra = contexts.get(customer_id)
                attributes = recipient.attributes
                values: list[Any] = []
                value: Any
                zone = recipient.timezone or default_zone
                for n in read:  # what _ContextView.get(n, _MISSING) gives, without building the view
                    if n == "now":
                        value = local_now.get(zone)
                        if value is None:
                            value = local_now[zone] = local(due_at, zone)
                    elif extra is not None and n in extra:
                        value = extra[n]
                    elif n in attributes:
                        value = attributes[n]
                    elif n == "customer_id":
                        value = customer_id
                    else:
                        value = _MISSING
                    values.append(value)
                memo = _apart(values)
            if remembered is None and table is not None:
                try:
                    remembered = table.get(memo)
                except TypeError:  # unhashable values (a cart): rendered per message below
                    table = None
            if remembered is None:
                content = variants[index].content
                try:
                    context = self.context(recipient, campaign, step, due_at, None, content.recommend)
                    if table is None:
                        rendered = tuple([
                            renderer.render_cached(content, channel, context, advertising=advertising,
                                                   decorations=decorations, message_key=key)
                            for channel in shown
                        ])
                    else:  # each channel's rendering by the same values, shared by the chains that show it
                        pieces = []
                        for channel in shown:
                            by_values = by_channel[index].setdefault(channel, {})
                            piece = by_values.get(memo)
                            if piece is None:  # remembered here (a failure too): the renderer's memo would repeat it
                                try:  # the quick path where it renders exactly as render does, else render
                                    piece = renderer._fresh(content, channel, context, advertising=advertising,
                                                            decorations=decorations, message_key=key)
                                except CampaignError as error:
                                    piece = error
                                if memos < 100_000:
                                    by_values[memo] = piece
                            if isinstance(piece, CampaignError):
                                raise CampaignError(piece.problems)  # a fresh error, as the renderer's memo raises
                            pieces.append(piece)
                        rendered = tuple(pieces)
                except Exception as error:
                    detail = str(error) if isinstance(error, CampaignError) else f"{type(error).__name__}: {error}"
                    left_out(customer_id, "render_failed", detail, key)
                    continue
                kind = rendered[0].kind
                costs = []
                for is_friend in (False, True):  # the price per friendship, looked up once per kind
                    cost = prices.get((kind, is_friend))
                    if cost is None:
                        cost = prices[(kind, is_friend)] = policy.price(kind, friend=is_friend)
                    costs.append(cost)
                remembered = (rendered, kind, costs[1], costs[0])
                if table is not None and memos < 100_000:
                    table[memo] = remembered
                    memos += 1
            rendered = remembered[0]
            if tally is not None:
                tally.add(chain[0], remembered[1], found.deferred, remembered[2] if friend else remembered[3])
                continue
            if found.phone_only:
                phone = recipient.phone or ""
                contacts: tuple[str, ...] = (phone,) if len(shown) == 1 else (phone, phone) if len(shown) == 2 else (
                    phone,) * len(shown)
            else:
                contacts = tuple([recipient.contact(c) or "" for c in shown])
            add_message(new_message(key, customer_id, campaign_id, name, occurrence, variant_names[index], purpose, rendered,
                                    contacts, due_at, send_at, remembered[2] if friend else remembered[3], found.deferred,
                                    friend))
            if looked_up:
                keys.add(key)
        if tally is None and len(self.messages) > planned:
            self.caps.later(purpose, self.messages, planned, len(self.messages))

    def _chain_plan(
        self, campaign: Campaign, recipient: Recipient, advertising: bool,
        shared: dict[tuple[str, ...], tuple[dict[Any, _Memo], ...]], variants: int, earliest: datetime,
    ) -> _ChainPlan:
        """What :meth:`broadcast` decides once per consent pattern, zone and night consent (``recipient`` shows
        them); a message may go from ``earliest``."""
        chain, why = self.chain(campaign, recipient, advertising)
        reason, detail = why[0] if why else ("no_contact", "")
        detail = "; ".join(f"{c}: {r}" for c, r in why[1:]) or detail
        shown = chain if self.render_fallbacks else chain[:1]
        renderings = shared.get(shown)
        if renderings is None:
            renderings = shared[shown] = tuple({} for _ in range(variants))
        send_at = earliest
        if chain:
            send_at = self.allowed(earliest, chain, recipient, recipient.timezone or self.policy.timezone, advertising)
        return _ChainPlan(chain=chain, reason=reason, detail=detail, shown=shown,
                          phone_only=all(c in ("sms", "alimtalk", "brand_message") for c in shown),
                          renderings=renderings, send_at=send_at, deferred=send_at > earliest)

    # -- one message ---------------------------------------------------------------------------
    def global_control(self, customer_id: Any) -> bool:
        """:func:`in_global_control` under this plan's policy (memoised: campaigns share their customers)."""
        if not self.policy.global_control_percent:
            return False
        found = self.in_control.get(customer_id)
        if found is None:
            found = self.in_control[customer_id] = in_global_control(customer_id, self.policy)
        return found

    def zone(self, customer_id: Any) -> str:
        recipient = self.state.recipients.get(customer_id)
        return (recipient.timezone if recipient is not None else None) or self.policy.timezone

    def suppress(
        self, campaign: Campaign, step: str, customer_id: Any, reason: str, detail: str = "", key: str | None = None,
        occurrence: str = "", due_at: datetime | None = None, send_at: datetime | None = None,
    ) -> None:
        self.suppressions.append(_new_suppression(customer_id, campaign.id, step, reason, detail, key, occurrence, due_at,
                                                  send_at))

    def send(
        self, campaign: Campaign, step: Send, occurrence: str, customer_id: Any, due_at: datetime,
        *, quiet_duplicates: bool = False, entry: datetime | None = None,
    ) -> None:
        key = self.key_cache.key(campaign.id, occurrence, step.send, customer_id)
        if key in self.keys:
            if not quiet_duplicates:
                self.suppress(campaign, step.send, customer_id, "already_planned", key=key, occurrence=occurrence, due_at=due_at)
            return
        if self.now - due_at > campaign.max_delay:
            self.suppress(campaign, step.send, customer_id, "expired", f"due {due_at.isoformat()}", key=key, occurrence=occurrence, due_at=due_at)
            return
        recipient = self.state.recipients.get(customer_id)
        if recipient is None:
            self.suppress(campaign, step.send, customer_id, "no_recipient", key=key, occurrence=occurrence, due_at=due_at)
            return
        advertising = campaign.purpose == "advertising"
        chain, why = self.chain(campaign, recipient, advertising)
        if not chain:
            reason, detail = why[0] if why else ("no_contact", "")
            self.suppress(campaign, step.send, customer_id, reason, "; ".join(f"{c}: {r}" for c, r in why[1:]) or detail, key=key, occurrence=occurrence, due_at=due_at)
            return
        zone = recipient.timezone or self.policy.timezone
        # a message due earlier goes now (it is within max_delay); then the clock rules may defer it
        earliest = max(due_at, self.now)
        send_at = self.allowed(earliest, chain, recipient, zone, advertising)
        cap = self.caps.binding(customer_id, campaign.purpose, chain[0], send_at)
        if cap is not None:
            self.suppress(campaign, step.send, customer_id, "capped", cap, key=key, occurrence=occurrence, due_at=due_at)
            return
        # the global control group sees no advertising at all; it is recorded where the message would have been
        # planned (like a holdout), and the campaign's own holdout is drawn from the other members only
        if advertising and self.global_control(customer_id):
            self.suppress(campaign, step.send, customer_id, "global_control", f"would send at {send_at.isoformat()}",
                          key=key, occurrence=occurrence, due_at=due_at, send_at=send_at)
            self.record(key, campaign.id, customer_id)
            return
        if campaign.holdout_percent and bucket(f"holdout:{campaign.id}", customer_id) < campaign.holdout_percent * 100:
            self.suppress(campaign, step.send, customer_id, "holdout", key=key, occurrence=occurrence, due_at=due_at,
                          send_at=send_at)
            self.record(key, campaign.id, customer_id)
            return
        variant = _choose(campaign.variants_of(step), campaign.id, step.send, customer_id)
        try:
            context = self.context(recipient, campaign, step, due_at, entry, variant.content.recommend)
            rendered = tuple([
                self.renderer.render_cached(variant.content, channel, context, advertising=advertising, decorations=self.decorations,
                                            message_key=key)
                for channel in (chain if self.render_fallbacks else chain[:1])
            ])
        except Exception as error:
            detail = str(error) if isinstance(error, CampaignError) else f"{type(error).__name__}: {error}"
            self.suppress(campaign, step.send, customer_id, "render_failed", detail, key=key, occurrence=occurrence, due_at=due_at)
            return
        first = rendered[0]
        cost = self.policy.price(first.kind, friend=recipient.kakao_friend)
        self.messages.append(PlannedMessage(
            key=key, customer_id=customer_id, campaign_id=campaign.id, step=step.send, occurrence=occurrence,
            variant=variant.name, purpose=campaign.purpose, chain=rendered,
            contacts=tuple([recipient.contact(c) or "" for c in chain[:len(rendered)]]), due_at=due_at, send_at=send_at, deferred=send_at > earliest, estimated_cost=cost,
            friend=recipient.kakao_friend,
        ))
        self.record(key, campaign.id, customer_id)
        self.caps.add(customer_id, campaign.purpose, chain[0], send_at)

    def record(self, key: str, campaign_id: str, customer_id: Any) -> None:
        """``key`` of ``customer_id`` for ``campaign_id`` is decided in this plan."""
        self.keys.add(key)
        if self.recorded is not None:
            self.recorded.add((campaign_id, customer_id))

    def chain(self, campaign: Campaign, recipient: Recipient, advertising: bool) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
        """The channels this recipient can get, and for each dropped one (channel, reason)."""
        keep: list[str] = []
        dropped: list[tuple[str, str]] = []
        for channel in campaign.channels:
            reason = self.blocked(channel, recipient, advertising)
            if reason is None:
                keep.append(channel)
            else:
                dropped.append((channel, reason))
        if keep:
            return tuple(keep), dropped
        # the reason reported: the most "advanced" stage any channel reached (funnel order)
        order = ["no_contact", "opted_out", "no_consent", "consent_expired", "not_friend"]
        best = max(dropped, key=lambda d: order.index(d[1]))
        return (), [(best[1], best[0]), *dropped]

    def blocked(self, channel: str, recipient: Recipient, advertising: bool) -> str | None:
        return consent_block(channel, recipient, advertising=advertising, policy=self.policy, now=self.now)

    def allowed(self, due: datetime, chain: tuple[str, ...], recipient: Recipient, zone: str, advertising: bool) -> datetime:
        """The first instant at or after ``due`` when every channel of the chain may send (memoised)."""
        key = (due, chain, recipient.night_consent, zone, advertising)
        found = self.allowed_at.get(key)
        if found is None:
            found = self.allowed_at[key] = self._allowed(due, chain, recipient, zone, advertising)
        return found

    def _allowed(self, due: datetime, chain: Sequence[str], recipient: Recipient, zone: str, advertising: bool) -> datetime:
        return allowed_from(due, chain, recipient, zone, advertising, self.policy)

    def context(
        self, recipient: Recipient, campaign: Campaign, step: Send, due_at: datetime, entry: datetime | None,
        recommend: Any = None,
    ) -> _ContextView:
        event = None
        if entry is not None and isinstance(campaign.schedule, Triggered):
            event = self.state.trigger_events.get((recipient.customer_id, campaign.schedule.on, entry), {})
        extra = self.state.contexts.get(recipient.customer_id, {})
        if recommend is not None:  # an empty list for a customer the recommender had nothing for
            found = self.state.recommendations.get((campaign.id, recommend, recipient.customer_id), ())
            extra = {**extra, "recommendations": self.recommended(found)}
        return _ContextView(
            recipient, extra, campaign, step.send, due_at, recipient.timezone or self.policy.timezone, self.policy, event,
            self.event_views,
        )

    def recommended(self, found: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
        """The template values of a recommendation list, one tuple per list (equal lists share renderings)."""
        key = id(found)
        got = self.recommendation_views.get(key)
        if got is None or got[0] is not found:
            got = self.recommendation_views[key] = (found, recommended(found))
        return got[1]


class _ContextView(Mapping[str, Any]):
    """:func:`message_context` computed name by name: the render cache asks only for the names a template
    reads, so most customers never get a context dict (or a local time) built for them."""

    __slots__ = ("_campaign", "_due_at", "_event", "_events_in_zone", "_extra", "_policy", "_recipient", "_step", "_zone")

    def __init__(
        self, recipient: Recipient, extra: Mapping[str, Any], campaign: Campaign, step: str, due_at: datetime,
        zone: str, policy: MessagingPolicy, event: Mapping[str, Any] | None,
        events_in_zone: dict[tuple[int, str], tuple[Mapping[str, Any], dict[str, Any]]] | None = None,
    ) -> None:
        self._recipient, self._extra, self._campaign, self._step = recipient, extra, campaign, step
        self._due_at, self._zone, self._policy, self._event = due_at, zone, policy, event
        self._events_in_zone = {} if events_in_zone is None else events_in_zone

    def __getitem__(self, name: str) -> Any:
        if name == "campaign":
            return {"id": self._campaign.id, "name": self._campaign.name, "step": self._step}
        if name == "shop":
            return shop_values(self._policy)
        if name == "now":
            return local(self._due_at, self._zone)
        if name == "event" and self._event is not None:
            key = (id(self._event), self._zone)
            found = self._events_in_zone.get(key)
            if found is None or found[0] is not self._event:  # an id is reused only once its event is gone
                found = self._events_in_zone[key] = (self._event, in_zone(self._event, self._zone))
            return found[1]
        if name in self._extra:
            return self._extra[name]
        attributes = self._recipient.attributes
        if name in attributes:
            value = attributes[name]
            return local_instant(value, self._zone) if isinstance(value, datetime) else value
        if name == "customer_id":
            return self._recipient.customer_id
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        """``view[name]``, or ``default``: one call instead of Mapping.get's two (the render cache asks often)."""
        try:
            return self[name]
        except KeyError:
            return default

    def _names(self) -> dict[str, None]:
        names = dict.fromkeys(self._recipient.attributes)
        names.update(dict.fromkeys(self._extra))
        names.update(dict.fromkeys(("customer_id", "campaign", "shop", "now")))
        if self._event is not None:
            names["event"] = None
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def local_instant(value: datetime, zone: str) -> datetime:
    """An instant as the recipient reads it: naive local time in ``zone`` (a naive instant is UTC, as everywhere in
    the library; an aware one is converted), so ``{{ event.expires_at|date }}`` shows the recipient's date."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return local(value, zone)


def in_zone(values: Mapping[str, Any], zone: str) -> dict[str, Any]:
    """``values`` (a customer's attributes, an event's properties) with every instant in ``zone``
    (:func:`local_instant`)."""
    return {k: local_instant(v, zone) if isinstance(v, datetime) else v for k, v in values.items()}


def shop_values(policy: MessagingPolicy) -> dict[str, str]:
    """What a template sees as ``shop``: the sender's name and contact and the free opt-out number (the K8
    re-confirmation and K9 result notices name them in an informational message, which gets no ad lines)."""
    return {"name": policy.sender_name, "contact": policy.sender_contact, "opt_out_number": policy.opt_out_number}


def message_context(
    recipient: Recipient, extra: Mapping[str, Any], campaign: Campaign, step: str, local_now: datetime,
    policy: MessagingPolicy, *, event: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a template sees: the customer's attributes (instants in the recipient's local time), the shell's extra
    values (cart, coupons), and
    ``customer_id``, ``campaign`` (id, name, step), ``shop`` (name, contact, opt_out_number), ``now`` (local) and, in a
    scenario, ``event`` (the trigger event's properties)."""
    zone = recipient.timezone or policy.timezone
    context: dict[str, Any] = in_zone(recipient.attributes, zone)
    context.update(extra)
    context.setdefault("customer_id", recipient.customer_id)
    context["campaign"] = {"id": campaign.id, "name": campaign.name, "step": step}
    context["shop"] = shop_values(policy)
    context["now"] = local_now
    if event is not None:
        context["event"] = in_zone(event, zone)
    return context


def plan(
    campaigns: Iterable[Campaign],
    state: ShopState,
    *,
    now: datetime,
    policy: MessagingPolicy | None = None,
    key_cache: KeyCache | None = None,
) -> Plan:
    """Plan every enabled campaign as of ``now`` (naive UTC) against ``state``; nothing is sent.

    Campaigns run in priority order (higher first, then by id), so when a frequency cap binds the
    more important campaign has already taken its place.  ``key_cache`` remembers the idempotency keys asked
    (a tick passes the one its reads used: they ask the same keys); without one the plan makes its own.
    """
    with paused_gc():
        return _Planner(list(campaigns), state, to_utc_naive(now), policy or MessagingPolicy(),
                        key_cache=KeyCache() if key_cache is None else key_cache).run()


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector paused for a block that allocates millions of acyclic objects.

    A broadcast plan allocates a few objects per customer; every few thousand allocations CPython's
    collector would walk every live object (the million recipients included), which costs a third
    of the plan.  Nothing the planner builds forms cycles, so pausing frees nothing late.  The
    previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
