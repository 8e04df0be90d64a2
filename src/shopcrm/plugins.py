"""Plugins found through entry points, loaded only when first asked for.

Groups: ``shopcrm.sources`` (subclasses of :class:`shopcrm.sources.Source`) and
``shopcrm.channels`` (subclasses of :class:`shopcrm.channels.Channel`).  shopcrm's own built-ins are registered through its
``pyproject.toml`` too, so there is one code path.  A plugin that fails to
import, or is not what its group expects, raises :class:`PluginError` naming
the entry point, its distribution and the cause, and does not break the others.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
from collections.abc import Callable
from typing import Any

import attrs

from shopcrm.errors import PluginError

__all__ = ["GROUPS", "PluginInfo", "Registry", "channels_from_config", "registry"]


def _source_base() -> type:
    from shopcrm.sources import Source

    return Source


def _channel_base() -> type:
    from shopcrm.channels import Channel

    return Channel


GROUPS: dict[str, Callable[[], type]] = {"shopcrm.sources": _source_base, "shopcrm.channels": _channel_base}


@attrs.frozen
class PluginInfo:
    """What ``shopcrm plugins`` shows for one plugin."""

    group: str
    name: str
    target: str
    distribution: str
    status: str  # "ok", "not loaded", or "error: ..."


class Registry:
    """Entry points of the shopcrm groups, read once and imported lazily."""

    def __init__(self, groups: dict[str, Callable[[], type]] | None = None) -> None:
        self._groups = dict(groups or GROUPS)
        self._points: dict[str, dict[str, metadata.EntryPoint]] | None = None
        self._loaded: dict[tuple[str, str], type] = {}
        self._registered: dict[tuple[str, str], type] = {}
        self._errors: dict[tuple[str, str], PluginError] = {}

    def _entry_points(self) -> dict[str, dict[str, metadata.EntryPoint]]:
        if self._points is None:
            found: dict[str, dict[str, metadata.EntryPoint]] = {g: {} for g in self._groups}
            for group in self._groups:
                for point in metadata.entry_points(group=group):
                    previous = found[group].get(point.name)
                    if previous is not None and previous.value != point.value:
                        raise PluginError(
                            f"two plugins register {point.name!r} in {group}: {previous.value} "
                            f"({_dist(previous)}) and {point.value} ({_dist(point)}); uninstall one"
                        )
                    found[group][point.name] = point
            self._points = found
        return self._points

    def _check_group(self, group: str) -> None:
        if group not in self._groups:
            raise PluginError(f"unknown plugin group {group!r}; shopcrm has {', '.join(sorted(self._groups))}")

    def names(self, group: str) -> list[str]:
        """Every plugin name in a group (without importing any)."""
        self._check_group(group)
        names = set(self._entry_points()[group]) | {n for g, n in self._registered if g == group}
        return sorted(names)

    def register(self, group: str, name: str, obj: type) -> None:
        """Register a plugin by hand (tests, notebooks); it wins over an entry point."""
        self._check_group(group)
        self._verify(group, name, obj, "registered by hand")
        self._registered[(group, name)] = obj

    def unregister(self, group: str, name: str) -> None:
        self._registered.pop((group, name), None)

    def _verify(self, group: str, name: str, obj: Any, origin: str) -> None:
        base = self._groups[group]()
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(
                f"plugin {name!r} in {group} ({origin}) is {obj!r}, which is not a subclass of "
                f"{base.__module__}.{base.__qualname__}; point the entry point at such a class"
            )

    def get(self, group: str, name: str) -> type:
        """The plugin class, imported on first use."""
        self._check_group(group)
        key = (group, name)
        if key in self._registered:
            return self._registered[key]
        if key in self._loaded:
            return self._loaded[key]
        if key in self._errors:
            raise self._errors[key]
        point = self._entry_points()[group].get(name)
        if point is None:
            options = self.names(group)
            close = difflib.get_close_matches(name, options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(
                f"no plugin named {name!r} in {group}{hint} installed: {', '.join(options) or 'none'}"
            )
        origin = f"entry point {point.value} from {_dist(point)}"
        try:
            obj = point.load()
        except Exception as exc:
            error = PluginError(
                f"plugin {name!r} in {group} ({origin}) failed to import: {type(exc).__name__}: {exc}"
            )
            self._errors[key] = error
            raise error from exc
        try:
            self._verify(group, name, obj, origin)
        except PluginError as error:
            self._errors[key] = error
            raise
        self._loaded[key] = obj
        return obj  # type: ignore[no-any-return]

    def available(self, group: str | None = None) -> list[PluginInfo]:
        """Every plugin with its status; importing each one to check it."""
        out = []
        for g in [group] if group else sorted(self._groups):
            points = self._entry_points()[g]
            for name in self.names(g):
                point = points.get(name)
                target = point.value if point else "registered by hand"
                dist = _dist(point) if point else "-"
                try:
                    self.get(g, name)
                    status = "ok"
                except PluginError as exc:
                    status = f"error: {exc}"
                out.append(PluginInfo(g, name, target, dist, status))
        return out


def _dist(point: metadata.EntryPoint | None) -> str:
    dist = getattr(point, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.name} {dist.version}"


registry = Registry()


def channels_from_config(config: dict[str, Any], plugins: Registry | None = None) -> dict[str, Any]:
    """Channel instances from ``{"sms": {"plugin": "jsonl", "path": "sms.jsonl"}, ...}``: each chain channel names a
    plugin of the ``shopcrm.channels`` group and its settings.  Chain channels sharing one provider may name the
    same settings under ``"use": "sms"`` to share one instance."""
    found = plugins or registry
    out: dict[str, Any] = {}
    shared: dict[str, str] = {}
    for chain_channel, settings in config.items():
        if not isinstance(settings, dict):
            raise PluginError(f"channels.{chain_channel}: settings are an object with a 'plugin' key, not {settings!r}")
        if "use" in settings:
            shared[chain_channel] = str(settings["use"])
            continue
        options = dict(settings)
        name = options.pop("plugin", None)
        if not isinstance(name, str):
            raise PluginError(f"channels.{chain_channel}: name the channel plugin, e.g. {{\"plugin\": \"jsonl\", ...}}")
        cls = found.get("shopcrm.channels", name)
        try:
            out[chain_channel] = cls.from_config(options)  # type: ignore[attr-defined]
        except (TypeError, ValueError) as error:
            raise PluginError(f"channels.{chain_channel}: plugin {name!r} could not be configured: {error}") from error
    for chain_channel, other in shared.items():
        if other not in out:
            raise PluginError(f"channels.{chain_channel}: uses {other!r}, which is not configured")
        out[chain_channel] = out[other]
    return out
