"""Messaging policies: consent, quiet hours, Kakao sending hours, frequency caps, decorations, prices.

Every rule of ``messaging-rules.md`` is a field here with the Korean default;
:meth:`MessagingPolicy.united_states` is the alternative set (TCPA window, STOP
replies, CAN-SPAM footer).  Time-of-day rules are evaluated in the recipient's
time zone (``Asia/Seoul`` unless the recipient has one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import attrs

from shopcrm.campaigns._friendtalk import brand_message_for, brand_messages_for
from shopcrm.campaigns._templates import Decorations
from shopcrm.tracking import TrackingPolicy

__all__ = [
    "DEFAULT_PRICES", "CONSENT_GROUP", "KAKAO_TIMEZONE", "PRICE_KEYS", "Cap", "MessagingPolicy", "Window", "global_control_members",
    "global_control_point", "in_global_control", "local", "utc",
]

#: KRW per message, VAT excluded: Hackle's list prices of January 2026 (see docs/channels.md, "Cost"), keyed by the
#: kind that carried the message (``brand_message`` is the price to channel friends, ``brand_message_non_friend``
#: to marketing-consent users who are not); a provider's reported charge wins over the table
DEFAULT_PRICES: dict[str, float] = {
    "alimtalk": 10, "sms": 12, "lms": 39, "mms": 90, "brand_message": 25, "brand_message_non_friend": 35,
    "email": 0, "push": 0, "webhook": 0,
}
#: the consent each channel needs for advertising (Kakao's two products share one consent)
CONSENT_GROUP: dict[str, str | None] = {
    "sms": "sms", "alimtalk": "kakao", "brand_message": "kakao", "email": "email", "push": "push", "webhook": None,
}
_UTC = ZoneInfo("UTC")
#: the zone of Kakao's own sending hours (a Brand Message is refused outside 08:00-20:50 there, code 3022)
KAKAO_TIMEZONE = "Asia/Seoul"


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(when: datetime, zone: str) -> datetime:
    """A naive UTC instant as a naive local time in ``zone``.

    A template reads tens of thousands of instants a tick: the zone's offset is looked up once per hour of UTC
    time (zones change their offsets on whole UTC hours; an hour whose two ends disagree is converted exactly)."""
    offset = _hour_offset(zone, when.toordinal(), when.hour)
    if offset is not None:
        try:
            return when + offset
        except OverflowError:  # the last hours a datetime holds
            pass
    return when.replace(tzinfo=_UTC).astimezone(_zone(zone)).replace(tzinfo=None)


@lru_cache(maxsize=65_536)
def _hour_offset(zone: str, ordinal: int, hour: int) -> timedelta | None:
    """``zone``'s UTC offset through one hour of UTC time (its date's ordinal, its hour), or None when it is not
    the same at both ends of the hour, the hour is a repeated one, or an end is out of a datetime's range."""
    tz = _zone(zone)
    start = datetime.fromordinal(ordinal).replace(hour=hour, tzinfo=_UTC)
    try:
        first, last = start.astimezone(tz), (start + timedelta(hours=1, microseconds=-1)).astimezone(tz)
    except OverflowError:
        return None
    # a repeated hour (fold 1) is converted exactly: its local times must keep their fold for the way back (utc)
    return first.utcoffset() if first.utcoffset() == last.utcoffset() and not first.fold and not last.fold else None


def utc(when: datetime, zone: str) -> datetime:
    """A naive local time in ``zone`` as a naive UTC instant (a time skipped by DST moves forward)."""
    return when.replace(tzinfo=_zone(zone)).astimezone(_UTC).replace(tzinfo=None)


@attrs.frozen
class Window:
    """A daily local-time window ``[start, end)``; it wraps midnight when ``start > end`` (21:00-08:00)."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def next_outside(self, when: datetime, zone: str) -> datetime:
        """The first instant at or after ``when`` (naive UTC) whose local time is outside the window."""
        here = local(when, zone)
        if not self.contains(here.time()):
            return when
        end = datetime.combine(here.date(), self.end)
        if end <= here:
            end += timedelta(days=1)
        return utc(end, zone)


def _cap_channel(channel: str | None) -> str | None:
    return None if channel is None else brand_message_for(channel, "a frequency cap's channel", stacklevel=5)


def _exempt_channels(channels: Iterable[str]) -> frozenset[str]:
    return frozenset(brand_messages_for(channels, "MessagingPolicy.quiet_hours_exempt", stacklevel=6))


@attrs.frozen
class Cap:
    """At most ``limit`` messages of ``purpose`` (on ``channel``, or any channel) per rolling ``per``."""

    purpose: Literal["advertising", "informational", "any"]
    limit: int
    per: timedelta
    channel: str | None = attrs.field(default=None, converter=_cap_channel)

    def counts(self, purpose: str, channel: str) -> bool:
        return (self.purpose == "any" or self.purpose == purpose) and (self.channel is None or self.channel == channel)

    @property
    def name(self) -> str:
        days = self.per / timedelta(days=1)
        span = f"{days:g}d" if days >= 1 else f"{self.per / timedelta(hours=1):g}h"
        return f"{self.purpose}{'/' + self.channel if self.channel else ''}:{self.limit}/{span}"


PRICE_KEYS = frozenset({"sms", "lms", "mms", "alimtalk", "brand_message", "brand_message_non_friend", "friendtalk",
                        "email", "push", "webhook"})


def _check_prices(prices: Mapping[str, float]) -> None:
    unknown = sorted(set(prices) - PRICE_KEYS)
    if unknown:
        raise ValueError(f"MessagingPolicy.prices has no kind {', '.join(map(repr, unknown))}; price one of "
                         f"{', '.join(sorted(PRICE_KEYS))}")
    wrong = {k: v for k, v in prices.items() if isinstance(v, bool) or not isinstance(v, int | float) or v < 0}
    if wrong:
        raise ValueError(f"MessagingPolicy.prices must be numbers of 0 or more per message, not {wrong!r}")


def _check_control_percent(_: object, __: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 100:
        raise ValueError(f"MessagingPolicy.global_control_percent is a share of customers from 0 (no global control "
                         f"group) up to, not including, 100 (5 for 5%); got {value!r}")


def _check_late_events(_: object, __: object, value: timedelta) -> None:
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ValueError(f"MessagingPolicy.late_events_within is a duration of zero or more (e.g. timedelta(minutes=10)); "
                         f"got {value!r}")


def _check_control_salt(_: object, __: object, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"MessagingPolicy.global_control_salt is a non-empty text (e.g. 'gc-2026'); got {value!r}")


JURISDICTIONS = ("KR", "US", "EU")
#: what ``consent_valid_for`` held by default before ``consent_valid_years`` (settings written then are read as 2 years)
_OLD_CONSENT_SPAN = timedelta(days=730)
#: the Korean legal floor (K4, K8): advertising is not sent 21:00-08:00 (e-mail exempt), consent lapses after two years
_KR_NIGHT = (time(21), time(8))
_KR_EXEMPT = frozenset({"email"})
_KR_CONSENT_YEARS = 2
#: ``080-123-4567``, ``080-1234-5678`` (the dashes optional): a free opt-out number (K7)
_FREE_NUMBER = re.compile(r"080-?\d{3,4}-?\d{4}")


def _check_jurisdiction(_: object, __: object, value: object) -> None:
    if value not in JURISDICTIONS:
        raise ValueError(f"MessagingPolicy.jurisdiction is one of {', '.join(map(repr, JURISDICTIONS))} (MessagingPolicy(), "
                         f"MessagingPolicy.united_states(), MessagingPolicy.european_union()); got {value!r}")


def _check_valid_years(_: object, __: object, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"MessagingPolicy.consent_valid_years is a whole number of years of 1 or more, or None; got {value!r}")


def _covers_korean_night(window: Window) -> bool:
    """Whether ``window`` holds every moment of 21:00-08:00: what it leaves open lies within 08:00-21:00."""
    start, end = _KR_NIGHT
    return window.start > window.end and end <= window.end and window.start <= start


def _korean_loosenings(policy: MessagingPolicy) -> list[str]:
    """What a Korean policy loosens of the law's floor (each a sentence); empty when it only tightens."""
    out = []
    if not _covers_korean_night(policy.quiet_hours):
        out.append(f"quiet_hours {policy.quiet_hours.start:%H:%M}-{policy.quiet_hours.end:%H:%M} leaves part of 21:00-08:00 "
                   "open to advertising (K4); a Korean window must hold all of it, e.g. Window(time(21), time(8))")
    if not policy.quiet_hours_exempt <= _KR_EXEMPT:
        out.append(f"quiet_hours_exempt {sorted(policy.quiet_hours_exempt)} exempts more than e-mail from the night rule "
                   "(K4); only 'email' may be exempt")
    years, span = policy.consent_valid_years, policy.consent_valid_for
    if (years is None or years > _KR_CONSENT_YEARS) and (span is None or span > timedelta(days=730)):
        out.append("consent_valid_years / consent_valid_for keep a marketing consent for more than two years (K8: it must "
                   "be re-confirmed every two years); use consent_valid_years=2 or fewer")
    return out


@attrs.frozen(kw_only=True)
class MessagingPolicy:
    """The legal and policy rules the planner applies (and the dispatcher re-checks)."""

    #: whose rules: ``KR`` (this class's defaults), ``US`` (:meth:`united_states`), ``EU`` (:meth:`european_union`);
    #: a Korean policy may tighten any legal rule but not loosen one (choose another set for that)
    jurisdiction: Literal["KR", "US", "EU"] = attrs.field(default="KR", validator=_check_jurisdiction)
    #: the recipients' time zone when they have none of their own
    timezone: str = "Asia/Seoul"
    #: advertising is not sent inside this local window (K4; TCPA 21:00-08:00 in the US set)
    quiet_hours: Window = Window(time(21), time(8))
    #: whether a separate night-time consent lifts the quiet hours (Korea: yes; TCPA: no)
    night_consent_lifts_quiet_hours: bool = True
    #: channels the quiet hours do not apply to (Korea: e-mail)
    quiet_hours_exempt: frozenset[str] = attrs.field(default=frozenset({"email"}), converter=_exempt_channels)
    #: Kakao delivers Brand Messages only outside this window (it sends 08:00-20:50 Korean time, whatever the
    #: recipient's zone: :data:`KAKAO_TIMEZONE`)
    brand_message_closed: Window = Window(time(20, 50), time(8))
    #: Brand Messages only to the channel's friends (targeting I); False allows M/N targeting (licensed channels)
    brand_message_friends_only: bool = True
    #: a marketing consent lapses on the same calendar date this many years after it was given or last re-confirmed,
    #: at the start of that day in the policy's ``timezone`` (K8: re-confirmed every two years, "before the same day";
    #: a consent of 29 February lapses on 28 February); None: never
    consent_valid_years: int | None = attrs.field(default=2, validator=_check_valid_years)
    #: and, if set, a consent older than this no longer counts either (a shop's own, tighter rule)
    consent_valid_for: timedelta | None = None
    #: frequency caps (fatigue); informational messages are exempt by default
    caps: tuple[Cap, ...] = (
        Cap("advertising", 2, timedelta(days=7)),
        Cap("advertising", 1, timedelta(days=1)),
    )
    #: what advertising messages carry
    sender_name: str = ""
    sender_contact: str = ""
    opt_out_number: str = ""
    unsubscribe_url: str = ""
    #: the sender's postal address, which CAN-SPAM requires in every commercial e-mail (the US set)
    postal_address: str = ""
    #: KRW (or the jurisdiction's currency) per message by carrying kind: ``sms``, ``lms``, ``mms``, ``alimtalk``,
    #: ``brand_message`` (to friends), ``brand_message_non_friend``, ``friendtalk``, ``email``, ``push``, ``webhook``;
    #: a kind left out costs 0
    prices: Mapping[str, float] = attrs.field(factory=lambda: dict(DEFAULT_PRICES), validator=lambda _, __, v: _check_prices(v))
    #: tracked links (``{{ link(url) }}``) and signed one-click unsubscribe links; None: no tracking
    tracking: TrackingPolicy | None = None
    #: the share of customers (percent, ``0 <= p < 100``) kept out of every advertising campaign to measure the
    #: whole programme (:func:`in_global_control`); informational messages still reach them; 0: no such group
    global_control_percent: float = attrs.field(default=0.0, validator=_check_control_percent)
    #: what the global control group's hash is salted with: the same salt keeps the same customers, a new one
    #: draws a new group
    global_control_salt: str = attrs.field(default="global_control", validator=_check_control_salt)
    #: issue 15, watermark ticks: how late an event may arrive after its ``ts`` and still start or end a scenario.
    #: A tick reads the trigger and exit events since its scenario's last tick less this allowance (events loaded
    #: through the embedded shop's ``load_events`` are always seen: an older one moves the marks back)
    late_events_within: timedelta = attrs.field(default=timedelta(minutes=10), validator=_check_late_events)

    def __attrs_post_init__(self) -> None:
        if self.jurisdiction == "KR":
            loosened = _korean_loosenings(self)
            if loosened:
                raise ValueError("a Korean MessagingPolicy may tighten the law's rules but not loosen them: "
                                 + "; ".join(loosened) + ". To follow another jurisdiction's rules, start from its set "
                                 "(MessagingPolicy.united_states(), MessagingPolicy.european_union())")

    def consent_lapsed_before(self, now: datetime) -> datetime | None:
        """The instant (naive UTC) before which a consent given (or re-confirmed) has lapsed at ``now`` (K8): a
        consent counts at ``now`` exactly when it was given at or after it; None when consent never lapses."""
        lapsed = None if self.consent_valid_years is None else _years_before(now, self.consent_valid_years, self.timezone)
        if self.consent_valid_for is not None:
            span = _minus(now, self.consent_valid_for)
            lapsed = span if lapsed is None else max(lapsed, span)
        return lapsed

    @classmethod
    def european_union(cls, **changes: object) -> MessagingPolicy:
        """The EU set: opt-in consent that must be demonstrable (GDPR Art. 7) and never lapses by age, an objection
        to direct marketing that is absolute (Art. 21: an opt-out suppresses for good), an opt-out in every message
        (ePrivacy), the sender identified; no night rule in EU law (a shop may set its own ``quiet_hours``);
        ``Europe/Brussels`` unless recipients have a zone.  Prices are the shop's to set (0 until then)."""
        base = cls(
            jurisdiction="EU",
            timezone="Europe/Brussels",
            quiet_hours=Window(time(0), time(0)),
            night_consent_lifts_quiet_hours=False,
            consent_valid_years=None,
            prices={"sms": 0, "lms": 0, "mms": 0, "email": 0, "push": 0, "webhook": 0,
                    "alimtalk": 0, "brand_message": 0, "brand_message_non_friend": 0},
        )
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]

    @classmethod
    def united_states(cls, **changes: object) -> MessagingPolicy:
        """The US set: TCPA 08:00-21:00 recipient local time for marketing texts (no consent lifts it),
        STOP replies, CAN-SPAM e-mail footer; ``America/New_York`` unless recipients have a zone."""
        base = cls(
            jurisdiction="US",
            timezone="America/New_York",
            night_consent_lifts_quiet_hours=False,
            consent_valid_years=None,
            prices={"sms": 0.0079, "lms": 0.0079, "mms": 0.02, "email": 0, "push": 0, "webhook": 0,
                    "alimtalk": 0, "brand_message": 0, "brand_message_non_friend": 0},
        )
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]

    def decorations(self) -> Decorations:
        if self.jurisdiction == "US":
            # CAN-SPAM: identified as an advertisement, the sender's postal address, a working unsubscribe link
            sender = ", ".join(x for x in (self.sender_name, self.postal_address) if x)
            return Decorations(
                ad_prefix="",
                sender_line=self.sender_name,
                opt_out_line="Reply STOP to opt out",
                email_footer=_literal(f"This is an advertisement from {sender}.") + " Unsubscribe: {unsubscribe_url}",
                unsubscribe_url=self.unsubscribe_url,
                tracking=self.tracking,
            )
        if self.jurisdiction == "EU":
            sender = ", ".join(x for x in (self.sender_name, self.sender_contact) if x)
            return Decorations(
                ad_prefix="",
                sender_line=sender,
                opt_out_line="Reply STOP to opt out",
                email_footer=_literal(f"{sender}.") + " Unsubscribe: {unsubscribe_url}",
                unsubscribe_url=self.unsubscribe_url,
                tracking=self.tracking,
            )
        sender = " ".join(x for x in (self.sender_name, self.sender_contact) if x)
        return Decorations(
            ad_prefix="(광고)",
            sender_line=sender,
            opt_out_line=f"무료수신거부 {self.opt_out_number}" if self.opt_out_number else "",
            # K6 in every advertising message: the e-mail names its sender above the unsubscribe link (K7)
            email_footer=(_literal(sender) + "\n" if sender else "") + "수신을 원하지 않으시면 여기에서 수신거부하세요: {unsubscribe_url}",
            push_lines=True,
            unsubscribe_url=self.unsubscribe_url,
            tracking=self.tracking,
        )

    def price(self, kind: str, *, friend: bool = True) -> float:
        """The table's price of one message of ``kind`` (a Brand Message to a non-friend at its own price);
        a kind the table does not name costs 0."""
        if kind in ("brand_message", "friendtalk") and not friend:
            return float(self.prices.get("brand_message_non_friend", self.prices.get("brand_message", 0)))
        if kind == "friendtalk" and "friendtalk" not in self.prices:
            return float(self.prices.get("brand_message", 0))
        return float(self.prices.get(kind, 0))

    def priced(self, channel: str, kind: str, *, friend: bool = True) -> tuple[float, str]:
        """The table's price of one message carried by ``channel`` as ``kind``, and what it was priced as:
        ``"sms:lms"``, ``"alimtalk:alimtalk"``, ``"brand_message:friend"``, ``"brand_message:non_friend"``."""
        if kind in ("brand_message", "friendtalk"):
            return self.price(kind, friend=friend), f"{channel}:{'friend' if friend else 'non_friend'}"
        return self.price(kind), f"{channel}:{kind}"

    def to_dict(self) -> dict[str, object]:
        """The policy as JSON-ready values (times as ``HH:MM:SS``, durations in seconds), for the settings table."""
        def window(w: Window) -> dict[str, str]:
            return {"start": w.start.isoformat(), "end": w.end.isoformat()}

        return {
            "jurisdiction": self.jurisdiction, "timezone": self.timezone, "quiet_hours": window(self.quiet_hours),
            "night_consent_lifts_quiet_hours": self.night_consent_lifts_quiet_hours,
            "quiet_hours_exempt": sorted(self.quiet_hours_exempt), "brand_message_closed": window(self.brand_message_closed),
            "brand_message_friends_only": self.brand_message_friends_only,
            "consent_valid_years": self.consent_valid_years,
            "consent_valid_for": None if self.consent_valid_for is None else self.consent_valid_for.total_seconds(),
            "caps": [{"purpose": c.purpose, "limit": c.limit, "per": c.per.total_seconds(), "channel": c.channel}
                     for c in self.caps],
            "sender_name": self.sender_name, "sender_contact": self.sender_contact,
            "opt_out_number": self.opt_out_number, "unsubscribe_url": self.unsubscribe_url,
            "postal_address": self.postal_address,
            "prices": {k: float(v) for k, v in self.prices.items()},
            **({"tracking": self.tracking.to_dict()} if self.tracking is not None else {}),
            "global_control_percent": float(self.global_control_percent),
            "global_control_salt": self.global_control_salt,
            "late_events_within": self.late_events_within.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MessagingPolicy:
        """The policy :meth:`to_dict` wrote; fields it lacks keep their defaults."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"a messaging policy has no field {', '.join(map(repr, unknown))}; its fields are {', '.join(sorted(known))}")
        values: dict[str, Any] = dict(data)
        for name in ("quiet_hours", "brand_message_closed"):
            if name in values:
                w = values[name]
                values[name] = Window(time.fromisoformat(w["start"]), time.fromisoformat(w["end"]))
        if "quiet_hours_exempt" in values:
            values["quiet_hours_exempt"] = frozenset(values["quiet_hours_exempt"])
        if values.get("consent_valid_for") is not None:
            values["consent_valid_for"] = timedelta(seconds=float(values["consent_valid_for"]))
        if "consent_valid_years" not in values and values.get("consent_valid_for") == _OLD_CONSENT_SPAN:
            # written before consent_valid_years: its default then, 730 days, meant the law's two years
            values["consent_valid_for"] = None
        elif "consent_valid_years" not in values and "consent_valid_for" in values:
            values["consent_valid_years"] = None  # a span of the shop's own (or None: forever) was the whole rule
        if "caps" in values:
            values["caps"] = tuple(Cap(c["purpose"], int(c["limit"]), timedelta(seconds=float(c["per"])), c.get("channel"))
                                   for c in values["caps"])
        if "prices" in values:
            values["prices"] = dict(values["prices"])
        if "late_events_within" in values:
            values["late_events_within"] = timedelta(seconds=float(values["late_events_within"]))
        if values.get("tracking") is not None:
            values["tracking"] = TrackingPolicy.from_dict(values["tracking"])
        if isinstance(values.get("global_control_percent"), int) and not isinstance(values["global_control_percent"], bool):
            values["global_control_percent"] = float(values["global_control_percent"])
        return cls(**values)

    def problems(self, purpose: str, channels: Iterable[str] | None = None) -> list[str]:
        """What this policy lacks to send ``purpose`` messages lawfully on ``channels`` (None: any channel), checked
        when campaigns are saved and planned."""
        out: list[str] = []
        if purpose != "advertising":
            return out
        named = None if channels is None else set(channels)
        if self.jurisdiction == "KR":
            if not self.opt_out_number:
                out.append("advertising needs the free opt-out number (무료수신거부 080-...): set MessagingPolicy.opt_out_number")
            elif not _FREE_NUMBER.fullmatch(self.opt_out_number.strip()):
                out.append(f"the opt-out number {self.opt_out_number!r} is not a free 080 number (K7: 무료수신거부 080-XXX-XXXX); "
                           "set MessagingPolicy.opt_out_number to the shop's 080 number")
            if not self.sender_name:
                out.append("advertising names its sender (K6): set MessagingPolicy.sender_name")
            if not self.sender_contact:
                out.append("advertising carries the sender's contact (K6: a phone number or address): set "
                           "MessagingPolicy.sender_contact")
        elif not self.sender_name:
            law = "TCPA, CAN-SPAM" if self.jurisdiction == "US" else "e-Commerce Directive Art. 6"
            out.append(f"marketing texts and e-mail identify their sender ({law}): set MessagingPolicy.sender_name")
        if self.jurisdiction == "US" and not self.postal_address and (named is None or "email" in named):
            out.append("a commercial e-mail carries the sender's postal address (CAN-SPAM): set MessagingPolicy.postal_address")
        return out


def _literal(text: str) -> str:
    """``text`` inside a ``str.format`` template (the e-mail footer's): its braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


def _minus(now: datetime, span: timedelta) -> datetime:
    try:
        return now - span
    except OverflowError:
        return datetime.min


@lru_cache(maxsize=256)
def _years_before(now: datetime, years: int, zone: str) -> datetime:
    """The instant (naive UTC) from which a consent still counts at ``now`` when it lapses at the start of the same
    local date ``years`` later (29 February: on 28 February): the start of the day after the last local date whose
    lapse is not after ``now``."""
    today = local(now, zone).date()
    try:
        last = _same_day(today, -years)
        if today.month == 2 and today.day == 28 and _leap(today.year - years):
            last = last.replace(day=29)  # a consent of 29 February lapses on the 28th too
        start = datetime.combine(last + timedelta(days=1), time(0))
    except (ValueError, OverflowError):
        return datetime.min  # before the year 1: nothing given lapsed yet
    return utc(start, zone)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _same_day(day: date, years: int) -> date:
    """``day`` moved ``years`` years, 29 February becoming 28 February."""
    target = day.year + years
    return day.replace(year=target, day=28) if day.month == 2 and day.day == 29 and not _leap(target) else day.replace(year=target)


# -- the global control group ----------------------------------------------------------------------------

_SPAN = 2.0 ** 64


def global_control_point(customer_id: Any, salt: str) -> float:
    """A customer's place in ``[0, 100)`` for the global control group, reproducible anywhere:
    the first 8 bytes of SHA-256 of the UTF-8 text ``f"{salt}:{customer_id}"`` (the id as text: ``42`` and
    ``"42"`` are the same customer), read as a big-endian unsigned integer, divided by 2**64, times 100."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SPAN * 100.0


def control_threshold(percent: float) -> int:
    """The smallest 64-bit number ``x`` whose point ``x / 2**64 * 100`` (as :func:`global_control_point` computes
    it, in floating point) is not below ``percent``: a customer is in the group exactly when the first 8 bytes of
    their digest, as an integer, are below it (2**64 when everyone is).  Engines compare the digest's first 16 hex
    digits with it (the programme's lift, the grouped preview)."""
    span = 2 ** 64
    low, high = 0, span  # invariant: point(low) < percent <= point(high), or low == 0
    if percent <= 0:
        return 0
    while high - low > 1:
        middle = (low + high) // 2
        if middle / float(span) * 100.0 < percent:
            low = middle
        else:
            high = middle
    return high


def in_global_control(customer_id: Any, policy: MessagingPolicy) -> bool:
    """Whether ``customer_id`` is in ``policy``'s global control group: its :func:`global_control_point`
    (salted with ``policy.global_control_salt``) is below ``policy.global_control_percent``. The same
    customers every time and for every campaign; nobody when the percent is 0."""
    percent = policy.global_control_percent
    return bool(percent) and global_control_point(customer_id, policy.global_control_salt) < percent


def global_control_members(customer_ids: Iterable[Any], policy: MessagingPolicy) -> frozenset[Any]:
    """The ids among ``customer_ids`` that are in ``policy``'s global control group (:func:`in_global_control`).

    Measurement compares this group with every other customer over a period (intention to treat: membership
    is decided by the hash alone, whatever the customers' consent or contact points)."""
    if not policy.global_control_percent:
        return frozenset()
    return frozenset(c for c in customer_ids if in_global_control(c, policy))
