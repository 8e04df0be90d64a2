"""The evidence of advertising consent (K2 of docs/messaging-rules): who consented to what, when, how, and to
which version of the consent text, kept append-only.

The customers table says *whether* a customer consents now (the consent columns the planner reads); this log
says how each consent was given or withdrawn, which is what a regulator (KISA) or the customer asks a shop to
show.  A record is never changed or removed: a withdrawal is a new record.  A withdrawal is also an opt-out of
its group, at once (K3); a consent given after an opt-out lifts it (the consent column must say yes too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

__all__ = ["CONSENT_GROUPS", "ConsentRecord", "consent_record"]

#: the consent groups a record names (a withdrawal may name ``all``: every group at once)
CONSENT_GROUPS = ("sms", "kakao", "email", "push")
#: the longest ``how``, ``text_version`` and ``by`` the library's tables keep
_TEXT_LIMIT = 200


@attrs.frozen
class ConsentRecord:
    """One consent given (``granted``) or withdrawn, for a consent group (``sms``, ``kakao``, ``email``, ``push``;
    ``all`` for a withdrawal of every group): ``at`` when the customer did it (naive UTC), ``how`` through what
    (``"signup form"``, ``"checkout checkbox"``, ``"080 call"``), ``text_version`` the consent text they agreed
    to (required for a consent given), ``by`` who recorded it (a system or an operator), ``recorded_at`` when the
    library wrote it (naive UTC)."""

    customer_id: Any
    group: str
    granted: bool
    at: datetime
    how: str
    text_version: str | None
    by: str
    recorded_at: datetime


def consent_record(
    customer_id: Any, group: str, *, granted: bool, at: datetime, how: str, text_version: str | None, by: str,
    recorded_at: datetime,
) -> ConsentRecord:
    """A checked :class:`ConsentRecord` (``at`` and ``recorded_at`` naive UTC); ValueError saying what is wrong
    and what would be right."""
    if not isinstance(granted, bool):
        raise ValueError(f"granted must be True (a consent given) or False (withdrawn), not {granted!r}")
    groups = CONSENT_GROUPS if granted else ("all", *CONSENT_GROUPS)
    if group not in groups:
        hint = " ('all' names every group in a withdrawal; a consent is given group by group)" if group == "all" else ""
        raise ValueError(f"{group!r} is not a consent group here; use one of {', '.join(groups)}{hint}")
    texts: dict[str, str | None] = {"how": how, "by": by}
    if granted or text_version is not None:
        texts["text_version"] = text_version
    for name, value in texts.items():
        if not isinstance(value, str) or not value.strip():
            need = {"how": "how the customer did it (e.g. 'signup form', 'checkout checkbox', '080 call')",
                    "by": "who records it (a system or an operator, e.g. 'web-backend')",
                    "text_version": "the version of the consent text the customer agreed to (e.g. 'marketing-2026-03')"}[name]
            raise ValueError(f"a consent {'given' if granted else 'withdrawal'} needs {name}: {need}; got {value!r}")
        if len(value) > _TEXT_LIMIT:
            raise ValueError(f"{name} has {len(value)} characters; at most {_TEXT_LIMIT}")
    return ConsentRecord(customer_id=customer_id, group=group, granted=granted, at=at, how=how.strip(),
                         text_version=None if text_version is None else text_version.strip(), by=by.strip(),
                         recorded_at=recorded_at)


#: what an opt-out row holds: when, and why
OptOut = tuple[datetime, str]


def withdrawal_reason(record: ConsentRecord) -> str:
    """The opt-out reason a withdrawal records."""
    return f"consent withdrawn ({record.how})"


def opt_outs_after(current: dict[str, OptOut], records: list[ConsentRecord]) -> dict[str, OptOut]:
    """One customer's opt-outs (consent group or ``all`` -> when, why) after ``records``, taken in the order of
    their instants: a withdrawal opts the group out (the later opt-out of a group stands); a consent given lifts an
    opt-out of its group made before it, and an ``all`` made before it for this group only (the others stay opted
    out, from the same instant, for the same reason)."""
    state = dict(current)
    for record in sorted(records, key=lambda r: r.at):
        group, at = record.group, record.at
        if not record.granted:
            if group not in state or state[group][0] <= at:
                state[group] = (at, withdrawal_reason(record))
            continue
        if group in state and state[group][0] < at:
            del state[group]
        everything = state.get("all")
        if everything is not None and everything[0] < at:
            del state["all"]
            for other in CONSENT_GROUPS:
                if other != group and (other not in state or state[other][0] < everything[0]):
                    state[other] = everything
    return state
