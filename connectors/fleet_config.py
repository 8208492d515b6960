"""The `fleet:` block: a central process that consumes the edge gateways' Unified
Namespace from a central broker, one MQTT session per site (connectors/fleet_source.py),
the sites shared among the central processes by leases (shadow/fleet.py). Documented
in docs/fleet.md."""

from __future__ import annotations

from pydantic import Field, field_validator

from connectors.mqtt_config import MqttSubscriberConfig
from connectors.mqtt_sink_config import prefix_levels
from gateway.config_base import Name


class FleetConfig(MqttSubscriberConfig):
    """The central broker (the MQTT source's keys), this process's `member` name
    (unique in the fleet, kept across restarts), how long a site's lease lasts, and the
    edges' topics (their MQTT sink's `prefix` and `topic`). Each site is read in its
    own persistent session, `{client_id}-{site}`, whichever member holds it."""

    client_id: str = Field(default="ombre-fleet", min_length=1, max_length=100)
    member: Name
    lease_s: float = Field(default=15, ge=3, le=3600)
    prefix: str = "ombre"
    topic: str = "{prefix}/{site}/{area}/{line}/{machine}/{signal}"
    qos: int = Field(default=1, ge=1, le=2)

    _prefix_levels = field_validator("prefix")(prefix_levels)

    def site_topic(self, site: str) -> str:
        """The subscription template of one site: its prefix and site filled in, any
        area (a line under its site directly has the edge's `default_area`)."""
        return (self.topic.replace("{prefix}", self.prefix).replace("{site}", site)
                .replace("{area}", "+"))
