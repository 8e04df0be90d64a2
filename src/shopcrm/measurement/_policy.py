"""The attribution policy: which event is a conversion, and how long each channel's touches count.

The defaults are the pinned contract's (``measurement.md``, section 2); each window's source is given next to
it below and in ``docs/measurement.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs

__all__ = ["DEFAULT_CLICK_WINDOWS", "DEFAULT_RECEIPT_WINDOWS", "OTHER_CHANNELS", "AttributionPolicy"]

#: the key of the window that applies to channels the tables do not name (a plugin channel)
OTHER_CHANNELS = "*"
#: the SMS channel carries three kinds; they share its windows
_SMS_KINDS = frozenset({"sms", "lms", "mms"})

#: click windows by carrying channel: a click at ``s`` covers a conversion at ``t`` when ``s <= t < s + window``
DEFAULT_CLICK_WINDOWS: dict[str, timedelta] = {
    # Klaviyo: e-mail click attribution window 5 days (the default for accounts created since 2024-10-09)
    "email": timedelta(days=5),
    # Klaviyo: SMS click window 5 days; LMS and MMS are SMS kinds and share it
    "sms": timedelta(days=5),
    # Kakao messages carry links like texts: treated like Klaviyo's SMS click window
    "alimtalk": timedelta(days=5),
    "brand_message": timedelta(days=5),
    # Braze: 3-day default conversion deadline
    "push": timedelta(days=3),
    # a webhook's receiver may render links (an app inbox): the common 5 days
    "webhook": timedelta(days=5),
    # a channel not named above (a plugin): the common 5 days (our choice, not in the contract's table)
    OTHER_CHANNELS: timedelta(days=5),
}
#: receipt windows by carrying channel: a send at ``s`` covers a conversion at ``t`` when ``s <= t < s + window``
DEFAULT_RECEIPT_WINDOWS: dict[str, timedelta] = {
    # Klaviyo counts an e-mail open for a day; the contract takes 1 day for a received e-mail
    "email": timedelta(days=1),
    # Klaviyo: SMS delivery window 12 hours
    "sms": timedelta(hours=12),
    # Kakao messages: 1 day, by analogy with push
    "alimtalk": timedelta(days=1),
    "brand_message": timedelta(days=1),
    # Klaviyo: push open window 24 hours
    "push": timedelta(days=1),
    # a webhook is not seen by the customer: no receipt credit
    "webhook": timedelta(0),
    # a channel not named above: no receipt credit, like a webhook (our choice, not in the contract's table)
    OTHER_CHANNELS: timedelta(0),
}


def _windows(value: Mapping[str, Any]) -> dict[str, timedelta]:
    out: dict[str, timedelta] = {}
    for channel, window in value.items():
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"a window is keyed by a channel name such as 'email' or 'sms', not {channel!r}")
        if isinstance(window, int | float) and not isinstance(window, bool):
            window = timedelta(seconds=window)
        if not isinstance(window, timedelta):
            raise ValueError(f"the {channel!r} window must be a timedelta (or seconds), not {window!r}")
        if window < timedelta(0):
            raise ValueError(f"the {channel!r} window must be zero or longer, not {window}")
        out[channel] = window
    return out


@attrs.frozen(kw_only=True)
class AttributionPolicy:
    """What a conversion is and how long a click or a received message can take credit for it.

    Windows are keyed by the *carrying* channel (the chain step actually sent: an AlimTalk that fell back to
    LMS is judged by ``sms``'s windows); SMS, LMS and MMS share ``sms``.  A channel neither table names uses
    the ``"*"`` entry (defaults: click 5 days, receipt 0).  Assign one to ``shop.attribution_policy`` to
    save it with the shop.
    """

    #: the event that is a conversion (a purchase)
    conversion_event: str = "order_completed"
    #: the property holding a conversion's revenue; missing or NULL is revenue 0
    revenue_property: str = "amount"
    #: the property naming an order: one customer's conversion events with one order id are one conversion
    order_property: str = "order_id"
    #: click windows by carrying channel (defaults: Klaviyo's 5-day e-mail and SMS click windows, Kakao like
    #: SMS, Braze's 3-day conversion deadline for push)
    click_windows: Mapping[str, timedelta] = attrs.field(factory=lambda: dict(DEFAULT_CLICK_WINDOWS),
                                                         converter=_windows)
    #: receipt windows by carrying channel (defaults: e-mail 1 day, Klaviyo's 12-hour SMS delivery window,
    #: Kakao 1 day like push, Klaviyo's 24-hour push window, webhook 0)
    receipt_windows: Mapping[str, timedelta] = attrs.field(factory=lambda: dict(DEFAULT_RECEIPT_WINDOWS),
                                                           converter=_windows)
    #: how long after exposure a holdout or A/B member's conversion counts (NHN Godomall's 7 days)
    measurement_window: timedelta = timedelta(days=7)

    def __attrs_post_init__(self) -> None:
        for name in ("conversion_event", "revenue_property", "order_property"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"AttributionPolicy.{name} must be a non-empty event or property name, not {value!r}")
        if not isinstance(self.measurement_window, timedelta) or self.measurement_window <= timedelta(0):
            raise ValueError(f"AttributionPolicy.measurement_window must be a positive timedelta such as "
                             f"timedelta(days=7), not {self.measurement_window!r}")

    def click_window(self, channel: str) -> timedelta:
        """The click window of a message carried by ``channel`` (``lms``/``mms`` are ``sms``)."""
        return self._lookup(self.click_windows, channel, "click")

    def receipt_window(self, channel: str) -> timedelta:
        """The receipt window of a message carried by ``channel`` (``lms``/``mms`` are ``sms``)."""
        return self._lookup(self.receipt_windows, channel, "receipt")

    @staticmethod
    def _lookup(table: Mapping[str, timedelta], channel: str, what: str) -> timedelta:
        if channel in table:
            return table[channel]
        if channel in _SMS_KINDS and "sms" in table:
            return table["sms"]
        if OTHER_CHANNELS in table:
            return table[OTHER_CHANNELS]
        raise ValueError(f"the attribution policy has no {what} window for channel {channel!r} and no '*' entry "
                         f"for other channels; it has {', '.join(sorted(table))}")

    def to_dict(self) -> dict[str, object]:
        """The policy as JSON-ready values (durations in seconds), for the shop's settings table."""
        return {
            "conversion_event": self.conversion_event, "revenue_property": self.revenue_property,
            "order_property": self.order_property,
            "click_windows": {k: v.total_seconds() for k, v in sorted(self.click_windows.items())},
            "receipt_windows": {k: v.total_seconds() for k, v in sorted(self.receipt_windows.items())},
            "measurement_window": self.measurement_window.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AttributionPolicy:
        """The policy :meth:`to_dict` wrote; fields it lacks keep their defaults (a window table given
        replaces the default table whole)."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"an attribution policy has no field {', '.join(map(repr, unknown))}; "
                             f"its fields are {', '.join(sorted(known))}")
        values: dict[str, Any] = dict(data)
        window = values.get("measurement_window")
        if isinstance(window, int | float) and not isinstance(window, bool):
            values["measurement_window"] = timedelta(seconds=window)
        return cls(**values)
