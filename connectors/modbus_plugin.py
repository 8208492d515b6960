"""The Modbus TCP source's plug-in (`type: modbus`, gateway/plugins.py), on pymodbus
(`pip install 'ombre[modbus]'`), with its `ombre modbus read` command."""

from __future__ import annotations

from connectors.modbus_config import ModbusSourceConfig
from gateway.plugins import BuildContext, Commands, Load, Plugin
from gateway.types import Source


def _build(config: ModbusSourceConfig, context: BuildContext) -> Source:
    # pymodbus costs ~7 MB of RSS and 0.25 s: loaded only when configured.
    from connectors.modbus import ModbusSource  # noqa: PLC0415

    return ModbusSource(config, context.plant, context.registry, context.plant.runtime)


def _check(config: ModbusSourceConfig, context: BuildContext) -> None:
    from connectors.modbus_map import resolve_items  # noqa: PLC0415 - as the others

    resolve_items(config, context.plant, context.registry)


def _add_commands(commands: Commands, load: Load) -> None:
    from connectors.modbus_cli import add_modbus_commands  # noqa: PLC0415 - pymodbus on use

    add_modbus_commands(commands)  # `ombre modbus read` reaches a device without a config file


PLUGIN: Plugin[ModbusSourceConfig, Source] = Plugin(
    ModbusSourceConfig, _build, check=_check, add_commands=_add_commands, extra="modbus",
    requires=("pymodbus",), docs="docs/connectors/modbus.md", sample="""\
- type: modbus
  name: press-controller
  host: 192.168.0.20             # port 502, unit_id 1 by default
  poll_interval_ms: 1000
  word_order: big                # little for CDAB devices; byte_order likewise
  items:
    - {machine: press-1, signal: temperature, address: "hr:100:float32"}
    - {machine: press-1, signal: state, address: "hr:110:string:16", poll_interval_ms: 5000}
""")
