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
from connectors.modbus_config import ModbusSourceConfig
from gateway.config_base import ConfigModel, InvalidKeyError, Loc, Name, require_unique
from gateway.types import SignalRegistry
from shadow.config import (
    SHADOW_SINK,
    CountersConfig,
    DriftConfig,
    ReasonConfig,
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
    """A machine and its signals; `state`, `counters`, `job_signal`, `reason`,
    `silence_s`, `exclude_idle` and `complete_at_planned_qty` tell the shadow how to read
    it (shadow/config.py)."""

    id: Name
    name: str | None = None
    type: str | None = None
    signals: list[SignalConfig] = Field(default_factory=list)
    state: StateConfig | None = None
    counters: CountersConfig | None = None
    job_signal: Name | None = None
    reason: ReasonConfig | None = None  # where the machine says why it stopped
    silence_s: float = Field(default=120, gt=0)  # no reading this long: state unknown
    exclude_idle: bool = False  # leave ADOT (no job loaded) out of planned busy time
    complete_at_planned_qty: bool = False  # a job ends once its order's planned_qty is made
    drift: list[DriftConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _signals(self) -> MachineConfig:
        require_unique(((s.name, ("signals", i, "name")) for i, s in enumerate(self.signals)),
                       "signal name")
        types = {s.name: s.type for s in self.signals}
        for loc, name, expected in signal_references(self.state, self.counters,
                                                     self.job_signal, self.drift,
                                                     self.reason):
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
    """OPC UA variables mapped to plant signals: one `node_id` for one machine and
    signal, or a `browse_path` pattern resolved at each connect, whose {machine} and
    {signal} levels name them (connectors/opcua_paths.py); a fixed `machine` or
    `signal` serves a pattern without that placeholder. Unset settings take the
    source's."""

    machine: Name | None = None
    signal: Name | None = None
    node_id: str | None = None  # e.g. ns=2;s=Press1.Temp
    browse_path: str | None = None  # e.g. Objects/Machines/{machine}/Counters/{signal}
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    queue_size: int | None = Field(default=None, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None

    @field_validator("node_id")
    @classmethod
    def _node_id_form(cls, value: str) -> str:
        return _matching(_NODE_ID, value, "a node id such as 'ns=2;s=Press1.Temp' or 'i=2258'")

    @model_validator(mode="after")
    def _node_or_path(self) -> OpcUaNodeConfig:
        if (self.node_id is None) == (self.browse_path is None):
            raise InvalidKeyError(("node_id",), "expected exactly one of node_id and "
                                  f"browse_path, found {'both' if self.node_id else 'neither'}")
        for key in ("machine", "signal"):
            given = getattr(self, key) is not None
            if self.browse_path is not None and f"{{{key}}}" in self.browse_path:
                if given:
                    raise InvalidKeyError((key,), f"expected no {key} when browse_path has "
                                          f"{{{key}}}, found {getattr(self, key)!r}")
            elif not given:
                raise InvalidKeyError((key,), "missing required key" if self.node_id else
                                      f"expected {key}, or {{{key}}} in browse_path")
        return self


OpcUaPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss",
                      "Basic128Rsa15", "Basic256"]
DEPRECATED_OPCUA_POLICIES = ("Basic128Rsa15", "Basic256")


class OpcUaSecurityConfig(ConfigModel):
    """The secure channel. Required in the config, so `mode: None` (no signing, no
    encryption) is always a written choice, never a fallback. The client certificate
    lives in <data_dir>/pki/own; the server's must be in <data_dir>/pki/trusted."""

    mode: Literal["None", "Sign", "SignAndEncrypt"]
    policy: OpcUaPolicy | None = None  # required unless mode is None
    allow_deprecated: bool = False  # permit Basic128Rsa15 and Basic256 (broken SHA-1)

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurityConfig:
        if self.mode == "None":
            if self.policy not in (None, "None"):
                raise InvalidKeyError(("policy",), f"expected None (or no policy) with mode "
                                      f"None, found {self.policy}")
        elif self.policy in (None, "None"):
            raise InvalidKeyError(("policy",), f"expected a security policy for mode "
                                  f"{self.mode} (Basic256Sha256, Aes128_Sha256_RsaOaep or "
                                  f"Aes256_Sha256_RsaPss), found {self.policy}")
        if self.policy in DEPRECATED_OPCUA_POLICIES and not self.allow_deprecated:
            raise InvalidKeyError(("policy",), f"expected a current policy (Basic256Sha256, "
                                  f"Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss), found the "
                                  f"deprecated {self.policy}; set allow_deprecated: true "
                                  f"to use it anyway")
        return self


class OpcUaSourceConfig(ConfigModel):
    """An OPC UA server, read through one subscription of monitored items (polled only
    when `read_interval_ms` is set, for servers without subscriptions). The server
    sends a keep-alive after `keepalive_count` empty publishing intervals; no publish
    response within 3 keep-alive periods counts as a lost connection. Nodes are listed
    in `nodes`, found by the `companion` specifications, or both."""

    type: Literal["opcua"]
    name: Name
    endpoint: str  # opc.tcp://host[:port][/path]
    publishing_interval_ms: float = Field(default=100, gt=0, le=3_600_000)
    keepalive_count: int = Field(default=10, ge=1, le=1000)
    sampling_interval_ms: float = Field(default=100, ge=0)  # 0: the server's fastest
    queue_size: int = Field(default=10, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None
    connect_timeout_s: float = Field(default=10, gt=0, le=300)
    security: OpcUaSecurityConfig
    username: str | None = None  # user identity: a username and password ...
    password: Secret | None = None
    user_certificate: ConfigPath | None = None  # ... or an X.509 certificate and its key
    user_key: ConfigPath | None = None
    nodes: list[OpcUaNodeConfig] = Field(default_factory=list)
    companion: list[Literal["machinery", "packml"]] = Field(default_factory=list)
    browse_depth: int = Field(default=8, ge=1, le=32)  # levels walked for browse paths
    # Only for a server without subscriptions: read every node this often instead.
    read_interval_ms: float | None = Field(default=None, ge=10, le=3_600_000)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_form(cls, value: str) -> str:
        return _matching(_ENDPOINT, value, "an endpoint such as 'opc.tcp://192.168.0.10:4840'")

    @model_validator(mode="after")
    def _identity(self) -> OpcUaSourceConfig:
        if self.password is not None and self.username is None:
            raise InvalidKeyError(("password",), "expected a username with the password, "
                                  "found none")
        if (self.user_certificate is None) != (self.user_key is None):
            key = "user_key" if self.user_key is None else "user_certificate"
            raise InvalidKeyError((key,), "expected user_certificate and user_key together, "
                                  f"found no {key}")
        if self.username is not None and self.user_certificate is not None:
            raise InvalidKeyError(("user_certificate",), "expected one user identity, "
                                  "username or user_certificate, found both")
        return self

    @model_validator(mode="after")
    def _unique_nodes(self) -> OpcUaSourceConfig:
        if not self.nodes and not self.companion:
            raise InvalidKeyError(("nodes",), "expected at least one node, or a companion "
                                  "specification (machinery, packml), found neither")
        require_unique(((f"{n.machine}/{n.signal}", ("nodes", i, "signal"))
                         for i, n in enumerate(self.nodes)
                         if n.machine is not None and n.signal is not None), "machine/signal")
        return self


SourceConfig = Annotated[MqttSourceConfig | OpcUaSourceConfig | ModbusSourceConfig,
                         Field(discriminator="type")]


class SqliteSinkConfig(ConfigModel):
    type: Literal["sqlite"]
    name: Name = "timeseries"
    path: ConfigPath | None = None  # default: <data_dir>/timeseries.sqlite
    retention_days: float = Field(default=30, gt=0)


_HTTP_URL = re.compile(r"https?://[^\s/:?#]+(:\d{1,5})?(/\S*)?")
_ONE_LINE = re.compile(r"[^\n\r]+")
_FIELD_KEY = re.compile(r"(?!quality$)[^_\n\r][^\n\r]*")
InfluxTag = Literal["site", "area", "line", "machine", "signal", "unit"]


class InfluxSinkConfig(ConfigModel):
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
        return _matching(_HTTP_URL, value, "a URL such as 'http://127.0.0.1:8086'")

    @field_validator("value_field")
    @classmethod
    def _field_key(cls, value: str) -> str:
        return _matching(_FIELD_KEY, value, "a field key other than 'quality', not starting "
                         "with '_' (InfluxDB reserves those), without line breaks")

    @field_validator("event_measurement")
    @classmethod
    def _measurement_name(cls, value: str) -> str:
        return _matching(_ONE_LINE, value, "a non-empty name without line breaks")

    @model_validator(mode="after")
    def _series_tags(self) -> InfluxSinkConfig:
        require_unique(((t, ("tags", i)) for i, t in enumerate(self.tags)), "tag")
        for needed in ("machine", "signal"):
            if needed not in self.tags:
                raise InvalidKeyError(("tags",), f"expected a list with {needed!r}, which "
                                      f"tells series apart, found {list(self.tags)}")
        return self


SinkConfig = Annotated[SqliteSinkConfig | InfluxSinkConfig, Field(discriminator="type")]


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

    @model_validator(mode="after")
    def _line_protocol_names(self) -> OmbreConfig:
        """Line protocol ends a line at a line break whatever the escaping, so the names
        an influxdb sink writes may not hold one."""
        sink = next((s for s in self.sinks if isinstance(s, InfluxSinkConfig)), None)
        if sink is None:
            return self
        names: list[tuple[str | None, Loc]] = []
        for s, site in enumerate(self.sites):
            names += [(site.id, ("sites", s, "id")),
                      *((a.id, ("sites", s, "areas", i, "id")) for i, a in enumerate(site.areas))]
        names += [(line.id, (*loc, "id")) for line, loc in self._located_lines()]
        for machine, loc in self._located_machines():
            names += [(machine.id, (*loc, "id")), (machine.type, (*loc, "type"))]
            for i, signal in enumerate(machine.signals):
                names += [(signal.name, (*loc, "signals", i, "name")),
                          (signal.unit, (*loc, "signals", i, "unit"))]
        for name, loc in names:
            if name is not None and ("\n" in name or "\r" in name):
                raise InvalidKeyError(loc, f"expected no line break, as sink {sink.name!r} "
                                      f"writes it in InfluxDB line protocol, found {name[:60]!r}")
        return self

    def _located_lines(self) -> Iterator[tuple[LineConfig, Loc]]:
        for s, site in enumerate(self.sites):
            groups = [(("sites", s, "lines"), site.lines),
                      *((("sites", s, "areas", a, "lines"), area.lines)
                        for a, area in enumerate(site.areas))]
            for prefix, lines in groups:
                for i, line in enumerate(lines):
                    yield line, (*prefix, i)

    def _located_machines(self) -> Iterator[tuple[MachineConfig, Loc]]:
        for line, loc in self._located_lines():
            for m, machine in enumerate(line.machines):
                yield machine, (*loc, "machines", m)

    def machines(self) -> list[MachineConfig]:
        return [machine for machine, _ in self._located_machines()]

    def machine_key(self, machine_id: str) -> Loc:
        """The key path of a machine in the file: `sites[0].lines[1].machines[2]`."""
        return next(loc for m, loc in self._located_machines() if m.id == machine_id)

    def registry(self) -> SignalRegistry:
        return SignalRegistry(
            (m.id, s.name, s.unit) for m in self.machines() for s in m.signals
        )
