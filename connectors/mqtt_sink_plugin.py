"""The MQTT sink's plug-in (`type: mqtt` under `sinks:`, gateway/plugins.py), on
paho-mqtt (a core dependency): the plant as a Unified Namespace."""

from __future__ import annotations

from connectors.mqtt_sink_config import MqttSinkConfig
from gateway.config_base import InvalidKeyError
from gateway.plugins import BuildContext, Plugin
from gateway.types import Sink


def _build(config: MqttSinkConfig, context: BuildContext) -> Sink:
    from connectors.mqtt_sink import MqttSink  # noqa: PLC0415 - this module stays light

    return MqttSink(config, context.plant, context.registry)


def _check(config: MqttSinkConfig, context: BuildContext) -> None:
    """Each filter names a number signal (or a machine) of the plant."""
    numbers = {(m.id, s.name) for m in context.plant.machines() for s in m.signals
               if s.type == "number"}
    for i, f in enumerate(config.filters):
        if not any(f.signal in (None, s) and f.machine in (None, m) for m, s in numbers):
            where = "/".join(p for p in (f.machine or "any machine", f.signal or "any signal"))
            raise InvalidKeyError(("filters", i), "expected a number signal declared in the "
                                  f"plant, found {where}")


PLUGIN: Plugin[MqttSinkConfig, Sink] = Plugin(
    MqttSinkConfig, _build, check=_check, docs="docs/connectors/mqtt-sink.md", sample="""\
- type: mqtt
  name: uns
  host: 127.0.0.1
  prefix: ombre      # ombre/{site}/{area}/{line}/{machine}/{signal}
  qos: 1
  filters:
    - deadband: 0          # numbers only when they change
    - signal: temperature
      deadband: 0.5
      min_interval_s: 1
""")
