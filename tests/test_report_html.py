"""The report page (``CampaignReport.to_html``): a self-contained page, checked as text and opened in real Chromium
(Debian's ``chromium`` driven by Playwright): no console errors, no failed requests, every chart drawn, the numbers on
the page equal ``to_arrow()``, Korean text rendered; a screenshot is kept as a test artifact."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("altair")
pytest.importorskip("vl_convert")

from shopcrm import CampaignReport
from shopcrm.cli import main
from shopcrm.report_html import CHART_IDS
from test_report import NOW, _embedded

TITLE = "봄 세일 캠페인 보고서"


@pytest.fixture(scope="module")
def report() -> CampaignReport:
    shop, _, _ = _embedded()
    return shop.report("spring", now=NOW)


def _same(page_value: Any, table_value: Any) -> bool:
    if table_value is None or page_value is None:
        return page_value is None and (table_value is None or (isinstance(table_value, float) and math.isnan(table_value)))
    if isinstance(table_value, float):
        return math.isclose(float(page_value), table_value, rel_tol=0, abs_tol=0)
    return bool(page_value == table_value)


def test_the_page_is_offline_and_holds_the_figures(report: CampaignReport, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    page = report.to_html(out, title=TITLE)
    assert out.read_text(encoding="utf-8") == page
    assert '<meta charset="utf-8">' in page
    assert TITLE in page
    # nothing to fetch: no src/href pointing anywhere, no scripts, no @import or url() in the style
    assert re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, flags=re.I) == []
    assert "<script" not in page.lower()
    assert "@import" not in page
    assert "url(" not in page
    for chart_id in CHART_IDS:
        assert re.search(rf'<figure class="chart" id="{chart_id}"><svg[^>]*>.*?<path', page, flags=re.S), chart_id
    # every figure cell, read back from its data attributes, equals the Arrow table
    table = report.to_arrow().to_pylist()
    cells = re.findall(r'data-row="(\d+)" data-campaign="[^"]*" data-column="([^"]+)" data-value="([^"]*)">([^<]*)<',
                       page)
    assert len(cells) == len(table) * len(report.columns)
    for index, column, value, text in cells:
        expected = table[int(index)][column]
        assert _same(json.loads(value.replace("&quot;", '"')), expected), (column, value, expected)
        if expected is None:
            assert text == "-", column
    row = report.row("spring")
    assert row["attributed_revenue"] == 50000.0  # the page shows it formatted
    assert '"attributed_revenue" data-value="50000.0">50,000<' in page
    assert report.row("spring")["roas"] is not None


def test_without_a_defined_interval_there_is_no_lift_chart(report: CampaignReport) -> None:
    import attrs

    page = attrs.evolve(report, lifts={}).to_html()
    assert 'id="chart-funnel"' in page
    assert 'id="chart-daily-conversions"' in page
    assert 'id="chart-lift"' not in page
    assert 'id="no-lift"' in page
    assert 'id="chart-lift"' in report.to_html()


def test_the_report_extra_is_named_when_missing(report: CampaignReport, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "vl_convert", None)
    with pytest.raises(ImportError, match=r"shopcrm\[report\]"):
        report.to_html()


def test_shopcrm_report_html_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shopcrm import Shop
    from test_report import PEOPLE, _plan_and_send

    path = tmp_path / "shop.duckdb"
    shop = Shop.open(path)
    shop.load_customers(PEOPLE)
    _plan_and_send(shop)
    shop.close()
    out = tmp_path / "out.html"
    assert main(["report", "--db", str(path), "--campaign", "spring", "--now", NOW.isoformat(),
                 "--html", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert 'id="chart-funnel"' in page
    assert 'data-column="planned" data-value="15"' in page


def _artifact_dirs(tmp_path: Path) -> list[Path]:
    dirs = [tmp_path]
    if os.environ.get("SHOPCRM_ARTIFACTS"):
        dirs.append(Path(os.environ["SHOPCRM_ARTIFACTS"]))
    return dirs


def test_the_page_in_chromium(report: CampaignReport, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        missing = "Debian's chromium" if chromium is None else "playwright"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is not available, and CI must open the report page in a real browser; "
                        "install it (.ci/run installs chromium and fonts-noto-cjk; playwright is in the test extra)")
        pytest.skip(f"{missing} is not installed (apt-get install chromium fonts-noto-cjk; pip install playwright)")
    if shutil.which("fc-list"):  # a Korean font, or the heading would be drawn as empty boxes
        korean = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True, check=False).stdout
        assert korean.strip(), "no Korean font is installed: apt-get install fonts-noto-cjk"
    out = tmp_path / "report.html"
    report.to_html(out, title=TITLE)
    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri(), wait_until="load")
            assert errors == []
            assert failed == []
            assert requests == [out.as_uri()]  # nothing but the page itself
            assert page.title() == TITLE
            assert page.locator("h1#title").inner_text() == TITLE
            for chart_id in CHART_IDS:
                svg = page.locator(f"figure#{chart_id} > svg")
                assert svg.count() == 1, chart_id
                box = svg.bounding_box()
                assert box is not None, chart_id
                assert box["width"] > 100, (chart_id, box)
                assert box["height"] > 50, (chart_id, box)
                assert page.locator(f"figure#{chart_id} svg path").count() > 0, chart_id
            cells = page.eval_on_selector_all(
                "[data-column]", "els => els.map(e => [+e.dataset.row, e.dataset.column, e.dataset.value, e.innerText])")
            table = report.to_arrow().to_pylist()
            assert len(cells) == len(table) * len(report.columns)
            for index, column, value, text in cells:
                assert _same(json.loads(value), table[index][column]), (column, value)
                if table[index][column] is None:
                    assert text == "-"
            # the Korean heading is laid out with real glyphs: as wide as its characters, not collapsed
            width = page.eval_on_selector("h1#title", "e => { const r = document.createRange(); r.selectNodeContents(e);"
                                                      " return r.getBoundingClientRect().width; }")
            assert width > 10 * 12
            for folder in _artifact_dirs(tmp_path):
                folder.mkdir(parents=True, exist_ok=True)
                shot = folder / "report-page.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                print(f"report page screenshot: {shot}")
        finally:
            browser.close()
