"""The product situations, defined in pure Python: the executable meaning the SQL of :mod:`._sql` must equal.

A customer holds a product in the cart (or the wishlist) for a *stay*: from an add until the first removal, order
or re-add of that product strictly after it.  While it lasts, the product's history (one row per change of its
price, stock or availability) can produce derived events at its own instants:

- ``cart_item_price_dropped``: the first history instant of a cart stay at which the price is at least
  ``price_drop_percent`` below the price in force at the add (``new * 100 <= old * (100 - P)``); one per stay.
- ``wishlist_item_low_stock``: a history instant of a wishlist stay at which the product *enters* low stock
  (in stock with ``stock <= low_stock``) from a state that was not low (or no earlier history).
- ``wishlist_item_back_in_stock``: a history instant of a wishlist stay at which it is in stock (``stock > 0`` and
  ``available`` not false) while the history row before it was out of stock (``stock <= 0`` or ``available`` false).

Ties: a history row at the add instant belongs to the state *at* the add (it sets the old price and is never an
event of the stay); a row at the instant the stay ends (removal, order, re-add) is outside the stay; only rows
strictly before ``now`` count.  No I/O, no clock: ``now`` is a parameter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = ["SITUATIONS", "ProductSituations", "product_situations"]

CART_PRICE_DROPPED = "cart_item_price_dropped"
WISHLIST_LOW_STOCK = "wishlist_item_low_stock"
WISHLIST_BACK_IN_STOCK = "wishlist_item_back_in_stock"
#: the names of the derived events, as rules and scenario triggers name them
SITUATIONS = (CART_PRICE_DROPPED, WISHLIST_LOW_STOCK, WISHLIST_BACK_IN_STOCK)
#: the columns of a derived event row, in this order
SITUATION_COLUMNS = ("customer_id", "event", "ts", "product_id", "price", "old_price", "new_price", "percent", "stock",
                     "name")


def _percent(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 100:
        raise ValueError(f"{attribute.name} must be a number above 0 and below 100, not {value!r}")


def _stock(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number of at least 1, not {value!r}")


def _name(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must name an event, not {value!r}")


@attrs.frozen
class ProductSituations:
    """When the product situations fire, and the events that fill carts and wishlists.

    ``price_drop_percent``: how far below its price at the add a cart item must fall (``10``: 10% or more);
    ``low_stock``: the stock at or under which an item in stock is low (``5``: 1 to 5 left).
    """

    price_drop_percent: float = attrs.field(default=10, validator=_percent)
    low_stock: int = attrs.field(default=5, validator=_stock)
    cart_event: str = attrs.field(default="cart_added", validator=_name)
    cart_removed_event: str = attrs.field(default="cart_removed", validator=_name)
    wishlist_event: str = attrs.field(default="wishlist_added", validator=_name)
    wishlist_removed_event: str = attrs.field(default="wishlist_removed", validator=_name)
    order_event: str = attrs.field(default="order_completed", validator=_name)

    def to_dict(self) -> dict[str, Any]:
        """The policy as JSON-ready values, for the shop's settings table."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductSituations:
        """The policy :meth:`to_dict` wrote; fields it lacks keep their defaults."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"product situations have no field {', '.join(map(repr, unknown))}; "
                             f"their fields are {', '.join(sorted(known))}")
        return cls(**dict(data))

    def event_names(self) -> tuple[str, ...]:
        """The shop events the situations read."""
        return (self.cart_event, self.cart_removed_event, self.wishlist_event, self.wishlist_removed_event,
                self.order_event)


def in_stock(stock: Any, available: Any) -> bool:
    """Buyable: a known stock above 0 and not marked unavailable."""
    return stock is not None and stock > 0 and available is not False and available != 0


def out_of_stock(stock: Any, available: Any) -> bool:
    """Not buyable: a known stock of 0 or less, or marked unavailable (an unknown stock alone is neither)."""
    return (stock is not None and stock <= 0) or available is False or (available == 0 and available is not None)


def low_stock(stock: Any, available: Any, threshold: int) -> bool:
    """In stock with at most ``threshold`` left."""
    return in_stock(stock, available) and stock <= threshold


def _stays(
    events: list[Mapping[str, Any]], added: str, removed: str, order: str, *, order_without_product_ends: bool,
) -> list[tuple[Any, Any, datetime, datetime | None]]:
    """``(customer_id, product_id, added_at, ended_at)``: every add, ended by the first removal, order or re-add of
    the product strictly after it (adds at one instant are one stay)."""
    ends: dict[tuple[Any, Any], list[datetime]] = defaultdict(list)
    whole: dict[Any, list[datetime]] = defaultdict(list)  # orders without a product: they end every stay
    adds: set[tuple[Any, Any, datetime]] = set()
    for e in events:
        customer, name, product, ts = e.get("customer_id"), e.get("event"), e.get("product_id"), e["ts"]
        if customer is None:
            continue
        if name == added and product is not None:
            adds.add((customer, product, ts))
            ends[(customer, product)].append(ts)
        elif name in (removed, order) and product is not None:
            ends[(customer, product)].append(ts)
        elif name == order and product is None and order_without_product_ends:
            whole[customer].append(ts)
    out = []
    for customer, product, at in adds:
        later = [t for t in (*ends[(customer, product)], *whole[customer]) if t > at]
        out.append((customer, product, at, min(later) if later else None))
    return out


def product_situations(
    events: Iterable[Mapping[str, Any]],
    history: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    policy: ProductSituations | None = None,
    products: Iterable[Mapping[str, Any]] = (),
    names: Iterable[str] = SITUATIONS,
) -> list[dict[str, Any]]:
    """The derived events (dicts with :data:`SITUATION_COLUMNS`) before ``now``, sorted by customer, event, ts.

    ``events``: the shop's events (``customer_id``, ``event``, ``ts``, ``product_id``); ``history``: rows of
    ``product_id``, ``ts``, ``price``, ``stock``, ``available`` (one per product and instant); ``products``: the
    catalog, for the ``name`` of each product.  Instants are naive UTC datetimes.
    """
    policy = policy or ProductSituations()
    wanted = set(names)
    rows = list(events)
    titles = {p["product_id"]: p.get("name") for p in products}
    by_product: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for h in history:
        if h.get("product_id") is not None and h.get("ts") is not None:
            by_product[h["product_id"]].append(h)
    for changes in by_product.values():
        changes.sort(key=lambda h: h["ts"])
    out: list[dict[str, Any]] = []

    def emit(customer: Any, name: str, h: Mapping[str, Any], **extra: Any) -> None:
        out.append({"customer_id": customer, "event": name, "ts": h["ts"], "product_id": h["product_id"],
                    "price": h.get("price"), "old_price": None, "new_price": None, "percent": None,
                    "stock": h.get("stock"), "name": titles.get(h["product_id"]), **extra})

    if CART_PRICE_DROPPED in wanted:
        stays = _stays(rows, policy.cart_event, policy.cart_removed_event, policy.order_event,
                       order_without_product_ends=True)
        for customer, product, at, ended in stays:
            changes = by_product.get(product, [])
            before = [h for h in changes if h["ts"] <= at]
            old = before[-1].get("price") if before else None
            if old is None or old <= 0:
                continue
            for h in changes:
                new = h.get("price")
                if at < h["ts"] < now and (ended is None or h["ts"] < ended) and new is not None \
                        and new * 100 <= old * (100 - policy.price_drop_percent):
                    emit(customer, CART_PRICE_DROPPED, h, old_price=old, new_price=new,
                         percent=(float(old) - float(new)) * 100 / float(old))
                    break
    if wanted & {WISHLIST_LOW_STOCK, WISHLIST_BACK_IN_STOCK}:
        stays = _stays(rows, policy.wishlist_event, policy.wishlist_removed_event, policy.order_event,
                       order_without_product_ends=False)
        for customer, product, at, ended in stays:
            changes = by_product.get(product, [])
            for i, h in enumerate(changes):
                if not (at < h["ts"] < now and (ended is None or h["ts"] < ended)):
                    continue
                stock, available = h.get("stock"), h.get("available")
                prev = changes[i - 1] if i else None
                was_low = prev is not None and low_stock(prev.get("stock"), prev.get("available"), policy.low_stock)
                if WISHLIST_LOW_STOCK in wanted and low_stock(stock, available, policy.low_stock) and not was_low:
                    emit(customer, WISHLIST_LOW_STOCK, h)
                was_out = prev is not None and out_of_stock(prev.get("stock"), prev.get("available"))
                if WISHLIST_BACK_IN_STOCK in wanted and in_stock(stock, available) and was_out:
                    emit(customer, WISHLIST_BACK_IN_STOCK, h)
    return sorted(out, key=lambda r: (str(r["customer_id"]), r["event"], r["ts"], str(r["product_id"])))
