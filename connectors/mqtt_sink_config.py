"""The MQTT sink's config (`type: mqtt` under `sinks:`): a broker (the same keys as
the MQTT source, connectors/mqtt_config.py MqttBrokerConfig), the Unified Namespace's
topic template, and what is published. Documented in docs/connectors/mqtt-sink.md."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.mqtt_config import MqttBrokerConfig
from gateway.config import SinkConfig
from gateway.config_base import ConfigModel, InvalidKeyError, Name, matching

PLACEHOLDERS = ("prefix", "site", "area", "line", "machine", "signal")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TOPIC = re.compile(r"[^#+\x00]+")  # a topic name: no wildcard, no NUL
_PREFIX = re.compile(r"[^#+/\x00]+(/[^#+/\x00]+)*")


def prefix_levels(value: str) -> str:
    """A topic prefix: one or more levels, none empty, no wildcard."""
    return matching(_PREFIX, value, "topic levels such as 'ombre' or 'acme/plant-1', "
                    "without '#', '+', or an empty level")


class FilterConfig(ConfigModel):
    """Which readings of a number signal are worth publishing (strings, which travel as
    events, are never filtered). A reading is published when it is its signal's first,
    or its quality differs from the last one published, or it comes at least
    `min_interval_s` after that one and (with a `deadband`) differs from it by more
    than the deadband: `deadband: 0` publishes changes only. No `signal`: every number
    signal (of `machine`, or of every machine)."""

    signal: Name | None = None
    machine: Name | None = None
    deadband: float | None = Field(default=None, ge=0)
    min_interval_s: float = Field(default=0.0, ge=0)


class MqttSinkConfig(SinkConfig, MqttBrokerConfig):
    """Publishes the outbox's readings and events to a broker, one topic per signal of
    the plant (`topic`), and the shadow's live model as retained messages."""

    type: Literal["mqtt"]
    name: Name = "uns"
    client_id: str = Field(default="ombre-uns", min_length=1, max_length=128)
    prefix: str = "ombre"
    topic: str = "{prefix}/{site}/{area}/{line}/{machine}/{signal}"
    default_area: Name = "default"  # {area} of a line placed directly under its site
    qos: Literal[0, 1, 2] = 1
    retain: bool = False  # readings retained too (the model always is)
    batch: Literal["none", "machine"] = "none"
    max_readings_per_message: int = Field(default=1_000, ge=1, le=100_000)
    max_messages_per_s: float | None = Field(default=None, gt=0)
    max_inflight: int = Field(default=1_000, ge=1, le=65_535)
    filters: list[FilterConfig] = Field(default_factory=list)
    model: bool = True  # publish the shadow's live model (when the shadow runs)
    model_interval_s: float = Field(default=2.0, ge=0.1, le=3600)

    _prefix_levels = field_validator("prefix")(prefix_levels)

    @field_validator("topic")
    @classmethod
    def _topic_template(cls, value: str) -> str:
        matching(_TOPIC, value, "an MQTT topic name (no '#' or '+')")
        unknown = [p for p in _PLACEHOLDER.findall(value) if p not in PLACEHOLDERS]
        if unknown:
            raise ValueError(f"expected placeholders among {{{'}, {'.join(PLACEHOLDERS)}}}, "
                             f"found {{{unknown[0]}}}")
        for needed in ("machine", "signal"):
            if "{" + needed + "}" not in value:
                raise ValueError(f"expected a template with {{{needed}}}, which tells "
                                 f"topics apart, found {value!r}")
        return value

    @model_validator(mode="after")
    def _machine_topic(self) -> MqttSinkConfig:
        if self.batch == "machine" and not self.topic.endswith("/{signal}"):
            raise InvalidKeyError(("topic",), "expected a template ending in /{signal} with "
                                  "batch: machine (a machine's messages go to the topic "
                                  f"without that level), found {self.topic!r}")
        return self
