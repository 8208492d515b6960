"""The SQLite time-series sink's config (`type: sqlite`): the embedded default store
(connectors/sqlite_ts.py). Documented in docs/connectors/sqlite.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config import SinkConfig
from gateway.config_base import ConfigPath, Name


class SqliteSinkConfig(SinkConfig):
    type: Literal["sqlite"]
    name: Name = "timeseries"
    path: ConfigPath | None = None  # default: <data_dir>/timeseries.sqlite
    retention_days: float = Field(default=30, gt=0)
