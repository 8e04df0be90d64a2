"""shopcrm: the CRM-marketing brain of an online shop, as an embeddable library.

Segments are rules (``shopcrm.dsl``); ``evaluate`` is their pure reference
meaning; ``to_sql`` compiles them for eight SQL dialects; a ``Shop`` runs them on
the embedded DuckDB store, your own database or Spark.  Campaigns
(``shopcrm.campaigns``) decide who hears what, when and through which channel;
``Shop.tick`` plans them into the shop's outbox.
"""

from shopcrm.compiler import to_sql
from shopcrm.dsl import Rule, parse_rule, rule_json_schema
from shopcrm.errors import (
    CampaignError,
    MappingError,
    PluginError,
    RuleError,
    SchemaError,
    SegmentCycleError,
    ShopCRMError,
)
from shopcrm.explain import Explanation
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.mapping import CustomersMap, EventsMap, Mapping
from shopcrm.recipients import RecipientColumns
from shopcrm.reference import evaluate
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.shop import Shop
from shopcrm.sources import SavedSegment, Source
from shopcrm.sources._campaign_store import OutboxRow, TickConflict
from shopcrm.ticking import TickResult

__all__ = [
    "CampaignError",
    "ColumnType",
    "CustomersMap",
    "EventsMap",
    "Explanation",
    "LifecyclePolicy",
    "Mapping",
    "MappingError",
    "OutboxRow",
    "PluginError",
    "RecipientColumns",
    "Rule",
    "RuleError",
    "SavedSegment",
    "Schema",
    "SchemaError",
    "SegmentCycleError",
    "Shop",
    "ShopCRMError",
    "Source",
    "Table",
    "TickConflict",
    "TickResult",
    "evaluate",
    "parse_rule",
    "rule_json_schema",
    "to_sql",
]
__version__ = "0.1.0"
