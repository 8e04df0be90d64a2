"""The spec's seed example, shared by tests (the demo shop ships it as a saved segment)."""

from shopcrm.demo import SEED_RULES

SEED = SEED_RULES["shoe_buyers_20s_30s"]
