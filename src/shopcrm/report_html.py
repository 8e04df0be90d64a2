"""The campaign report as one self-contained HTML page (``CampaignReport.to_html``).

The page opens offline: no script, no stylesheet or font from elsewhere, the charts inline SVG.  The charts are
Altair (Vega-Lite) specifications rendered to SVG by vl-convert-python at build time, so the page needs no
JavaScript at all.  Both are the optional ``report`` extra (``pip install 'shopcrm[report]'``), imported only when a
page is made.

Each figure cell carries ``data-campaign``, ``data-row`` (the row's index in ``to_arrow()``), ``data-column`` and
``data-value`` (the exact value as JSON, ``null`` when undefined; the cell then reads "-"), and each chart is a
``<figure class="chart" id="chart-...">`` holding one ``<svg>``, so that a test or a scraper can read the numbers back.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shopcrm.report import CampaignReport

__all__ = ["CHART_IDS", "render_html"]

#: the charts' element ids, in page order (the lift chart only when a campaign has a defined interval)
CHART_IDS = ("chart-funnel", "chart-daily-conversions", "chart-lift")
#: the funnel's stages: (report column, label)
FUNNEL = (("audience", "audience"), ("planned", "planned"), ("sent", "sent"), ("clicked", "clicked"),
          ("attributed_conversions", "converted"))
_EXTRA = "the report page needs altair and vl-convert-python: pip install 'shopcrm[report]'"

_STYLE = """
body { font-family: "Noto Sans CJK KR", "Noto Sans KR", "Apple SD Gothic Neo", "Malgun Gothic", sans-serif;
       margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f3f3f3; }
.scroll { overflow-x: auto; }
figure.chart { margin: 1em 0; }
.note { color: #555; font-size: 0.85em; }
"""


def _imports() -> tuple[Any, Any]:
    try:
        import altair as alt
        import vl_convert as vlc
    except ImportError as error:
        raise ImportError(f"{_EXTRA} ({error})") from error
    return alt, vlc


def _svg(chart: Any, vlc: Any) -> str:
    svg: str = vlc.vegalite_to_svg(chart.to_dict())
    return svg


def _funnel_data(report: CampaignReport) -> list[dict[str, Any]]:
    """Per campaign and stage, the sum over the campaign's rows (a stage whose every row is null is left out)."""
    out = []
    for campaign in sorted({r["campaign_id"] for r in report.rows}):
        rows = [r for r in report.rows if r["campaign_id"] == campaign]
        for order, (column, label) in enumerate(FUNNEL):
            values = [r[column] for r in rows if r.get(column) is not None]
            if values:
                out.append({"campaign": campaign, "stage": label, "order": order, "count": sum(values)})
    return out


def _daily_data(report: CampaignReport) -> list[dict[str, Any]]:
    """Attributed conversions per campaign and (UTC) day of the conversion."""
    return [{"campaign": c, "day": d, "conversions": n} for c, d, n, _ in sorted(report.daily)]


def _lift_data(report: CampaignReport) -> list[dict[str, Any]]:
    """Absolute lift (percentage points) with its 95% interval, per campaign whose interval is defined."""
    out = []
    for campaign, found in sorted(report.lifts.items()):
        lift = found.lift
        if lift is None or lift.absolute_lift is None or lift.absolute_interval is None:
            continue
        low, high = lift.absolute_interval.low, lift.absolute_interval.high
        if not all(math.isfinite(v) for v in (lift.absolute_lift, low, high)):
            continue
        out.append({"campaign": campaign, "lift": 100 * lift.absolute_lift, "low": 100 * low, "high": 100 * high})
    return out


def charts(report: CampaignReport) -> dict[str, str]:
    """The page's charts as inline SVG, keyed by element id (see :data:`CHART_IDS`)."""
    alt, vlc = _imports()
    out: dict[str, str] = {}
    funnel = alt.Chart(alt.Data(values=_funnel_data(report) or [{"campaign": "", "stage": "", "order": 0,
                                                                 "count": 0}]))
    out["chart-funnel"] = _svg(funnel.mark_bar().encode(
        x=alt.X("count:Q", title="customers / messages"),
        y=alt.Y("stage:N", sort=alt.EncodingSortField(field="order", order="ascending"), title=None),
        color=alt.Color("campaign:N", title="campaign"),
        yOffset=alt.YOffset("campaign:N"),
    ).properties(title="Funnel: audience → planned → sent → clicked → converted", width=480), vlc)

    daily = _daily_data(report)
    bars = alt.Chart(alt.Data(values=daily or [{"campaign": "", "day": "", "conversions": 0}])).mark_bar().encode(
        x=alt.X("day:O", title="day of the conversion (UTC)"),
        y=alt.Y("conversions:Q", title="attributed conversions", axis=alt.Axis(tickMinStep=1)),
        color=alt.Color("campaign:N", title="campaign"),
        xOffset=alt.XOffset("campaign:N"),
    )
    out["chart-daily-conversions"] = _svg(bars.properties(title="Attributed conversions per day", width=480, height=200),
                                          vlc)

    lifts = _lift_data(report)
    if lifts:
        base = alt.Chart(alt.Data(values=lifts))
        y = alt.Y("campaign:N", title=None)
        rule = base.mark_rule().encode(x=alt.X("low:Q", title="absolute lift, percentage points (95% interval)"),
                                       x2="high:Q", y=y)
        point = base.mark_point(filled=True, size=80).encode(x="lift:Q", y=y)
        zero = alt.Chart(alt.Data(values=[{"x": 0}])).mark_rule(strokeDash=[4, 4], color="#888").encode(x="x:Q")
        out["chart-lift"] = _svg((rule + point + zero).properties(
            title="Holdout lift in conversion rate with its 95% interval", width=480), vlc)
    return out


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "null"
    return json.dumps(value)


def _table(report: CampaignReport) -> str:
    from shopcrm.report import _show

    columns = report.columns
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(report.rows):
        cells = []
        for column in columns:
            value = row.get(column)
            attributes = (f'data-row="{index}" data-campaign="{html.escape(str(row["campaign_id"]))}" '
                          f'data-column="{html.escape(column)}" data-value="{html.escape(_value(value))}"')
            text = _show(value, column) if value is not None and not (
                isinstance(value, float) and not math.isfinite(value)) else "-"
            tag = "th" if column == "campaign_id" or column in report.by else "td"
            cells.append(f"<{tag} {attributes}>{html.escape(text)}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table id="figures"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _when(value: datetime | None) -> str:
    return value.isoformat(sep=" ") if value is not None else "…"


def render_html(report: CampaignReport, *, title: str | None = None) -> str:
    """The report as one self-contained HTML page (UTF-8, no external resources)."""
    from shopcrm.report import _INFLUENCED_NOTE

    svgs = charts(report)
    campaigns: Sequence[str] = sorted({str(r["campaign_id"]) for r in report.rows})
    heading = title or f"Campaign report: {', '.join(campaigns) or 'no campaigns'}"
    period = (f"Messages sent {_when(report.since)} to {_when(report.until)} (UTC), as of {_when(report.now)}"
              + (f", by {', '.join(report.by)}" if report.by else ""))
    parts = [
        "<!DOCTYPE html>", '<html lang="ko">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(heading)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f'<h1 id="title">{html.escape(heading)}</h1>',
        f'<p id="period" data-campaigns="{html.escape(json.dumps(list(campaigns), ensure_ascii=False))}">'
        f"Campaigns: {html.escape(', '.join(campaigns) or '-')}. {html.escape(period)}.</p>",
        "<h2>Figures</h2>", _table(report),
        f'<p class="note">Undefined ratios (a zero denominator) read "-". {html.escape(_INFLUENCED_NOTE)}.</p>',
        "<h2>Charts</h2>",
    ]
    for chart_id, svg in svgs.items():
        parts.append(f'<figure class="chart" id="{chart_id}">{svg}</figure>')
    if "chart-lift" not in svgs:
        parts.append('<p class="note" id="no-lift">No lift chart: no campaign here has a holdout with a defined '
                     "interval.</p>")
    for lift in report.lifts.values():
        parts.append(f'<pre class="lift" data-campaign="{html.escape(lift.campaign_id)}">'
                     f"{html.escape(str(lift))}</pre>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
