"""The MQTT source's config (`type: mqtt`): a broker, and topic templates with the
payload format of each (connectors/topics.py, mqtt_decode.py). Documented in
docs/connectors/mqtt.md."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config import SourceConfig
from gateway.config_base import ConfigModel, ConfigPath, InvalidKeyError, Name, Secret


class TlsConfig(ConfigModel):
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    insecure_skip_verify: bool = False


PayloadFormat = Literal["number", "value", "object", "array"]


def _dotted(value: object) -> object:
    """`values` or `data.values` as the keys it walks: ("data", "values")."""
    parts = value.split(".") if isinstance(value, str) else []
    if not parts or not all(parts):
        raise ValueError(f"expected a dotted path of keys such as 'values' or "
                         f"'data.values', found {value!r}"[:160])
    return tuple(parts)


# Keys from the payload's root to a nested value, written `data.values` in the file.
DottedPath = Annotated[tuple[str, ...], BeforeValidator(_dotted)]


class SubscriptionConfig(ConfigModel):
    """One topic template. Placeholders {machine} and {signal} map the topic; {site},
    {area} and {line} are matched as single levels and checked against the plant.
    connectors/topics.py checks templates against the plant when the router is built.
    For the `object` format, `values_path` leads to the object whose keys are signals
    (default: the payload itself) and `ts_path` to the timestamp (default: `ts_field`
    in that object): `{"ts": ..., "values": {...}}` is `values_path: values`,
    `ts_path: ts`."""

    topic: str = Field(min_length=1)
    qos: Literal[0, 1, 2] = 1
    format: PayloadFormat = "value"
    machine: Name | None = None  # fixed machine when the template has no {machine}
    signal: Name | None = None  # fixed signal when the template has no {signal}
    value_field: str = "value"
    ts_field: str = "ts"
    ts_unit: Literal["s", "ms", "us", "ns", "rfc3339"] = "ms"
    # `value` format: the key of the reading's quality flags, 0 good (gateway/types.py
    # Quality: 1 bad, 2 uncertain...), as Ombre's MQTT sink writes them; absent: good.
    quality_field: str | None = None
    values_path: DottedPath | None = None
    ts_path: DottedPath | None = None

    @model_validator(mode="after")
    def _paths_for_objects(self) -> SubscriptionConfig:
        for key in ("values_path", "ts_path"):
            if getattr(self, key) is not None and self.format != "object":
                raise InvalidKeyError((key,), f"expected {key} only with format: object, "
                                      f"found format: {self.format}")
        if self.quality_field is not None and self.format != "value":
            raise InvalidKeyError(("quality_field",), "expected quality_field only with "
                                  f"format: value, found format: {self.format}")
        if self.ts_path is not None and "ts_field" in self.model_fields_set:
            raise InvalidKeyError(("ts_field",), "expected ts_path or ts_field, found both")
        return self

    @cached_property
    def ts_key(self) -> str | None:
        """The key of the values object that holds the timestamp, not a signal."""
        if self.ts_path is None:
            return self.ts_field
        return self.ts_path[-1] if self.ts_path[:-1] == (self.values_path or ()) else None


class MqttBrokerConfig(ConfigModel):
    """How to reach a broker: its address, the MQTT version, credentials, TLS and the
    session. Every connector that speaks MQTT (this source, the MQTT sink, the Sparkplug B
    source and sink) has these keys; connectors/mqtt_client.py builds the client."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="ombre", min_length=1, max_length=128)
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=86_400, ge=0)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        """`protocol: 5` is an integer in YAML; accept it as "5"."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class MqttSubscriberConfig(MqttBrokerConfig):
    """A broker that a source subscribes to, in a persistent session (connectors/mqtt.py)
    unless `session_expiry_s` is 0."""

    receive_maximum: int = Field(default=10_000, ge=1, le=65_535)

    @property
    def persistent(self) -> bool:
        """The broker keeps the session while the source is away (MQTT 3.1.1's clean
        session off; MQTT 5's session expiry)."""
        return self.session_expiry_s > 0


class MqttSourceConfig(MqttSubscriberConfig, SourceConfig):
    type: Literal["mqtt"]
    subscriptions: list[SubscriptionConfig] = Field(min_length=1)

    def fed_machines(self) -> frozenset[str] | None:
        if any("{machine}" in s.topic for s in self.subscriptions):
            return None
        return frozenset(s.machine for s in self.subscriptions if s.machine)
