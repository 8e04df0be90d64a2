"""Attribution, the executable reference: who gets the credit for a purchase, and the campaign ratios.

Pure functions over plain values, written to be read next to the pinned contract (``measurement.md``,
sections 1-3 and 5), not to be fast.  Every SQL compilation of the report must return exactly these answers.

Choices where the contract is silent (also in ``docs/measurement.md``):

- Two conversion events of one customer and one order at the same instant: the larger revenue counts.
- Revenue is the revenue property as a number: ints, floats, decimals and numeric strings count; missing,
  NULL and anything else (text, booleans, objects) are revenue 0, as SQL's ``TRY_CAST`` would give NULL.
- An order id is compared as text (``123`` and ``"123"`` name one order); an empty order id is none.
- A click counts for the customer who received its message; a conversion of another customer is never
  covered by it.
- Sums of revenue and cost are exactly rounded (``math.fsum``), so the order of the inputs never changes them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from shopcrm.measurement._policy import AttributionPolicy
from shopcrm.timeline import to_utc_naive

__all__ = [
    "BREAKDOWNS", "Click", "Conversion", "Credit", "Credits", "Member", "Outcome", "Send", "Summary", "Tally",
    "attribute", "attributed", "conversions", "influenced", "member_outcomes", "summarise",
]

CustomerId = str | int
#: the dimensions a campaign can be broken down by (``channel`` is the carrying channel; ``segment`` the
#: recipient's segment, see :class:`Send`)
BREAKDOWNS = ("variant", "step", "channel", "kind", "segment")


def _instant(value: datetime | str) -> datetime:
    return to_utc_naive(value)


@attrs.frozen(kw_only=True)
class Send:
    """A message that was sent or delivered, as the ledger knows it.

    ``channel`` and ``kind`` are those of the chain step actually sent (the carrying channel: an AlimTalk that
    fell back to LMS is ``channel="sms", kind="lms"``); ``sent_at`` is its ``message_sent`` time (naive UTC);
    ``cost`` what it cost, fallback and charged failed attempts included."""

    message_key: str
    customer_id: CustomerId
    campaign_id: str
    variant: str = ""
    step: str = ""
    channel: str
    kind: str = ""
    sent_at: datetime = attrs.field(converter=_instant)
    cost: float = 0.0
    #: the recipient's segment (the report's ``segment`` breakdown: the first of the given segments the customer
    #: was in at the chosen instant); empty when none
    segment: str = ""


@attrs.frozen(kw_only=True)
class Click:
    """A ``message_clicked`` event recorded through a valid tracked-link token for ``message_key``."""

    message_key: str
    clicked_at: datetime = attrs.field(converter=_instant)


@attrs.frozen(kw_only=True)
class Conversion:
    """One conversion after de-duplication by order.

    ``order_id`` is the order's id as text, or None; ``seq`` tells apart conversions without an order id
    that share customer, time and revenue (0, 1, ...), so that each event stays one conversion."""

    customer_id: CustomerId
    ts: datetime = attrs.field(converter=_instant)
    revenue: float = 0.0
    order_id: str | None = None
    seq: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        """The conversion's identity, for comparing credited rows with another engine's:
        ``(customer_id, order_id)`` for an order, ``(customer_id, ts, revenue, seq)`` without one."""
        if self.order_id is not None:
            return (self.customer_id, self.order_id)
        return (self.customer_id, self.ts, self.revenue, self.seq)


@attrs.frozen
class Credit:
    """A conversion credited to a message: under the attributed model ``clicked_at`` is the winning click's
    time; under the influenced model it is None (the receipt covered it)."""

    conversion: Conversion
    send: Send
    clicked_at: datetime | None = None


@attrs.frozen
class Tally:
    """Unique conversions, their revenue and the distinct customers who made them, in one cell."""

    conversions: int
    revenue: float
    customers: int


@attrs.frozen
class Credits:
    """What :func:`attribute` found: the inputs that count and both models' credits.

    ``attributed`` holds at most one credit per conversion.  ``receipts`` holds every (conversion, send) pair
    a receipt window covers, which double counts across messages on purpose: aggregate it with
    :func:`influenced` (unique conversions per campaign or per cell), never by summing rows."""

    sends: tuple[Send, ...]
    clicks: tuple[Click, ...]
    conversions: tuple[Conversion, ...]
    attributed: tuple[Credit, ...]
    receipts: tuple[Credit, ...]

    def attributed_rows(self) -> list[tuple[tuple[Any, ...], str]]:
        """``(conversion key, message key)`` per attributed conversion, sorted: the rows an engine's
        attribution must equal."""
        return sorted(((c.conversion.key, c.send.message_key) for c in self.attributed), key=repr)

    def receipt_rows(self) -> list[tuple[tuple[Any, ...], str]]:
        """``(conversion key, message key)`` per send whose receipt window covered a conversion, sorted."""
        return sorted(((c.conversion.key, c.send.message_key) for c in self.receipts), key=repr)


def _revenue(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return 0.0
    else:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _order(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value)
    return text or None


def _properties(row: Mapping[str, Any]) -> Mapping[str, Any]:
    props = row.get("properties")
    if isinstance(props, str):
        props = json.loads(props) if props else None
    return props if isinstance(props, Mapping) else {}


def conversions(events: Iterable[Mapping[str, Any]], policy: AttributionPolicy | None = None) -> list[Conversion]:
    """The conversions among event rows (``customer_id``, ``event``, ``ts``, ``properties`` as a mapping or
    JSON text), one per order: of one customer's events with one order id the earliest counts, with its time
    and revenue (at one instant, the larger revenue); events without an order id are one conversion each.
    Sorted by customer, time, revenue."""
    policy = policy or AttributionPolicy()
    by_order: dict[tuple[str, CustomerId, str], Conversion] = {}
    loose: dict[tuple[str, CustomerId, datetime, float], int] = defaultdict(int)
    for row in events:
        if row.get("event") != policy.conversion_event or row.get("customer_id") is None or row.get("ts") is None:
            continue
        props = _properties(row)
        customer = row["customer_id"]
        ts = to_utc_naive(row["ts"])
        revenue = _revenue(props.get(policy.revenue_property))
        order = _order(props.get(policy.order_property))
        if order is None:
            loose[(type(customer).__name__, customer, ts, revenue)] += 1
            continue
        key = (type(customer).__name__, customer, order)
        seen = by_order.get(key)
        if seen is None or (ts, -revenue) < (seen.ts, -seen.revenue):
            by_order[key] = Conversion(customer_id=customer, ts=ts, revenue=revenue, order_id=order)
    out = list(by_order.values())
    for (_, customer, ts, revenue), count in loose.items():
        out += [Conversion(customer_id=customer, ts=ts, revenue=revenue, seq=n) for n in range(count)]
    return sorted(out, key=_conversion_order)


def _conversion_order(c: Conversion) -> tuple[Any, ...]:
    return (type(c.customer_id).__name__, c.customer_id, c.ts, c.revenue, c.order_id or "", c.seq)


def _customer(customer: CustomerId) -> tuple[str, CustomerId]:
    return (type(customer).__name__, customer)


def attribute(
    sends: Iterable[Send],
    clicks: Iterable[Click],
    conversion_events: Iterable[Mapping[str, Any]] | Iterable[Conversion],
    policy: AttributionPolicy | None = None,
    *,
    rivals: Iterable[Send] = (),
) -> Credits:
    """Credit each conversion under both models of the contract (section 3).

    - **Attributed** (last click): among the clicks covering a conversion (click time ``s <= t < s + the click
      window of the clicked message's carrying channel``, of a message sent to the converting customer) the
      latest click wins; ties go to the later send time, then the smaller message key.  Clicks before their
      message's send time and clicks on messages that are not sends are ignored.
    - **Influenced** (receipt): every send to the converting customer with ``s <= t < s + receipt window``
      (``s`` the send time) covers it; :func:`influenced` counts each conversion once per campaign or cell.

    ``rivals`` are sends left out of the result (a report's other campaigns, its sends outside the range) whose
    clicks still compete for the last click: a conversion whose winning click is on a rival goes to none of
    ``sends``, so that ``sends`` get exactly the credit they have when every send is attributed at once.  Rivals
    get no credit, no receipt and no clicks in the result.

    ``conversion_events`` are event rows (see :func:`conversions`) or already built :class:`Conversion`
    values.  Message keys must be unique among ``sends`` and ``rivals`` together."""
    policy = policy or AttributionPolicy()
    send_list = sorted(sends, key=lambda s: s.message_key)
    by_key: dict[str, Send] = {}
    for send in [*send_list, *rivals]:
        if send.message_key in by_key:
            raise ValueError(f"message key {send.message_key!r} is given for two sends; each message is sent once, "
                             f"so give each send once")
        by_key[send.message_key] = send
    reported = {send.message_key for send in send_list}
    rows: list[Any] = list(conversion_events)
    built = [c for c in rows if isinstance(c, Conversion)]
    if built and len(built) != len(rows):
        raise ValueError("give attribute() either event rows or Conversion values, not a mix of both")
    convs = sorted(built, key=_conversion_order) if built else conversions(rows, policy)

    valid: list[Click] = []
    clicks_of: dict[tuple[str, CustomerId], list[tuple[Click, Send]]] = defaultdict(list)
    for click in sorted(clicks, key=lambda k: (k.message_key, k.clicked_at)):
        clicked = by_key.get(click.message_key)
        if clicked is None or click.clicked_at < clicked.sent_at:
            continue
        if click.message_key in reported:
            valid.append(click)
        clicks_of[_customer(clicked.customer_id)].append((click, clicked))
    sends_of: dict[tuple[str, CustomerId], list[Send]] = defaultdict(list)
    for send in send_list:
        sends_of[_customer(send.customer_id)].append(send)

    attributed: list[Credit] = []
    receipts: list[Credit] = []
    for conv in convs:
        who = _customer(conv.customer_id)
        covering = [(k, s) for k, s in clicks_of.get(who, ())
                    if k.clicked_at <= conv.ts < k.clicked_at + policy.click_window(s.channel)]
        if covering:
            # the latest click; then the later send; then the smaller key (the list is in key order and
            # Python's sort is stable, also in reverse)
            covering.sort(key=lambda ks: ks[1].message_key)
            covering.sort(key=lambda ks: (ks[0].clicked_at, ks[1].sent_at), reverse=True)
            click, send = covering[0]
            if send.message_key in reported:  # else a rival's click won: no reported send gets the conversion
                attributed.append(Credit(conv, send, click.clicked_at))
        for send in sends_of.get(who, ()):
            if send.sent_at <= conv.ts < send.sent_at + policy.receipt_window(send.channel):
                receipts.append(Credit(conv, send))
    return Credits(tuple(send_list), tuple(valid), tuple(convs), tuple(attributed), tuple(receipts))


def _by(by: Sequence[str]) -> tuple[str, ...]:
    if isinstance(by, str):
        by = (by,)
    dims = tuple(by)
    bad = [d for d in dims if d not in BREAKDOWNS]
    if bad:
        raise ValueError(f"cannot break a campaign down by {', '.join(map(repr, bad))}; "
                         f"choose among {', '.join(map(repr, BREAKDOWNS))}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"breakdown {dims!r} names a dimension twice")
    return dims


def _cell(send: Send, dims: tuple[str, ...]) -> tuple[str, ...]:
    return (send.campaign_id, *(str(getattr(send, d)) for d in dims))


def _tally(credits: Iterable[Credit]) -> Tally:
    unique = {c.conversion for c in credits}
    return Tally(len(unique), math.fsum(c.revenue for c in sorted(unique, key=_conversion_order)),
                 len({_customer(c.customer_id) for c in unique}))


def influenced(credits: Credits, by: Sequence[str] = ()) -> dict[tuple[str, ...], Tally]:
    """Influenced conversions per campaign (``by=()``) or per cell of a breakdown within a campaign
    (``by=("variant",)``, ``("step", "channel")``, ...), keyed ``(campaign_id, *values)``: each conversion
    counts at most once in a cell however many of the cell's sends covered it."""
    dims = _by(by)
    cells: dict[tuple[str, ...], list[Credit]] = defaultdict(list)
    for credit in credits.receipts:
        cells[_cell(credit.send, dims)].append(credit)
    return {cell: _tally(rows) for cell, rows in sorted(cells.items())}


def attributed(credits: Credits, by: Sequence[str] = ()) -> dict[tuple[str, ...], Tally]:
    """Attributed conversions per campaign or per cell, keyed like :func:`influenced` (each conversion is in
    one cell at most, so these add up across cells and campaigns)."""
    dims = _by(by)
    cells: dict[tuple[str, ...], list[Credit]] = defaultdict(list)
    for credit in credits.attributed:
        cells[_cell(credit.send, dims)].append(credit)
    return {cell: _tally(rows) for cell, rows in sorted(cells.items())}


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


@attrs.frozen(kw_only=True)
class Summary:
    """One campaign's (or one cell's) figures, as the contract's section 5 defines them.

    Ratios with a zero denominator are None (shown as "-"), never 0 or infinity."""

    campaign_id: str
    #: the breakdown's values, e.g. ``(("variant", "A"),)``; empty for a whole campaign
    cell: tuple[tuple[str, str], ...] = ()
    sends: int
    #: customers with at least one send
    recipients: int
    #: sent messages with at least one click at or after their send time
    clicked: int
    attributed_conversions: int
    attributed_revenue: float
    #: recipients with at least one conversion credited under the attributed model
    attributed_customers: int
    influenced_conversions: int
    influenced_revenue: float
    influenced_customers: int
    cost: float

    @property
    def ctr(self) -> float | None:
        """Unique clicked messages / sends."""
        return _ratio(self.clicked, self.sends)

    @property
    def roas(self) -> float | None:
        """Attributed revenue / cost (4.83 means 483%)."""
        return _ratio(self.attributed_revenue, self.cost)

    @property
    def attributed_conversion_rate(self) -> float | None:
        """Recipients with an attributed conversion / recipients."""
        return _ratio(self.attributed_customers, self.recipients)

    @property
    def influenced_conversion_rate(self) -> float | None:
        """Recipients with an influenced conversion / recipients."""
        return _ratio(self.influenced_customers, self.recipients)

    @property
    def messages_per_purchase(self) -> float | None:
        """Sends / attributed conversions."""
        return _ratio(self.sends, self.attributed_conversions)

    @property
    def cost_per_conversion(self) -> float | None:
        """Cost / attributed conversions."""
        return _ratio(self.cost, self.attributed_conversions)

    def to_dict(self) -> dict[str, Any]:
        """The figures and ratios as one flat row (the breakdown's values as columns)."""
        row: dict[str, Any] = {"campaign_id": self.campaign_id, **dict(self.cell)}
        row.update({f.name: getattr(self, f.name) for f in attrs.fields(Summary) if f.name not in ("campaign_id", "cell")})
        for name in ("ctr", "roas", "attributed_conversion_rate", "influenced_conversion_rate",
                     "messages_per_purchase", "cost_per_conversion"):
            row[name] = getattr(self, name)
        return row


def summarise(credits: Credits, by: Sequence[str] = ()) -> list[Summary]:
    """The section-5 figures per campaign (``by=()``) or per cell of a breakdown within each campaign, sorted
    by campaign and cell.  Only cells with at least one send appear.  Influenced figures count each
    conversion once per row; rows of different campaigns may share a conversion, so influenced totals
    across campaigns may exceed the shop's revenue."""
    dims = _by(by)
    sends: dict[tuple[str, ...], list[Send]] = defaultdict(list)
    for send in credits.sends:
        sends[_cell(send, dims)].append(send)
    clicked = {k.message_key for k in credits.clicks}
    won = attributed(credits, dims)
    seen = influenced(credits, dims)
    none = Tally(0, 0.0, 0)
    out = []
    for cell, rows in sorted(sends.items()):
        a, i = won.get(cell, none), seen.get(cell, none)
        out.append(Summary(
            campaign_id=cell[0], cell=tuple(zip(dims, cell[1:], strict=True)), sends=len(rows),
            recipients=len({_customer(s.customer_id) for s in rows}),
            clicked=sum(1 for s in rows if s.message_key in clicked),
            attributed_conversions=a.conversions, attributed_revenue=a.revenue, attributed_customers=a.customers,
            influenced_conversions=i.conversions, influenced_revenue=i.revenue, influenced_customers=i.customers,
            cost=math.fsum(sorted(s.cost for s in rows)),
        ))
    return out


@attrs.frozen(kw_only=True)
class Member:
    """One audience member's assignment in one campaign occurrence (intention to treat, contract sections 6-7):
    ``status`` is ``planned`` (treatment) or ``holdout``; ``exposed_at`` the planned send time (for a holdout,
    the time it would have been planned)."""

    customer_id: CustomerId
    campaign_id: str
    variant: str = ""
    status: str
    exposed_at: datetime = attrs.field(converter=_instant)


@attrs.frozen
class Outcome:
    """The members of one campaign, variant and group: how many, how many converted at least once within the
    measurement window after exposure, and the sum and sum of squares of their revenue there."""

    n: int
    converted: int
    revenue: float
    revenue_squares: float


def member_outcomes(
    members: Iterable[Member], conversion_events: Iterable[Conversion], policy: AttributionPolicy | None = None,
    *, now: datetime | None = None,
) -> dict[tuple[str, str, str], Outcome]:
    """Outcomes per ``(campaign_id, variant, status)``: each customer counts once per campaign, at their
    earliest exposure (at one instant a planned assignment before a held-out one, then the smaller variant);
    their conversions at ``t`` with ``exposure <= t < exposure + measurement window`` (and ``t < now``) count."""
    policy = policy or AttributionPolicy()
    first: dict[tuple[str, tuple[str, CustomerId]], Member] = {}
    for m in members:
        slot = (m.campaign_id, _customer(m.customer_id))
        seen = first.get(slot)
        if seen is None or _exposure_order(m) < _exposure_order(seen):
            first[slot] = m
    of: dict[tuple[str, CustomerId], list[Conversion]] = defaultdict(list)
    for c in conversion_events:
        of[_customer(c.customer_id)].append(c)
    cells: dict[tuple[str, str, str], list[tuple[bool, float]]] = defaultdict(list)
    for (campaign, who), m in first.items():
        inside = [c for c in of.get(who, ()) if m.exposed_at <= c.ts < m.exposed_at + policy.measurement_window
                  and (now is None or c.ts < now)]
        revenue = math.fsum(sorted(c.revenue for c in inside))
        cells[(campaign, m.variant, m.status)].append((bool(inside), revenue))
    return {cell: Outcome(len(rows), sum(1 for hit, _ in rows if hit), math.fsum(sorted(r for _, r in rows)),
                          math.fsum(sorted(r * r for _, r in rows)))
            for cell, rows in sorted(cells.items())}


def _exposure_order(m: Member) -> tuple[Any, ...]:
    return (m.exposed_at, 0 if m.status == "planned" else 1, m.variant)
