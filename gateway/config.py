"""The core of Ombre's YAML config file: the plant (sites, areas, lines, machines and
their signals), the data directory, the runtime's limits, and the base models every
source and sink config extends.

The plant's models are generic in the machine model, so the layers above extend a
machine with their own keys (the shadow's state and counters: shadow/config.py)
without this module naming them. Connectors own their configs (connectors/*_config.py)
and the composition root assembles the whole file (ombre/config.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from gateway.config_base import (
    ConfigModel,
    ConfigPath,
    InvalidKeyError,
    Label,
    Loc,
    Name,
    require_unique,
)
from gateway.storage import ProfileName
from gateway.types import SignalRegistry


class SignalConfig(ConfigModel):
    name: Name
    type: Literal["number", "string"] = "number"  # strings travel as events
    unit: Label | None = None
    description: str | None = None
    # How often it sends, when it sends at a steady rate and its source does not poll it
    # (an MQTT publisher): its data completeness counts readings against it.
    expected_period_s: float | None = Field(default=None, gt=0)


class MachineConfig(ConfigModel):
    """A machine and its signals. The shadow extends it with how to read its state,
    counters and job (shadow/config.py)."""

    id: Name
    name: str | None = None
    type: Label | None = None
    signals: list[SignalConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_signals(self) -> MachineConfig:
        require_unique(((s.name, ("signals", i, "name")) for i, s in enumerate(self.signals)),
                       "signal name")
        return self


@dataclass(frozen=True, slots=True)
class Place:
    """Where a machine is in the plant (ISA-95: site, area, line), and its type. `area`
    is None for a line directly under its site."""

    site: str
    area: str | None
    line: str
    type: str | None


M_co = TypeVar("M_co", bound=MachineConfig, covariant=True)


class LineConfig(ConfigModel, Generic[M_co]):
    id: Name
    name: str | None = None
    machines: list[M_co] = Field(default_factory=list)


class AreaConfig(ConfigModel, Generic[M_co]):
    id: Name
    name: str | None = None
    lines: list[LineConfig[M_co]] = Field(default_factory=list)


class SiteConfig(ConfigModel, Generic[M_co]):
    id: Name
    name: str | None = None
    areas: list[AreaConfig[M_co]] = Field(default_factory=list)
    lines: list[LineConfig[M_co]] = Field(default_factory=list)

    def all_lines(self) -> list[LineConfig[M_co]]:
        return [*self.lines, *(line for area in self.areas for line in area.lines)]


class ConnectorConfig(ConfigModel):
    """What every source and sink config has: its `type`, the name of its plug-in
    (each plug-in narrows it to a Literal, which the loader discriminates on), and a
    name unique among the sources and sinks."""

    type: str
    name: Name


class SourceConfig(ConnectorConfig):
    def fed_machines(self) -> frozenset[str] | None:
        """The ids of the machines this source can deliver for; None for any machine of
        the plant (a topic or browse path names it). The shadow lists them per machine."""
        return None

    def polled_periods_s(self) -> dict[tuple[str, str], float]:
        """(machine, signal) -> every how many seconds this source sends it: the signals
        it polls and sends on every poll (no deadband). Empty for a source that does not
        poll; the shadow counts data completeness against these."""
        return {}


class SinkConfig(ConnectorConfig):
    pass


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


class MetricsConfig(ConfigModel):
    """With `port`, the gateway serves its own counters and the health of its sources,
    sinks and outbox in the Prometheus format on host:port, whether or not the API runs
    (gateway/metrics.py). Off by default; the API's /metrics has them too."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65_535)


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
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _backoff_order(self) -> RuntimeConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise InvalidKeyError(("backoff_initial_s",), "expected at most backoff_max_s "
                                  f"({self.backoff_max_s}), found {self.backoff_initial_s}")
        return self


class StorageConfig(ConfigModel):
    """`profile`: how the outbox trades disk writes against commit latency
    (gateway/storage.py; docs/storage.md)."""

    profile: ProfileName = "default"


class GatewayConfig(ConfigModel, Generic[M_co]):
    """What the gateway runs from: the plant, the connectors and the runtime's limits.
    `sources` and `sinks` hold each plug-in's own config model once the composition
    root's loader has validated the file."""

    data_dir: ConfigPath = Field(default=Path("data"), validate_default=True)
    sites: list[SiteConfig[M_co]] = Field(min_length=1)
    sources: list[SourceConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig[M_co]:
        require_unique(((m.id, (*loc, "id")) for m, loc in self._located_machines()),
                       "machine id")
        require_unique([*((c.name, ("sources", i, "name")) for i, c in enumerate(self.sources)),
                        *((c.name, ("sinks", i, "name")) for i, c in enumerate(self.sinks))],
                       "source/sink name")
        return self

    def _located_lines(self) -> Iterator[tuple[LineConfig[M_co], Loc]]:
        for s, site in enumerate(self.sites):
            groups = [(("sites", s, "lines"), site.lines),
                      *((("sites", s, "areas", a, "lines"), area.lines)
                        for a, area in enumerate(site.areas))]
            for prefix, lines in groups:
                for i, line in enumerate(lines):
                    yield line, (*prefix, i)

    def _located_machines(self) -> Iterator[tuple[M_co, Loc]]:
        for line, loc in self._located_lines():
            for m, machine in enumerate(line.machines):
                yield machine, (*loc, "machines", m)

    def machines(self) -> list[M_co]:
        return [machine for machine, _ in self._located_machines()]

    def machine_key(self, machine_id: str) -> Loc:
        """The key path of a machine in the file: `sites[0].lines[1].machines[2]`."""
        return next(loc for m, loc in self._located_machines() if m.id == machine_id)

    def places(self) -> dict[str, Place]:
        """Machine id -> where it is in the plant (and its type), for every machine."""
        found: dict[str, Place] = {}
        for site in self.sites:
            groups = [(None, site.lines), *((area.id, area.lines) for area in site.areas)]
            for area, lines in groups:
                for line in lines:
                    for machine in line.machines:
                        found[machine.id] = Place(site.id, area, line.id, machine.type or None)
        return found

    def registry(self) -> SignalRegistry:
        return SignalRegistry(
            (m.id, s.name, s.unit) for m in self.machines() for s in m.signals
        )


# What a connector sees of the plant: machines of any layer's machine model.
Plant = GatewayConfig[MachineConfig]


def item_signals(plant: Plant, registry: SignalRegistry,
                 items: Iterable[tuple[str, str, bool, str]]) -> list[int]:
    """The signal ids of a polling source's `items`, each given as (machine, signal,
    whether it reads a string, what it reads), in order. Raises InvalidKeyError at
    `items[i]` for a signal the plant does not declare, and at `items[i].signal` for one
    whose type (string or number) is not what the item reads."""
    types = {(m.id, s.name): s.type for m in plant.machines() for s in m.signals}
    ids = []
    for i, (machine, signal, string, what) in enumerate(items):
        signal_id = registry.id_of(machine, signal)
        if signal_id is None:
            raise InvalidKeyError(("items", i), "expected a signal declared in the plant, "
                                  f"found {machine}/{signal}")
        if string != (types[(machine, signal)] == "string"):
            raise InvalidKeyError(("items", i, "signal"),
                                  f"expected a {'string' if string else 'number'} signal "
                                  f"for {what}, found {machine}/{signal} of type "
                                  f"{types[(machine, signal)]}")
        ids.append(signal_id)
    return ids
