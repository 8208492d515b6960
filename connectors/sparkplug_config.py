"""The Sparkplug B connectors' configs (`type: sparkplug`): the sink that makes Ombre an
edge node, and the source that consumes other edge nodes. Both reach their broker with
the MQTT source's keys (host, port, credentials, TLS: connectors/mqtt_config.py).
Documented in docs/connectors/sparkplug.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.mqtt_config import MqttBrokerConfig, MqttSubscriberConfig
from gateway.config import SinkConfig, SourceConfig
from gateway.config_base import ConfigModel, Name


class SparkplugSinkConfig(MqttBrokerConfig, SinkConfig):
    """Ombre as the edge node `edge_node_id` of group `group_id`, each machine of the
    plant one of its devices. With `primary_host_id`, data waits in the outbox while
    that host's STATE is not online. A machine without data for `silence_s` gets a
    DDEATH, and a DBIRTH when its data comes back."""

    type: Literal["sparkplug"]
    name: Name = "sparkplug"
    client_id: str = Field(default="ombre-edge", min_length=1, max_length=128)
    group_id: Name = "ombre"
    edge_node_id: Name = "ombre"
    primary_host_id: Name | None = None
    qos: Literal[0, 1] = 1
    silence_s: float = Field(default=60, gt=0)
    max_metrics: int = Field(default=1_000, ge=1, le=100_000)  # per DDATA message


class DeviceConfig(ConfigModel):
    """Which machine an edge node's device (or, without `device`, the node's own
    metrics) feeds, and which signal each metric is: a metric not in `metrics` is the
    signal of the same name, if the machine has one."""

    node: Name
    device: Name | None = None
    machine: Name
    metrics: dict[str, Name] = Field(default_factory=dict)


class SparkplugSourceConfig(MqttSubscriberConfig, SourceConfig):
    """Subscribes to the edge nodes of `group_id` (every group without it). A device
    that `devices` does not list feeds the machine of the same id, if there is one.
    With `host_id`, Ombre is that primary host application: its retained STATE says
    online while it is connected (offline as its will)."""

    type: Literal["sparkplug"]
    client_id: str = Field(default="ombre-host", min_length=1, max_length=128)
    group_id: Name | None = None
    host_id: Name | None = None
    qos: Literal[0, 1, 2] = 1
    devices: list[DeviceConfig] = Field(default_factory=list)
