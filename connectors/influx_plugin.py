"""The InfluxDB sink's plug-in (`type: influxdb`, gateway/plugins.py), on
influxdb-client: `pip install 'ombre[influx]'`."""

from __future__ import annotations

from connectors.influx_config import InfluxSinkConfig
from gateway.plugins import BuildContext, Plugin
from gateway.types import Sink


def _build(config: InfluxSinkConfig, context: BuildContext) -> Sink:
    # influxdb-client costs ~25 MB of RSS and 0.6 s: loaded only when configured.
    from connectors.influx import InfluxSink  # noqa: PLC0415

    return InfluxSink(config, context.plant, context.registry)


PLUGIN: Plugin[InfluxSinkConfig, Sink] = Plugin(
    InfluxSinkConfig, _build, extra="influx", requires=("influxdb_client",),
    docs="docs/connectors/influxdb.md", sample="""\
- type: influxdb
  url: http://127.0.0.1:8086
  org: factory
  bucket: ombre
  token: ${INFLUX_TOKEN}
""")
