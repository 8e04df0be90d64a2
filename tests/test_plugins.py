"""Plugins under entry points: lazy, checked, and a broken one names itself without breaking others."""

from __future__ import annotations

import importlib.metadata as metadata
import sys
from pathlib import Path
from typing import Any

import pytest

import shopcrm
from shopcrm.plugins import Registry
from shopcrm.sources.duckdb_store import DuckDBSource


def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str], module: str = "") -> None:
    """Install a tiny distribution with entry points onto sys.path."""
    dist = tmp_path / "shop_plugins-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shop-plugins\nVersion: 1.2.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (dist / "entry_points.txt").write_text(f"[shopcrm.sources]\n{lines}\n")
    if module:
        (tmp_path / "shop_plugins.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("shop_plugins", None)


def test_builtin_sources_are_registered_through_entry_points() -> None:
    registry = Registry()
    assert {"duckdb", "dbapi", "spark"} <= set(registry.names("shopcrm.sources"))
    assert registry.get("shopcrm.sources", "duckdb") is DuckDBSource


def test_a_broken_plugin_is_named_and_the_others_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, {
        "broken": "shop_plugins:Missing",
        "wrong": "shop_plugins:NotASource",
        "fine": "shop_plugins:Fine",
        "noimport": "no_such_module_xyz:Thing",
    }, module=(
        "from shopcrm.sources import Source\n"
        "class NotASource: pass\n"
        "class Fine(Source):\n"
        "    dialect = 'duckdb'\n"
        "    def schema(self): raise NotImplementedError\n"
        "    def fetch(self, query): return []\n"
    ))
    registry = Registry()
    assert registry.get("shopcrm.sources", "fine").__name__ == "Fine"
    with pytest.raises(shopcrm.PluginError, match=r"plugin 'broken' in shopcrm.sources \(entry point shop_plugins:Missing from shop-plugins 1.2.3\) failed to import"):
        registry.get("shopcrm.sources", "broken")
    with pytest.raises(shopcrm.PluginError, match=r"not a subclass of shopcrm\.sources\._base\.Source"):
        registry.get("shopcrm.sources", "wrong")
    with pytest.raises(shopcrm.PluginError, match="ModuleNotFoundError"):
        registry.get("shopcrm.sources", "noimport")
    statuses = {info.name: info.status for info in registry.available("shopcrm.sources")}
    assert statuses["fine"] == "ok"
    assert statuses["duckdb"] == "ok"
    assert statuses["broken"].startswith("error:")
    assert statuses["wrong"].startswith("error:")


def test_unknown_names_get_a_suggestion_and_register_is_checked() -> None:
    registry = Registry()
    with pytest.raises(shopcrm.PluginError, match="did you mean 'duckdb'"):
        registry.get("shopcrm.sources", "duckbd")
    with pytest.raises(shopcrm.PluginError, match="unknown plugin group"):
        registry.names("shopcrm.nothing")
    with pytest.raises(shopcrm.PluginError, match="not a subclass"):
        registry.register("shopcrm.sources", "x", dict)
    registry.register("shopcrm.sources", "mine", DuckDBSource)
    assert registry.get("shopcrm.sources", "mine") is DuckDBSource


def test_plugins_are_not_imported_until_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    original = metadata.EntryPoint.load

    def spy(self: Any) -> Any:
        loaded.append(self.name)
        return original(self)

    monkeypatch.setattr(metadata.EntryPoint, "load", spy)
    registry = Registry()
    registry.names("shopcrm.sources")
    assert loaded == []
    registry.get("shopcrm.sources", "dbapi")
    assert loaded == ["dbapi"]


def test_a_broken_channel_plugin_is_named_and_the_builtins_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "shop_channels-0.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shop-channels\nVersion: 0.9\n")
    (dist / "entry_points.txt").write_text("[shopcrm.channels]\nkakao_x = shop_channels:NotAChannel\nline = shop_channels:Missing\n")
    (tmp_path / "shop_channels.py").write_text("class NotAChannel: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("shop_channels", None)
    registry = Registry()
    with pytest.raises(shopcrm.PluginError, match=r"plugin 'kakao_x' in shopcrm.channels .* not a subclass of shopcrm\.channels\._base\.Channel"):
        registry.get("shopcrm.channels", "kakao_x")
    with pytest.raises(shopcrm.PluginError, match=r"plugin 'line' in shopcrm.channels \(entry point shop_channels:Missing from shop-channels 0.9\) failed to import"):
        registry.get("shopcrm.channels", "line")
    statuses = {info.name: info.status for info in registry.available("shopcrm.channels")}
    assert {statuses[name] for name in ("console", "jsonl", "webhook", "smtp", "solapi", "nhncloud", "nhncloud_kakao")} == {"ok"}
    assert statuses["line"].startswith("error: plugin 'line'")
