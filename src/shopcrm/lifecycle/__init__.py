"""Lifecycle stages, moments, RFM and purchase-cycle risk (pure; see docs/lifecycle.md)."""

from shopcrm.lifecycle._classify import (
    CustomerFacts,
    LifecycleRow,
    ShopContext,
    classify,
    classify_shop,
    customer_facts,
    score,
)
from shopcrm.lifecycle._policy import (
    CYCLE_STATUSES,
    DEFAULT_RFM_SEGMENTS,
    MOMENTS,
    STAGES,
    LifecyclePolicy,
    rfm_table,
)
from shopcrm.lifecycle._summary import TWELVE_SEGMENTS, LifecycleSummary, summarize

__all__ = [
    "CYCLE_STATUSES",
    "DEFAULT_RFM_SEGMENTS",
    "MOMENTS",
    "STAGES",
    "TWELVE_SEGMENTS",
    "CustomerFacts",
    "LifecyclePolicy",
    "LifecycleRow",
    "LifecycleSummary",
    "ShopContext",
    "classify",
    "classify_shop",
    "customer_facts",
    "rfm_table",
    "score",
    "summarize",
]
