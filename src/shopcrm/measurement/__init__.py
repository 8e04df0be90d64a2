"""Measurement: clicks, conversions and credit (the pure reference of ``measurement.md``), cost and ratios.

:func:`attribute` is the executable meaning of the two attribution models, over plain values; every SQL
compilation of the campaign report must agree with it.  :class:`AttributionPolicy` names the conversion
event and the channels' windows (stored with the shop as ``shop.attribution_policy``).
"""

from shopcrm.measurement._attribution import (
    BREAKDOWNS,
    Click,
    Conversion,
    Credit,
    Credits,
    Send,
    Summary,
    Tally,
    attribute,
    attributed,
    conversions,
    influenced,
    summarise,
)
from shopcrm.measurement._policy import (
    DEFAULT_CLICK_WINDOWS,
    DEFAULT_RECEIPT_WINDOWS,
    OTHER_CHANNELS,
    AttributionPolicy,
)

__all__ = [
    "BREAKDOWNS",
    "DEFAULT_CLICK_WINDOWS",
    "DEFAULT_RECEIPT_WINDOWS",
    "OTHER_CHANNELS",
    "AttributionPolicy",
    "Click",
    "Conversion",
    "Credit",
    "Credits",
    "Send",
    "Summary",
    "Tally",
    "attribute",
    "attributed",
    "conversions",
    "influenced",
    "summarise",
]
