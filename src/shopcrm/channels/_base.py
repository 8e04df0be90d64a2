"""What a channel is: a provider that carries some kinds of messages and answers, per message, what happened.

A channel is small on purpose (the shape of an httpx transport): it says what it
can carry, checks a message before it is sent, and sends a batch asynchronously,
returning one result per message:

- :class:`Accepted`: the provider took it (its message id, and the charge it reported, if it reports one);
- :class:`Rejected`: it will never be delivered on this channel (invalid number,
  template mismatch, opted out); the dispatcher moves to the next channel of the chain;
- :class:`Transient`: **not taken**, safe to send again later (connection refused, 429/503 answered
  before processing, a rate limit), with the provider's ``Retry-After`` when it gave one;
- :class:`Ambiguous`: the request was written and its answer lost (a read timeout, a reset after the
  request went out, a proxy's 5xx, a batch partly accepted): the provider **may have taken** it.  For a
  channel that does not deduplicate, the dispatcher never resends such a message: it asks
  :meth:`Channel.reconcile`, and only a message the provider confirms it did not take goes out again.

A channel that can prepare a batch at the provider before sending anything (Solapi's group API) does so
in :meth:`Channel.begin`; the reference it returns is recorded in the send ledger *before* :meth:`send`
is called, and comes back on every message (``Message.batch_ref``), in ``send`` and in ``reconcile``.

Everything else (the ledger, retries, backoff, fallbacks, rate limits, exactly-once)
is the dispatcher's job, so a plugin author writes only the provider's request and
the mapping of its answers.  Plugins register under the entry-point group
``shopcrm.channels``; :mod:`shopcrm.testing` checks one behaves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import attrs

__all__ = ["KINDS", "Accepted", "Ambiguous", "Channel", "DeliveryReport", "Message", "Rejected", "SendResult", "Transient"]

#: the message kinds shopcrm renders (``friendtalk`` for providers that still accept the legacy type)
KINDS = frozenset({"sms", "lms", "mms", "alimtalk", "brand_message", "friendtalk", "email", "push", "webhook"})


@attrs.frozen(kw_only=True)
class Message:
    """One rendered message for one channel, as the dispatcher hands it over.

    ``key`` is the idempotency key of the planned message: the same key is never delivered twice, so a
    provider that accepts an idempotency or correlation field should be given it.  ``attempt`` counts
    from 1.  ``kind`` is the concrete product (``sms``, ``lms``, ``alimtalk``, ...); ``to`` the contact
    (phone number, e-mail address, push token, or ``webhook``).
    """

    key: str
    attempt: int = 1
    customer_id: Any
    campaign_id: str = ""
    purpose: str = "informational"
    channel: str
    kind: str
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    template_code: str | None = None
    variables: tuple[tuple[str, str], ...] = ()
    buttons: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    image_url: str | None = None
    #: the provider-side reference of the batch this message went out in (what :meth:`Channel.begin` returned
    #: and the ledger recorded), or "" when the channel prepares nothing
    batch_ref: str = ""
    #: for a Brand Message: whether the recipient is the Kakao channel's friend (targeting ``I``) or a
    #: marketing-consent user who is not (``M``), as the planner saw it; None when unknown or not Kakao
    friend: bool | None = None
    #: a Brand Message's layout when it is not plain text (``list`` or ``carousel``), its list header and its
    #: products: (title, description, image URL, link, the card's button label)
    layout: str | None = None
    header: str | None = None
    items: tuple[tuple[str, str, str, str, str], ...] = ()

    @classmethod
    def from_rendered(cls, item: Mapping[str, Any], **fields: Any) -> Message:
        """A message from one entry of an outbox row's chain (the rendered message and its contact)."""
        return cls(
            channel=item["channel"], kind=item["kind"], to=item.get("contact") or "", text=item.get("text") or "",
            subject=item.get("subject"), html=item.get("html"), template_code=item.get("template_code"),
            variables=tuple(tuple(v) for v in item.get("variables") or ()),
            buttons=tuple(tuple(b) for b in item.get("buttons") or ()),
            headers=tuple(tuple(h) for h in item.get("headers") or ()),
            image_url=item.get("image_url"),
            friend=None if item.get("friend") is None else bool(item["friend"]),
            layout=item.get("layout"), header=item.get("header"),
            items=tuple((str(a), str(b), str(c), str(d), str(e)) for a, b, c, d, e in item.get("items") or ()), **fields,
        )

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Accepted:
    """The provider took the message: its id for it, and the charge it reported for it (``cost``; None when the
    provider reports none: the messaging policy's price table prices it, see docs/channels.md "Cost")."""

    provider_id: str = ""
    cost: float | None = None


@attrs.frozen
class Rejected:
    """The message will not be delivered on this channel; ``code`` is the provider's, ``reason`` for people.
    ``opted_out`` says the recipient refused messages (080 opt-out, blocked): it suppresses advertising.
    ``charge``: what the provider reported charging for the failed attempt (a Kakao attempt some providers bill);
    it is added to the message's cost.  None (the usual case): the attempt cost nothing."""

    reason: str
    code: str = ""
    opted_out: bool = False
    charge: float | None = None


@attrs.frozen
class Transient:
    """Not taken: safe to try again later (connection refused, 429 or 503 answered before processing, a rate
    limit); ``retry_after`` seconds when the provider said.  From :meth:`Channel.reconcile`: the provider
    confirms it did not take the message (and never will), so it may be sent again."""

    reason: str
    code: str = ""
    retry_after: float | None = None


@attrs.frozen
class Ambiguous:
    """The provider may have taken the message: the request was written and its answer lost (read timeout,
    connection reset after the request went out, a proxy's 5xx, an unreadable answer).  Resent only by a
    channel that ``deduplicates``; otherwise the dispatcher asks :meth:`Channel.reconcile`.  From
    ``reconcile`` itself: the provider could not be asked now (ask again later)."""

    reason: str
    code: str = ""


SendResult = Accepted | Rejected | Transient | Ambiguous


@attrs.frozen(kw_only=True)
class DeliveryReport:
    """What a provider reported after it took a message: whether it reached the phone (or inbox), with the
    provider's code and reason when it did not.  ``key`` is the message's idempotency key."""

    key: str
    delivered: bool
    code: str = ""
    reason: str = ""
    provider_id: str = ""
    at: datetime | None = None
    #: the provider says the recipient opted out or blocks the sender (a carrier's spam block, an 080 opt-out):
    #: advertising on the channel's consent group stops at once (K3), as when a send is refused so
    opted_out: bool = False


class Channel(ABC):
    """A provider of one or more message kinds.

    Subclasses set ``name`` and ``kinds`` and implement :meth:`send`.  The class attributes tell the
    dispatcher how to drive it: ``batch_size`` messages per :meth:`send` call, at most
    ``rate_per_second`` messages per second (None: unlimited), and ``deduplicates`` when the provider
    itself drops a repeated idempotency key, which makes resending a message whose outcome is unknown
    (the process died mid-request) safe.  Construct from configuration with :meth:`from_config`;
    credentials come from the configuration or the environment, never from code.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[frozenset[str]] = frozenset()
    batch_size: ClassVar[int] = 100
    rate_per_second: float | None = None
    deduplicates: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Channel:
        """The channel from a mapping of settings (the keyword arguments of its constructor)."""
        return cls(**dict(config))

    def validate(self, message: Message) -> list[str]:
        """What is wrong with ``message`` for this channel (empty: nothing); checked before sending, and a
        problem rejects the message without calling the provider."""
        problems = []
        if message.kind not in self.kinds:
            problems.append(f"{self.name or type(self).__name__} carries {sorted(self.kinds)}, not {message.kind!r}")
        if not message.to:
            problems.append("the message has no recipient contact")
        return problems

    async def begin(self, batch: Sequence[Message]) -> str:
        """Prepare ``batch`` at the provider without sending anything, and return the provider's reference for
        it (Solapi: a message group's id).  The dispatcher records the reference in its ledger before it calls
        :meth:`send` with the same messages (each carrying it as ``batch_ref``), so that after a crash
        :meth:`reconcile` knows where to look.  An exception here means nothing was sent (the batch is retried
        later).  The default prepares nothing and returns ""."""
        return ""

    @abstractmethod
    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send ``batch`` (at most ``batch_size`` messages); one result per message, in order.

        Raise nothing for a message's own failure: return its result.  Say :class:`Transient` only when the
        provider certainly did not take the message, :class:`Ambiguous` when it may have.  An exception means
        the whole batch's outcome is unknown (the dispatcher treats each message as :class:`Ambiguous`).
        """

    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        """What became of messages whose outcome is unknown (an ambiguous answer, or a crash mid-send), each
        carrying the ``batch_ref`` the ledger recorded: per message :class:`Accepted` (taken), :class:`Rejected`
        (refused), :class:`Transient` (the provider confirms it did not take it and never will: send again),
        :class:`Ambiguous` (the provider could not be asked now: ask again later), or None where the provider
        cannot tell at all (the message ends ``unknown`` and is never resent).  The default cannot tell."""
        return [None] * len(messages)

    async def aclose(self) -> None:
        """Release connections."""
        return None
