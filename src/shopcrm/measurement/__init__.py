"""Campaign measurement: clicks, conversions, credit, cost and lift (see docs/measurement-statistics.md)."""
