"""What a campaign report reads, however it was computed: the engine's SQL (:mod:`shopcrm.report_sql`) or the pure
reference (:mod:`shopcrm.report`).  Its own module so that the SQL path, a worker below the Shop facade, need not
import the report module above it (issue 15)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import attrs

from shopcrm.measurement import Outcome, Summary

__all__ = ["Figures", "SegmentLabels"]


class _Members(Protocol):
    def members(self, rule: Any, *, now: datetime) -> list[Any]: ...


def _cid(customer: Any) -> str:
    return json.dumps(customer, default=str)


@attrs.frozen
class Figures:
    """What a report reads, however it was computed (the engine's SQL or the pure reference): per-cell summaries,
    the funnel's other counts per cell (``planned``, ``held_out``, ``failed``, ``delivered``, ``fallen_back``,
    ``opt_outs_after``), member outcomes per ``(campaign, variant, status)`` and attributed conversions per campaign
    and UTC day ``(campaign, "YYYY-MM-DD", conversions, revenue)``."""

    summaries: tuple[Summary, ...]
    funnel: Mapping[tuple[str, ...], Mapping[str, int]]
    outcomes: Mapping[tuple[str, str, str], Outcome]
    daily: tuple[tuple[str, str, int, float], ...]
    method: str


@attrs.frozen
class SegmentLabels:
    """The segments of a ``segment`` breakdown: ``(name, rule)`` pairs in order (a customer takes the first that
    matches, so the cells partition the recipients) and the instant membership is read at."""

    rules: tuple[tuple[str, Any], ...]
    at: datetime

    def of(self, shop: _Members) -> dict[str, str]:
        """Each member's label, keyed by the customer id's JSON (the pure path; the SQL path compiles the rules)."""
        out: dict[str, str] = {}
        for name, rule in self.rules:
            for customer in shop.members(rule, now=self.at):
                out.setdefault(_cid(customer), name)
        return out
