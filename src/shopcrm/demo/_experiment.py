"""The demo's experiment: campaigns with a holdout, customers' simulated responses with planted effects, the report.

The demo knows the truth the report has to find: each measured campaign has a baseline (the chance that a member
orders within the measurement window anyway) and a planted effect (how many percentage points a received message
adds to it).  :func:`simulate_responses` draws every member's purchase from exactly that model, treatment and
holdout alike, so the holdout lift the report measures should recover the planted effect, and a placebo's lift 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from shopcrm.shop import Shop

__all__ = [
    "DEMO_TRACKING_SECRET",
    "EXPERIMENT_TICKS",
    "PLANTED",
    "PLANTED_EFFECTS",
    "REPORT_AFTER",
    "Planted",
    "SimulatedResponses",
    "simulate_responses",
]


@attrs.frozen(kw_only=True)
class Planted:
    """What the simulation plants in one campaign's members.

    ``baseline``: the chance that a member orders within the measurement window (7 days after exposure) whether or
    not they get the message; ``effect``: the absolute lift a planned message adds to it (0.03 is +3 percentage
    points); ``basket``: the median order amount in KRW; ``link``: the tracked link of its message that members
    click."""

    baseline: float
    effect: float
    basket: float
    link: str


#: the planted truth per measured campaign (the demo's two effective campaigns and its placebo)
PLANTED: Mapping[str, Planted] = {
    # a 20% coupon to the shop's big spenders: they buy often anyway, and the coupon moves 5 in 100 more
    "vip_winter_sale": Planted(baseline=0.12, effect=0.05, basket=120_000, link="https://shop.example.com/vip-sale"),
    # a 15% coupon to lapsed buyers: few come back on their own (2%), the coupon brings back 4 in 100 more
    "lapsed_winback": Planted(baseline=0.02, effect=0.04, basket=60_000, link="https://shop.example.com/welcome-back"),
    # the placebo: a delivery-schedule notice; it is read and clicked, but changes nobody's purchases
    "delivery_notice": Planted(baseline=0.08, effect=0.0, basket=50_000, link="https://shop.example.com/notice/delivery"),
}
#: campaign id -> the planted absolute lift in conversion rate (0.05 = +5 percentage points)
PLANTED_EFFECTS: Mapping[str, float] = {campaign: planted.effect for campaign, planted in PLANTED.items()}

#: the secret the demo signs its tracked links with (a demo's, public: a real shop keeps its own private)
DEMO_TRACKING_SECRET = "shopcrm-demo-secret-not-for-production"
#: the demo's ticks after ``now`` (10:00 and 11:00 in Seoul on the demo day); each is followed by a dispatch
EXPERIMENT_TICKS = (timedelta(hours=1), timedelta(hours=2))
#: the report is read this long after the demo's ``now``: every measurement window (7 days) has closed by then
REPORT_AFTER = timedelta(days=8)
#: a member who buys clicks the message's link first with this chance; one who does not, with the second
CLICK_IF_BUYING, CLICK_IF_NOT = 0.3, 0.005
_WINDOW_DAYS = 7.0
#: the orders' delay after exposure: exponential with this mean (days), folded into the measurement window
_MEAN_DELAY_DAYS = 1.5


@attrs.frozen
class SimulatedResponses:
    """What :func:`simulate_responses` wrote: per campaign the members (planned, held out) and the buyers among them
    (planned, held out), the orders in all (one per buyer), and the clicks :meth:`Shop.record_click` recorded."""

    members: Mapping[str, tuple[int, int]]
    buyers: Mapping[str, tuple[int, int]]
    orders: int
    clicks: int


def _stream(seed: int, campaign_id: str) -> Any:
    """A random generator of its own per campaign: adding a campaign never changes another's draws."""
    import numpy as np

    digest = hashlib.sha256(f"{seed}:{campaign_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def simulate_responses(shop: Shop, *, seed: int = 0, planted: Mapping[str, Planted] = PLANTED) -> SimulatedResponses:
    """Simulate the purchases and clicks of every member of the ``planted`` campaigns in the shop's outbox.

    Every member (planned or held out) orders once within the measurement window with probability ``baseline``, and
    a planned member with ``baseline + effect``; the order is an ``order_completed`` event (``order_id``, ``amount``)
    at a delay after the member's exposure.  Members whose message was sent click its tracked link (through
    :meth:`Shop.record_clicks`, with valid tokens) before ordering with probability :data:`CLICK_IF_BUYING`, and
    without ordering with :data:`CLICK_IF_NOT`.  Deterministic for a seed."""
    import numpy as np
    import pyarrow as pa

    tracking = shop.messaging_policy.tracking
    store = shop.source.campaign_store()
    members: dict[str, tuple[int, int]] = {}
    buyers: dict[str, tuple[int, int]] = {}
    orders: dict[str, list[Any]] = {"customer_id": [], "ts": [], "amount": [], "order_id": []}
    clicks: list[tuple[datetime, str, str]] = []
    for campaign_id, truth in planted.items():
        rows = [r for r in shop.outbox(campaign_id=campaign_id, status=None) if r.status in ("planned", "holdout")]
        # the earliest decision per customer is their exposure (what the report's lift counts)
        first: dict[str, Any] = {}
        for row in sorted(rows, key=lambda r: (str(r.customer_id), r.send_at or r.due_at)):
            first.setdefault(str(row.customer_id), row)
        ordered = [first[c] for c in sorted(first)]
        treated = np.array([r.status == "planned" for r in ordered], dtype=bool)
        members[campaign_id] = (int(treated.sum()), int((~treated).sum()))
        if not ordered:
            continue
        # when each planned message went out (the ledger's last update: the send, or a later delivery report)
        sent = {s.key: s.updated_at for s in store.sends(keys=[r.key for r in ordered if r.status == "planned"],
                                                          states=("sent", "delivered"))}
        rng = _stream(seed, campaign_id)
        n = len(ordered)
        chance = truth.baseline + np.where(treated, truth.effect, 0.0)
        buys = rng.random(n) < chance
        buyers[campaign_id] = (int((buys & treated).sum()), int((buys & ~treated).sum()))
        # the delay: at least 10 minutes, and well inside the window
        delay_days = 10 / 1440 + np.fmod(rng.exponential(_MEAN_DELAY_DAYS, n), _WINDOW_DAYS - 0.1)
        amount = np.round(truth.basket * rng.lognormal(0.0, 0.5, n), -2)
        clicked_u, click_share, idle_click = rng.random(n), rng.uniform(0.2, 0.9, n), rng.exponential(0.5, n)
        for i, row in enumerate(ordered):
            exposure: datetime = row.send_at or row.due_at
            if buys[i]:
                orders["customer_id"].append(row.customer_id)
                orders["ts"].append(exposure + timedelta(days=float(delay_days[i])))
                orders["amount"].append(int(amount[i]))
                orders["order_id"].append(f"D-{campaign_id}-{i:06d}")
            if tracking is None or row.key not in sent:
                continue
            # a click counts only at or after the send: buyers click between the send and their order
            sent_at = max(exposure, sent[row.key])
            ordered_at = exposure + timedelta(days=float(delay_days[i]))
            if buys[i] and clicked_u[i] < CLICK_IF_BUYING and sent_at < ordered_at:
                clicks.append((sent_at + (ordered_at - sent_at) * float(click_share[i]), row.key, truth.link))
            elif not buys[i] and clicked_u[i] < CLICK_IF_NOT:
                clicks.append((sent_at + timedelta(days=min(float(idle_click[i]), 4.0)), row.key, truth.link))
    recorded = 0
    if tracking is not None and clicks:
        batch = [(tracking.link(key, url).rsplit("/", 1)[1], at) for at, key, url in clicks]
        recorded = sum(target is not None for target in shop.record_clicks(batch))
    if orders["customer_id"]:
        events = pa.table({
            "customer_id": pa.array(orders["customer_id"]),
            "event": pa.array(["order_completed"] * len(orders["ts"]), type=pa.string()),
            "ts": pa.array(orders["ts"], type=pa.timestamp("us")),
            "amount": pa.array(orders["amount"], type=pa.int64()),
            "order_id": pa.array(orders["order_id"], type=pa.string()),
        })
        shop.load_events(events)
    return SimulatedResponses(members, buyers, len(orders["ts"]), recorded)
