"""The plant and its connections: the pydantic models of Ombre's YAML config file.

`gateway.config_load.load_config(path, environ)` builds an OmbreConfig from a file and
is the only way a file should become one. The models can also be built directly in
code, where secrets must be passed as SecretStr and paths stay as given."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.config import ApiConfig
from gateway.config_base import ConfigModel, InvalidKeyError, Loc, Name, require_unique
from gateway.types import SignalRegistry
from shadow.config import (
    SHADOW_SINK,
    CountersConfig,
    DriftConfig,
    ShadowConfig,
    StateConfig,
    signal_references,
)

REFERENCE = re.compile(r"\$\{([^}]*)\}")  # ${ENV_NAME} or ${file:/path}


class Reference(str):
    """A YAML string in which the loader substituted `${...}` references; `source` is
    the text as written. Its repr shows only `source`, so a resolved secret cannot leak
    through a repr of the raw data."""

    source: str

    def __new__(cls, value: str, source: str) -> Reference:
        self = super().__new__(cls, value)
        self.source = source
        return self

    def __repr__(self) -> str:
        return f"Reference({self.source!r})"


def _require_reference(value: object) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, Reference) and REFERENCE.fullmatch(value.source):
        return SecretStr(str(value))
    raise ValueError(
        "write the secret as ${ENV_NAME} or ${file:/path}, not in the file; found <secret>"
    )


# A secret must come from the environment or a file: in YAML it is exactly one
# `${ENV_NAME}` or `${file:/path}` reference; in code, a SecretStr.
Secret = Annotated[SecretStr, BeforeValidator(_require_reference)]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    return value if base is None or value.is_absolute() else Path(base) / value


# A path that, when validated with context {"base_dir": dir} (as the loader does), is
# resolved relative to dir, the config file's directory.
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


class SignalConfig(ConfigModel):
    name: Name
    type: Literal["number", "string"] = "number"  # strings travel as events
    unit: str | None = None
    description: str | None = None


class MachineConfig(ConfigModel):
    """A machine and its signals; `state`, `counters`, `job_signal`, `silence_s` and
    `exclude_idle` tell the shadow how to read it (shadow/config.py)."""

    id: Name
    name: str | None = None
    type: str | None = None
    signals: list[SignalConfig] = Field(default_factory=list)
    state: StateConfig | None = None
    counters: CountersConfig | None = None
    job_signal: Name | None = None
    silence_s: float = Field(default=120, gt=0)  # no reading this long: state unknown
    exclude_idle: bool = False  # leave ADOT (no job loaded) out of planned busy time
    drift: list[DriftConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _signals(self) -> MachineConfig:
        require_unique(((s.name, ("signals", i, "name")) for i, s in enumerate(self.signals)),
                       "signal name")
        types = {s.name: s.type for s in self.signals}
        for loc, name, expected in signal_references(self.state, self.counters,
                                                     self.job_signal, self.drift):
            if name not in types:
                raise InvalidKeyError(loc, f"expected one of this machine's signals "
                                      f"({', '.join(types) or 'none declared'}), found {name!r}")
            if expected is not None and types[name] != expected:
                raise InvalidKeyError(loc, f"expected a {expected} signal, found {name!r} "
                                      f"of type {types[name]}")
        return self


class LineConfig(ConfigModel):
    id: Name
    name: str | None = None
    machines: list[MachineConfig] = Field(default_factory=list)


class AreaConfig(ConfigModel):
    id: Name
    name: str | None = None
    lines: list[LineConfig] = Field(default_factory=list)


class SiteConfig(ConfigModel):
    id: Name
    name: str | None = None
    areas: list[AreaConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)

    def all_lines(self) -> list[LineConfig]:
        return [*self.lines, *(line for area in self.areas for line in area.lines)]


class TlsConfig(ConfigModel):
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    insecure_skip_verify: bool = False


PayloadFormat = Literal["number", "value", "object", "array"]


class SubscriptionConfig(ConfigModel):
    """One topic template. Placeholders {machine} and {signal} map the topic; {site},
    {area} and {line} are matched as single levels and checked against the plant.
    connectors/topics.py checks templates against the plant when the router is built."""

    topic: str = Field(min_length=1)
    qos: Literal[0, 1, 2] = 1
    format: PayloadFormat = "value"
    machine: Name | None = None  # fixed machine when the template has no {machine}
    signal: Name | None = None  # fixed signal when the template has no {signal}
    value_field: str = "value"
    ts_field: str = "ts"
    ts_unit: Literal["s", "ms", "us", "ns", "rfc3339"] = "ms"


class MqttSourceConfig(ConfigModel):
    type: Literal["mqtt"]
    name: Name
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="ombre", min_length=1, max_length=128)
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=86_400, ge=0)
    receive_maximum: int = Field(default=10_000, ge=1, le=65_535)
    subscriptions: list[SubscriptionConfig] = Field(min_length=1)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        """`protocol: 5` is an integer in YAML; accept it as "5"."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DeadbandConfig(ConfigModel):
    """A monitored item's DataChangeFilter: changes within `value` of the last reported
    value are not sent. `percent` is of the node's EURange (the server must support it)."""

    type: Literal["absolute", "percent"] = "absolute"
    value: float = Field(ge=0)

    @model_validator(mode="after")
    def _percent_range(self) -> DeadbandConfig:
        if self.type == "percent" and self.value > 100:
            raise InvalidKeyError(("value",), f"expected a percentage 0-100, found {self.value}")
        return self


_NODE_ID = re.compile(r"((ns=\d+|nsu=[^;]+);)?[isgb]=.+")
_ENDPOINT = re.compile(r"opc\.tcp://[^\s/:]+(:\d{1,5})?(/\S*)?")


def _matching(pattern: re.Pattern[str], value: str, expected: str) -> str:
    """`value` if the whole of it matches; else a ValueError saying what was expected."""
    if not pattern.fullmatch(value):
        raise ValueError(f"expected {expected}, found {value[:80]!r}")
    return value


class OpcUaNodeConfig(ConfigModel):
    """One OPC UA variable mapped to one plant signal; unset settings take the source's."""

    machine: Name
    signal: Name
    node_id: str  # e.g. ns=2;s=Press1.Temp
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    queue_size: int | None = Field(default=None, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None

    @field_validator("node_id")
    @classmethod
    def _node_id_form(cls, value: str) -> str:
        return _matching(_NODE_ID, value, "a node id such as 'ns=2;s=Press1.Temp' or 'i=2258'")


class OpcUaSourceConfig(ConfigModel):
    """An OPC UA server, read through one subscription of monitored items (no polling).
    The server sends a keep-alive after `keepalive_count` empty publishing intervals;
    no publish response within 3 keep-alive periods counts as a lost connection."""

    type: Literal["opcua"]
    name: Name
    endpoint: str  # opc.tcp://host[:port][/path]
    publishing_interval_ms: float = Field(default=100, gt=0, le=3_600_000)
    keepalive_count: int = Field(default=10, ge=1, le=1000)
    sampling_interval_ms: float = Field(default=100, ge=0)  # 0: the server's fastest
    queue_size: int = Field(default=10, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None
    connect_timeout_s: float = Field(default=10, gt=0, le=300)
    nodes: list[OpcUaNodeConfig] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_form(cls, value: str) -> str:
        return _matching(_ENDPOINT, value, "an endpoint such as 'opc.tcp://192.168.0.10:4840'")

    @model_validator(mode="after")
    def _unique_nodes(self) -> OpcUaSourceConfig:
        require_unique(((f"{n.machine}/{n.signal}", ("nodes", i, "signal"))
                         for i, n in enumerate(self.nodes)), "machine/signal")
        return self


SourceConfig = Annotated[MqttSourceConfig | OpcUaSourceConfig, Field(discriminator="type")]


class SqliteSinkConfig(ConfigModel):
    type: Literal["sqlite"]
    name: Name = "timeseries"
    path: ConfigPath | None = None  # default: <data_dir>/timeseries.sqlite
    retention_days: float = Field(default=30, gt=0)


SinkConfig = Annotated[SqliteSinkConfig, Field(discriminator="type")]


class LimitsConfig(ConfigModel):
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    max_json_depth: int = Field(default=16, ge=1, le=256)
    max_future_s: float = Field(default=300, ge=0)
    oldest_ts: str = "2000-01-01T00:00:00Z"

    @field_validator("oldest_ts")
    @classmethod
    def _aware_timestamp(cls, value: str) -> str:
        try:
            aware = datetime.fromisoformat(value).tzinfo is not None
        except ValueError:
            aware = False
        if not aware:
            raise ValueError("expected an ISO 8601 timestamp with a time zone such as "
                             f"'2000-01-01T00:00:00Z', found {value[:60]!r}")
        return value


class RuntimeConfig(ConfigModel):
    queue_max_deliveries: int = Field(default=16, ge=1)
    overflow: Literal["block", "drop_oldest"] = "block"
    batch_max_messages: int = Field(default=5_000, ge=1)
    batch_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    flush_interval_ms: int = Field(default=50, ge=1, le=60_000)
    outbox_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    quarantine_max_rows: int = Field(default=100_000, ge=1)
    drain_timeout_s: float = Field(default=10, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30, gt=0)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @model_validator(mode="after")
    def _backoff_order(self) -> RuntimeConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise InvalidKeyError(("backoff_initial_s",), "expected at most backoff_max_s "
                                  f"({self.backoff_max_s}), found {self.backoff_initial_s}")
        return self


class OmbreConfig(ConfigModel):
    data_dir: ConfigPath = Field(default=Path("data"), validate_default=True)
    sites: list[SiteConfig] = Field(min_length=1)
    sources: list[SourceConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> OmbreConfig:
        require_unique(((m.id, (*loc, "id")) for m, loc in self._located_machines()),
                        "machine id")
        for i, sink in enumerate(self.sinks):
            if sink.name == SHADOW_SINK:
                raise InvalidKeyError(("sinks", i, "name"), f"expected a name other than "
                                      f"{SHADOW_SINK!r}, which the shadow uses, found it")
        machines = {m.id for m in self.machines()}
        for i, stop in enumerate(self.shadow.calendar.planned_stops):
            for j, name in enumerate(stop.machines):
                if name not in machines:
                    raise InvalidKeyError(("shadow", "calendar", "planned_stops", i, "machines", j),
                                          f"expected a machine id of the plant, found {name!r}")
        require_unique([*((c.name, ("sources", i, "name")) for i, c in enumerate(self.sources)),
                         *((c.name, ("sinks", i, "name")) for i, c in enumerate(self.sinks))],
                        "source/sink name")
        return self

    def _located_machines(self) -> Iterator[tuple[MachineConfig, Loc]]:
        for s, site in enumerate(self.sites):
            groups = [(("sites", s, "lines"), site.lines),
                      *((("sites", s, "areas", a, "lines"), area.lines)
                        for a, area in enumerate(site.areas))]
            for prefix, lines in groups:
                for i, line in enumerate(lines):
                    for m, machine in enumerate(line.machines):
                        yield machine, (*prefix, i, "machines", m)

    def machines(self) -> list[MachineConfig]:
        return [machine for machine, _ in self._located_machines()]

    def registry(self) -> SignalRegistry:
        return SignalRegistry(
            (m.id, s.name, s.unit) for m in self.machines() for s in m.signals
        )
