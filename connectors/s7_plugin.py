"""The Siemens S7 source's plug-in (`type: s7`, gateway/plugins.py), on python-snap7
(`pip install 'ombre[s7]'`), with its `ombre s7 read` command."""

from __future__ import annotations

from connectors.s7_config import S7SourceConfig
from gateway.plugins import BuildContext, Commands, Load, Plugin
from gateway.types import Source


def _build(config: S7SourceConfig, context: BuildContext) -> Source:
    from connectors.s7 import S7Source  # noqa: PLC0415 - snap7 only when configured

    return S7Source(config, context.plant, context.registry, context.plant.runtime)


def _check(config: S7SourceConfig, context: BuildContext) -> None:
    from connectors.s7_items import resolve_items  # noqa: PLC0415 - as the others

    resolve_items(config, context.plant, context.registry)


def _add_commands(commands: Commands, load: Load) -> None:
    from connectors.s7_cli import add_s7_commands  # noqa: PLC0415 - snap7 on use

    add_s7_commands(commands)  # `ombre s7 read` reaches a PLC without a config file


PLUGIN: Plugin[S7SourceConfig, Source] = Plugin(
    S7SourceConfig, _build, check=_check, add_commands=_add_commands, extra="s7",
    requires=("snap7",), docs="docs/connectors/s7.md", sample="""\
- type: s7
  name: press-plc
  host: 192.168.0.30
  rack: 0
  slot: 1                        # S7-1200/1500: 0/1; S7-300: 0/2; or remote_tsap: "03.01"
  poll_interval_ms: 500
  items:
    - {machine: press-1, signal: temperature, address: DB10.DBW4, scale: 0.1}  # INT, tenths
    - {machine: press-1, signal: state, address: DB11.DBB0, type: STRING, length: 20,
       poll_interval_ms: 5000}
""")
