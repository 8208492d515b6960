"""The Sparkplug B plug-ins (`type: sparkplug`, gateway/plugins.py): a source and a sink,
on paho-mqtt and protobuf: `pip install 'ombre[sparkplug]'`."""

from __future__ import annotations

from connectors.sparkplug_config import SparkplugSinkConfig, SparkplugSourceConfig
from gateway.config_base import InvalidKeyError
from gateway.plugins import BuildContext, Plugin
from gateway.types import Sink, Source

DOCS = "docs/connectors/sparkplug.md"


def _build_source(config: SparkplugSourceConfig, context: BuildContext) -> Source:
    from connectors.mqtt import MqttSource  # noqa: PLC0415 - this module stays light
    from connectors.sparkplug_source import SparkplugDecoder, SparkplugSource  # noqa: PLC0415

    decoder = SparkplugDecoder(config, context.plant, context.registry)
    return SparkplugSource(MqttSource(config, config.name, decoder, context.plant.runtime),
                           decoder, config.host_id)


def _check_source(config: SparkplugSourceConfig, context: BuildContext) -> None:
    signals = {m.id: {s.name for s in m.signals} for m in context.plant.machines()}
    for i, device in enumerate(config.devices):
        if device.machine not in signals:
            raise InvalidKeyError(("devices", i, "machine"), "expected a machine of the plant, "
                                  f"found {device.machine!r}")
        for metric, signal in device.metrics.items():
            if signal not in signals[device.machine]:
                raise InvalidKeyError(("devices", i, "metrics", metric),
                                      f"expected a signal of machine {device.machine}, "
                                      f"found {signal!r}")


def _build_sink(config: SparkplugSinkConfig, context: BuildContext) -> Sink:
    from connectors.sparkplug_sink import SparkplugSink  # noqa: PLC0415

    return SparkplugSink(config, context.plant, context.registry)


SOURCE: Plugin[SparkplugSourceConfig, Source] = Plugin(
    SparkplugSourceConfig, _build_source, check=_check_source, docs=DOCS,
    extra="sparkplug", requires=("google.protobuf",), sample="""\
- type: sparkplug
  name: edge-nodes
  host: 127.0.0.1
  group_id: plant1
  host_id: ombre                # optional: Ombre as the primary host application
  devices:                      # optional: a device feeds the machine of its own id
    - {node: press-plc, device: press, machine: press-1, metrics: {Temp: temperature}}
""")

SINK: Plugin[SparkplugSinkConfig, Sink] = Plugin(
    SparkplugSinkConfig, _build_sink, docs=DOCS, extra="sparkplug",
    requires=("google.protobuf",), sample="""\
- type: sparkplug
  host: 127.0.0.1
  group_id: plant1
  edge_node_id: ombre-line-1
  primary_host_id: scada       # optional: hold data while this host is offline
""")
