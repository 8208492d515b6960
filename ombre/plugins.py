"""The registry of connector plug-ins: the entry points of the groups `ombre.sources`
and `ombre.sinks` (gateway/plugins.py has the contract), loaded once per process."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.util import find_spec
from typing import Any, Literal, get_args, get_origin

from gateway.config import ConnectorConfig, SinkConfig
from gateway.plugins import SINKS, SOURCES, Plugin, SinkPlugin, SourcePlugin


class PluginError(Exception):
    """An installed plug-in that cannot be used; the message names its entry point."""


@dataclass(frozen=True, slots=True)
class Registry:
    sources: Mapping[str, SourcePlugin]
    sinks: Mapping[str, SinkPlugin]

    def all(self) -> list[Plugin[Any, Any]]:
        return [*self.sources.values(), *self.sinks.values()]

    def of(self, config: ConnectorConfig) -> Plugin[Any, Any]:
        """The plug-in of a validated source or sink config (a type may name both: the
        Sparkplug B source and sink)."""
        group = self.sinks if isinstance(config, SinkConfig) else self.sources
        return group[config.type]


@functools.cache
def registry() -> Registry:
    """Every installed plug-in, by type; raises PluginError for one that does not load
    or whose config's `type` is not its entry point's name."""
    return Registry(_group(SOURCES), _group(SINKS))


def _group(group: str) -> dict[str, Plugin[Any, Any]]:
    found: dict[str, Plugin[Any, Any]] = {}
    for point in entry_points(group=group):
        where = f"plug-in {point.name!r} ({group} = {point.value})"
        if point.name in found:
            raise PluginError(f"{where}: a second plug-in of that type is installed")
        try:
            plugin = point.load()
        except Exception as exc:  # noqa: BLE001 - any import error of a third-party module
            raise PluginError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
        if not isinstance(plugin, Plugin):
            raise PluginError(f"{where}: expected a gateway.plugins.Plugin, found "
                              f"{type(plugin).__name__}")
        tag = plugin.config.model_fields.get("type")
        if tag is None or get_origin(tag.annotation) is not Literal or \
                get_args(tag.annotation) != (point.name,):
            raise PluginError(f"{where}: expected its config's `type` to be "
                              f"Literal[{point.name!r}]")
        found[point.name] = plugin
    return found


def missing_modules(plugin: Plugin[Any, Any]) -> list[str]:
    """The modules a plug-in `requires` that are not installed."""
    return [name for name in plugin.requires if find_spec(name) is None]


def install_hint(plugin: Plugin[Any, Any]) -> str:
    """What to install for a plug-in whose modules are missing."""
    return f"pip install 'ombre[{plugin.extra}]'" if plugin.extra else \
        f"pip install {' '.join(plugin.requires)}"
