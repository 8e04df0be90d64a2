"""Products: the catalog's derived events (product situations) for customers holding an item in the cart or the
wishlist.

:func:`product_situations` is the pure meaning; :func:`situations_query` its SQL for every engine.  A shop with a
product history reads the situations as events in rules (``{"performed": "cart_item_price_dropped"}``) and as
scenario triggers (``{"kind": "triggered", "on": "wishlist_item_back_in_stock"}``); see docs/catalog.md.
"""

from __future__ import annotations

from shopcrm.products._situations import SITUATION_COLUMNS, SITUATIONS, ProductSituations, product_situations
from shopcrm.products._sql import SituationEvents, situation_schema, situations_query

__all__ = [
    "SITUATIONS",
    "SITUATION_COLUMNS",
    "ProductSituations",
    "SituationEvents",
    "product_situations",
    "situation_schema",
    "situations_query",
]
