"""One customer as a person: attributes, lifecycle, timeline and what sits in the cart."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from shopcrm.lifecycle import LifecyclePolicy, LifecycleRow

__all__ = ["CartItem", "CustomerProfile", "current_cart"]


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


@attrs.frozen
class CustomerProfile:
    """What the shop knows about one customer as of ``now``; text in a terminal, HTML in a notebook."""

    customer_id: Any
    now: datetime
    attributes: Mapping[str, Any]
    lifecycle: LifecycleRow
    timeline: tuple[Mapping[str, Any], ...]  # newest first
    cart: tuple[CartItem, ...]

    def __str__(self) -> str:
        lc = self.lifecycle
        lines = [f"customer {self.customer_id} as of {self.now.isoformat()}"]
        lines += [f"  {k}: {v}" for k, v in self.attributes.items() if k != "customer_id"]
        lines.append(f"  stage: {lc.stage}" + (f" ({', '.join(lc.moments)})" if lc.moments else ""))
        lines.append(
            f"  orders: {lc.orders}, last seen: {lc.last_seen}, RFM: "
            + (f"R{lc.r_score} F{lc.f_score} M{lc.m_score} {lc.rfm_segment}" if lc.r_score else "none in the lookback")
        )
        if lc.cycle_status:
            lines.append(f"  purchase cycle: {lc.cycle_status} (expected gap {lc.expected_gap_days:.1f} days)")
        if self.cart:
            lines.append("  cart:")
            lines += [f"    {item.product_id} (added {item.added_at:%Y-%m-%d %H:%M})" for item in self.cart]
        lines.append(f"  timeline ({len(self.timeline)} latest events):")
        for event in self.timeline:
            extra = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("customer_id", "event", "ts") and v is not None)
            lines.append(f"    {event['ts']:%Y-%m-%d %H:%M}  {event['event']}" + (f"  {extra}" if extra else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        lc = self.lifecycle
        attrs_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.attributes.items())
        badges = "".join(
            f"<span style='background:#eef;border-radius:4px;padding:1px 6px;margin-right:4px'>{esc(b)}</span>"
            for b in (lc.stage, *lc.moments, lc.rfm_segment, lc.cycle_status)
            if b
        )
        cart = "".join(f"<li>{esc(i.product_id)} <small>{esc(i.added_at)}</small></li>" for i in self.cart) or "<li>empty</li>"
        events = "".join(
            f"<tr><td>{esc(e['ts'])}</td><td>{esc(e['event'])}</td><td>"
            + esc(", ".join(f"{k}={v}" for k, v in e.items() if k not in ("customer_id", "event", "ts") and v is not None))
            + "</td></tr>"
            for e in self.timeline
        )
        return (
            f"<div class='shopcrm-profile'><h3>{esc(self.customer_id)}</h3><div>{badges}</div>"
            f"<table>{attrs_rows}</table><h4>Cart</h4><ul>{cart}</ul>"
            f"<h4>Timeline</h4><table>{events}</table></div>"
        )
