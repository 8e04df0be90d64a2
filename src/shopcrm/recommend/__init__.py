"""Product recommendations: also-bought, also-viewed, viewed-not-bought, trending, popular and a personal blend,
with a fallback chain and filters, computed as ONE SQL query for a whole audience on every engine.

- :func:`for_customers`: ``{customer_id: [item, ...]}`` for message templates at plan time;
- ``Shop.recommend``: the same as a pyarrow Table for a shop's own landing page;
- :func:`evaluate`: an offline time-split evaluation of the strategies against the popularity baseline.

The pure reference is :mod:`shopcrm.recommend._reference`, the SQL compiler :mod:`shopcrm.recommend._sql`; see
docs/products.md.
"""

from shopcrm.recommend._evaluation import Evaluation, Metrics, evaluate, score_lists
from shopcrm.recommend._shop import for_customers
from shopcrm.recommend._strategies import (
    DEFAULT_FALLBACK,
    AlsoBought,
    AlsoViewed,
    Filters,
    Personal,
    Popular,
    Recommendation,
    RecommendError,
    Trending,
    ViewedNotBought,
    parse_request,
    parse_strategy,
)

__all__ = [
    "DEFAULT_FALLBACK",
    "AlsoBought",
    "AlsoViewed",
    "Evaluation",
    "Filters",
    "Metrics",
    "Personal",
    "Popular",
    "RecommendError",
    "Recommendation",
    "Trending",
    "ViewedNotBought",
    "evaluate",
    "for_customers",
    "parse_request",
    "parse_strategy",
    "score_lists",
]
