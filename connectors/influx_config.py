"""The InfluxDB sink's config (`type: influxdb`). Documented in
docs/connectors/influxdb.md."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config import SinkConfig
from gateway.config_base import InvalidKeyError, Name, Secret, matching, require_unique

_HTTP_URL = re.compile(r"https?://[^\s/:?#]+(:\d{1,5})?(/\S*)?")
_ONE_LINE = re.compile(r"[^\n\r]+")
_FIELD_KEY = re.compile(r"(?!quality$)[^_\n\r][^\n\r]*")
InfluxTag = Literal["site", "area", "line", "machine", "signal", "unit"]


class InfluxSinkConfig(SinkConfig):
    """An InfluxDB 2 server, or one that speaks its write API (VictoriaMetrics), written
    in line protocol; connectors/line_protocol.py documents the layout the keys set."""

    type: Literal["influxdb"]
    name: Name = "influxdb"
    url: str  # http(s)://host[:port][/path]
    org: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    token: Secret
    batch_size: int = Field(default=5_000, ge=1, le=100_000)  # lines per HTTP request
    gzip: bool = False
    timeout_s: float = Field(default=10, gt=0, le=300)
    measurement: Literal["machine_type", "site"] = "machine_type"
    tags: tuple[InfluxTag, ...] = ("site", "line", "machine", "signal", "unit")
    value_field: str = "value"
    event_measurement: str = "events"

    @field_validator("url")
    @classmethod
    def _url_form(cls, value: str) -> str:
        return matching(_HTTP_URL, value, "a URL such as 'http://127.0.0.1:8086'")

    @field_validator("value_field")
    @classmethod
    def _field_key(cls, value: str) -> str:
        return matching(_FIELD_KEY, value, "a field key other than 'quality', not starting "
                        "with '_' (InfluxDB reserves those), without line breaks")

    @field_validator("event_measurement")
    @classmethod
    def _measurement_name(cls, value: str) -> str:
        return matching(_ONE_LINE, value, "a non-empty name without line breaks")

    @model_validator(mode="after")
    def _series_tags(self) -> InfluxSinkConfig:
        require_unique(((t, ("tags", i)) for i, t in enumerate(self.tags)), "tag")
        for needed in ("machine", "signal"):
            if needed not in self.tags:
                raise InvalidKeyError(("tags",), f"expected a list with {needed!r}, which "
                                      f"tells series apart, found {list(self.tags)}")
        return self
