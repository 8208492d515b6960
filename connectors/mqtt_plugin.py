"""The MQTT source's plug-in (`type: mqtt`, gateway/plugins.py), on paho-mqtt (a
core dependency)."""

from __future__ import annotations

from connectors.mqtt_config import MqttSourceConfig
from gateway.config_base import InvalidKeyError
from gateway.plugins import BuildContext, Plugin
from gateway.types import Source


def _build(config: MqttSourceConfig, context: BuildContext) -> Source:
    from connectors.mqtt import MqttSource  # noqa: PLC0415 - this module stays light
    from connectors.mqtt_decode import PayloadDecoder  # noqa: PLC0415

    decoder = PayloadDecoder(config.name, config.subscriptions, context.plant, context.registry)
    return MqttSource(config, config.name, decoder, context.plant.runtime)


def _check(config: MqttSourceConfig, context: BuildContext) -> None:
    from connectors.topics import TopicRouter  # noqa: PLC0415

    for i, subscription in enumerate(config.subscriptions):
        try:
            TopicRouter([subscription], context.plant, context.registry)
        except ValueError as exc:
            raise InvalidKeyError(("subscriptions", i), str(exc)) from None


PLUGIN: Plugin[MqttSourceConfig, Source] = Plugin(
    MqttSourceConfig, _build, check=_check, docs="docs/connectors/mqtt.md", sample="""\
- type: mqtt
  name: sensors
  host: 127.0.0.1
  subscriptions:
    - topic: plant/{line}/{machine}/{signal}  # {"value": 21.5, "ts": 1700000000000}
      format: value
    - topic: v1/devices/{machine}/telemetry   # {"ts": 1700000000000, "values": {...}}
      format: object
      values_path: values
      ts_path: ts
""")
