"""One customer as a person: attributes, lifecycle, timeline and what sits in the cart and the wish list."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from shopcrm.lifecycle import LifecyclePolicy, LifecycleRow

__all__ = ["CartItem", "CustomerProfile", "current_cart", "current_wishlist"]


def esc(value: object) -> str:
    return html.escape(str(value))


@attrs.frozen
class CartItem:
    """A product added to the cart and not yet ordered or removed."""

    product_id: Any
    added_at: datetime
    details: Mapping[str, Any]


def current_cart(events: Sequence[Mapping[str, Any]], policy: LifecyclePolicy, removed_event: str = "cart_removed") -> list[CartItem]:
    """The cart from a customer's events (oldest first): an order of a product, or an order
    without a product id, empties what was added before it."""
    items: dict[Any, CartItem] = {}
    for event in sorted(events, key=lambda e: e["ts"]):
        name, product = event.get("event"), event.get("product_id")
        if name == policy.cart_event and product is not None:
            details = {k: v for k, v in event.items() if v is not None and k not in ("customer_id", "event", "ts")}
            items[product] = CartItem(product, event["ts"], details)
        elif name == removed_event and product is not None:
            items.pop(product, None)
        elif name == policy.order_event:
            if product is None:
                items.clear()
            else:
                items.pop(product, None)
    return sorted(items.values(), key=lambda item: item.added_at, reverse=True)


def current_wishlist(
    events: Sequence[Mapping[str, Any]], *, added_event: str = "wishlist_added", removed_event: str = "wishlist_removed",
    order_event: str = "order_completed",
) -> list[CartItem]:
    """The wishlist from a customer's events, newest first: a product stays from its latest ``wishlist_added``
    unless a ``wishlist_removed`` or an order *of that product* comes strictly after it (bought, it is no longer
    wished for).  An order without a product id leaves the wishlist as it is (the cart, by contrast, empties), and an
    event at the very instant of the add does not remove it: the stays of the wishlist situations
    (:mod:`shopcrm.products`, docs/catalog.md) follow the same rule."""
    added: dict[Any, Mapping[str, Any]] = {}
    ended: dict[Any, Any] = {}
    for event in events:
        name, product = event.get("event"), event.get("product_id")
        if product is None:
            continue
        if name == added_event and (product not in added or event["ts"] >= added[product]["ts"]):
            added[product] = event
        elif name in (removed_event, order_event) and (product not in ended or event["ts"] > ended[product]):
            ended[product] = event["ts"]
    items = [
        CartItem(product, event["ts"],
                 {k: v for k, v in event.items() if v is not None and k not in ("customer_id", "event", "ts")})
        for product, event in added.items() if product not in ended or ended[product] <= event["ts"]
    ]
    return sorted(items, key=lambda item: item.added_at, reverse=True)


@attrs.frozen
class CustomerProfile:
    """What the shop knows about one customer as of ``now``; text in a terminal, HTML in a notebook.

    Instants are held in UTC; what people read shows them in ``timezone`` (the shop's
    ``MessagingPolicy.timezone``, ``Asia/Seoul`` by default) to the second, with labels in the locale of
    :func:`shopcrm.labels.set_locale`.
    """

    customer_id: Any
    now: datetime
    attributes: Mapping[str, Any]
    lifecycle: LifecycleRow
    timeline: tuple[Mapping[str, Any], ...]  # newest first
    cart: tuple[CartItem, ...]
    timezone: str = "Asia/Seoul"
    #: the wish list (newest first), as :func:`current_wishlist` reads it
    wishlist: tuple[CartItem, ...] = ()

    def local_time(self, when: Any) -> str:
        """An instant (naive UTC) as people read it: ``2026-03-01 21:00:05 KST``; other values as they are."""
        if not isinstance(when, datetime):
            return "" if when is None else str(when)
        from zoneinfo import ZoneInfo

        moment = (when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(ZoneInfo(self.timezone))
        return f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()}"

    def _badges(self) -> list[str]:
        from shopcrm.labels import label

        lc = self.lifecycle
        out = [label("stage", lc.stage), *(label("moment", m) for m in lc.moments)]
        if lc.rfm_segment:
            out.append(label("rfm", lc.rfm_segment))
        if lc.cycle_status:
            out.append(label("cycle", lc.cycle_status))
        return out

    @staticmethod
    def _details(event: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("customer_id", "event", "ts") and v is not None)

    def __str__(self) -> str:
        from shopcrm.labels import label

        lc = self.lifecycle
        show = self.local_time
        lines = [f"customer {self.customer_id} as of {show(self.now)}"]
        lines += [f"  {k}: {show(v)}" for k, v in self.attributes.items() if k != "customer_id"]
        moments = [label("moment", m) for m in lc.moments]
        lines.append(f"  stage: {label('stage', lc.stage)}" + (f" ({', '.join(moments)})" if moments else ""))
        lines.append(
            f"  orders: {lc.orders}, last seen: {show(lc.last_seen) or 'never'}, RFM: "
            + (f"R{lc.r_score} F{lc.f_score} M{lc.m_score} {label('rfm', lc.rfm_segment or '')}" if lc.r_score else "none in the lookback")
        )
        if lc.cycle_status:
            gap = f" (expected gap {lc.expected_gap_days:.1f} days)" if lc.expected_gap_days is not None else ""
            lines.append(f"  purchase cycle: {label('cycle', lc.cycle_status)}{gap}")
        if self.cart:
            lines.append("  cart:")
            lines += [f"    {item.product_id} (added {show(item.added_at)})" for item in self.cart]
        if self.wishlist:
            lines.append("  wish list:")
            lines += [f"    {item.product_id} (added {show(item.added_at)})" for item in self.wishlist]
        lines.append(f"  timeline ({len(self.timeline)} latest events):")
        for event in self.timeline:
            extra = self._details(event)
            lines.append(f"    {show(event['ts'])}  {event['event']}" + (f"  {extra}" if extra else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        show = self.local_time
        attrs_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(show(v))}</td></tr>" for k, v in self.attributes.items())
        badges = "".join(
            f"<span style='background:#eef;border-radius:4px;padding:1px 6px;margin-right:4px'>{esc(b)}</span>"
            for b in self._badges()
        )
        cart = "".join(f"<li>{esc(i.product_id)} <small>{esc(show(i.added_at))}</small></li>" for i in self.cart) or "<li>empty</li>"
        wished = "".join(f"<li>{esc(i.product_id)} <small>{esc(show(i.added_at))}</small></li>"
                         for i in self.wishlist) or "<li>empty</li>"
        events = "".join(
            f"<tr><td>{esc(show(e['ts']))}</td><td>{esc(e['event'])}</td><td>{esc(self._details(e))}</td></tr>" for e in self.timeline
        )
        return (
            f"<div class='shopcrm-profile'><h3>{esc(self.customer_id)} <small>as of {esc(show(self.now))}</small></h3>"
            f"<div>{badges}</div><table>{attrs_rows}</table><h4>Cart</h4><ul>{cart}</ul>"
            f"<h4>Wish list</h4><ul>{wished}</ul>"
            f"<h4>Timeline</h4><table>{events}</table></div>"
        )
