"""The documentation is checked against the code: its rules parse, its Python runs."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

import shopcrm
from shopcrm.dsl import NODE_KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: a fenced block, at the margin or indented inside a list item (its body dedented as a reader would copy it)
FENCE = re.compile(r"^([ ]*)```(\w+)\n(.*?)^\1```", re.S | re.M)


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [textwrap.dedent(body) for _, lang, body in FENCE.findall(text) if lang == language]


def test_every_json_block_of_the_dsl_reference_is_a_valid_rule() -> None:
    rules = blocks("dsl.md", "json")
    assert len(rules) >= 10
    for text in rules:
        rule = shopcrm.parse_rule(text)
        assert json.loads(rule.to_json()) == json.loads(text), text


def test_the_dsl_reference_documents_every_node() -> None:
    text = (DOCS / "dsl.md").read_text(encoding="utf-8")
    headings = " ".join(re.findall(r"^### (.+)$", text, re.M))
    missing = [key for key in NODE_KEYS if key not in headings]
    assert not missing, f"docs/dsl.md has no section for {missing}"


def test_the_error_message_shown_in_the_reference_is_the_real_one() -> None:
    shown = blocks("dsl.md", "text")[0].strip()
    with pytest.raises(shopcrm.RuleError) as info:
        shopcrm.parse_rule(
            {"and": [{"everyone": True}, {"performed": "x", "within": {"last": "30 days"}}]}
        )
    assert str(info.value) == shown


@pytest.mark.parametrize("page", [
    "quickstart.md", "dsl.md", "campaigns.md", "campaigns/one-off.md", "campaigns/recurring.md", "campaigns/scenarios.md",
    "campaigns/playbooks.md", "campaigns/templates.md", "channels.md", "checks.md",
    "existing-database.md", "library-tables.md", "notebooks.md", "measurement.md",
    "measurement-statistics.md", "tracking.md", "campaigns/policies.md",
    "catalog.md",
    "campaigns/recommendations.md",
    "products.md",
    "segment-tracking.md",
    "lifecycle.md",
    "engines/index.md",
    "segments.md",
    "sources.md",
    "engines/sqlite.md",
    "engines/warehouses.md",
])
def test_python_blocks_run_in_order(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files a page creates (a shop's DuckDB file) land in a scratch folder
    namespace: dict[str, object] = {}
    code = blocks(page, "python")
    assert code
    for block in code:
        exec(compile(block, f"docs/{page}", "exec"), namespace)


def test_mkdocs_nav_lists_every_page() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    missing = [p for p in pages if p not in nav]
    assert not missing, f"pages missing from mkdocs.yml nav: {missing}"


def test_the_operator_table_lists_every_operator() -> None:
    from shopcrm.dsl._nodes import OPERATORS

    text = (DOCS / "dsl.md").read_text(encoding="utf-8")
    missing = [op for op in OPERATORS if f"`{op}`" not in text]
    assert not missing, f"docs/dsl.md does not document operators {missing}"


def test_the_playbook_page_lists_every_playbook_and_reason_table_every_reason() -> None:
    from shopcrm.campaigns import PLAYBOOKS, REASONS

    playbooks = (DOCS / "campaigns" / "playbooks.md").read_text(encoding="utf-8")
    assert [name for name in PLAYBOOKS if f"| `{name}` |" not in playbooks] == []
    policies = (DOCS / "campaigns" / "policies.md").read_text(encoding="utf-8")
    assert [reason for reason in REASONS if f"| `{reason}` |" not in policies] == []


def test_the_readme_python_block_runs_after_shopcrm_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first command is `shopcrm demo` (which writes shopcrm-demo.duckdb); its Python block then runs
    verbatim in the same folder (here on a smaller demo shop)."""
    from shopcrm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--scale", "3000"]) == 0  # the demo saves its messaging policy with the shop
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert "shopcrm demo" in readme.split("```python")[0]
    code = next(textwrap.dedent(body) for _, lang, body in FENCE.findall(readme) if lang == "python")
    assert 'Shop.open("shopcrm-demo.duckdb")' in code
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "sent.jsonl").stat().st_size > 0
