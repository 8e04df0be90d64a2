"""Which customer columns hold contact points and consents: the map from a shop's table to recipients.

>>> columns = RecipientColumns(phone="mobile", consents={"sms": "sms_agree"})
>>> columns.recipient({"customer_id": "c1", "mobile": "010-1234-5678", "sms_agree": True}, now=datetime(2026, 1, 1))
Recipient(customer_id='c1', phone='010-1234-5678', ...)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import attrs

from shopcrm.campaigns import Recipient
from shopcrm.timeline import to_utc_naive

__all__ = ["RecipientColumns"]


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
    policy's ``consent_valid_for`` (K8, two years) checks.  A true boolean without a time counts as
    current.  ``opted_out`` columns are booleans (true: opted out), which beat any consent; an
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

    def names(self) -> set[str]:
        """Every column this map may read."""
        single = (self.phone, self.email, self.push_token, self.kakao_friend, self.timezone, self.night_consent, self.opted_out_all)
        return {n for n in single if n} | set(self.consents.values()) | set(self.consent_times.values()) | set(self.opted_out.values())

    def recipient(self, row: Mapping[str, Any], *, now: datetime, attributes: Collection[str] | None = None) -> Recipient:
        """The recipient of one customer row; ``attributes`` limits the template context to these columns
        (None: every column of the row)."""
        def text(column: str | None) -> str | None:
            value = row.get(column) if column else None
            if value is None:
                return None
            value = str(value).strip()
            return value or None

        consents: dict[str, datetime] = {}
        for group, column in self.consents.items():
            value = row.get(column)
            given = _consent(value, now)
            if given is None:
                continue
            stamp = row.get(self.consent_times[group]) if group in self.consent_times else None
            if not isinstance(value, datetime) and isinstance(stamp, datetime | str) and str(stamp).strip():
                given = to_utc_naive(stamp)
            consents[group] = given
        opted = {group for group, column in self.opted_out.items() if _flag(row.get(column))}
        if self.opted_out_all and _flag(row.get(self.opted_out_all)):
            opted.add("all")
        context = dict(row) if attributes is None else {k: row[k] for k in attributes if k in row}
        return Recipient(
            customer_id=row["customer_id"],
            phone=text(self.phone),
            email=text(self.email),
            push_token=text(self.push_token),
            kakao_friend=_flag(row.get(self.kakao_friend)) if self.kakao_friend else False,
            timezone=text(self.timezone),
            consents=consents,
            night_consent=_flag(row.get(self.night_consent)) if self.night_consent else False,
            opted_out=frozenset(opted),
            attributes=context,
        )


def _flag(value: Any) -> bool:
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

