"""The plant and its connections, as one validated YAML file.

`load_config(path, environ)` is the only entry point: it reads the YAML, substitutes
`${ENV_NAME}` and `${file:/path}` references, validates with pydantic and raises
ConfigError listing every problem with its key path and line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from gateway.types import SignalRegistry

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/#+\s]([^/#+]*[^/#+\s])?$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalConfig(_Model):
    name: Name
    type: Literal["number", "string"] = "number"  # strings travel as events
    unit: str | None = None
    description: str | None = None


class MachineConfig(_Model):
    id: Name
    name: str | None = None
    type: str | None = None
    signals: list[SignalConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_signals(self) -> MachineConfig:
        _require_unique([s.name for s in self.signals], "signal name")
        return self


class LineConfig(_Model):
    id: Name
    name: str | None = None
    machines: list[MachineConfig] = Field(default_factory=list)


class AreaConfig(_Model):
    id: Name
    name: str | None = None
    lines: list[LineConfig] = Field(default_factory=list)


class SiteConfig(_Model):
    id: Name
    name: str | None = None
    areas: list[AreaConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)

    def all_lines(self) -> list[LineConfig]:
        return [*self.lines, *(line for area in self.areas for line in area.lines)]


class TlsConfig(_Model):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


PayloadFormat = Literal["number", "value", "object", "array"]


class SubscriptionConfig(_Model):
    """One topic template. Placeholders {machine} and {signal} map the topic; {line}
    and {site} are matched as single levels and checked against the plant."""

    topic: str = Field(min_length=1)
    qos: Literal[0, 1, 2] = 1
    format: PayloadFormat = "value"
    machine: Name | None = None  # fixed machine when the template has no {machine}
    signal: Name | None = None  # fixed signal when the template has no {signal}
    value_field: str = "value"
    ts_field: str = "ts"
    ts_unit: Literal["s", "ms", "us", "ns", "rfc3339"] = "ms"


class MqttSourceConfig(_Model):
    type: Literal["mqtt"]
    name: Name
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="ombre", min_length=1, max_length=128)
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=86_400, ge=0)
    receive_maximum: int = Field(default=10_000, ge=1, le=65_535)
    subscriptions: list[SubscriptionConfig] = Field(min_length=1)


SourceConfig = Annotated[MqttSourceConfig, Field(discriminator="type")]


class SqliteSinkConfig(_Model):
    type: Literal["sqlite"]
    name: Name = "timeseries"
    path: Path | None = None  # default: <data_dir>/timeseries.sqlite
    retention_days: float = Field(default=30, gt=0)


SinkConfig = Annotated[SqliteSinkConfig, Field(discriminator="type")]


class LimitsConfig(_Model):
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    max_json_depth: int = Field(default=16, ge=1, le=256)
    max_future_s: float = Field(default=300, ge=0)
    oldest_ts: str = "2000-01-01T00:00:00Z"


class RuntimeConfig(_Model):
    queue_max_deliveries: int = Field(default=64, ge=1)
    overflow: Literal["block", "drop_oldest"] = "block"
    batch_max_messages: int = Field(default=5_000, ge=1)
    flush_interval_ms: int = Field(default=50, ge=1, le=60_000)
    outbox_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    quarantine_max_rows: int = Field(default=100_000, ge=1)
    drain_timeout_s: float = Field(default=10, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30, gt=0)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)


class OmbreConfig(_Model):
    data_dir: Path = Path("data")
    sites: list[SiteConfig] = Field(min_length=1)
    sources: list[SourceConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> OmbreConfig:
        _require_unique([m.id for m in self.machines()], "machine id")
        _require_unique([c.name for c in [*self.sources, *self.sinks]], "source/sink name")
        return self

    def machines(self) -> list[MachineConfig]:
        return [m for site in self.sites for line in site.all_lines() for m in line.machines]

    def registry(self) -> SignalRegistry:
        return SignalRegistry(
            (m.id, s.name, s.unit) for m in self.machines() for s in m.signals
        )


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is used more than once")
        seen.add(name)
