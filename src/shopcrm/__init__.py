"""shopcrm: the CRM-marketing brain of an online shop, as an embeddable library.

Segments are rules (``shopcrm.dsl``); ``evaluate`` is their pure reference
meaning; ``to_sql`` compiles them for eight SQL dialects; a ``Shop`` runs them on
the embedded DuckDB store, your own database or Spark.
"""

from shopcrm.compiler import to_sql
from shopcrm.dsl import Rule, parse_rule, rule_json_schema
from shopcrm.errors import CampaignError, PluginError, RuleError, SchemaError, SegmentCycleError, ShopCRMError
from shopcrm.explain import Explanation
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.reference import evaluate
from shopcrm.schema import ColumnType, Schema, Table
from shopcrm.shop import Shop
from shopcrm.sources import SavedSegment, Source

__all__ = [
    "CampaignError",
    "ColumnType",
    "Explanation",
    "LifecyclePolicy",
    "PluginError",
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
    "evaluate",
    "parse_rule",
    "rule_json_schema",
    "to_sql",
]
__version__ = "0.1.0"
