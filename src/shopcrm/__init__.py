"""shopcrm: the CRM-marketing brain of an online shop, as an embeddable library.

Segments are rules (``shopcrm.dsl``); ``evaluate`` is their pure reference
meaning; ``to_sql`` compiles them for eight SQL dialects; a ``Shop`` runs them on
the embedded DuckDB store, your own database or Spark.  Campaigns
(``shopcrm.campaigns``) decide who hears what, when and through which channel;
``Shop.tick`` plans them into the shop's outbox.
"""

from shopcrm import _version
from shopcrm._connect import connect
from shopcrm.checks import CheckReport, Finding
from shopcrm.compiler import to_sql
from shopcrm.consents import ConsentRecord  # K2: consent evidence
from shopcrm.dsl import Rule, parse_rule, rule_json_schema
from shopcrm.errors import (
    CampaignError,
    CampaignWarning,
    MappingError,
    PluginError,
    RuleError,
    SchemaError,
    SegmentCycleError,
    ShopCRMError,
    ShopCRMWarning,
    UnseenEventWarning,
)
from shopcrm.explain import Explanation
from shopcrm.labels import set_locale
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.mapping import CustomersMap, EventsMap, Mapping, ProductHistoryMap, ProductsMap
from shopcrm.measurement import AttributionPolicy
from shopcrm.notebook import Breakdown, Overlap, Trend
from shopcrm.products import ProductSituations  # issue 14: the product situations
from shopcrm.program_lift import ProgramLift
from shopcrm.recipients import RecipientColumns
from shopcrm.recommend import RecommendError  # issue 14: recommendations (shopcrm.recommend)
from shopcrm.reference import evaluate
from shopcrm.report import CampaignReport
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.segment_tracking import SegmentRefresh  # issue 15: tracked segments
from shopcrm.shop import Shop
from shopcrm.sources import SavedSegment, Source
from shopcrm.sources._campaign_store import OutboxRow, TickConflict
from shopcrm.sources._library import ReadOnlyShopError, ShopLockedError, StoreVersionError
from shopcrm.sources._membership_store import RefreshConflict
from shopcrm.sources._store import Store  # issue 15: the library's tables beside any engine
from shopcrm.ticking import TickResult
from shopcrm.tracking import TrackingPolicy

__all__ = [
    "AttributionPolicy",
    "Breakdown",
    "CampaignError",
    "CampaignReport",
    "CampaignWarning",
    "CheckReport",
    "ColumnType",
    "ConsentRecord",
    "CustomersMap",
    "EventsMap",
    "Explanation",
    "Finding",
    "LifecyclePolicy",
    "Mapping",
    "MappingError",
    "OutboxRow",
    "Overlap",
    "PluginError",
    "ProductHistoryMap",
    "ProductSituations",
    "ProductsMap",
    "ProgramLift",
    "ReadOnlyShopError",
    "RecipientColumns",
    "RecommendError",
    "RefreshConflict",
    "Rule",
    "RuleError",
    "SavedSegment",
    "Schema",
    "SchemaError",
    "SegmentCycleError",
    "SegmentRefresh",
    "Shop",
    "ShopCRMError",
    "ShopCRMWarning",
    "ShopLockedError",
    "Source",
    "Store",
    "StoreVersionError",
    "Table",
    "TickConflict",
    "TickResult",
    "TrackingPolicy",
    "Trend",
    "UnseenEventWarning",
    "connect",
    "evaluate",
    "parse_rule",
    "rule_json_schema",
    "set_locale",
    "to_sql",
]
__version__ = _version.__version__
