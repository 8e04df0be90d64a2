"""The lifecycle dashboard: customers per stage, per stage x moment (the 12 segments), per RFM segment and per cycle status."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from shopcrm.lifecycle._classify import LifecycleRow
from shopcrm.lifecycle._policy import CYCLE_STATUSES, MOMENTS, STAGES

__all__ = ["TWELVE_SEGMENTS", "LifecycleSummary", "summarize"]

#: stage x moment combinations that the lifecycle contract names (never purchased cannot cool off,
#: purchasers cannot drop off after sign-up)
TWELVE_SEGMENTS: tuple[tuple[str, str], ...] = tuple(
    (stage, moment)
    for stage in STAGES
    for moment in MOMENTS
    if not (stage == "never_purchased" and moment == "cooling_off") and not (stage != "never_purchased" and moment == "signup_dropoff")
)


@attrs.frozen
class LifecycleSummary:
    """Counts for a dashboard; ``_repr_html_`` draws bars in a notebook without running anything."""

    now: datetime
    total: int
    by_stage: Mapping[str, int]
    by_stage_moment: Mapping[tuple[str, str], int]
    by_rfm: Mapping[str, int]
    by_cycle: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stage/moment keys as ``"stage/moment"``)."""
        return {
            "now": self.now.isoformat(),
            "total": self.total,
            "by_stage": dict(self.by_stage),
            "by_stage_moment": {f"{s}/{m}": n for (s, m), n in self.by_stage_moment.items()},
            "by_rfm": dict(self.by_rfm),
            "by_cycle": dict(self.by_cycle),
        }

    def _sections(self) -> list[tuple[str, list[tuple[str, int]]]]:
        """Titles and rows as people read them (labels in the locale of :func:`shopcrm.labels.set_locale`)."""
        from shopcrm.labels import label

        return [
            (label("section", "stage"), [(label("stage", s), n) for s, n in self.by_stage.items()]),
            (label("section", "stage / moment"),
             [(f"{label('stage', s)} / {label('moment', m)}", n) for (s, m), n in self.by_stage_moment.items()]),
            (label("section", "RFM segment"), [(label("rfm", s), n) for s, n in sorted(self.by_rfm.items(), key=lambda kv: -kv[1])]),
            (label("section", "purchase cycle"), [(label("cycle", s), n) for s, n in self.by_cycle.items()]),
        ]

    def __str__(self) -> str:
        from shopcrm.labels import pad

        lines = [f"{self.total:,} customers as of {self.now.isoformat()}"]
        for title, rows in self._sections():
            lines.append(f"\n{title}")
            for label, count in rows:
                share = count / self.total if self.total else 0.0
                lines.append(f"  {pad(label, 32)} {count:>10,}  {share:6.1%}  {'#' * round(share * 40)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [f"<div class='shopcrm-lifecycle'><b>{self.total:,}</b> customers as of {html.escape(self.now.isoformat())}"]
        for title, rows in self._sections():
            parts.append(f"<h4 style='margin:0.6em 0 0.2em'>{html.escape(title)}</h4><table>")
            for label, count in rows:
                share = count / self.total if self.total else 0.0
                bar = f"<div style='background:#4c78a8;height:0.8em;width:{share * 240:.1f}px'></div>"
                parts.append(
                    f"<tr><td>{html.escape(label)}</td><td style='text-align:right'>{count:,}</td>"
                    f"<td style='text-align:right'>{share:.1%}</td><td>{bar}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</div>")
        return "".join(parts)

    def plot(self) -> Any:
        """A matplotlib figure of the four breakdowns (needs the ``plot`` extra)."""
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(2, 2, figsize=(12, 8))
        for axis, (title, rows) in zip(axes.flat, self._sections(), strict=True):
            labels = [label for label, _ in rows][::-1]
            axis.barh(labels, [count for _, count in rows][::-1], color="#4c78a8")
            axis.set_title(title)
        figure.tight_layout()
        return figure


def summarize(rows: Iterable[LifecycleRow], now: datetime) -> LifecycleSummary:
    """Count lifecycle rows for the dashboard."""
    stages: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    rfm: Counter[str] = Counter()
    cycle: Counter[str] = Counter()
    total = 0
    for row in rows:
        total += 1
        stages[row.stage] += 1
        for moment in row.moments:
            pairs[(row.stage, moment)] += 1
        if row.rfm_segment is not None:
            rfm[row.rfm_segment] += 1
        if row.cycle_status is not None:
            cycle[row.cycle_status] += 1
    return LifecycleSummary(
        now=now,
        total=total,
        by_stage={s: stages[s] for s in STAGES},
        by_stage_moment={pair: pairs[pair] for pair in TWELVE_SEGMENTS},
        by_rfm=dict(rfm),
        by_cycle={c: cycle[c] for c in CYCLE_STATUSES},
    )


def summarize_table(table: Any, now: datetime) -> LifecycleSummary:
    """The same counts from the lifecycle Arrow table, with pyarrow (no Python rows)."""
    import pyarrow.compute as pc

    def counts(values: Any) -> dict[str, int]:
        result = pc.value_counts(values)
        return {
            str(v): int(n)
            for v, n in zip(result.field("values").to_pylist(), result.field("counts").to_pylist(), strict=True)
            if v is not None
        }

    moments = table["moments"].combine_chunks()
    stages_of_moments = pc.take(table["stage"].combine_chunks(), pc.list_parent_indices(moments))
    pairs = counts(pc.binary_join_element_wise(stages_of_moments, pc.list_flatten(moments), "/"))
    stages = counts(table["stage"])
    cycle = counts(table["cycle_status"])
    return LifecycleSummary(
        now=now,
        total=table.num_rows,
        by_stage={s: stages.get(s, 0) for s in STAGES},
        by_stage_moment={pair: pairs.get(f"{pair[0]}/{pair[1]}", 0) for pair in TWELVE_SEGMENTS},
        by_rfm=counts(table["rfm_segment"]),
        by_cycle={c: cycle.get(c, 0) for c in CYCLE_STATUSES},
    )
