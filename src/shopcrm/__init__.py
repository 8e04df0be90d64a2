"""shopcrm: the CRM-marketing brain of an online shop, as an embeddable library."""

from shopcrm.dsl import Rule, parse_rule, rule_json_schema
from shopcrm.errors import PluginError, RuleError, SchemaError, SegmentCycleError, ShopCRMError

__all__ = [
    "PluginError",
    "Rule",
    "RuleError",
    "SchemaError",
    "SegmentCycleError",
    "ShopCRMError",
    "parse_rule",
    "rule_json_schema",
]
