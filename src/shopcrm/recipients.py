"""Which customer columns hold contact points and consents: the map from a shop's table to recipients.

>>> columns = RecipientColumns(phone="mobile", consents={"sms": "sms_agree"})
>>> columns.recipient({"customer_id": "c1", "mobile": "010-1234-5678", "sms_agree": True}, now=datetime(2026, 1, 1))
Recipient(customer_id='c1', phone='010-1234-5678', ...)
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from shopcrm.campaigns import Recipient
from shopcrm.campaigns._planner import _maker
from shopcrm.timeline import to_utc_naive

__all__ = ["RecipientColumns", "with_opt_outs"]

_GROUPS = ("sms", "kakao", "email", "push")

#: ``Recipient(...)`` with its fields in order, through the slots (a broadcast tick makes a million of them)
_new_recipient = _maker(Recipient)


def _consents() -> dict[str, str]:
    return {"sms": "sms_consent", "kakao": "kakao_consent", "email": "email_consent", "push": "push_consent"}


def _consent_times() -> dict[str, str]:
    return {"sms": "sms_consent_at", "kakao": "kakao_consent_at", "email": "email_consent_at", "push": "push_consent_at"}


@attrs.frozen(kw_only=True)
class RecipientColumns:
    """Column names of the customers table; a name the table does not have is simply absent data.

    ``consents`` maps a consent group (``sms``, ``kakao``, ``email``, ``push``) to a column that is
    either a boolean (true: consented) or a timestamp (when the consent was given or re-confirmed);
    ``consent_times`` optionally adds a timestamp column to a boolean one, which is what the
    policy's ``consent_valid_years`` (K8: the same date two years on) checks.  A true boolean without a time
    counts as current: the shop's column says the consent holds now (map ``consent_times`` where it does not).  ``opted_out`` columns are booleans (true: opted out), which beat any consent; an
    ``opted_out_all`` column opts out of everything.
    """

    phone: str | None = "phone"
    email: str | None = "email"
    push_token: str | None = "push_token"
    kakao_friend: str | None = "kakao_friend"
    timezone: str | None = "timezone"
    night_consent: str | None = "night_consent"
    consents: Mapping[str, str] = attrs.field(factory=_consents)
    consent_times: Mapping[str, str] = attrs.field(factory=_consent_times)
    opted_out: Mapping[str, str] = attrs.field(factory=dict)
    opted_out_all: str | None = "opted_out"

    def to_dict(self) -> dict[str, Any]:
        """The column map as JSON-ready values, for the settings table."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in attrs.fields(RecipientColumns)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecipientColumns:
        """The column map :meth:`to_dict` wrote; fields it lacks keep their defaults."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"recipient columns have no field {', '.join(map(repr, unknown))}; their fields are {', '.join(sorted(known))}")
        values: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
        return cls(**values)

    def names(self) -> set[str]:
        """Every column this map may read."""
        single = (self.phone, self.email, self.push_token, self.kakao_friend, self.timezone, self.night_consent, self.opted_out_all)
        return {n for n in single if n} | set(self.consents.values()) | set(self.consent_times.values()) | set(self.opted_out.values())

    def recipient(self, row: Mapping[str, Any], *, now: datetime, attributes: Collection[str] | None = None) -> Recipient:
        """The recipient of one customer row; ``attributes`` limits the template context to these columns
        (None: every column of the row)."""
        names = list(row) if attributes is None else [k for k in attributes if k in row]
        return self.recipients({k: [v] for k, v in row.items()}, now=now, attributes=names)[0]

    def recipients(
        self, columns: Mapping[str, Sequence[Any]], *, now: datetime, attributes: Collection[str] = (),
    ) -> list[Recipient]:
        """Recipients from column lists (``customer_id`` and any mapped columns, equally long); the
        template context gets the ``attributes`` columns."""
        ids = columns["customer_id"]
        count = len(ids)
        if any(len(column) != count for column in columns.values()):
            raise ValueError(f"recipient columns have one length; these have {sorted({len(c) for c in columns.values()})}")
        nothing: Sequence[Any] = [None] * count

        def values(name: str | None) -> Sequence[Any] | None:
            return columns.get(name) if name else None

        def texts(name: str | None) -> Sequence[Any]:  # _text of each value, column by column
            found = values(name)
            if found is None:
                return nothing
            if _kept_texts(found):
                return found
            return [None if v is None else ((v if type(v) is str else _text_of(v)).strip() or None) for v in found]

        def flags(name: str | None) -> Sequence[bool]:  # _flag of each value
            found = values(name)
            if found is None:
                return [False] * count
            if _BOOL.issuperset(map(type, found)):  # a boolean column without nulls: each value is its own flag
                return found
            return [v is True or (v is not False and v is not None and _flag(v)) for v in found]

        everything = values(self.opted_out_all)
        # per consent group, when each customer gave it (None: not given), decided column by column
        groups: list[str] = []
        given_columns: list[Sequence[datetime | None]] = []
        untimed = [(group, column) for group, column in self.consents.items() if column in columns]
        if untimed and len(untimed) <= 6 and all(
                values(self.consent_times.get(group)) is None and _BOOL_OR_NONE.issuperset(map(type, columns[column]))
                for group, column in untimed):
            # boolean consent columns without times (a true one given ``now``): each customer's consents are one of
            # the dicts of the columns' value combinations, shared read-only (as below), looked up in C
            combinations = {values: {group: now for (group, _), value in zip(untimed, values, strict=True) if value is True}
                            for values in itertools.product((True, False, None), repeat=len(untimed))}
            consented: list[dict[str, datetime]] = list(map(combinations.__getitem__, zip(
                *[columns[column] for _, column in untimed], strict=True)))
            untimed = []
        else:
            consented = []
        for group, column in untimed:
            times = values(self.consent_times.get(group))
            groups.append(group)
            given_columns.append([
                now if value is True and (stamp is None or stamp is False) else None if value is None or value is False
                else _given(value, stamp, now, timed=times is not None)
                for value, stamp in zip(columns[column], times if times is not None else nothing, strict=True)
            ])
        opt_outs = [(group, columns[column]) for group, column in self.opted_out.items() if column in columns]
        if opt_outs or everything is not None:
            opted: Sequence[frozenset[str]] = [
                frozenset([group for group, flagged in opt_outs if _flag(flagged[i])]
                          + (["all"] if everything is not None and _flag(everything[i]) else []))
                for i in range(count)
            ]
        else:
            opted = [frozenset()] * count
        names = [name for name in attributes if name in columns]
        # each recipient's template values: a dict of its own (one name: a dict display, without zip per row)
        shown: Sequence[dict[str, Any]]
        if not names:
            shown = [{} for _ in range(count)]
        elif len(names) == 1:
            only = names[0]
            shown = [{only: value} for value in columns[only]]
        else:
            shown = [dict(zip(names, row, strict=True)) for row in zip(*[columns[name] for name in names], strict=True)]
        # the consent dicts, one per distinct combination of consent instants (bare booleans give few): recipients
        # share them read-only, as they share the empty opt-out set
        given_of: dict[tuple[datetime | None, ...], dict[str, datetime]] = {}
        consents = consented
        for gave in zip(*given_columns, strict=True) if given_columns or consented else [()] * count:
            found = given_of.get(gave)
            if found is None:
                found = {group: when for group, when in zip(groups, gave, strict=True) if when is not None}
                if len(given_of) < 4096:
                    given_of[gave] = found
            consents.append(found)
        new = _new_recipient
        return list(map(
            new, ids, texts(self.phone), texts(self.email), texts(self.push_token), flags(self.kakao_friend),
            texts(self.timezone), consents, flags(self.night_consent), opted, shown,
        ))

    def recipients_by_row(
        self, columns: Mapping[str, Sequence[Any]], *, now: datetime, attributes: Collection[str] = (),
    ) -> list[Recipient]:
        """:meth:`recipients` customer by customer, as it was before it went column by column (kept to prove
        them equal in tests and to measure the difference; slower)."""
        ids = columns["customer_id"]

        def values(name: str | None) -> Sequence[Any] | None:
            return columns.get(name) if name else None

        phones, emails, tokens = values(self.phone), values(self.email), values(self.push_token)
        friends, zones, nights = values(self.kakao_friend), values(self.timezone), values(self.night_consent)
        everything = values(self.opted_out_all)
        consents = [
            (group, columns[column], values(self.consent_times.get(group)))
            for group, column in self.consents.items() if column in columns
        ]
        opt_outs = [(group, columns[column]) for group, column in self.opted_out.items() if column in columns]
        shown = [(name, columns[name]) for name in attributes if name in columns]
        out = []
        for i, customer_id in enumerate(ids):
            given: dict[str, datetime] = {}
            for group, flags, times in consents:
                value = flags[i]
                if value is None or value is False:
                    continue
                when = now if value is True else _consent(value, now)
                if when is None:
                    continue
                if times is not None and not isinstance(value, datetime):
                    stamp = times[i]
                    if isinstance(stamp, datetime) or (isinstance(stamp, str) and stamp.strip()):
                        when = to_utc_naive(stamp)
                given[group] = when
            opted = frozenset(
                [group for group, flags in opt_outs if _flag(flags[i])] + (["all"] if everything is not None and _flag(everything[i]) else [])
            )
            out.append(Recipient(
                customer_id=customer_id,
                phone=_text(phones[i]) if phones is not None else None,
                email=_text(emails[i]) if emails is not None else None,
                push_token=_text(tokens[i]) if tokens is not None else None,
                kakao_friend=_flag(friends[i]) if friends is not None else False,
                timezone=_text(zones[i]) if zones is not None else None,
                consents=given,
                night_consent=_flag(nights[i]) if nights is not None else False,
                opted_out=opted,
                attributes={name: column[i] for name, column in shown},
            ))
        return out


_BOOL = frozenset({bool})
_BOOL_OR_NONE = frozenset({bool, type(None)})


def _kept_texts(values: Sequence[Any]) -> bool:
    """Whether :func:`_text` keeps every value as it is: text, not empty, without whitespace around it (a column
    of phone numbers or addresses, read in C instead of value by value)."""
    return (frozenset({str}).issuperset(map(type, values)) and "" not in values
            and list(map(str.strip, values)) == values)


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _given(value: Any, stamp: Any, now: datetime, *, timed: bool) -> datetime | None:
    """When a consent column's ``value`` (not None or False) says the consent was given, its time column's
    ``stamp`` (when there is one: ``timed``) winning over a boolean or text value."""
    when = now if value is True else _consent(value, now)
    if when is None:
        return None
    if timed and not isinstance(value, datetime) and (
            isinstance(stamp, datetime) or (isinstance(stamp, str) and stamp.strip())):
        return to_utc_naive(stamp)
    return when


def with_opt_outs(recipient: Recipient, opt_outs: Mapping[str, datetime], *, now: datetime) -> Recipient:
    """``recipient`` with the recorded opt-outs (consent group or ``all`` -> when) added to ``opted_out``, except
    where a consent was given again after the opt-out (a timestamped consent between the opt-out and now; a bare
    true consent column does not say when, so it does not lift a recorded opt-out)."""
    opted = set(recipient.opted_out)
    for group, at in opt_outs.items():
        for target in _GROUPS if group == "all" else (group,):
            given = recipient.consents.get(target)
            if given is not None and at < given < now:
                continue
            opted.add(target)
    if opted == set(recipient.opted_out):
        return recipient
    return attrs.evolve(recipient, opted_out=frozenset(opted))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value)).strip()
    return text or None


def _flag(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "y", "yes")
    return bool(value) if value is not None else False


def _consent(value: Any, now: datetime) -> datetime | None:
    """A consent column's value as the instant it was given (``now`` for a bare true), or None."""
    if value is None or value is False:
        return None
    if isinstance(value, datetime):
        return to_utc_naive(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "0", "false", "f", "n", "no"):
            return None
        if text.lower() in ("1", "true", "t", "y", "yes"):
            return now
        try:
            return to_utc_naive(text)
        except ValueError:
            raise ValueError(f"consent value {value!r} is neither a boolean nor a timestamp") from None
    return now if value else None

