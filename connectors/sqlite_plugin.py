"""The SQLite time-series sink's plug-in (`type: sqlite`, gateway/plugins.py)."""

from __future__ import annotations

from connectors.sqlite_config import SqliteSinkConfig
from gateway.plugins import BuildContext, Plugin
from gateway.types import Sink


def _build(config: SqliteSinkConfig, context: BuildContext) -> Sink:
    from connectors.sqlite_sink import SqliteSink  # noqa: PLC0415 - this module stays light

    return SqliteSink(config, context.plant.data_dir, context.registry)


PLUGIN: Plugin[SqliteSinkConfig, Sink] = Plugin(
    SqliteSinkConfig, _build, docs="docs/connectors/sqlite.md", sample="""\
- type: sqlite
  retention_days: 30
""")
