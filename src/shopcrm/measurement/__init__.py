"""Measurement: clicks, conversions and credit (the pure reference of ``measurement.md``), cost and ratios.

:func:`attribute` is the executable meaning of the two attribution models, over plain values; every SQL
compilation of the campaign report must agree with it.  :class:`AttributionPolicy` names the conversion
event and the channels' windows (stored with the shop as ``shop.attribution_policy``).  :mod:`.stats` holds
the lift, sample-ratio and A/B statistics (scipy and statsmodels, the ``measurement`` extra, imported when used).
"""

from shopcrm.measurement._attribution import (
    BREAKDOWNS,
    Click,
    Conversion,
    Credit,
    Credits,
    Member,
    Outcome,
    Send,
    Summary,
    Tally,
    attribute,
    attributed,
    conversions,
    influenced,
    member_outcomes,
    summarise,
)
from shopcrm.measurement._policy import (
    DEFAULT_CLICK_WINDOWS,
    DEFAULT_RECEIPT_WINDOWS,
    OTHER_CHANNELS,
    AttributionPolicy,
)
from shopcrm.measurement.stats import (
    ABTest,
    Lift,
    RevenueStats,
    SampleRatioMismatch,
    ab_test,
    lift,
    sample_ratio_mismatch,
    sample_size,
)

__all__ = [
    "BREAKDOWNS",
    "ABTest",
    "Lift",
    "RevenueStats",
    "SampleRatioMismatch",
    "ab_test",
    "lift",
    "sample_ratio_mismatch",
    "sample_size",
    "DEFAULT_CLICK_WINDOWS",
    "DEFAULT_RECEIPT_WINDOWS",
    "OTHER_CHANNELS",
    "AttributionPolicy",
    "Click",
    "Conversion",
    "Credit",
    "Credits",
    "Member",
    "Outcome",
    "Send",
    "Summary",
    "Tally",
    "attribute",
    "attributed",
    "conversions",
    "influenced",
    "member_outcomes",
    "summarise",
]
